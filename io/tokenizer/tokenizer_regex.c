#define PCRE2_CODE_UNIT_WIDTH 8
#include "io/tokenizer/tokenizer_regex.h"

#include <pcre2.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/utf8.h"

struct TokRegex {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
    int jit;
};

TokRegex *tok_regex_compile(const char *pat, size_t len, int literal, const char *file, const char *field) {
    int err;
    PCRE2_SIZE at;
    uint32_t flags = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP */
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, len, flags, &err, &at, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        tm_fail("%s: %s: regex does not compile at offset %zu: %s", file, field, (size_t)at, (const char *)msg);
        return NULL;
    }
    TokRegex *re = callocCheck(1, sizeof *re);
    re->code = code;
    re->md = pcre2_match_data_create_from_pattern(code, NULL);
    re->mctx = pcre2_match_context_create(NULL);
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    if (re->jit) { /* long runs of spaces backtrack: give the JIT room beyond its 32 KiB default */
        re->stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        pcre2_jit_stack_assign(re->mctx, NULL, re->stack);
    }
    if (!re->md || !re->mctx) tm_die("out of memory compiling a tokenizer regex");
    return re;
}

void tok_regex_free(TokRegex *re) {
    if (!re) return;
    pcre2_match_data_free(re->md);
    pcre2_match_context_free(re->mctx);
    if (re->stack) pcre2_jit_stack_free(re->stack);
    pcre2_code_free(re->code);
    free(re);
}

int tok_regex_find(TokRegex *re, const char *s, size_t len, size_t from, size_t *b, size_t *e) {
    while (from < len) {
        int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s, len, from, 0, re->md, re->mctx)
                         : pcre2_match(re->code, (PCRE2_SPTR)s, len, from, PCRE2_NO_UTF_CHECK, re->md, re->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return tm_fail("regex match failed at byte %zu: %s", from, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
        if (ov[1] > ov[0]) {
            *b = ov[0];
            *e = ov[1];
            return 1;
        }
        /* an empty match splits nothing (HF drops empty pieces): step one character */
        from = ov[0] + 1;
        while (from < len && ((uint8_t)s[from] & 0xC0) == 0x80) from++;
    }
    return 0;
}

int tok_pattern_parse(const json_t *pat, const char *file, const char *field, TokRegex **re) {
    const json_t *str = json_object_get(pat, "String"), *rx = json_object_get(pat, "Regex");
    char sub[160];
    snprintf(sub, sizeof sub, "%s.pattern", field);
    if (!json_is_object(pat) || (!json_is_string(str) && !json_is_string(rx)))
        return tm_fail("%s: %s: expected {\"String\": ...} or {\"Regex\": ...}", file, sub);
    const json_t *v = json_is_string(str) ? str : rx;
    size_t n = json_string_length(v);
    if (!n) return tm_fail("%s: %s: empty pattern", file, sub);
    *re = tok_regex_compile(json_string_value(v), n, json_is_string(str), file, sub);
    return *re ? 0 : -1;
}

int tok_replace(TokRegex *re, const char *content, size_t clen, const char *s, size_t len, StrBuf *out) {
    size_t pos = 0, b, e;
    int any = 0, rc;
    while ((rc = tok_regex_find(re, s, len, pos, &b, &e)) == 1) {
        if (!any) out->n = 0;
        any = 1;
        sb_add(out, s + pos, b - pos);
        sb_add(out, content, clen);
        pos = e;
    }
    if (rc < 0) return -1;
    if (!any) return 0;
    sb_add(out, s + pos, len - pos);
    return 1;
}
