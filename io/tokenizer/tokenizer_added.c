#include "io/tokenizer/tokenizer_added.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/str_buf.h"
#include "io/utf8.h"

static void trie_init(Trie *t) {
    for (int i = 0; i < 256; i++) t->root[i] = -1;
}

static int32_t new_node(Trie *t, uint8_t byte, int32_t sibling) {
    TOK_GROW(t->nodes, t->cap, t->n + 1);
    t->nodes[t->n] = (TrieNode){-1, sibling, -1, byte};
    return (int32_t)t->n++;
}

static int32_t child(const Trie *t, int32_t node, uint8_t byte) {
    for (int32_t c = t->nodes[node].child; c >= 0; c = t->nodes[c].sibling)
        if (t->nodes[c].byte == byte) return c;
    return -1;
}

static void trie_insert(Trie *t, const char *s, size_t len, int32_t tok) {
    uint8_t b0 = (uint8_t)s[0];
    if (t->root[b0] < 0) t->root[b0] = new_node(t, b0, -1);
    int32_t node = t->root[b0];
    for (size_t i = 1; i < len; i++) {
        int32_t c = child(t, node, (uint8_t)s[i]);
        if (c < 0) {
            c = new_node(t, (uint8_t)s[i], t->nodes[node].child);
            t->nodes[node].child = c;
        }
        node = c;
    }
    if (t->nodes[node].tok < 0) t->nodes[node].tok = tok; /* same content twice: the first wins */
}

void added_index(AddedTokens *a, size_t k, const char *text, size_t len) {
    if (!len) return;
    trie_insert(a->tok[k].normalized ? &a->norm : &a->raw, text, len, (int32_t)k);
    a->nnorm += a->tok[k].normalized;
}

int added_parse(AddedTokens *a, const json_t *list, const char *file) {
    memset(a, 0, sizeof *a);
    trie_init(&a->raw);
    trie_init(&a->norm);
    if (!list || json_is_null(list)) return 0;
    if (!json_is_array(list)) return tm_fail("%s: added_tokens: not an array", file);
    a->tok = callocCheck(json_array_size(list) + 1, sizeof *a->tok);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        char field[64];
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        const json_t *c = json_object_get(e, "content");
        const json_t *id = json_object_get(e, "id");
        if (!json_is_string(c) || !json_string_length(c))
            return tm_fail("%s: %s.content: missing, empty or not a string", file, field);
        /* the id table is allocated up to the largest id: the same bound as model.vocab's */
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 26))
            return tm_fail("%s: %s.id: missing or not an integer id in [0, %d)", file, field, 1 << 26);
        AddedToken *t = &a->tok[a->n++];
        t->len = json_string_length(c);
        t->content = mallocCheck(t->len + 1);
        memcpy(t->content, json_string_value(c), t->len + 1);
        t->id = (int32_t)json_integer_value(id);
        int v[5];
        const char *keys[5] = {"special", "lstrip", "rstrip", "single_word", "normalized"};
        for (int k = 0; k < 5; k++) {
            const json_t *f = json_object_get(e, keys[k]);
            if (f && !json_is_boolean(f)) return tm_fail("%s: %s.%s: not true/false", file, field, keys[k]);
            v[k] = json_is_true(f);
        }
        t->special = v[0], t->lstrip = v[1], t->rstrip = v[2], t->single_word = v[3];
        /* HF's default: special tokens are not normalized, others are */
        t->normalized = json_object_get(e, "normalized") ? v[4] : !t->special;
    }
    return 0;
}

void added_free(AddedTokens *a) {
    for (size_t i = 0; i < a->n; i++) free(a->tok[i].content);
    free(a->tok);
    free(a->raw.nodes);
    free(a->norm.nodes);
    memset(a, 0, sizeof *a);
}

/* The longest token starting at s[i], or -1. */
static int32_t longest_at(const Trie *t, const char *s, size_t len, size_t i, size_t *end) {
    int32_t node = t->root[(uint8_t)s[i]], best = -1;
    for (size_t j = i + 1;; j++) {
        if (t->nodes[node].tok >= 0) {
            best = t->nodes[node].tok;
            *end = j;
        }
        if (j >= len || (node = child(t, node, (uint8_t)s[j])) < 0) return best;
    }
}

static uint32_t cp_before(const char *s, size_t i) {
    size_t k = i - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
    uint32_t cp;
    utf8_decode(s + k, &cp);
    return cp;
}

static int is_word(uint32_t cp) { /* regex \w: letters, marks, digits, connector punctuation */
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_NO) || c == UTF8PROC_CATEGORY_PC;
}

int added_find(const AddedTokens *a, int norm, const char *s, size_t len, size_t from, size_t *b, size_t *e, size_t *k) {
    const Trie *t = norm ? &a->norm : &a->raw;
    if (!t->n) return 0;
    size_t prev_stop = from;
    for (size_t i = from; i < len; i++) {
        if (t->root[(uint8_t)s[i]] < 0) continue;
        size_t end;
        int32_t tok = longest_at(t, s, len, i, &end);
        if (tok < 0) continue;
        const AddedToken *at = &a->tok[tok];
        uint32_t cp;
        if (at->single_word) { /* a word character next to the match: not a match (HF skips past it) */
            int left = i > 0 && is_word(cp_before(s, i));
            int right = end < len && (utf8_decode(s + end, &cp), is_word(cp));
            if (left || right) {
                i = end - 1;
                continue;
            }
        }
        size_t mb = i, me = end;
        while (at->lstrip && mb > prev_stop) { /* not into the previous match */
            size_t q = mb - 1;
            while (q > prev_stop && ((uint8_t)s[q] & 0xC0) == 0x80) q--;
            utf8_decode(s + q, &cp);
            if (!utf8_is_space(cp)) break;
            mb = q;
        }
        if (at->rstrip)
            while (me < len) {
                size_t n = utf8_decode(s + me, &cp);
                if (!utf8_is_space(cp)) break;
                me += n;
            }
        *b = mb;
        *e = me;
        *k = (size_t)tok;
        return 1;
    }
    return 0;
}
