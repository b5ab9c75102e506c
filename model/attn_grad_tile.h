/* The per-row math of causal attention's backward pass, shared by the CUDA
 * kernels (model/cuda/attention_backward.cu: one thread per row and head)
 * and the CPU unit test (tests/test_attn_tile.c), which runs these same
 * functions in loops and compares them with attention_backward of
 * model/attention.c. The probabilities are recomputed from the forward's
 * log-sum-exp, so nothing of size T x T is kept. Plain C, no allocation:
 * the caller passes the accumulators (a GPU thread's local arrays, a host
 * buffer) and has validated doc_start. Rows are addressed by pointer and
 * stride, as in model/attn_tile.h whose mask and score they reuse. */
#ifndef TM_MODEL_ATTN_GRAD_TILE_H
#define TM_MODEL_ATTN_GRAD_TILE_H

#include <math.h>
#include <stdint.h>

#include "model/attn_tile.h"
#include "model/hd.h"

TM_HD static inline float attn_grad_dot(const float *a, const float *b, int n) {
    float d = 0.0f;
    for (int c = 0; c < n; c++) d += a[c] * b[c];
    return d;
}

/* D_i = dout_i . out_i of one (row, head): what every weight's gradient
 * subtracts, since sum_j p_j dp_j = dout_i . out_i. */
TM_HD static inline float attn_grad_delta(const float *dout_i, const float *out_i, int dv) {
    return attn_grad_dot(dout_i, out_i, dv);
}

/* For the raw dot q_i.k_j: p (its softmax weight, from lse) and the score
 * gradient dS = p (dp - D) d score / d dot, dp = dout_i . v_j. The cap's
 * derivative is 1 - t^2 of the t = tanh(scale dot / cap) the score is made
 * of (cap * t, bit for bit tile_score), as the CPU engine computes it. */
TM_HD static inline float attn_grad_ds(float *p, float dot, float dp, float lse, float D, float scale, float cap) {
    float raw = dot * scale;
    float t = cap > 0 ? tanhf(raw / cap) : 0.0f;
    float s = cap > 0 ? cap * t : raw;
    *p = expf(s - lse);
    return *p * (dp - D) * scale * (1.0f - t * t);
}

/* dq_i[dqk] (overwritten) of query row i for one head: the keys it saw,
 * j in [tile_row_lo, i], at kb + j*ks and their values at vb + j*vs (kb, vb:
 * row 0 of the sequence, its kv head). lse_i and D_i: the row's. */
TM_HD static inline void attn_grad_dq_row(float *dq_i, const float *q_i, const float *dout_i, float lse_i, float D_i,
                                          const float *kb, const float *vb, int64_t ks, int64_t vs,
                                          const int32_t *doc_row, int window, int i, int dqk, int dv, float scale,
                                          float cap) {
    for (int c = 0; c < dqk; c++) dq_i[c] = 0.0f;
    for (int j = tile_row_lo(doc_row, window, i); j <= i; j++) {
        const float *k_j = kb + j * ks;
        float p, dot = attn_grad_dot(q_i, k_j, dqk), dp = attn_grad_dot(dout_i, vb + j * vs, dv);
        float ds = attn_grad_ds(&p, dot, dp, lse_i, D_i, scale, cap);
        for (int c = 0; c < dqk; c++) dq_i[c] += ds * k_j[c];
    }
}

/* dk_j[dqk] and dv_j[dv] (overwritten) of key row j for kv head g: over the
 * query heads h of its group [h0, h0 + rep), h ascending, and the query rows
 * i of the sequence that saw j, i ascending (a fixed order: deterministic).
 * qb, dob: row 0 and head 0 of the sequence's q and dout (strides qs, os);
 * lseb, Db: its [T, H] log-sum-exps and deltas. Every i >= j is asked
 * tile_row_lo, which is all the contract promises of doc_start. */
TM_HD static inline void attn_grad_dkv_row(float *dk_j, float *dv_j, const float *k_j, const float *v_j,
                                           const float *qb, const float *dob, const float *lseb, const float *Db,
                                           int64_t qs, int64_t os, int H, int h0, int rep, const int32_t *doc_row,
                                           int window, int j, int T, int dqk, int dv, float scale, float cap) {
    for (int c = 0; c < dqk; c++) dk_j[c] = 0.0f;
    for (int c = 0; c < dv; c++) dv_j[c] = 0.0f;
    for (int h = h0; h < h0 + rep; h++)
        for (int i = j; i < T; i++) {
            if (window > 0 && i - window + 1 > j) break; /* this row and every later one are past the window */
            if (tile_row_lo(doc_row, window, i) > j) continue;
            const float *q_i = qb + i * qs + h * dqk, *dout_i = dob + i * os + h * dv;
            int64_t ih = (int64_t)i * H + h;
            float p, dot = attn_grad_dot(q_i, k_j, dqk), dp = attn_grad_dot(dout_i, v_j, dv);
            float ds = attn_grad_ds(&p, dot, dp, lseb[ih], Db[ih], scale, cap);
            for (int c = 0; c < dqk; c++) dk_j[c] += ds * q_i[c];
            for (int c = 0; c < dv; c++) dv_j[c] += p * dout_i[c];
        }
}

#endif
