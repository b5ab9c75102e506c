/* The index arithmetic and the online-softmax recurrence of blocked causal
 * attention, shared by the CPU kernel (model/attention.c) and the CUDA one
 * (model/cuda/attention.cu): plain C that nvcc compiles for the device too,
 * so the C unit tests (tests/test_attn_tile.c) check on the CPU what the
 * GPU runs. No allocation, no error reporting: callers validate doc_start. */
#ifndef TM_MODEL_ATTN_TILE_H
#define TM_MODEL_ATTN_TILE_H

#include <math.h>
#include <stdint.h>

#include "model/hd.h"
#include "model/softcap.h"

/* First key row query row i of a sequence may see: from its document's
 * start (doc_row: doc_start + b*T, NULL: one document per sequence) and,
 * with window > 0, at most window rows back. */
TM_HD static inline int tile_row_lo(const int32_t *doc_row, int window, int i) {
    int lo = doc_row ? doc_row[i] : 0;
    if (window > 0 && i - window + 1 > lo) lo = i - window + 1;
    return lo;
}

/* Query rows [i0, i1): the first key any of them sees. */
TM_HD static inline int tile_block_lo(const int32_t *doc_row, int window, int i0, int i1) {
    int lo = i0;
    for (int i = i0; i < i1; i++) {
        int l = tile_row_lo(doc_row, window, i);
        lo = l < lo ? l : lo;
    }
    return lo;
}

/* Scaled, optionally soft-capped score (gemma2: cap * tanh(s / cap); cap 0: none). */
TM_HD static inline float tile_score(float dot, float scale, float cap) {
    float s = dot * scale;
    return cap > 0 ? softcap(s, cap) : s;
}

/* Softmax over keys seen block by block: the running maximum m and the sum
 * l of exp(s - m). An output accumulated as sum exp(s_j - m) v_j is
 * multiplied by the factor tile_softmax_rescale returns whenever m grows,
 * and divided by l at the end; lse = m + log(l). */
typedef struct {
    float m, l;
} TileSoftmax;

TM_HD static inline TileSoftmax tile_softmax_start(void) {
    TileSoftmax t = {-INFINITY, 0.0f};
    return t;
}

/* A block whose largest score is block_max arrives: returns the factor the
 * accumulator (and l, done here) must be scaled by. */
TM_HD static inline float tile_softmax_rescale(TileSoftmax *t, float block_max) {
    if (!(block_max > t->m)) return 1.0f;
    float f = t->m == -INFINITY ? 0.0f : expf(t->m - block_max);
    t->m = block_max;
    t->l *= f;
    return f;
}

/* A score s (<= the current m) joins: returns its weight exp(s - m). */
TM_HD static inline float tile_softmax_add(TileSoftmax *t, float s) {
    float p = expf(s - t->m);
    t->l += p;
    return p;
}

TM_HD static inline float tile_softmax_lse(const TileSoftmax *t) { return t->m + logf(t->l); }

#endif
