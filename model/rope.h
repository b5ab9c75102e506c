/* Rotary position embedding in Hugging Face's rotate-half layout: within each
 * head, dim i pairs with dim i + d/2 and turns by pos * inv_freq[i]. */
#ifndef TM_MODEL_ROPE_H
#define TM_MODEL_ROPE_H

#include "io/hf_config.h"

typedef struct {
    int max_pos, half;  /* positions 0..max_pos-1, d/2 frequencies */
    float *cos, *sin;   /* [max_pos, half] */
} RopeTable;

/* inv_freq[i] = theta^(-2i/d), adjusted by the config's rope_scaling. */
void rope_inv_freq(const TmRopeScalingCfg *rs, double theta, int head_dim, double *inv_freq);
/* Angles in double, stored as float: cos/sin errors stay at fp32 rounding. */
void rope_table_init(RopeTable *rt, const TmRopeScalingCfg *rs, double theta, int head_dim, int max_pos);
void rope_table_free(RopeTable *rt);
/* x: [B*T, n_heads*head_dim], token (b, t) at position t; rotated in place. */
void rope_forward(float *x, const RopeTable *rt, int B, int T, int n_heads, int head_dim);

#endif
