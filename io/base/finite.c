#include "io/base/finite.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Each scan is branch-free blocks of a fixed length, which the compiler
 * vectorises, with a test between blocks so that a bad array stops the scan
 * early; big arrays are split over the threads. A float is finite when
 * |x| <= MAX (NaN fails every comparison); a 16-bit float, when its exponent
 * bits are not all set. */
#define BLOCK 256
#define THREADED ((size_t)1 << 22) /* elements: below this, one thread is faster */

#define SCAN(NAME, T, BAD)                                                                       \
    static int NAME(const T *x, size_t n) {                                                      \
        size_t blocks = n / BLOCK;                                                               \
        int bad = 0;                                                                             \
        _Pragma("omp parallel for reduction(|| : bad) schedule(static) if (n >= THREADED)")      \
        for (size_t b = 0; b < blocks; b++) {                                                    \
            if (bad) continue;                                                                   \
            const T *p = x + b * BLOCK;                                                          \
            int any = 0;                                                                         \
            for (int i = 0; i < BLOCK; i++) any |= BAD(p[i]);                                    \
            bad = any;                                                                           \
        }                                                                                        \
        for (size_t i = blocks * BLOCK; i < n; i++) bad |= BAD(x[i]);                            \
        return !bad;                                                                             \
    }

#define BAD_F32(v) !(fabsf(v) <= FLT_MAX)
#define BAD_F16(v) (((v) & 0x7c00u) == 0x7c00u)
#define BAD_BF16(v) (((v) & 0x7f80u) == 0x7f80u)

/* doubles by the exponent in their high word: a 32-bit compare vectorises
 * on any x86-64, the 64-bit one only from SSE4.1 */
static inline int bad_f64(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return ((uint32_t)(u >> 32) & 0x7ff00000u) == 0x7ff00000u;
}

SCAN(scan_f64, double, bad_f64)
SCAN(scan_f32, float, BAD_F32)
SCAN(scan_f16, uint16_t, BAD_F16)
SCAN(scan_bf16, uint16_t, BAD_BF16)

static int scan(const void *data, TmDType dt, size_t n) {
    switch (dt) {
    case TM_F64: return scan_f64(data, n);
    case TM_F32: return scan_f32(data, n);
    case TM_F16: return scan_f16(data, n);
    case TM_BF16: return scan_bf16(data, n);
    default: return 1; /* integers; 8-bit floats are never weights here */
    }
}

int tm_all_finite(const void *data, TmDType dt, size_t n) {
    size_t es = tm_dtype_size(dt);
    if (!es || (uintptr_t)data % es == 0) return scan(data, dt, n);
    /* a legal file may place a tensor at any byte: scan an aligned copy, a piece at a time */
    _Alignas(8) unsigned char piece[1 << 14];
    size_t per = sizeof piece / es;
    for (size_t i = 0; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        memcpy(piece, (const char *)data + i * es, k * es);
        if (!scan(piece, dt, k)) return 0;
    }
    return 1;
}

int tm_all_finite_f64(const double *x, size_t n) { return scan_f64(x, n); }
