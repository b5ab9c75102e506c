/* Pre-tokenizers of tokenizer.json: Split (regex or string, the five
 * delimiter behaviors), ByteLevel (GPT-2 regex, add_prefix_space) and
 * Metaspace, alone or in a Sequence. They cut normalized text into the
 * pieces that BPE sees one at a time. */
#ifndef TM_IO_TOKENIZER_PRETOK_H
#define TM_IO_TOKENIZER_PRETOK_H

#include <jansson.h>
#include <stddef.h>

#include "io/base/str_buf.h"

typedef struct {
    size_t off, len; /* bytes in Pieces.text */
} Span;

typedef struct {
    StrBuf text;
    Span *sp;
    size_t n, cap;
} Pieces;

typedef struct {
    size_t b, e;
    int match;
} Mark;

typedef struct PtStep PtStep;

typedef struct {
    PtStep *st;
    int n;
    int byte_level; /* ByteLevel ran last: pieces are raw bytes standing for bytes_to_unicode characters */
    Pieces buf[2];
    Mark *marks;
    size_t nmarks, marks_cap;
    StrBuf scratch;
} PreTok;

int pretok_parse(PreTok *p, const json_t *j, const char *file, const char *field);
void pretok_free(PreTok *p);

/* Cut s into pieces (empty ones dropped, as in HF). at_start: s begins the
 * input text (Metaspace prepend_scheme "first"). -1 on a regex failure. */
int pretok_apply(PreTok *p, const char *s, size_t len, int at_start, const Pieces **out);

#endif
