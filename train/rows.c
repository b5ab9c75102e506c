/* Packing documents into training rows of T tokens; see rows.h. The last row
 * stays open (r->fill tokens used) until a document does not fit in it or
 * train_rows_finish pads it. */
#include "train/rows.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"

void train_doc_push(TrainDoc *d, int32_t id, int is_label) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        int32_t *ids = realloc(d->ids, cap * sizeof *ids);
        uint8_t *label = realloc(d->label, cap * sizeof *label);
        if (!ids || !label) tm_die("out of memory: training document of %zu tokens", cap);
        d->ids = ids;
        d->label = label;
        d->cap = cap;
    }
    d->ids[d->n] = id;
    d->label[d->n] = is_label ? 1 : 0;
    d->n++;
}

void train_doc_free(TrainDoc *d) {
    free(d->ids);
    free(d->label);
    memset(d, 0, sizeof *d);
}

void train_rows_init(TrainRows *r, int T) {
    if (T < 1) tm_die("train_rows_init: row length %d must be positive", T);
    memset(r, 0, sizeof *r);
    r->T = T;
}

void train_rows_free(TrainRows *r) {
    free(r->tokens);
    free(r->flags);
    int T = r->T;
    memset(r, 0, sizeof *r);
    r->T = T;
}

/* Open a new, empty row at the end. */
static void open_row(TrainRows *r) {
    if (r->n_rows == r->cap_rows) {
        int64_t cap = r->cap_rows ? 2 * r->cap_rows : 16;
        size_t n = (size_t)cap * (size_t)r->T;
        int32_t *tokens = realloc(r->tokens, n * sizeof *tokens);
        uint8_t *flags = realloc(r->flags, n * sizeof *flags);
        if (!tokens || !flags) tm_die("out of memory: %lld training rows of %d tokens", (long long)cap, r->T);
        r->tokens = tokens;
        r->flags = flags;
        r->cap_rows = cap;
    }
    r->n_rows++;
    r->fill = 0;
}

/* Pad the open row to T: pad tokens form one document without labels. */
static void pad_row(TrainRows *r, int32_t pad_id) {
    if (r->n_rows == 0 || r->fill == 0 || r->fill == r->T) return;
    size_t base = (size_t)(r->n_rows - 1) * (size_t)r->T;
    for (int i = r->fill; i < r->T; i++) {
        r->tokens[base + (size_t)i] = pad_id;
        r->flags[base + (size_t)i] = i == r->fill ? TM_TOK_DOC_START : 0;
    }
    r->fill = r->T;
}

void train_rows_add_doc(TrainRows *r, const TrainDoc *d, int32_t pad_id) {
    if (d->n == 0) return;
    int n = d->n > (size_t)r->T ? r->T : (int)d->n;
    if (d->n > (size_t)r->T) r->n_truncated++;
    if (r->n_rows == 0 || r->fill == 0 || r->T - r->fill < n) {
        pad_row(r, pad_id);
        open_row(r);
    }
    size_t base = (size_t)(r->n_rows - 1) * (size_t)r->T + (size_t)r->fill;
    for (int i = 0; i < n; i++) {
        uint8_t f = i == 0 ? TM_TOK_DOC_START : (d->label[i] ? TM_TOK_LABEL : 0);
        r->tokens[base + (size_t)i] = d->ids[i];
        r->flags[base + (size_t)i] = f;
        if (f & TM_TOK_LABEL) r->n_labels++;
    }
    r->fill += n;
    r->n_docs++;
    r->n_tokens += n;
}

void train_rows_finish(TrainRows *r, int32_t pad_id) {
    pad_row(r, pad_id);
    r->fill = 0;
}

void train_rows_from_stream(TrainRows *r, const int32_t *ids, size_t n, int T) {
    if (r->T == 0 && r->n_rows == 0) train_rows_init(r, T);
    if (r->T != T) tm_die("train_rows_from_stream: window %d differs from the rows' length %d", T, r->T);
    if (r->fill != 0) tm_die("train_rows_from_stream: the last row is still open (call train_rows_finish first)");
    for (size_t w = 0; w + (size_t)T <= n; w += (size_t)T) {
        open_row(r);
        size_t base = (size_t)(r->n_rows - 1) * (size_t)T;
        memcpy(r->tokens + base, ids + w, (size_t)T * sizeof *ids);
        r->flags[base] = TM_TOK_DOC_START;
        memset(r->flags + base + 1, TM_TOK_LABEL, (size_t)T - 1);
        r->n_docs++;
        r->n_tokens += T;
        r->n_labels += T - 1;
    }
    r->fill = 0; /* each window fills its row */
}

void train_rows_batch(const TrainRows *r, const int64_t *rows, int B, int32_t *tokens, int32_t *targets,
                      int32_t *pos, int32_t *doc_start) {
    const int T = r->T;
    for (int b = 0; b < B; b++) {
        int64_t row = rows[b];
        if (row < 0 || row >= r->n_rows) tm_die("train_rows_batch: row %lld out of range [0, %lld)", (long long)row, (long long)r->n_rows);
        const int32_t *tk = r->tokens + (size_t)row * (size_t)T;
        const uint8_t *fl = r->flags + (size_t)row * (size_t)T;
        size_t o = (size_t)b * (size_t)T;
        int start = 0; /* a row always begins a document; be safe if it does not */
        for (int i = 0; i < T; i++) {
            if (fl[i] & TM_TOK_DOC_START) start = i;
            tokens[o + (size_t)i] = tk[i];
            pos[o + (size_t)i] = i - start;
            doc_start[o + (size_t)i] = start;
            targets[o + (size_t)i] = i + 1 < T && tm_tok_is_target(fl[i + 1]) ? tk[i + 1] : -1;
        }
    }
}
