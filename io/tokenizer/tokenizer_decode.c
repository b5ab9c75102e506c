/* Decoders of tokenizer.json, applied like Hugging Face's decode_chain: the
 * token strings flow through each step as a list. */
#include <stdlib.h>
#include <string.h>

#include "io/base/error.h"
#include "io/json_util.h"
#include "io/tokenizer/tok_bytelevel.h"
#include "io/tokenizer/tokenizer_internal.h"
#include "io/tokenizer/tokenizer_regex.h"
#include "io/utf8.h"

enum { D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE };

struct DecStep {
    int kind;
    TokRegex *re; /* Replace pattern */
    char *content; /* Replace content; Strip / Metaspace character */
    size_t clen;
    int start, stop; /* Strip counts */
    int prepend;     /* Metaspace: strip the first token's leading space */
};

typedef struct {
    size_t off, len;
    int added;
} DecTok;

typedef struct {
    StrBuf text;
    DecTok *t;
    size_t n, cap;
} DecList;

static int parse_step(DecStep *st, const json_t *j, const char *file, const char *field) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type) return tm_fail("%s: %s.type: missing or not a string", file, field);
    if (!strcmp(type, "ByteLevel")) st->kind = D_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) st->kind = D_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) st->kind = D_FUSE;
    else if (!strcmp(type, "Replace")) {
        const json_t *c = json_object_get(j, "content");
        if (!json_is_string(c)) return tm_fail("%s: %s.content: missing or not a string", file, field);
        st->kind = D_REPLACE;
        st->clen = json_string_length(c);
        st->content = strdup(json_string_value(c));
        return tok_pattern_parse(json_object_get(j, "pattern"), file, field, &st->re);
    } else if (!strcmp(type, "Strip") || !strcmp(type, "Metaspace")) {
        int strip = !strcmp(type, "Strip");
        const char *key = strip ? "content" : "replacement";
        const char *c = json_string_value(json_object_get(j, key));
        if (!c && strip) return tm_fail("%s: %s.content: missing or not a string", file, field);
        st->kind = strip ? D_STRIP : D_METASPACE;
        st->content = strdup(c ? c : "\xE2\x96\x81");
        st->clen = strlen(st->content);
        if (!st->clen) return tm_fail("%s: %s.%s: empty", file, field, key);
        long long a, b;
        if (tm_json_int_or(file, j, "start", 0, &a) || tm_json_int_or(file, j, "stop", 0, &b)) return -1;
        st->start = (int)a, st->stop = (int)b;
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        const json_t *aps = json_object_get(j, "add_prefix_space");
        st->prepend = scheme ? strcmp(scheme, "never") != 0 : (aps ? json_is_true(aps) : 1);
    } else return tm_fail("%s: %s.type '%s': decoder not supported", file, field, type);
    return 0;
}

int decoder_parse(Decoder *d, const json_t *j, const char *file, const char *field) {
    memset(d, 0, sizeof *d);
    if (!j || json_is_null(j)) return 0;
    if (!json_is_object(j)) return tm_fail("%s: %s: not an object", file, field);
    d->present = 1;
    const char *type = json_string_value(json_object_get(j, "type"));
    int seq = type && !strcmp(type, "Sequence");
    const json_t *list = json_object_get(j, "decoders");
    if (seq && !json_is_array(list)) return tm_fail("%s: %s.decoders: missing or not an array", file, field);
    size_t n = seq ? json_array_size(list) : 1;
    d->st = callocCheck(n ? n : 1, sizeof *d->st);
    for (size_t i = 0; i < n; i++) {
        char sub[128];
        if (seq) snprintf(sub, sizeof sub, "%s.decoders[%zu]", field, i);
        else snprintf(sub, sizeof sub, "%s", field);
        d->n++;
        if (parse_step(&d->st[i], seq ? json_array_get(list, i) : j, file, sub)) return -1;
    }
    return 0;
}

void decoder_free(Decoder *d) {
    for (int i = 0; i < d->n; i++) {
        tok_regex_free(d->st[i].re);
        free(d->st[i].content);
    }
    free(d->st);
    memset(d, 0, sizeof *d);
}

static void push(DecList *l, const char *s, size_t len, int added) {
    TOK_GROW(l->t, l->cap, l->n + 1);
    l->t[l->n++] = (DecTok){l->text.n, len, added};
    sb_add(&l->text, s, len);
}

static void list_free(DecList *l) {
    sb_free(&l->text);
    free(l->t);
}

/* Characters back to bytes, lossy UTF-8 per run; added tokens stay as they
 * are, and a token with a character outside the map keeps its bytes. */
static void bytelevel(const DecList *in, DecList *out, StrBuf *bytes) {
    bytes->n = 0;
    for (size_t i = 0; i <= in->n; i++) {
        const DecTok *t = i < in->n ? &in->t[i] : NULL;
        if (!t || t->added) {
            if (bytes->n) {
                StrBuf s = {0};
                utf8_append_lossy(&s, bytes->p, bytes->n);
                push(out, s.p, s.n, 0);
                sb_free(&s);
                bytes->n = 0;
            }
            if (t) push(out, in->text.p + t->off, t->len, 1);
            continue;
        }
        const char *s = in->text.p + t->off;
        size_t mark = bytes->n;
        for (size_t k = 0; k < t->len;) {
            uint32_t cp;
            k += utf8_decode(s + k, &cp);
            int b = bytelevel_byte(cp);
            if (b < 0) {
                bytes->n = mark;
                sb_add(bytes, s, t->len);
                break;
            }
            sb_addc(bytes, (char)b);
        }
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Runs of <0xNN> tokens become their bytes; an invalid run becomes one
 * U+FFFD per byte (Rust's ByteFallback decoder). */
static void flush_bytes(DecList *out, StrBuf *bytes) {
    if (!bytes->n) return;
    size_t bad;
    if (utf8_validate(bytes->p, bytes->n, &bad) == 0) push(out, bytes->p, bytes->n, 0);
    else
        for (size_t k = 0; k < bytes->n; k++) push(out, "\xEF\xBF\xBD", 3, 0);
    bytes->n = 0;
}

static void bytefallback(const DecList *in, DecList *out, StrBuf *bytes) {
    bytes->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->text.p + in->t[i].off;
        int hi, lo;
        if (in->t[i].len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && (hi = hexval(s[3])) >= 0 &&
            (lo = hexval(s[4])) >= 0) {
            sb_addc(bytes, (char)(hi * 16 + lo));
            continue;
        }
        flush_bytes(out, bytes);
        push(out, s, in->t[i].len, in->t[i].added);
    }
    flush_bytes(out, bytes);
}

/* Replace, Metaspace and Strip work token by token. */
static int per_token(const DecStep *st, size_t i, const DecTok *t, const char *s, DecList *out, StrBuf *tmp) {
    size_t len = t->len;
    if (st->kind == D_REPLACE) {
        int rc = tok_replace(st->re, st->content, st->clen, s, len, tmp);
        if (rc < 0) return -1;
        if (rc) s = tmp->p, len = tmp->n;
    } else if (st->kind == D_METASPACE) { /* replacement -> ' '; the first token loses its leading space */
        tmp->n = 0;
        for (size_t k = 0; k < len;) {
            if (k + st->clen <= len && !memcmp(s + k, st->content, st->clen)) {
                sb_addc(tmp, ' ');
                k += st->clen;
            } else sb_addc(tmp, s[k++]);
        }
        s = tmp->p ? tmp->p : "";
        len = tmp->n;
        if (i == 0 && st->prepend && len && s[0] == ' ') s++, len--;
    } else { /* D_STRIP: up to start leading and stop trailing copies of content */
        size_t b = 0, e = len;
        for (int k = 0; k < st->start && e - b >= st->clen && !memcmp(s + b, st->content, st->clen); k++) b += st->clen;
        for (int k = 0; k < st->stop && e - b >= st->clen && !memcmp(s + e - st->clen, st->content, st->clen); k++)
            e -= st->clen;
        s += b;
        len = e - b;
    }
    push(out, s, len, t->added);
    return 0;
}

static int step(const DecStep *st, const DecList *in, DecList *out, StrBuf *tmp) {
    switch (st->kind) {
    case D_BYTELEVEL: bytelevel(in, out, tmp); return 0;
    case D_BYTEFALLBACK: bytefallback(in, out, tmp); return 0;
    case D_FUSE: push(out, in->text.p ? in->text.p : "", in->text.n, 0); return 0;
    }
    for (size_t i = 0; i < in->n; i++)
        if (per_token(st, i, &in->t[i], in->text.p + in->t[i].off, out, tmp)) return -1;
    return 0;
}

int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len) {
    DecList a = {0}, b = {0};
    StrBuf tmp = {0};
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || !t->tok_known[id]) {
            list_free(&a);
            return tm_fail("cannot decode id %d at position %zu: not in the vocabulary (size %d)", id, i, t->vocab_size);
        }
        push(&a, t->tok_text.p + t->tok_off[id], t->tok_len[id], t->tok_added[id]);
    }
    int rc = 0;
    for (int s = 0; s < t->dec.n && !rc; s++) {
        b.n = 0;
        b.text.n = 0;
        rc = step(&t->dec.st[s], &a, &b, &tmp);
        DecList x = a;
        a = b;
        b = x;
    }
    StrBuf out = {0};
    for (size_t i = 0; i < a.n && !rc; i++) {
        if (i && !t->dec.present) sb_addc(&out, ' ');
        sb_add(&out, a.text.p + a.t[i].off, a.t[i].len);
    }
    list_free(&a);
    list_free(&b);
    sb_free(&tmp);
    if (rc) {
        sb_free(&out);
        return -1;
    }
    if (!out.p) sb_add(&out, "", 0);
    *text = out.p;
    *len = out.n;
    return 0;
}
