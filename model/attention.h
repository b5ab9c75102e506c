/* Causal softmax attention for grouped-query heads. Memory is one score row
 * per thread (T floats), never heads x T x T. */
#ifndef TM_MODEL_ATTENTION_H
#define TM_MODEL_ATTENTION_H

/* q: [B*T, H*dqk], k: [B*T, G*dqk], v: [B*T, G*dv], out: [B*T, H*dv].
 * Query head h reads kv head h / (H/G). Key j is visible to query i when
 * j <= i and, with window > 0, i - j < window. Scores are scaled by `scale`. */
void attention_forward(float *out, const float *q, const float *k, const float *v, int B, int T, int H, int G,
                       int dqk, int dv, int window, float scale);

#endif
