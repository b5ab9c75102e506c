/* Random weights of real layer shapes for the benchmarks (bench_forward,
 * bench_gpu_forward): every tensor config.json implies, matrices
 * ~ U(-1,1)/sqrt(fan_in) in dtype dt, norm vectors 1 (fp32). */
#ifndef TM_BENCH_RANDOM_WEIGHTS_H
#define TM_BENCH_RANDOM_WEIGHTS_H

#include "io/safetensors.h"
#include "model/model.h"

/* Uniform in [-1, 1), a fixed xorshift64* sequence. */
float urand(void);
/* n_out tensors, each malloc'd with its name: free with random_tensors_free. */
StTensor *random_tensors(const ModelConfig *c, TmDType dt, int *n_out);
void random_tensors_free(StTensor *t, int n);

#endif
