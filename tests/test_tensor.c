/* Half-precision conversions, checked exhaustively or against values worked
 * out by hand from the IEEE 754 / bfloat16 bit layouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "model/tensor.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void f16_known_values(void **state) {
    assert_true(tm_f16_to_f32(0x3c00) == 1.0f);
    assert_true(tm_f16_to_f32(0xc000) == -2.0f);
    assert_true(tm_f16_to_f32(0x7bff) == 65504.0f);          /* largest normal */
    assert_true(tm_f16_to_f32(0x0400) == ldexpf(1, -14));    /* smallest normal */
    assert_true(tm_f16_to_f32(0x0001) == ldexpf(1, -24));    /* smallest subnormal */
    assert_true(tm_f16_to_f32(0x03ff) == ldexpf(1023, -24)); /* largest subnormal */
    assert_true(isinf(tm_f16_to_f32(0x7c00)));
    assert_true(isnan(tm_f16_to_f32(0x7e00)));
    assert_int_equal(bits(tm_f16_to_f32(0x8000)), 0x80000000u); /* -0 */
}

/* Every finite half survives f16 -> f32 -> f16 exactly. */
static void f16_round_trip_exhaustive(void **state) {
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue; /* NaN payloads */
        assert_int_equal(tm_f32_to_f16(tm_f16_to_f32((uint16_t)h)), h);
    }
}

/* f32 -> f16 rounds to nearest, ties to even. */
static void f16_rounding(void **state) {
    float one_ulp = ldexpf(1, -10); /* spacing of halves in [1, 2) */
    assert_int_equal(tm_f32_to_f16(1.0f + one_ulp / 2), 0x3c00);              /* tie -> even (down) */
    assert_int_equal(tm_f32_to_f16(1.0f + 3 * one_ulp / 2), 0x3c02);          /* tie -> even (up) */
    assert_int_equal(tm_f32_to_f16(1.0f + one_ulp * 0.51f), 0x3c01);
    assert_int_equal(tm_f32_to_f16(65520.0f), 0x7c00);                        /* rounds to inf */
    assert_int_equal(tm_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(tm_f32_to_f16(ldexpf(1, -25)), 0x0000);                  /* tie -> even (0) */
    assert_int_equal(tm_f32_to_f16(ldexpf(3, -25)), 0x0002);                  /* tie -> even (2) */
    assert_int_equal(tm_f32_to_f16(2047.0f * ldexpf(1, -25)), 0x0400);    /* subnormal carries to normal */
}

static void bf16_values_and_rounding(void **state) {
    assert_true(tm_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(tm_bf16_to_f32(0xc040) == -3.0f);
    assert_int_equal(tm_f32_to_bf16(1.0f), 0x3f80);
    float tie_down, tie_up, above;
    uint32_t u = 0x3f808000u; /* exactly halfway between 0x3f80 and 0x3f81 */
    memcpy(&tie_down, &u, 4);
    u = 0x3f818000u;
    memcpy(&tie_up, &u, 4);
    u = 0x3f808001u;
    memcpy(&above, &u, 4);
    assert_int_equal(tm_f32_to_bf16(tie_down), 0x3f80);
    assert_int_equal(tm_f32_to_bf16(tie_up), 0x3f82);
    assert_int_equal(tm_f32_to_bf16(above), 0x3f81);
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7f80u) == 0x7f80u && (h & 0x7fu)) continue;
        assert_int_equal(tm_f32_to_bf16(tm_bf16_to_f32((uint16_t)h)), h);
    }
}

static void tensor_to_f32_all_dtypes(void **state) {
    float f[3] = {1.5f, -2.0f, 0.25f}, out[3];
    uint16_t b[3] = {0x3fc0, 0xc000, 0x3e80}, h[3] = {0x3e00, 0xc000, 0x3400};
    Tensor t = {.data = f, .dtype = TM_F32, .rows = 1, .cols = 3};
    tensor_to_f32(&t, 1, 2, out);
    assert_true(out[0] == -2.0f && out[1] == 0.25f);
    t.data = b;
    t.dtype = TM_BF16;
    tensor_to_f32(&t, 0, 3, out);
    assert_true(out[0] == 1.5f && out[1] == -2.0f && out[2] == 0.25f);
    t.data = h;
    t.dtype = TM_F16;
    tensor_to_f32(&t, 0, 3, out);
    assert_true(out[0] == 1.5f && out[1] == -2.0f && out[2] == 0.25f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f16_known_values),       cmocka_unit_test(f16_round_trip_exhaustive),
        cmocka_unit_test(f16_rounding),           cmocka_unit_test(bf16_values_and_rounding),
        cmocka_unit_test(tensor_to_f32_all_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
