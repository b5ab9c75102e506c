/* dist_eigh_descending and dist_svd_left (ScaLAPACK) against the spectra and
 * vectors the test matrices are built from, against single-process LAPACK
 * (eigh_descending, svd_left_descending), and for bitwise agreement between
 * ranks. Run under mpirun with 1, 2 and 4 ranks (see tests/CMakeLists.txt).
 *
 * Test matrices: A = Q diag(w) Q^T and F = U diag(s) V^T with Q, U, V random
 * orthogonal (products of Householder reflectors, as in a QR factorisation of
 * random data) and values spaced about 1 apart (gaps >= 0.5), so both the
 * values and the vectors are known before any solver runs.
 *
 * Tolerances. A backward-stable solver returns values within ~p(n) eps ||A||
 * and vectors within ~p(n) eps ||A|| / gap of the truth (Davis-Kahan:
 * eigenvector error ~ eps ||A|| / gap). Here ||A|| <= n/2 + 1 ~ 150,
 * gap >= 0.5, eps = 1.1e-16, and p(n) = n <= 300 is generous: about 1e-11.
 * The checks ask for 1e-10 * max|w| on values and 1e-8 on each vector entry:
 * room for rounding, yet far below the ~0.06 size of a unit vector's entries,
 * so a wrong, swapped or sign-flipped vector cannot pass. */
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

#include "dist/linalg.h"
#include "dist/eigen.h"
#include "io/base/checked.h"
#include "io/base/error.h"

enum {
    DIST_VALUES_TRUTH,
    DIST_VALUES_LAPACK,
    DIST_VECTORS_TRUTH,
    DIST_VECTORS_LAPACK,
    LAPACK_VALUES_TRUTH,
    LAPACK_VECTORS_TRUTH,
    RANKS_DIFFER,
    SOLVER_FAILED,
    N_CHECKS
};

static const struct {
    const char *name;
    double tol;
} CHECKS[N_CHECKS] = {
    [DIST_VALUES_TRUTH] = {"ScaLAPACK values vs constructed (max error / max value)", 1e-10},
    [DIST_VALUES_LAPACK] = {"ScaLAPACK values vs LAPACK (max error / max value)", 1e-10},
    [DIST_VECTORS_TRUTH] = {"ScaLAPACK vectors vs constructed (max entry error)", 1e-8},
    [DIST_VECTORS_LAPACK] = {"ScaLAPACK vectors vs LAPACK (max entry error)", 1e-8},
    [LAPACK_VALUES_TRUTH] = {"LAPACK values vs constructed (max error / max value)", 1e-10},
    [LAPACK_VECTORS_TRUTH] = {"LAPACK vectors vs constructed (max entry error)", 1e-8},
    [RANKS_DIFFER] = {"ScaLAPACK result bitwise equal on all ranks (1 = some rank differs)", 0},
    [SOLVER_FAILED] = {"solver returned 0 (1 = it failed)", 0},
};

static uint64_t rng_state;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / (double)(1ull << 52) - 1.0;
}
static void rng_seed(uint64_t seed) { rng_state = 0x9E3779B97F4A7C15ull ^ (seed * 0xBF58476D1CE4E5B9ull); }

/* Q[n, n] = H_0 H_1 ... H_{n-1}, H_j the reflector of a random v that is zero
 * above j: the Q of a Householder QR of random data, orthogonal to rounding. */
static double *random_orthogonal(int n) {
    double *Q = callocCheck((size_t)n * n, sizeof *Q);
    double *v = mallocCheck((size_t)n * sizeof *v), *y = mallocCheck((size_t)n * sizeof *y);
    for (int i = 0; i < n; i++) Q[(int64_t)i * n + i] = 1;
    for (int j = 0; j < n; j++) {
        double vv = 0;
        for (int i = j; i < n; i++) {
            v[i] = urand();
            vv += v[i] * v[i];
        }
        for (int r = 0; r < n; r++) { /* Q := Q - (2 / v'v) (Q v) v' */
            y[r] = 0;
            for (int i = j; i < n; i++) y[r] += Q[(int64_t)r * n + i] * v[i];
        }
        for (int r = 0; r < n; r++)
            for (int i = j; i < n; i++) Q[(int64_t)r * n + i] -= 2 / vv * y[r] * v[i];
    }
    free(v);
    free(y);
    return Q;
}

/* Columns 0 .. k-1 of Q[n, n] as the rows of V[k, n], in the sign convention. */
static double *columns_as_rows(const double *Q, int n, int k) {
    double *V = mallocCheck((size_t)k * n * sizeof *V);
    for (int i = 0; i < k; i++)
        for (int r = 0; r < n; r++) V[(int64_t)i * n + r] = Q[(int64_t)r * n + i];
    rows_fix_sign(V, k, n);
    return V;
}

/* k values spaced ~1 apart (gaps >= 0.5), descending, from top down. */
static void spaced_values(double *w, int k, double top) {
    for (int i = 0; i < k; i++) w[i] = top - i + 0.25 * urand();
}

static double max_abs(const double *x, int64_t count) {
    double m = 0;
    for (int64_t i = 0; i < count; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double max_diff(const double *x, const double *y, int64_t count) {
    double m = 0;
    for (int64_t i = 0; i < count; i++) m = fmax(m, fabs(x[i] - y[i]));
    return m;
}

/* 1 when this rank's x differs in any bit from comm rank 0's. */
static int differs_from_rank0(MPI_Comm comm, const double *x, int count) {
    double *r0 = mallocCheck((size_t)count * sizeof *r0);
    memcpy(r0, x, (size_t)count * sizeof *r0);
    MPI_Bcast(r0, count, MPI_DOUBLE, 0, comm);
    int d = memcmp(r0, x, (size_t)count * sizeof *r0) != 0;
    free(r0);
    return d;
}

/* Fills err[] for vectors V[k, len] and values v[k] from both solvers. */
static void compare(double *err, int k, int len, const double *v_true, const double *V_true, const double *v_lapack,
                    const double *V_lapack, const double *v_dist, const double *V_dist) {
    double scale = max_abs(v_true, k);
    int64_t nv = (int64_t)k * len;
    err[DIST_VALUES_TRUTH] = max_diff(v_dist, v_true, k) / scale;
    err[DIST_VALUES_LAPACK] = max_diff(v_dist, v_lapack, k) / scale;
    err[LAPACK_VALUES_TRUTH] = max_diff(v_lapack, v_true, k) / scale;
    err[DIST_VECTORS_TRUTH] = max_diff(V_dist, V_true, nv);
    err[DIST_VECTORS_LAPACK] = max_diff(V_dist, V_lapack, nv);
    err[LAPACK_VECTORS_TRUTH] = max_diff(V_lapack, V_true, nv);
}

/* A = Q diag(w) Q^T solved by both solvers; the solver comm is `comm`. */
static void eigh_case(DistGrid *grid, MPI_Comm comm, int n, double *err) {
    rng_seed(1000 + n);
    double *Q = random_orthogonal(n);
    double *w = mallocCheck((size_t)n * sizeof *w), *B = mallocCheck((size_t)n * n * sizeof *B);
    double *A = mallocCheck((size_t)n * n * sizeof *A), *A_dist = mallocCheck((size_t)n * n * sizeof *A);
    double *w_lapack = mallocCheck((size_t)n * sizeof *w), *w_dist = mallocCheck((size_t)n * sizeof *w);
    spaced_values(w, n, n / 2.0); /* both signs: the order is by value, not magnitude */
    for (int r = 0; r < n; r++)
        for (int i = 0; i < n; i++) B[(int64_t)r * n + i] = Q[(int64_t)r * n + i] * w[i];
    dgemm_rm(0, 1, n, n, n, B, Q, A);
    for (int r = 0; r < n; r++) /* exactly symmetric */
        for (int c = 0; c < r; c++) {
            double *lo = A + (int64_t)r * n + c, *up = A + (int64_t)c * n + r;
            *lo = *up = 0.5 * (*lo + *up);
        }
    memcpy(A_dist, A, (size_t)n * n * sizeof *A);
    double *V_true = columns_as_rows(Q, n, n);

    int rc_lapack = eigh_descending(n, A, w_lapack);
    int rc_dist = dist_eigh_descending(grid, n, A_dist, w_dist);
    if (rc_dist) fprintf(stderr, "dist_eigh_descending n=%d: %s\n", n, tm_error());
    compare(err, n, n, w, V_true, w_lapack, A, w_dist, A_dist);
    err[RANKS_DIFFER] = differs_from_rank0(comm, A_dist, n * n) | differs_from_rank0(comm, w_dist, n);
    err[SOLVER_FAILED] = rc_lapack || rc_dist;
    free(Q);
    free(w);
    free(B);
    free(A);
    free(A_dist);
    free(w_lapack);
    free(w_dist);
    free(V_true);
}

/* F = U diag(s) V^T (U, V: the first k columns of random orthogonal ones). */
static void svd_case(DistGrid *grid, MPI_Comm comm, int m, int n, double *err) {
    rng_seed(2000 + 1000 * m + n);
    int k = m < n ? m : n;
    double *Um = random_orthogonal(m), *Vn = random_orthogonal(n);
    double *s = mallocCheck((size_t)k * sizeof *s);
    spaced_values(s, k, k);
    double *B = mallocCheck((size_t)m * k * sizeof *B), *C = mallocCheck((size_t)n * k * sizeof *C);
    for (int r = 0; r < m; r++)
        for (int i = 0; i < k; i++) B[(int64_t)r * k + i] = Um[(int64_t)r * m + i] * s[i];
    for (int r = 0; r < n; r++)
        for (int i = 0; i < k; i++) C[(int64_t)r * k + i] = Vn[(int64_t)r * n + i];
    double *F = mallocCheck((size_t)m * n * sizeof *F);
    dgemm_rm(0, 1, m, n, k, B, C, F);
    double *U_true = columns_as_rows(Um, m, k);
    double *U_lapack = mallocCheck((size_t)k * m * sizeof *U_lapack);
    double *U_dist = mallocCheck((size_t)k * m * sizeof *U_dist);
    double *s_lapack = mallocCheck((size_t)k * sizeof *s), *s_dist = mallocCheck((size_t)k * sizeof *s);

    int rc_lapack = svd_left_descending(m, n, F, U_lapack, s_lapack);
    int rc_dist = dist_svd_left(grid, m, n, F, U_dist, s_dist);
    if (rc_dist) fprintf(stderr, "dist_svd_left %d x %d: %s\n", m, n, tm_error());
    compare(err, k, m, s, U_true, s_lapack, U_lapack, s_dist, U_dist);
    err[RANKS_DIFFER] = differs_from_rank0(comm, U_dist, k * m) | differs_from_rank0(comm, s_dist, k);
    err[SOLVER_FAILED] = rc_lapack || rc_dist;
    free(Um);
    free(Vn);
    free(s);
    free(B);
    free(C);
    free(F);
    free(U_true);
    free(U_lapack);
    free(U_dist);
    free(s_lapack);
    free(s_dist);
}

/* Every check of one case, worst value over all ranks, so that all ranks pass
 * or fail together (a rank failing alone would leave the others waiting in
 * the next collective). Names each failed check. */
static void check_all(const char *what, double *err) {
    MPI_Allreduce(MPI_IN_PLACE, err, N_CHECKS, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int failed = 0;
    for (int c = 0; c < N_CHECKS; c++)
        if (!(err[c] <= CHECKS[c].tol)) { /* NaN fails too */
            fprintf(stderr, "FAILED %s: %s: %.3g > %.3g\n", what, CHECKS[c].name, err[c], CHECKS[c].tol);
            failed++;
        }
    if (failed) fail_msg("%s: %d check(s) failed", what, failed);
}

static void eigh_matches_truth_and_lapack(void **state) {
    /* one grid for all of them, as a stage keeps it; 64 twice reuses its blocks */
    int sizes[] = {1, 7, 64, 64, 130, 257};
    DistGrid *g = dist_grid_open(MPI_COMM_WORLD);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char what[64];
        double err[N_CHECKS];
        snprintf(what, sizeof what, "dist_eigh_descending n=%d", sizes[i]);
        eigh_case(g, MPI_COMM_WORLD, sizes[i], err);
        check_all(what, err);
    }
    dist_grid_close(g);
}

static void svd_left_matches_truth_and_lapack(void **state) {
    int shapes[][2] = {{50, 120}, {120, 50}, {120, 50}, {257, 300}};
    DistGrid *g = dist_grid_open(MPI_COMM_WORLD);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        char what[64];
        double err[N_CHECKS];
        snprintf(what, sizeof what, "dist_svd_left %d x %d", shapes[i][0], shapes[i][1]);
        svd_case(g, MPI_COMM_WORLD, shapes[i][0], shapes[i][1], err);
        check_all(what, err);
    }
    dist_grid_close(g);
}

/* The grid is built over the comm passed in, not the world: two halves of
 * the world solve side by side on their own grids. */
static void sub_communicators(void **state) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half);
    double e1[N_CHECKS], e2[N_CHECKS];
    DistGrid *g = dist_grid_open(half);
    eigh_case(g, half, 130, e1);
    svd_case(g, half, 120, 50, e2); /* another problem kind on the same grid */
    dist_grid_close(g);
    MPI_Comm_free(&half);
    check_all("dist_eigh_descending n=130 on half the ranks", e1);
    check_all("dist_svd_left 120 x 50 on half the ranks", e2);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* cmocka's progress lines once, not once per rank; failures (stderr)
     * still come from every rank */
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) tm_die("cannot redirect stdout of rank %d", rank);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eigh_matches_truth_and_lapack),
        cmocka_unit_test(svd_left_matches_truth_and_lapack),
        cmocka_unit_test(sub_communicators),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
