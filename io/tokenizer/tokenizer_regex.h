/* Patterns of tokenizer.json ({"String": ...} or {"Regex": ...}) compiled
 * with PCRE2 (UTF, Unicode properties, JIT), and find/replace over them. */
#ifndef TM_IO_TOKENIZER_REGEX_H
#define TM_IO_TOKENIZER_REGEX_H

#include <jansson.h>
#include <stddef.h>

#include "io/base/str_buf.h"

typedef struct TokRegex TokRegex;

/* literal: match the bytes as they are. Errors name file, field and offset. */
TokRegex *tok_regex_compile(const char *pat, size_t len, int literal, const char *file, const char *field);
void tok_regex_free(TokRegex *re);

/* The first non-empty match in s[from..len): 1 with [*b, *e), 0 when none,
 * -1 when PCRE2 gives up (recorded). Lookarounds see s[0..len) only. */
int tok_regex_find(TokRegex *re, const char *s, size_t len, size_t from, size_t *b, size_t *e);

/* A pattern object: {"String": s} compiles as a literal, {"Regex": r} as a
 * regex. Errors name file and field. */
int tok_pattern_parse(const json_t *pat, const char *file, const char *field, TokRegex **re);

/* Replace every match of re in s by content into out; 0 when nothing
 * matched (out unused), 1 when replaced, -1 on a PCRE2 failure. */
int tok_replace(TokRegex *re, const char *content, size_t clen, const char *s, size_t len, StrBuf *out);

#endif
