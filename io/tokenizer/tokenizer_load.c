/* Reading tokenizer.json: the BPE model, normalizer, pre-tokenizer, added
 * tokens and decoder. Every error names the file and the field. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/sha256.h"
#include "io/json_util.h"
#include "io/tokenizer/tokenizer_internal.h"

enum { MAX_ID = 1 << 26 };
#define META "\xE2\x96\x81" /* U+2581 */

static char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        tm_fail("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    StrBuf b = {0};
    char chunk[1 << 16];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) sb_add(&b, chunk, got);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        sb_free(&b);
        tm_fail("%s: read error", path);
        return NULL;
    }
    if (!b.p) sb_add(&b, "", 0);
    *len = b.n;
    return b.p;
}

static int parse_vocab(Tokenizer *t, const json_t *vocab, const char *file) {
    if (!vocab) return tm_fail("%s: model.vocab: missing", file);
    if (!json_is_object(vocab)) return tm_fail("%s: model.vocab: not an object", file);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_ID)
            return tm_fail("%s: model.vocab['%s']: not an integer id in [0, %d)", file, key, MAX_ID);
        strmap_put(&t->bpe.vocab, key, strlen(key), (int32_t)json_integer_value(v));
    }
    return 0;
}

/* A merge is "a b" or ["a", "b"]; a, b and a+b must all be in the vocabulary. */
static int parse_merges(Tokenizer *t, const json_t *merges, const char *file) {
    if (!merges) return tm_fail("%s: model.merges: missing", file);
    if (!json_is_array(merges)) return tm_fail("%s: model.merges: not an array", file);
    StrBuf ab = {0};
    int rc = 0, meta_cut = strmap_get(&t->bpe.vocab, META, 3) >= 0;
    for (size_t i = 0; i < json_array_size(merges) && !rc; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp) {
                rc = tm_fail("%s: model.merges[%zu]: '%s' is not two tokens separated by a space", file, i, a);
                break;
            }
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            alen = strlen(a), blen = strlen(b);
        } else {
            rc = tm_fail("%s: model.merges[%zu]: not a string \"a b\" or a pair [a, b]", file, i);
            break;
        }
        ab.n = 0;
        sb_add(&ab, a, alen);
        sb_add(&ab, b, blen);
        int32_t ia = strmap_get(&t->bpe.vocab, a, alen), ib = strmap_get(&t->bpe.vocab, b, blen);
        int32_t iab = strmap_get(&t->bpe.vocab, ab.p, ab.n);
        const char *miss = ia < 0 ? a : ib < 0 ? b : iab < 0 ? ab.p : NULL;
        size_t mlen = ia < 0 ? alen : ib < 0 ? blen : ab.n;
        if (miss) rc = tm_fail("%s: model.merges[%zu]: '%.*s' is not in model.vocab", file, i, (int)mlen, miss);
        else pairmap_put(&t->bpe.merges, ia, ib, (int32_t)i, iab);
        if (blen >= 3 && !memcmp(b, META, 3) && !(alen >= 3 && !memcmp(a + alen - 3, META, 3))) meta_cut = 0;
    }
    sb_free(&ab);
    t->bpe.meta_cut = meta_cut;
    return rc;
}

static int parse_model(Tokenizer *t, const json_t *model, const char *file) {
    if (!model) return tm_fail("%s: model: missing", file);
    if (!json_is_object(model)) return tm_fail("%s: model: not an object", file);
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type) return tm_fail("%s: model.type: missing or not a string", file);
    if (strcmp(type, "BPE")) return tm_fail("%s: model.type '%s': only BPE is supported", file, type);
    const json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop)) return tm_fail("%s: model.dropout: must be null (dropout is not supported)", file);
    const char *affix[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const json_t *v = json_object_get(model, affix[k]);
        if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v)))
            return tm_fail("%s: model.%s: only null or \"\" is supported", file, affix[k]);
    }
    Bpe *m = &t->bpe;
    if (tm_json_bool_or(file, model, "fuse_unk", 0, &m->fuse_unk) ||
        tm_json_bool_or(file, model, "byte_fallback", 0, &m->byte_fallback) ||
        tm_json_bool_or(file, model, "ignore_merges", 0, &m->ignore_merges))
        return -1;
    const json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (parse_vocab(t, vocab, file) || parse_merges(t, merges, file)) return -1;
    const json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk)) return tm_fail("%s: model.unk_token: not a string", file);
        m->unk_id = strmap_get(&m->vocab, json_string_value(unk), json_string_length(unk));
        if (m->unk_id < 0) return tm_fail("%s: model.unk_token '%s': not in model.vocab", file, json_string_value(unk));
    }
    bpe_finish(m);
    return 0;
}

/* id -> token string for decode: the vocabulary, then added tokens on top. */
static void build_id_table(Tokenizer *t) {
    const StrMap *v = &t->bpe.vocab;
    int n = 0;
    for (size_t i = 0; i < v->n; i++)
        if (v->e[i].val + 1 > n) n = v->e[i].val + 1;
    for (size_t i = 0; i < t->added.n; i++)
        if (t->added.tok[i].id + 1 > n) n = t->added.tok[i].id + 1;
    t->vocab_size = n;
    t->tok_off = callocCheck((size_t)n, sizeof *t->tok_off);
    t->tok_len = callocCheck((size_t)n, sizeof *t->tok_len);
    t->tok_added = callocCheck((size_t)n, 1);
    t->tok_known = callocCheck((size_t)n, 1);
    for (size_t i = 0; i < v->n; i++) {
        int32_t id = v->e[i].val;
        if (t->tok_known[id]) continue; /* two strings for one id: the first names it */
        t->tok_known[id] = 1;
        t->tok_off[id] = (uint32_t)t->tok_text.n;
        t->tok_len[id] = v->e[i].len;
        sb_add(&t->tok_text, v->keys.p + v->e[i].off, v->e[i].len);
    }
    for (size_t i = 0; i < t->added.n; i++) {
        const AddedToken *a = &t->added.tok[i];
        t->tok_known[a->id] = t->tok_added[a->id] = 1;
        t->tok_off[a->id] = (uint32_t)t->tok_text.n;
        t->tok_len[a->id] = (uint32_t)a->len;
        sb_add(&t->tok_text, a->content, a->len);
    }
}

/* Normalized added tokens are matched in normalized text, so their
 * content is normalized first, as HF does. */
static int index_added(Tokenizer *t) {
    for (size_t k = 0; k < t->added.n; k++) {
        const AddedToken *a = &t->added.tok[k];
        const char *s = a->content;
        size_t len = a->len;
        if (a->normalized && norm_apply(&t->norm, a->content, a->len, &s, &len)) return -1;
        added_index(&t->added, k, s, len);
    }
    return 0;
}

static int parse_json(Tokenizer *t, const json_t *root, const char *dir) {
    const char *file = t->path;
    if (!json_is_object(root)) return tm_fail("%s: top level is not a JSON object", file);
    const json_t *model = json_object_get(root, "model");
    size_t nv = json_object_size(json_object_get(model, "vocab"));
    size_t nm = json_array_size(json_object_get(model, "merges"));
    bpe_init(&t->bpe, nv, nm);
    if (parse_model(t, model, file) || added_parse(&t->added, json_object_get(root, "added_tokens"), file) ||
        norm_parse(&t->norm, json_object_get(root, "normalizer"), file, "normalizer") ||
        pretok_parse(&t->pre, json_object_get(root, "pre_tokenizer"), file, "pre_tokenizer") ||
        decoder_parse(&t->dec, json_object_get(root, "decoder"), file, "decoder") || index_added(t))
        return -1;
    build_id_table(t);
    return tokenizer_load_specials(t, dir, json_object_get(root, "post_processor"));
}

int tokenizer_load(Tokenizer **out, const char *dir) {
    *out = NULL;
    Tokenizer *t = callocCheck(1, sizeof *t);
    t->bos_id = t->eos_id = -1;
    size_t plen = strlen(dir) + 32;
    t->path = mallocCheck(plen);
    snprintf(t->path, plen, "%s/tokenizer.json", dir);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) /* given the file itself */
        snprintf(t->path, plen, "%s", dir);
    size_t len;
    char *bytes = read_all(t->path, &len);
    if (!bytes) {
        tokenizer_free(t);
        return -1;
    }
    sha256_bytes(bytes, len, t->sha256);
    json_error_t e;
    json_t *root = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &e);
    free(bytes);
    if (!root) {
        tm_fail("%s: not valid JSON (%s, line %d)", t->path, e.text, e.line);
        tokenizer_free(t);
        return -1;
    }
    char *folder = strdup(t->path);
    char *slash = strrchr(folder, '/');
    if (slash) *slash = 0;
    int rc = parse_json(t, root, slash ? folder : ".");
    free(folder);
    json_decref(root);
    if (rc) {
        tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->path);
    bpe_free(&t->bpe);
    norm_free(&t->norm);
    pretok_free(&t->pre);
    added_free(&t->added);
    decoder_free(&t->dec);
    sb_free(&t->tok_text);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_added);
    free(t->tok_known);
    token_ids_free(&t->prefix);
    token_ids_free(&t->suffix);
    free(t);
}
