#include "model/tensor.h"

#include <math.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/simd.h"

float tm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t tm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float tm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);  /* inf / nan */
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: value = man * 2^-24 */
        float f = ldexpf((float)man, -24);
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t tm_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00u;
    if (a >= 65520.0f) return sign | 0x7c00u; /* rounds to inf */
    if (a < 6.103515625e-05f) {               /* subnormal range: multiples of 2^-24 */
        float q = nearbyintf(a * 16777216.0f); /* default rounding: to nearest even */
        return sign | (uint16_t)q;
    }
    uint32_t exp = ((u >> 23) & 0xffu) - 112u, man = u & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* carries into exp correctly */
    return sign | (uint16_t)h;
}

/* bf16 -> fp32 is a 16-bit shift; written out here so that it vectorises
 * (tm_bf16_to_f32 per element is a call). */
TM_MULTIVERSION static void bf16_block_to_f32(const uint16_t *p, int64_t n, float *out) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)p[i] << 16;
        memcpy(&out[i], &u, sizeof u);
    }
}

void tensor_to_f32(const Tensor *t, int64_t offset, int64_t n, float *out) {
    switch (t->dtype) {
    case TM_F32:
        memcpy(out, (const float *)t->data + offset, (size_t)n * sizeof(float));
        break;
    case TM_BF16:
        bf16_block_to_f32((const uint16_t *)t->data + offset, n, out);
        break;
    case TM_F16: {
        const uint16_t *p = (const uint16_t *)t->data + offset;
        for (int64_t i = 0; i < n; i++) out[i] = tm_f16_to_f32(p[i]);
        break;
    }
    default:
        memset(out, 0, (size_t)n * sizeof(float)); /* weights.c admits only the float types */
    }
}

uint16_t *tensor_f32_to_16bit(const float *x, int64_t n, TmDType dtype) {
    if (dtype != TM_BF16 && dtype != TM_F16) tm_die("tensor_f32_to_16bit: dtype %d is not bf16 or f16", (int)dtype);
    uint16_t *out = mallocCheck((size_t)n * sizeof *out + 1);
    for (int64_t i = 0; i < n; i++) out[i] = dtype == TM_BF16 ? tm_f32_to_bf16(x[i]) : tm_f32_to_f16(x[i]);
    return out;
}
