/* Growable byte buffer and array helpers, first written for the tokenizer and
 * used wherever text or bytes are built up (chat rendering, checkpoint
 * descriptors, the text dataset reader). Growth that fails leaves nothing
 * sensible to do, so it dies like mallocCheck. */
#ifndef TM_IO_STR_BUF_H
#define TM_IO_STR_BUF_H

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"

/* Grow *p (an array of elem-byte items with capacity *cap) to hold need items. */
static inline void tok_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) tm_die("out of memory growing a buffer to %zu x %zu bytes", c, elem);
    *p = q;
    *cap = c;
}

#define TOK_GROW(ptr, cap, need) tok_grow((void **)&(ptr), &(cap), (need), sizeof *(ptr))

typedef struct {
    char *p;
    size_t n, cap;
} StrBuf;

static inline void sb_add(StrBuf *b, const void *s, size_t len) {
    TOK_GROW(b->p, b->cap, b->n + len + 1);
    if (len) memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

static inline void sb_addc(StrBuf *b, char c) { sb_add(b, &c, 1); }
static inline void sb_adds(StrBuf *b, const char *s) { sb_add(b, s, strlen(s)); }
static inline void sb_free(StrBuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

#endif
