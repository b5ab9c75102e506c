/* dist/ordered_sum.h: K float vectors held by the ranks in contiguous
 * ranges, summed in item order, equal bit for bit on every rank to one
 * process adding them one after another (what the attention fit's
 * gradients need: any layout of replicas gives one process's fit). Run
 * under mpirun with 1, 2 and 3 ranks; the items' split is uneven and, with
 * 3 ranks, one rank holds none and the ranks' order is not the items'.
 *
 * The items mix magnitudes from 1e-4 to 1e4, so float addition is far from
 * associative on them: the test checks that adding them in reverse order
 * changes the bits, so a sum in the wrong order cannot pass. Pieces: each item arrives in two pieces (a fit's parameters
 * one after another). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/ordered_sum.h"
#include "io/base/checked.h"
#include "io/base/error.h"

enum { K = 7, N = 1000, CUT = 357 };

static float item(int k, int64_t j) {
    uint64_t h = (uint64_t)(k * 1000003 + j) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    double u = (double)(h % 1000000) / 1e6;                /* [0, 1) */
    double mag = pow(10.0, -4 + 8 * (double)((h >> 20) % 1000) / 1000);
    return (float)((u - 0.5) * mag);
}

/* Items [k0, k0 + count) of rank r of P: ranks take uneven shares, and with
 * 3 ranks rank 0 takes the last items, rank 1 none, rank 2 the first ones. */
static void share(int r, int P, int *k0, int *count) {
    if (P == 1) *k0 = 0, *count = K;
    if (P == 2) *k0 = r ? 2 : 0, *count = r ? K - 2 : 2;
    if (P == 3) *k0 = r == 0 ? 4 : 0, *count = r == 0 ? K - 4 : r == 1 ? 0 : 4;
}

static void in_order(void **state) {
    (void)state;
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    assert_true(size <= 3);
    float *want = mallocCheck(N * sizeof *want), *rev = mallocCheck(N * sizeof *rev), *v = mallocCheck(N * sizeof *v);
    for (int64_t j = 0; j < N; j++) {
        want[j] = item(0, j);
        for (int k = 1; k < K; k++) want[j] += item(k, j);
        rev[j] = item(K - 1, j);
        for (int k = K - 2; k >= 0; k--) rev[j] += item(k, j);
    }
    assert_true(memcmp(want, rev, N * sizeof *want) != 0); /* the order shows in the bits */
    int k0, count;
    share(rank, size, &k0, &count);
    OrderedSum s;
    ordered_sum_init(&s, MPI_COMM_WORLD, N, k0, count);
    for (int k = k0; k < k0 + count; k++) {
        for (int64_t j = 0; j < N; j++) v[j] = item(k, j);
        ordered_sum_add(&s, k, 0, v, CUT);
        ordered_sum_add(&s, k, CUT, v + CUT, N - CUT);
    }
    ordered_sum_finish(&s);
    int64_t off = 0;
    while (off < N && memcmp(&s.sum[off], &want[off], sizeof *want) == 0) off++;
    if (off < N) fail_msg("rank %d of %d: element %lld is %.9g, one process's %.9g", rank, size, (long long)off,
                          s.sum[off], want[off]);
    /* what it holds: the first items' rank one running sum, the others their items as well */
    assert_int_equal(ordered_sum_bytes(N, count, k0 == 0 && count > 0), (uint64_t)N * 4 * (1 + (k0 > 0 ? count : 0)));
    ordered_sum_free(&s);
    free(want);
    free(rev);
    free(v);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) tm_die("cannot redirect stdout of rank %d", rank);
    const struct CMUnitTest tests[] = {cmocka_unit_test(in_order)};
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
