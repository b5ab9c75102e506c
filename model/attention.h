/* Causal softmax attention for grouped-query heads. Memory is one score row
 * per thread (T floats), never heads x T x T. */
#ifndef TM_MODEL_ATTENTION_H
#define TM_MODEL_ATTENTION_H

#include <stdint.h>

/* q: [B*T, H*dqk], k: [B*T, G*dqk], v: [B*T, G*dv], out: [B*T, H*dv].
 * Query head h reads kv head h / (H/G). Key j is visible to query i when
 * j <= i and, with window > 0, i - j < window. Scores are scaled by `scale`. */
void attention_forward(float *out, const float *q, const float *k, const float *v, int B, int T, int H, int G,
                       int dqk, int dv, int window, float scale);

/* One query row qi against keys lo..i (key j at k + j*ks, value j at
 * v + j*vs): o[dv] = softmax(scale * qi.k_j) weighted sum of v_j. p is
 * scratch of i+1 floats. The decoder reuses it over its cache. */
void attend_row(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t vs, int lo, int i,
                int dqk, int dv, float scale, float *p);

#endif
