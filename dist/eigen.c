/* ScaLAPACK pdsyevd / pdgesvd behind replicated input and output.
 *
 * A BLACS grid is made once per communicator (dist_grid_open) and kept with
 * the descriptors and local blocks of the last problem shape solved on it.
 * Each call has every rank copy its
 * block-cyclic piece straight out of the replicated full matrix (no scatter),
 * runs the solver, then writes each rank's piece of the result into a zeroed
 * full matrix and sums those over the ranks. Every entry comes from exactly one
 * rank and x + 0 is exact, so all ranks end up with bitwise identical results. */
#include "dist/eigen.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist/chunked.h"
#include "dist/linalg.h"
#include "io/base/checked.h"
#include "io/base/error.h"

/* BLACS's C interface and ScaLAPACK's Fortran entry points: Debian's
 * libscalapack-openmpi ships no header for them. The trailing size_t are the
 * hidden lengths of the Fortran string arguments. */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, double *w, double *z, const int *iz, const int *jz, const int *descz, double *work,
              const int *lwork, int *iwork, const int *liwork, int *info, size_t, size_t);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *s, double *u, const int *iu, const int *ju, const int *descu,
              double *vt, const int *ivt, const int *jvt, const int *descvt, double *work, const int *lwork,
              int *info, size_t, size_t);

/* A BLACS process grid over one communicator. */
typedef struct {
    int handle, ctxt; /* BLACS system handle of the communicator; grid context */
    int nprow, npcol, myrow, mycol;
} Grid;

/* This rank's block-cyclic piece of a global rows x cols matrix: nb x nb
 * blocks, first block on process (0, 0), local array column-major. */
typedef struct {
    int rows, cols, nb;
    int lrows, lcols, lld;
    int desc[9];
    double *a;
} Block;

/* The grid and what the last problem on it used: its two distributed
 * matrices (input, vectors), kept while the shape repeats (every layer of
 * a model poses the same problem). */
struct DistGrid {
    MPI_Comm comm;
    Grid g;
    int kind, m, n; /* the shape the blocks are for (kind 0: none yet) */
    Block in, vec;
};

/* Where global element (i, j) of a distributed matrix lives in a full,
 * replicated array: at base + i * rs + j * cs. One fill loop and one collect
 * loop then serve row-major input, column-major views and reversed order. */
typedef struct {
    int64_t base, rs, cs;
} Layout;

static const int ONE = 1, ZERO = 0;

static void grid_open(Grid *g, MPI_Comm comm) {
    int size;
    MPI_Comm_size(comm, &size);
    /* largest divisor of size not above its square root: as square as the
     * rank count allows, the longer side across process columns */
    int nprow = 1;
    for (int r = 1; r * r <= size; r++)
        if (size % r == 0) nprow = r;
    g->handle = Csys2blacs_handle(comm);
    g->ctxt = g->handle;
    Cblacs_gridinit(&g->ctxt, "Row", nprow, size / nprow);
    Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
}

static void grid_close(Grid *g) {
    Cblacs_gridexit(g->ctxt);
    Cfree_blacs_system_handle(g->handle);
}

/* Grid process (0, 0) holds the first block. When n fits in one block,
 * pdsyevd's pdstedc runs LAPACK's dstedc there alone, and every other process
 * returns the tridiagonal's diagonal as "eigenvalues" (ScaLAPACK 2.2.1). */
static int grid_is_origin(const Grid *g) { return g->myrow == 0 && g->mycol == 0; }

/* 64 (BLAS-3 sized panels) for big matrices; smaller ones get smaller blocks
 * so the work is still spread over the whole grid instead of one process. */
static int block_size(int n, const Grid *g) {
    int p = g->nprow > g->npcol ? g->nprow : g->npcol;
    int nb = (n + p - 1) / p;
    return nb < 1 ? 1 : nb > 64 ? 64 : nb;
}

static void block_init(Block *b, const Grid *g, int rows, int cols, int nb) {
    int info;
    b->rows = rows;
    b->cols = cols;
    b->nb = nb;
    b->lrows = numroc_(&rows, &nb, &g->myrow, &ZERO, &g->nprow);
    b->lcols = numroc_(&cols, &nb, &g->mycol, &ZERO, &g->npcol);
    b->lld = b->lrows > 1 ? b->lrows : 1; /* ScaLAPACK wants lld >= 1 even on a rank with no rows */
    descinit_(b->desc, &rows, &cols, &nb, &nb, &ZERO, &ZERO, &g->ctxt, &b->lld, &info);
    if (info) tm_die("descinit of a %d x %d matrix (block %d) failed: info %d", rows, cols, nb, info);
    b->a = mallocCheck((size_t)b->lld * (size_t)(b->lcols > 1 ? b->lcols : 1) * sizeof *b->a);
}

static void block_free(Block *b) {
    free(b->a);
    b->a = NULL;
}

/* The grid's two blocks for a problem: input rows x cols, vectors rows x
 * vcols, block size from k; made again only when the shape changes. */
static void grid_blocks(DistGrid *d, int kind, int rows, int cols, int vcols, int k) {
    if (d->kind == kind && d->m == rows && d->n == cols) return;
    block_free(&d->in);
    block_free(&d->vec);
    int nb = block_size(k, &d->g);
    block_init(&d->in, &d->g, rows, cols, nb);
    block_init(&d->vec, &d->g, rows, vcols, nb);
    d->kind = kind, d->m = rows, d->n = cols;
}

DistGrid *dist_grid_open(MPI_Comm comm) {
    DistGrid *d = callocCheck(1, sizeof *d);
    d->comm = comm;
    grid_open(&d->g, comm);
    return d;
}

void dist_grid_close(DistGrid *d) {
    if (!d) return;
    block_free(&d->in);
    block_free(&d->vec);
    grid_close(&d->g);
    free(d);
}

/* Global index of local index l along one dimension: blocks of nb dealt
 * round-robin to np processes, this one at coordinate p. */
static int64_t global_index(int l, int nb, int p, int np) { return ((int64_t)(l / nb) * np + p) * nb + l % nb; }

static void block_fill(Block *b, const Grid *g, const double *full, Layout at) {
    for (int lj = 0; lj < b->lcols; lj++) {
        int64_t j = global_index(lj, b->nb, g->mycol, g->npcol);
        for (int li = 0; li < b->lrows; li++) {
            int64_t i = global_index(li, b->nb, g->myrow, g->nprow);
            b->a[(int64_t)lj * b->lld + li] = full[at.base + i * at.rs + j * at.cs];
        }
    }
}

/* The full matrix (count entries, laid out as `at` says) on every rank. */
static void block_gather(const Block *b, const Grid *g, MPI_Comm comm, double *full, int64_t count, Layout at) {
    memset(full, 0, (size_t)count * sizeof *full);
    for (int lj = 0; lj < b->lcols; lj++) {
        int64_t j = global_index(lj, b->nb, g->mycol, g->npcol);
        for (int li = 0; li < b->lrows; li++) {
            int64_t i = global_index(li, b->nb, g->myrow, g->nprow);
            full[at.base + i * at.rs + j * at.cs] = b->a[(int64_t)lj * b->lld + li];
        }
    }
    chunked_sum_f64(full, count, comm);
}

/* Eigen- or singular values as grid process (0, 0) has them: the one copy
 * that is right in every case (see grid_is_origin), the same bits for all. */
static void values_from_origin(const Grid *g, MPI_Comm comm, double *x, int count) {
    if (!grid_is_origin(g)) memset(x, 0, (size_t)count * sizeof *x);
    chunked_sum_f64(x, count, comm);
}

/* One info for all ranks, so that all return the same: a failure anywhere
 * fails everywhere, argument errors (negative) named first. */
static int agree_info(MPI_Comm comm, int info) {
    int v[2] = {info, -info};
    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, comm);
    return v[1] > 0 ? -v[1] : v[0];
}

/* Work size for pdsyevd: its query undercounts. pdsyevd passes lwork - 2n on
 * to pdstedc and then to pdormtr, which check for more than the query asked:
 * pdlasrt (inside pdstedc) max(n, np (nb + nq)) (Reference-ScaLAPACK issue
 * #74), pdormtr max(nb (nb - 1) / 2, (np + nq) nb) + nb^2. A pdormtr that
 * finds too little work prints "PDORMTR parameter number 16 had an illegal
 * value" and returns, pdsyevd ignores that and reports info 0 with the
 * eigenvectors of the tridiagonal matrix instead of A's (seen with ScaLAPACK
 * 2.2.1: n = 64 on a 1 x 1 grid, block 64). */
static int pdsyevd_lwork(const Block *a, double queried) {
    int64_t n = a->rows, nb = a->nb, np = a->lrows, nq = a->lcols;
    int64_t lasrt = np * (nb + nq) > n ? np * (nb + nq) : n;
    int64_t ormtr = (np + nq) * nb > nb * (nb - 1) / 2 ? (np + nq) * nb : nb * (nb - 1) / 2;
    ormtr += nb * nb;
    int64_t need = 2 * n + (lasrt > ormtr ? lasrt : ormtr);
    return (int64_t)queried > need ? (int)queried : (int)need;
}

/* pdsyevd on distributed a; eigenvectors to z, eigenvalues ascending to w.
 * Returns the info agreed over comm. */
static int run_pdsyevd(const Grid *g, MPI_Comm comm, Block *a, Block *z, double *w) {
    int n = a->rows, info = 0, lwork = -1, liwork = -1, iw_query = 0;
    double w_query = 0;
    pdsyevd_("V", "U", &n, a->a, &ONE, &ONE, a->desc, w, z->a, &ONE, &ONE, z->desc, &w_query, &lwork, &iw_query,
             &liwork, &info, 1, 1);
    info = agree_info(comm, info);
    if (info) return info;
    lwork = pdsyevd_lwork(a, w_query);
    liwork = iw_query;
    double *work = mallocCheck((size_t)lwork * sizeof *work);
    int *iwork = mallocCheck((size_t)liwork * sizeof *iwork);
    pdsyevd_("V", "U", &n, a->a, &ONE, &ONE, a->desc, w, z->a, &ONE, &ONE, z->desc, work, &lwork, iwork, &liwork,
             &info, 1, 1);
    free(work);
    free(iwork);
    return agree_info(comm, info);
}

int dist_eigh_descending(DistGrid *d, int n, double *A, double *w) {
    if (n == 0) return 0;
    const Grid *g = &d->g;
    MPI_Comm comm = d->comm;
    grid_blocks(d, 1, n, n, n, n);
    /* row-major symmetric A reads the same as column-major A */
    block_fill(&d->in, g, A, (Layout){0, 1, n});
    int info = run_pdsyevd(g, comm, &d->in, &d->vec, w);
    if (info)
        return tm_fail("eigendecomposition of a %d x %d matrix on a %d x %d process grid failed "
                       "(ScaLAPACK pdsyevd info %d)", n, n, g->nprow, g->npcol, info);
    /* column j of Z (ascending order) becomes row n-1-j of A: descending */
    block_gather(&d->vec, g, comm, A, (int64_t)n * n, (Layout){(int64_t)(n - 1) * n, 1, -(int64_t)n});
    values_from_origin(g, comm, w, n);
    for (int i = 0, j = n - 1; i < j; i++, j--) {
        double t = w[i];
        w[i] = w[j];
        w[j] = t;
    }
    rows_fix_sign(A, n, n);
    return 0;
}

/* pdgesvd (left vectors only) on distributed a; vectors to u, values to s.
 * Returns the info agreed over comm. */
static int run_pdgesvd(MPI_Comm comm, Block *a, Block *u, double *s) {
    int m = a->rows, n = a->cols, info = 0, lwork = -1;
    double w_query = 0, vt_unused = 0;
    /* JOBVT='N': VT and its descriptor are not read; u's stands in */
    pdgesvd_("V", "N", &m, &n, a->a, &ONE, &ONE, a->desc, s, u->a, &ONE, &ONE, u->desc, &vt_unused, &ONE, &ONE,
             u->desc, &w_query, &lwork, &info, 1, 1);
    info = agree_info(comm, info);
    if (info) return info;
    lwork = (int)w_query;
    double *work = mallocCheck((size_t)lwork * sizeof *work);
    pdgesvd_("V", "N", &m, &n, a->a, &ONE, &ONE, a->desc, s, u->a, &ONE, &ONE, u->desc, &vt_unused, &ONE, &ONE,
             u->desc, work, &lwork, &info, 1, 1);
    free(work);
    return agree_info(comm, info);
}

int dist_svd_left(DistGrid *d, int m, int n, const double *F, double *U, double *s) {
    int k = m < n ? m : n;
    if (k == 0) return 0;
    const Grid *g = &d->g;
    MPI_Comm comm = d->comm;
    grid_blocks(d, 2, m, n, k, k);
    /* F is row-major: the fill transposes it into ScaLAPACK's column-major,
     * so pdgesvd's U (columns = left vectors) is what we want, no SVD of F^T */
    block_fill(&d->in, g, F, (Layout){0, n, 1});
    int info = run_pdgesvd(comm, &d->in, &d->vec, s);
    if (info)
        return tm_fail("SVD of a %d x %d matrix on a %d x %d process grid failed (ScaLAPACK pdgesvd info %d)", m, n,
                       g->nprow, g->npcol, info);
    /* column j of U[m, k] becomes row j of U[k, m] */
    block_gather(&d->vec, g, comm, U, (int64_t)k * m, (Layout){0, 1, m});
    values_from_origin(g, comm, s, k);
    rows_fix_sign(U, k, m);
    return 0;
}
