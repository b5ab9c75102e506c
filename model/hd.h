/* TM_HD marks a plain-C function nvcc also compiles for the GPU, so the CPU
 * unit tests check what the device runs (issue 24). Empty for the C compiler. */
#ifndef TM_MODEL_HD_H
#define TM_MODEL_HD_H

#ifdef __CUDACC__
#define TM_HD __host__ __device__
#else
#define TM_HD
#endif

#endif
