/* Text datasets in the layouts users download, read as a list of documents,
 * and the two ways conversion samples them (DESIGN.md section 2):
 *   evaluation: the split's documents joined with "\n\n", tokenised once;
 *   calibration: the reference's sampler (random start document, following
 *   documents joined with "\n\n" until a sample has max_seqlen tokens). */
#ifndef TM_IO_DATASET_H
#define TM_IO_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer/tokenizer.h"

typedef enum { DS_WIKITEXT2, DS_PTB, DS_C4, DS_ALPACA, DS_TEXT, DS_JSONL } DatasetKind;

/* "wikitext2" ... "jsonl"; an unknown name fails listing the known ones. */
int dataset_kind_parse(const char *name, DatasetKind *out);
const char *dataset_kind_name(DatasetKind k);

typedef struct {
    char **text;    /* document i: text[i], len[i] bytes (NUL-terminated too) */
    size_t *len;
    size_t n;
    char *sources;  /* the files read, one per line */
} Documents;

/* Read one split ("train", "validation" or "test") of the dataset at path.
 *   wikitext2: folder with wiki.{train,valid,test}.raw or {train,valid,test}.txt;
 *              a document per line, blank lines dropped (Hugging Face rows).
 *   ptb:       folder with ptb.{train,valid,test}.txt; a document per line, stripped.
 *   c4:        folder with c4-{train,validation}.*.json.gz (or a single .json[.gz]
 *              file); a document per line, its "text" field.
 *   alpaca:    a JSON file (list of {instruction, input, output[, text]}) or a
 *              folder holding alpaca_data.json; "text" when present, else the
 *              Alpaca prompt rendered; split 80/10/10 by a seeded shuffle.
 *   text:      a file (any split: the whole file), documents separated by blank lines.
 *   jsonl:     a .jsonl or .jsonl.gz file (any split), a document per line, field text_field.
 * Every document must be valid UTF-8. Errors name the file (and line). A split
 * with no documents is an error. */
int dataset_load(DatasetKind kind, const char *path, const char *split, const char *text_field, Documents *out);
void documents_free(Documents *d);

/* Documents [first, first+count) joined with "\n\n" (malloc'd, NUL-terminated). */
char *documents_join(const Documents *d, size_t first, size_t count, size_t *len);

/* The evaluation stream: every document joined with "\n\n", encoded once with
 * add_special_tokens. */
int dataset_encode_joined(Tokenizer *t, const Documents *d, TokenIds *out);

/* Calibration samples, nsamples x seqlen ids row-major into *ids (malloc'd).
 * Seeded (seed 42 by default in the CLI). Draws a start among the documents
 * not yet used, appends the following documents ("\n\n" between) until the
 * pieces' token count reaches seqlen, removes them from the pool, and keeps
 * the first seqlen ids of the joined text encoded with add_special_tokens.
 * Stops early when the pool runs out: *got < nsamples then (0 is an error). */
int dataset_sample_calibration(Tokenizer *t, const Documents *d, int nsamples, int seqlen, uint64_t seed,
                               int32_t **ids, int *got);

#endif
