/* Training rows: sequences of exactly T tokens, each token with flags that
 * say whether it is a label (its prediction from the token before it carries
 * loss) and whether it starts a document. Documents are packed into rows as
 * the reference's flattening collator does: attention and RoPE positions
 * restart at each document, and no token predicts across a boundary. */
#ifndef TM_TRAIN_ROWS_H
#define TM_TRAIN_ROWS_H

#include <stddef.h>
#include <stdint.h>

enum { TM_TOK_LABEL = 1, TM_TOK_DOC_START = 2 };
/* A token with these flags is a training target (the previous token predicts
 * it): labelled, and not the start of a document. */
static inline int tm_tok_is_target(uint8_t flags) { return (flags & TM_TOK_LABEL) && !(flags & TM_TOK_DOC_START); }

typedef struct {
    int T;
    int64_t n_rows;
    int32_t *tokens;        /* [n_rows * T] */
    uint8_t *flags;         /* [n_rows * T] TM_TOK_* bits */
    int64_t n_docs;         /* documents packed */
    int64_t n_truncated;    /* documents cut to T tokens */
    int64_t n_tokens;       /* tokens that are not padding */
    int64_t n_labels;       /* tokens flagged TM_TOK_LABEL */
    int64_t n_skipped;      /* conversations left out: no assistant turn (chat_load_rows) */
    /* private: tokens used in the last row (0: no row open), rows allocated */
    int fill;
    int64_t cap_rows;
} TrainRows;

/* A document being assembled: ids and, per id, whether it is a label. */
typedef struct {
    int32_t *ids;
    uint8_t *label;
    size_t n, cap;
} TrainDoc;

void train_doc_push(TrainDoc *d, int32_t id, int is_label);
void train_doc_free(TrainDoc *d);

/* Empty rows of length T. */
void train_rows_init(TrainRows *r, int T);
/* Pack one document (cut to T tokens when longer): into the current row when
 * it fits, else a new row is started (the rest of the current one is padded
 * with pad_id, flags 0, marked as a document start). Its first token gets
 * TM_TOK_DOC_START and never TM_TOK_LABEL (nothing before it predicts it). */
void train_rows_add_doc(TrainRows *r, const TrainDoc *d, int32_t pad_id);
/* Pad the last row. Call once after the last document. */
void train_rows_finish(TrainRows *r, int32_t pad_id);
/* Continued pretraining on a token stream: consecutive windows of T ids, one
 * document each, every token but the first a label (the evaluation protocol's
 * T - 1 predictions per window); a short tail is dropped. */
void train_rows_from_stream(TrainRows *r, const int32_t *ids, size_t n, int T);
void train_rows_free(TrainRows *r);

/* The model inputs of B rows (row indices rows[0..B)): tokens, targets
 * (the next token when it is a label in the same document, else -1), RoPE
 * positions (counted from the document start) and doc_start (the index in
 * the row where the token's document begins). Each array holds B * T. */
void train_rows_batch(const TrainRows *r, const int64_t *rows, int B, int32_t *tokens, int32_t *targets,
                      int32_t *pos, int32_t *doc_start);

#endif
