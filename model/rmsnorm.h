#ifndef TM_MODEL_RMSNORM_H
#define TM_MODEL_RMSNORM_H

/* out[i] = inp[i] / sqrt(mean(inp[i]^2) + eps) * weight, for N rows of width C.
 * The mean square is accumulated in double (it feeds every later layer). */
void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, double eps);

/* Training: as rmsnorm_forward, also saving rstd[N] (1/rms of each row) for
 * the backward pass. */
void rmsnorm_forward_train(float *out, float *rstd, const float *inp, const float *weight, int N, int C, double eps);
/* dinp += dL/dinp; dweight += dL/dweight (NULL: frozen, skipped). */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C);

#endif
