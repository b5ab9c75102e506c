/* Our own hot loops are compiled for several x86-64 levels and picked at run
 * time (as OpenBLAS does), so a portable build still uses AVX2/AVX-512. */
#ifndef TM_MODEL_SIMD_H
#define TM_MODEL_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define TM_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TM_MULTIVERSION
#endif

#endif
