/* Where a command's token ids come from: a raw token file, an HDF5 token set
 * (`transmla tokenize`), or a text dataset encoded with the model's tokenizer.
 * Token sets made by another tokenizer than the model's are refused. */
#ifndef TM_IO_TOKEN_SOURCE_H
#define TM_IO_TOKEN_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "io/token_file.h"

typedef struct {
    const char *tokens;     /* raw ids or an HDF5 token set; NULL when dataset is set */
    TmTokenDType dtype;     /* width of raw ids */
    const char *dataset;    /* wikitext2|ptb|c4|alpaca|text|jsonl */
    const char *data_path;
    const char *split;      /* train|validation|test */
    const char *text_field; /* jsonl; NULL: "text" */
    char flag[32];          /* the option that named it, for messages: "--cal-tokens" */
    int warn;               /* print warnings (one MPI rank only) */
} TokenSource;

/* Is name one of the text datasets (not "tokens" or "none")? */
int token_source_is_dataset(const char *name);

/* The evaluation stream: a file's ids as they are, or the dataset's split
 * joined with "\n\n" and encoded once by model_dir's tokenizer. Every id is
 * checked against vocab_size. */
int token_source_stream(const TokenSource *src, const char *model_dir, int vocab_size, int32_t **ids, size_t *n);

/* Calibration windows of seqlen ids. A file: its ids as they are (the caller
 * cuts consecutive windows; a token set of samples must have this seqlen). A
 * dataset: the reference sampler draws nsamples (seeded) and *n is a multiple
 * of seqlen. */
int token_source_calibration(const TokenSource *src, const char *model_dir, int vocab_size, int nsamples, int seqlen,
                             uint64_t seed, int32_t **ids, size_t *n);

/* Describe the source in one short string for logs and the report (static buffer). */
const char *token_source_describe(const TokenSource *src);

#endif
