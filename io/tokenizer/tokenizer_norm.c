#include "io/tokenizer/tokenizer_norm.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/base/error.h"
#include "io/tokenizer/tokenizer_regex.h"
#include "io/utf8.h"

enum { N_UNICODE, N_PREPEND, N_REPLACE, N_LOWERCASE, N_STRIP };

struct NormStep {
    int kind;
    int uflags;       /* N_UNICODE: utf8proc options */
    char *a, *b;      /* prepend text; replace content */
    size_t alen, blen;
    TokRegex *re;     /* N_REPLACE with a Regex pattern */
    int left, right;  /* N_STRIP */
};

static int parse_step(NormStep *st, const json_t *j, const char *file, const char *field) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return tm_fail("%s: %s.type: missing or not a string", file, field);
    if (!strcmp(type, "NFC")) st->kind = N_UNICODE, st->uflags = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    else if (!strcmp(type, "NFD")) st->kind = N_UNICODE, st->uflags = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    else if (!strcmp(type, "NFKC")) st->kind = N_UNICODE, st->uflags = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(type, "NFKD")) st->kind = N_UNICODE, st->uflags = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(type, "Lowercase")) st->kind = N_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        st->kind = N_STRIP;
        st->left = json_is_true(json_object_get(j, "strip_left"));
        st->right = json_is_true(json_object_get(j, "strip_right"));
    } else if (!strcmp(type, "Prepend")) {
        const json_t *p = json_object_get(j, "prepend");
        if (!json_is_string(p)) return tm_fail("%s: %s.prepend: missing or not a string", file, field);
        st->kind = N_PREPEND;
        st->alen = json_string_length(p);
        st->a = strdup(json_string_value(p));
    } else if (!strcmp(type, "Replace")) {
        st->kind = N_REPLACE;
        const json_t *c = json_object_get(j, "content");
        if (!json_is_string(c)) return tm_fail("%s: %s.content: missing or not a string", file, field);
        st->blen = json_string_length(c);
        st->b = strdup(json_string_value(c));
        return tok_pattern_parse(json_object_get(j, "pattern"), file, field, &st->re);
    } else return tm_fail("%s: %s.type '%s': normalizer not supported", file, field, type);
    return 0;
}

int norm_parse(Normalizer *nz, const json_t *j, const char *file, const char *field) {
    memset(nz, 0, sizeof *nz);
    if (!j || json_is_null(j)) return 0;
    if (!json_is_object(j)) return tm_fail("%s: %s: not an object", file, field);
    const char *type = json_string_value(json_object_get(j, "type"));
    const json_t *list = json_object_get(j, "normalizers");
    size_t n = 1;
    if (type && !strcmp(type, "Sequence")) {
        if (!json_is_array(list)) return tm_fail("%s: %s.normalizers: missing or not an array", file, field);
        n = json_array_size(list);
    }
    nz->st = callocCheck(n ? n : 1, sizeof *nz->st);
    for (size_t i = 0; i < n; i++) {
        char sub[128];
        const json_t *e = j;
        if (type && !strcmp(type, "Sequence")) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", field, i);
            e = json_array_get(list, i);
            if (!json_is_object(e)) return tm_fail("%s: %s: not an object", file, sub);
            const char *t2 = json_string_value(json_object_get(e, "type"));
            if (t2 && !strcmp(t2, "Sequence")) return tm_fail("%s: %s: nested Sequence not supported", file, sub);
        } else snprintf(sub, sizeof sub, "%s", field);
        nz->n++;
        if (parse_step(&nz->st[i], e, file, sub)) return -1;
    }
    return 0;
}

void norm_free(Normalizer *nz) {
    for (int i = 0; i < nz->n; i++) {
        free(nz->st[i].a);
        free(nz->st[i].b);
        tok_regex_free(nz->st[i].re);
    }
    free(nz->st);
    sb_free(&nz->buf[0]);
    sb_free(&nz->buf[1]);
    memset(nz, 0, sizeof *nz);
}

/* Code points below U+0300 are stable under every normalization form (no
 * combining marks, no singletons); lead bytes below 0xCC encode only those. */
static int stable(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if ((uint8_t)s[i] >= 0xCC) return 0;
    return 1;
}

/* Normalization never reaches across a newline (a starter that composes
 * with nothing), so only the lines that need it go through utf8proc. */
static int unicode_step(const NormStep *st, const char *s, size_t len, StrBuf *out) {
    if (stable(s, len)) return 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - s) + 1 : len;
        utf8proc_uint8_t *res = NULL;
        utf8proc_ssize_t n = -1;
        if (!stable(s + pos, end - pos))
            n = utf8proc_map((const utf8proc_uint8_t *)s + pos, (utf8proc_ssize_t)(end - pos), &res, st->uflags);
        if (n >= 0) sb_add(out, res, (size_t)n);
        else sb_add(out, s + pos, end - pos); /* stable, or (never on valid UTF-8) an error: keep the text */
        free(res);
        pos = end;
    }
    return 1;
}

static int lowercase_step(const char *s, size_t len, StrBuf *out) {
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_decode(s + i, &cp);
        utf8_put(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
    }
    return 1;
}

static int strip_step(const NormStep *st, const char *s, size_t len, StrBuf *out) {
    size_t b = 0, e = len;
    uint32_t cp;
    while (st->left && b < e) {
        size_t n = utf8_decode(s + b, &cp);
        if (!utf8_is_space(cp)) break;
        b += n;
    }
    while (st->right && e > b) {
        size_t k = e - 1;
        while (k > b && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
        utf8_decode(s + k, &cp);
        if (!utf8_is_space(cp)) break;
        e = k;
    }
    if (b == 0 && e == len) return 0;
    sb_add(out, s + b, e - b);
    return 1;
}

/* One step from s into out; returns 0 when the text is unchanged (out
 * unused), 1 when changed, -1 on a regex failure. */
static int apply_step(const NormStep *st, const char *s, size_t len, StrBuf *out) {
    out->n = 0;
    switch (st->kind) {
    case N_UNICODE: return unicode_step(st, s, len, out);
    case N_LOWERCASE: return lowercase_step(s, len, out);
    case N_STRIP: return strip_step(st, s, len, out);
    case N_PREPEND:
        if (!len) return 0; /* HF prepends only to non-empty text */
        sb_add(out, st->a, st->alen);
        sb_add(out, s, len);
        return 1;
    case N_REPLACE: return tok_replace(st->re, st->b, st->blen, s, len, out);
    }
    return 0;
}

int norm_apply(Normalizer *nz, const char *s, size_t len, const char **out_s, size_t *out_len) {
    int which = 0;
    for (int i = 0; i < nz->n; i++) {
        StrBuf *out = &nz->buf[which];
        int rc = apply_step(&nz->st[i], s, len, out);
        if (rc < 0) return -1;
        if (rc) {
            s = out->p ? out->p : "";
            len = out->n;
            which ^= 1;
        }
    }
    *out_s = s;
    *out_len = len;
    return 0;
}
