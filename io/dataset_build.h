/* Internals shared by the dataset files (not for other callers): growing a
 * Documents list, and the text checks every reader applies. */
#ifndef TM_IO_DATASET_BUILD_H
#define TM_IO_DATASET_BUILD_H

#include <stddef.h>

#include "io/dataset.h"

typedef struct {
    Documents *d;
    size_t cap, sources_len;
} DocBuilder;

void builder_init(DocBuilder *b, Documents *d);
/* Copy len bytes (plus "\n" when add_newline) as the next document. */
void builder_add(DocBuilder *b, const char *text, size_t len, int add_newline);
/* Take ownership of a malloc'd NUL-terminated text. */
void builder_add_owned(DocBuilder *b, char *text, size_t len);
void builder_add_source(DocBuilder *b, const char *path);

/* [*begin, *end) of s without the leading and trailing characters that
 * Python's str.strip() removes (str.isspace()); s must be valid UTF-8. */
void py_strip(const char *s, size_t len, size_t *begin, size_t *end);
int py_is_blank(const char *s, size_t len);

/* Python's text mode, as the Hugging Face scripts read the files: "\n",
 * "\r\n" and a lone "\r" each end a line. Starting at *pos in a raw line,
 * gives the next segment [*pos, *pos + *seg_len), whether a line end follows
 * it, and moves *pos past that end. 0 when nothing is left. */
int next_universal_line(const char *s, size_t len, size_t *pos, size_t *seg_len, int *ended);

/* The split name as files spell it: "train", "validation" ("valid" accepted)
 * or "test"; -1 (error recorded) for anything else. */
int split_canonical(const char *split, const char **out);

/* The per-format readers (io/dataset_read.c, io/dataset_alpaca.c). */
int read_wikitext2(const char *dir, const char *split, DocBuilder *b);
int read_ptb(const char *dir, const char *split, DocBuilder *b);
int read_c4(const char *path, const char *split, DocBuilder *b);
int read_alpaca(const char *path, const char *split, DocBuilder *b);
int read_text(const char *path, DocBuilder *b);
int read_jsonl(const char *path, const char *field, DocBuilder *b);

#endif
