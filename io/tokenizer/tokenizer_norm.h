/* Normalizers of tokenizer.json: NFC/NFD/NFKC/NFKD (utf8proc), Prepend,
 * Replace, Lowercase, Strip, and Sequence of them. Applied to each segment
 * of text between added tokens. */
#ifndef TM_IO_TOKENIZER_NORM_H
#define TM_IO_TOKENIZER_NORM_H

#include <jansson.h>
#include <stddef.h>

#include "io/base/str_buf.h"

typedef struct NormStep NormStep;

typedef struct {
    NormStep *st;
    int n;
    StrBuf buf[2]; /* ping-pong outputs */
} Normalizer;

/* j: the "normalizer" value (may be null). field names it in errors. */
int norm_parse(Normalizer *nz, const json_t *j, const char *file, const char *field);
void norm_free(Normalizer *nz);
/* The normalized text in *out: s itself when nothing changed, else an
 * internal buffer valid until the next call. -1 on a regex failure. */
int norm_apply(Normalizer *nz, const char *s, size_t len, const char **out, size_t *out_len);

#endif
