/* gemm_rm_as_cm (model/cuda/gemm_rm.h), the argument mapping gpu_gemm_rm
 * hands cuBLAS, checked on the CPU: the column-major call it gives, run by
 * OpenBLAS (CblasColMajor), against a plain row-major triple loop, for every
 * pair of transpose flags, leading dimensions wider than the operands, alpha
 * and beta both used, and shapes with m, n, k all different (a swapped pair
 * of dimensions shows). Tolerance 1e-5 relative: the same fp32 sums in
 * another order. No GPU needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/base/checked.h"
#include "io/base/rng.h"
#include "model/cuda/gemm_rm.h"
#include "tests/fixture.h"

static float *random_floats(int64_t n, TmRng *r) {
    float *x = mallocCheck((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((double)(rng_next(r) >> 11) / 9007199254740992.0 * 2 - 1);
    return x;
}

/* row-major op(X)[i, j] for X with leading dimension ld */
static float at(const float *X, int ld, int trans, int i, int j) { return trans ? X[j * ld + i] : X[i * ld + j]; }

static void one_case(int ta, int tb, int m, int n, int k) {
    TmRng r;
    rng_seed(&r, (uint64_t)(ta * 2 + tb + 1));
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
    float *A = random_floats((int64_t)(ta ? k : m) * lda, &r), *B = random_floats((int64_t)(tb ? n : k) * ldb, &r);
    float *C = random_floats((int64_t)m * ldc, &r), *ref = mallocCheck((size_t)m * ldc * sizeof *ref);
    float alpha = -1.5f, beta = 0.5f;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) { /* columns past n: C's padding, left as it was */
            double s = 0;
            for (int l = 0; j < n && l < k; l++) s += (double)at(A, lda, ta, i, l) * at(B, ldb, tb, l, j);
            ref[i * ldc + j] = j < n ? (float)(alpha * s + beta * C[i * ldc + j]) : C[i * ldc + j];
        }
    ColMajorGemm cm = gemm_rm_as_cm(ta, tb, m, n, k, A, lda, B, ldb);
    cblas_sgemm(CblasColMajor, cm.trans_first ? CblasTrans : CblasNoTrans, cm.trans_second ? CblasTrans : CblasNoTrans,
                cm.m, cm.n, cm.k, alpha, cm.first, cm.ld_first, cm.second, cm.ld_second, beta, C, ldc);
    double err = rel_error(C, ref, (size_t)m * ldc);
    printf("ta %d tb %d (%d x %d x %d): rel error %.2e\n", ta, tb, m, n, k, err);
    assert_true(err <= 1e-5);
    free(A);
    free(B);
    free(C);
    free(ref);
}

static void test_every_transpose(void **state) {
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) one_case(ta, tb, 7, 5, 11);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_transpose)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
