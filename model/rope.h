/* Rotary position embedding. Rotate-half layout (Hugging Face Llama): within
 * the rotated span of width w, dim i pairs with dim i + w/2; interleaved
 * layout (DeepSeek's rope_interleave): dim 2i pairs with 2i + 1. Pair i turns
 * by pos * inv_freq[i]. */
#ifndef TM_MODEL_ROPE_H
#define TM_MODEL_ROPE_H

#include <stdint.h>

#include "io/hf_config.h"

typedef struct {
    int max_pos, half;  /* positions 0..max_pos-1, rotary_dim/2 frequencies */
    float *cos, *sin;   /* [max_pos, half] */
} RopeTable;

/* inv_freq[i] = theta^(-2i/w), i < w/2, adjusted by the config's rope_scaling;
 * w is the rotated width (ModelConfig.rotary_dim: head_dim unless partial). */
void rope_inv_freq(const TmRopeScalingCfg *rs, double theta, int rotary_dim, double *inv_freq);
/* Angles in double, stored as float: cos/sin errors stay at fp32 rounding. */
void rope_table_init(RopeTable *rt, const TmRopeScalingCfg *rs, double theta, int rotary_dim, int max_pos);
void rope_table_free(RopeTable *rt);
/* Where the rotated spans sit in a row: n_heads spans, head h's span starts
 * at h * head_stride + offset and is 2 * rt->half wide. */
typedef struct {
    int n_heads, head_stride, offset, interleave;
} RopeLayout;

/* x: [B*T rows of row_stride floats], token (b, t) at position pos0 + t;
 * rotated in place. */
void rope_forward(float *x, int64_t row_stride, const RopeTable *rt, int B, int T, int pos0, const RopeLayout *lay);

/* Training: rows [0, N) at explicit positions pos[row] (packed sequences
 * restart positions at each document). */
void rope_forward_pos(float *x, int64_t row_stride, const RopeTable *rt, int64_t N, const int32_t *pos,
                      const RopeLayout *lay);
/* Backward of rope_forward_pos: dx rotated in place by the transposed
 * rotation (RoPE is orthogonal). */
void rope_backward_pos(float *dx, int64_t row_stride, const RopeTable *rt, int64_t N, const int32_t *pos,
                       const RopeLayout *lay);

#endif
