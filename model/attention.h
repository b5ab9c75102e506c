/* Causal softmax attention over whole sequences for grouped-query heads, as
 * every layer's forward (inference and training) calls it, and its backward
 * pass. Memory is at most a block of scores per thread, never heads x T x T. */
#ifndef TM_MODEL_ATTENTION_H
#define TM_MODEL_ATTENTION_H

#include <stdint.h>

/* q: [B*T, H*dqk], k: [B*T, G*dqk], v: [B*T, G*dv], out: [B*T, H*dv].
 * Query head h reads kv head h / (H/G). Query row i of sequence b sees keys
 * j <= i from doc_start[b*T + i] on (the row within the sequence where its
 * document begins, so packed documents do not see each other; NULL: 0) and,
 * with window > 0, only those with i - j < window. Scores are scaled by
 * `scale`, then with softcap > 0 soft-capped to softcap * tanh(score /
 * softcap) (gemma2), before the mask and the softmax. lse[B*T, H] (NULL: not
 * kept) gets each row's log-sum-exp of those scores for the backward pass,
 * which recomputes the probabilities from it.
 * With lse or doc_start, blocks of 64 query rows against the keys they see,
 * every product an sgemm. Without either (evaluation, calibration: a forward
 * alone over whole sequences) one query row at a time (attend_row), the
 * rounding every perplexity the README prints was measured with; the two
 * agree within 1e-6 relative (test_grad). */
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int H,
                       int G, int dqk, int dv, const int32_t *doc_start, int window, float scale, float softcap);
/* One query row qi against keys lo..i (key j at k + j*ks, value j at
 * v + j*vs): o[dv] = softmax(cap(scale * qi.k_j)) weighted sum of v_j, cap as
 * attention_forward's (softcap 0: none). p: scratch of i+1 floats. The
 * decoder's too, over its cache. */
void attend_row(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t vs, int lo, int i,
                int dqk, int dv, float scale, float softcap, float *p);
/* dq [B*T, H*dqk], dk [B*T, G*dqk], dv [B*T, G*dv] overwritten with the
 * gradients given dout [B*T, H*dv] and the forward's out and lse (same mask). */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, int B, int T, int H, int G, int dqk,
                        int dv_dim, const int32_t *doc_start, int window, float scale, float softcap);

#endif
