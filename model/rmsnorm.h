#ifndef TM_MODEL_RMSNORM_H
#define TM_MODEL_RMSNORM_H

/* out[i] = inp[i] / sqrt(mean(inp[i]^2) + eps) * weight, for N rows of width C.
 * The mean square is accumulated in double (it feeds every later layer). */
void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, double eps);

#endif
