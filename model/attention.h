/* Causal softmax attention for grouped-query heads. Memory is one score row
 * per thread (T floats), never heads x T x T. */
#ifndef TM_MODEL_ATTENTION_H
#define TM_MODEL_ATTENTION_H

#include <stdint.h>

/* q: [B*T, H*dqk], k: [B*T, G*dqk], v: [B*T, G*dv], out: [B*T, H*dv].
 * Query head h reads kv head h / (H/G). Key j is visible to query i when
 * j <= i and, with window > 0, i - j < window. Scores are scaled by `scale`,
 * then with softcap > 0 soft-capped to softcap * tanh(score / softcap)
 * (gemma2), before the mask and the softmax. */
void attention_forward(float *out, const float *q, const float *k, const float *v, int B, int T, int H, int G,
                       int dqk, int dv, int window, float scale, float softcap);

/* One query row qi against keys lo..i (key j at k + j*ks, value j at
 * v + j*vs): o[dv] = softmax(cap(scale * qi.k_j)) weighted sum of v_j,
 * cap as attention_forward's (softcap 0: none). p is scratch of i+1 floats.
 * The decoder reuses it over its cache. */
void attend_row(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t vs, int lo, int i,
                int dqk, int dv, float scale, float softcap, float *p);

/* Training: causal attention in which query row i of sequence b sees keys
 * j in [doc_start[b*T + i], i] (doc_start: the row index within the sequence
 * where i's document begins, or where its sliding window does; NULL: 0), so
 * packed documents do not see each other. Scores scaled and soft-capped as
 * attention_forward's. lse[B*T, H] saves each row's log-sum-exp of those
 * scores for the backward pass, which recomputes probabilities from it (no
 * T x T matrix). */
void attention_forward_train(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                             int H, int G, int dqk, int dv, const int32_t *doc_start, float scale, float softcap);
/* dq [B*T, H*dqk], dk [B*T, G*dqk], dv [B*T, G*dv] overwritten with the
 * gradients given dout [B*T, H*dv] and the forward's out and lse. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, int B, int T, int H, int G, int dqk,
                        int dv_dim, const int32_t *doc_start, float scale, float softcap);

#endif
