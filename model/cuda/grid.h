/* The launch shape the elementwise and per-row kernels share
 * (kernels.cu, grad_kernels.cu): THREADS per block, and a grid of blocks
 * for n elements, capped where grid-stride loops take over. */
#ifndef TM_MODEL_CUDA_GRID_H
#define TM_MODEL_CUDA_GRID_H

#include <stdint.h>

enum { THREADS = 256 };

static inline unsigned blocks_for(int64_t n) {
    int64_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < 65535 * 16 ? b : 65535 * 16);
}

#endif
