/* Symmetric eigendecomposition: ScaLAPACK over all ranks against LAPACK on
 * one rank, measured in the same run on the same matrices.
 *
 *   mpirun -np P bench_eigen [--sizes 2048,4096,8192] [--reps 1]
 *
 * For each n: a random symmetric matrix; eigh_descending (LAPACK dsyevd) on
 * rank 0 alone while the other ranks wait, then dist_eigh_descending (pdsyevd,
 * plus the replicated input and output around it) over all P ranks. Times are
 * the best of --reps; for pdsyevd, the slowest rank's. speedup = dsyevd /
 * pdsyevd. The thread counts are printed because they decide what "one rank"
 * means: OPENBLAS_NUM_THREADS unset lets LAPACK on rank 0 use every core. */
#include <cblas.h>
#include <mpi.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/linalg.h"
#include "dist/eigen.h"
#include "io/base/checked.h"
#include "io/base/error.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / (double)(1ull << 52) - 1.0;
}

/* Same matrix on every rank: each generates it from the same seed. */
static void random_symmetric(double *A, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) A[(int64_t)i * n + j] = A[(int64_t)j * n + i] = urand();
}

static int parse_sizes(const char *s, int *sizes, int max) {
    int k = 0;
    char *end;
    while (*s && k < max) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 46340) tm_die("--sizes: bad size in \"%s\" (want e.g. 2048,4096)", s);
        sizes[k++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') tm_die("--sizes: unexpected \"%s\"", end);
    }
    return k;
}

/* Best-of-reps seconds of LAPACK on rank 0 (0 elsewhere). */
static double time_lapack(MPI_Comm comm, const double *A0, double *A, double *w, int n, int reps) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    double best = 0;
    if (rank == 0)
        for (int r = 0; r < reps; r++) {
            memcpy(A, A0, (size_t)n * n * sizeof *A);
            double t0 = MPI_Wtime();
            if (eigh_descending(n, A, w)) tm_die("%s", tm_error());
            double t = MPI_Wtime() - t0;
            if (r == 0 || t < best) best = t;
        }
    MPI_Barrier(comm);
    return best;
}

/* Best-of-reps seconds of ScaLAPACK over comm, the slowest rank's each time. */
static double time_scalapack(MPI_Comm comm, const double *A0, double *A, double *w, int n, int reps) {
    double best = 0;
    DistGrid *g = dist_grid_open(comm); /* made once, as a conversion stage does */
    for (int r = 0; r < reps; r++) {
        memcpy(A, A0, (size_t)n * n * sizeof *A);
        MPI_Barrier(comm);
        double t0 = MPI_Wtime();
        if (dist_eigh_descending(g, n, A, w)) tm_die("%s", tm_error());
        double t = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
        if (r == 0 || t < best) best = t;
    }
    dist_grid_close(g);
    return best;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, P, sizes[32] = {2048, 4096, 8192}, nsizes = 3, reps = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) nsizes = parse_sizes(argv[++i], sizes, 32);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else tm_die("usage: bench_eigen [--sizes 2048,4096,8192] [--reps 1]");
    }
    if (reps < 1) tm_die("--reps must be at least 1");

    if (rank == 0)
        printf("%6s %4s %11s %12s %10s %10s %8s\n", "n", "P", "omp_threads", "blas_threads", "dsyevd_s", "pdsyevd_s",
               "speedup");
    for (int i = 0; i < nsizes; i++) {
        int n = sizes[i];
        double *A0 = mallocCheck((size_t)n * n * sizeof *A0), *A = mallocCheck((size_t)n * n * sizeof *A);
        double *w = mallocCheck((size_t)n * sizeof *w);
        random_symmetric(A0, n);
        double t_lapack = time_lapack(MPI_COMM_WORLD, A0, A, w, n, reps);
        double t_dist = time_scalapack(MPI_COMM_WORLD, A0, A, w, n, reps);
        if (rank == 0) {
            printf("%6d %4d %11d %12d %10.3f %10.3f %8.2f\n", n, P, omp_get_max_threads(), openblas_get_num_threads(),
                   t_lapack, t_dist, t_lapack / t_dist);
            fflush(stdout);
        }
        free(A0);
        free(A);
        free(w);
    }
    MPI_Finalize();
    return 0;
}
