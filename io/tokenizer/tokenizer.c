/* Encoding: added tokens are cut out of the raw text first; each segment
 * between them is normalized, pre-tokenized and BPE'd, piece by piece. */
#include "io/tokenizer/tokenizer.h"

#include <string.h>

#include "io/base/error.h"
#include "io/tokenizer/tokenizer_internal.h"
#include "io/utf8.h"

void token_ids_push(TokenIds *l, int32_t id) {
    TOK_GROW(l->ids, l->cap, l->n + 1);
    l->ids[l->n++] = id;
}

void token_ids_free(TokenIds *l) {
    free(l->ids);
    l->ids = NULL;
    l->n = l->cap = 0;
}

static int model_pieces(Tokenizer *t, const char *s, size_t len, int at_start, TokenIds *out) {
    const Pieces *p;
    if (!len) return 0;
    if (pretok_apply(&t->pre, s, len, at_start, &p)) return -1;
    for (size_t k = 0; k < p->n; k++) bpe_word(&t->bpe, p->text.p + p->sp[k].off, p->sp[k].len, t->pre.byte_level, out);
    return 0;
}

/* at_start: the segment begins the text (Metaspace's prepend_scheme "first"). */
static int encode_segment(Tokenizer *t, const char *s, size_t len, int at_start, TokenIds *out) {
    const char *ns;
    size_t nl;
    if (!len) return 0;
    if (norm_apply(&t->norm, s, len, &ns, &nl)) return -1;
    if (!t->added.nnorm) return model_pieces(t, ns, nl, at_start, out);
    size_t pos = 0, b, e, k;
    while (added_find(&t->added, 1, ns, nl, pos, &b, &e, &k)) {
        if (model_pieces(t, ns + pos, b - pos, at_start && pos == 0, out)) return -1;
        token_ids_push(out, t->added.tok[k].id);
        pos = e;
    }
    return model_pieces(t, ns + pos, nl - pos, at_start && pos == 0, out);
}

int tokenizer_encode(Tokenizer *t, const char *text, size_t len, int add_special, TokenIds *out) {
    size_t bad;
    if (!text) text = "";
    if (utf8_validate(text, len, &bad)) return tm_fail("invalid UTF-8 at byte %zu", bad);
    if (add_special)
        for (size_t i = 0; i < t->prefix.n; i++) token_ids_push(out, t->prefix.ids[i]);
    size_t pos = 0, b, e, k;
    while (added_find(&t->added, 0, text, len, pos, &b, &e, &k)) {
        if (encode_segment(t, text + pos, b - pos, pos == 0, out)) return -1;
        token_ids_push(out, t->added.tok[k].id);
        pos = e;
    }
    if (encode_segment(t, text + pos, len - pos, pos == 0, out)) return -1;
    if (add_special)
        for (size_t i = 0; i < t->suffix.n; i++) token_ids_push(out, t->suffix.ids[i]);
    return 0;
}

int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int tokenizer_bos_id(const Tokenizer *t) { return t->bos_id; }
int tokenizer_eos_id(const Tokenizer *t) { return t->eos_id; }
const char *tokenizer_sha256(const Tokenizer *t) { return t->sha256; }
const char *tokenizer_path(const Tokenizer *t) { return t->path; }
