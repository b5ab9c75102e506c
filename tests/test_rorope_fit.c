/* C side of tests/ref/rorope_fit_check.py: `test_rorope_fit DIR [--gpu]` reads
 * DIR/in.safetensors (shape scalars, q, k, v, o, o_proj, inv_freq, the bases
 * V and a skew S, all F32) and writes DIR/out.json:
 *  - mse, dS: rorope_fit_objective at (V, S) (for the numpy oracle);
 *  - cayley_orth: max |Q Q^T - I| of the Cayley transform of a large random
 *    skew matrix (float64);
 *  - fit: rorope_fit_layer from exactly orthogonal bases (Cayley of random
 *    skews): mse before/after, best step, and max |P P^T - I| of the fitted
 *    rotation, P's rope rows (for the oracle to re-evaluate), steps taken.
 * With --gpu the micro-batches run on GPU 0 (pipeline/rorope_fit_gpu.h): the
 * same checks hold the GPU's objective, gradient and fit to the oracle; exit
 * 77 (skipped) where no GPU is visible. */
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/linalg.h"
#include "pipeline/rorope_fit.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/rng.h"
#include "io/safetensors.h"
#include "pipeline/stage_device.h"

static StFile in;

static const float *tensor(const char *name, int64_t *n) {
    const StTensor *t = st_find(&in, name);
    if (!t || t->dtype != TM_F32) tm_die("in.safetensors: no F32 tensor %s", name);
    if (n) *n = st_numel(t);
    return t->data;
}
static int scalar(const char *name) { return (int)tensor(name, NULL)[0]; }
static double *f64(const char *name, int64_t *n_out) {
    int64_t n;
    const float *f = tensor(name, &n);
    double *d = mallocCheck((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    if (n_out) *n_out = n;
    return d;
}
static json_t *array(const double *a, int64_t n) {
    json_t *j = json_array();
    for (int64_t i = 0; i < n; i++) json_array_append_new(j, json_real(a[i]));
    return j;
}

/* max |A A^T - I| for A[n, n] */
static double orth_error(const double *A, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += A[(int64_t)i * n + k] * A[(int64_t)j * n + k];
            double e = fabs(s - (i == j));
            if (e > worst) worst = e;
        }
    return worst;
}

static double uniform(TmRng *r) { return (double)(rng_next(r) >> 11) / 9007199254740992.0 * 2 - 1; }

static void random_skew(TmRng *rng, double *S, int n, double size) {
    for (int i = 0; i < n; i++) {
        S[i * n + i] = 0;
        for (int j = i + 1; j < n; j++) {
            S[i * n + j] = size * uniform(rng);
            S[j * n + i] = -S[i * n + j];
        }
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int gpu = argc == 3 && !strcmp(argv[2], "--gpu");
    if (argc != 2 && !gpu) tm_die("usage: test_rorope_fit DIR [--gpu]");
    if (gpu && stage_device_check(PIPE_CUDA)) {
        printf("test_rorope_fit --gpu: %s: skipped\n", tm_error());
        MPI_Finalize();
        return 77;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/in.safetensors", argv[1]);
    if (st_open(&in, path)) tm_die("%s", tm_error());
    int H = scalar("H"), G = scalar("G"), d = scalar("d"), rd = scalar("rd"), r = scalar("r"), f = scalar("freqfold"), T = scalar("T");
    int nseq = scalar("nseq"), batch = scalar("batch"), D = scalar("D");
    FitData x = {.nseq = nseq, .T = T, .batch = batch};
    x.q = (float *)tensor("q", NULL);
    x.k = (float *)tensor("k", NULL);
    x.v = (float *)tensor("v", NULL);
    x.o = (float *)tensor("o", NULL);
    Tensor o_proj = {.dtype = TM_F32, .rows = D, .cols = H * d, .data = (void *)tensor("o_proj", NULL)};
    double *inv_freq = f64("inv_freq", NULL);
    FitProblem p = {.s = {.G = G, .d = d, .rd = rd, .r = r, .collapse = rd / r, .freqfold = f}, .H = H, .inv_freq = inv_freq,
                    .window = scalar("window"), .score_dim = d, .o_proj = &o_proj, .steps = scalar("steps"), .lr = 0.05,
                    .comm = MPI_COMM_SELF, .mb_first = 0, .mb_total = (nseq + batch - 1) / batch,
                    .device = gpu ? PIPE_CUDA : PIPE_CPU};
    if (rorope_check(&p.s)) tm_die("%s", tm_error());
    int64_t nn;
    double *V = f64("V", &nn), *S = f64("S", NULL), *dS = mallocCheck((size_t)nn * sizeof *dS);
    json_t *out = json_object();
    json_object_set_new(out, "mse", json_real(rorope_fit_objective(&p, &x, V, S, dS, NULL)));
    json_object_set_new(out, "dS", array(dS, nn));

    TmRng rng;
    rng_seed(&rng, 7);
    int big = 48;
    double *Sb = mallocCheck((size_t)big * big * sizeof *Sb), *Qb = mallocCheck((size_t)big * big * sizeof *Qb);
    random_skew(&rng, Sb, big, 3.0);
    if (cayley(big, Sb, Qb)) tm_die("%s", tm_error());
    json_object_set_new(out, "cayley_orth", json_real(orth_error(Qb, big)));

    /* the fit from exactly orthogonal bases */
    int n = rorope_bucket_size(&p.s), nb = rorope_buckets(&p.s), L = G * d;
    for (int b = 0; b < nb; b++) {
        random_skew(&rng, Sb, n, 1.0);
        if (cayley(n, Sb, V + (int64_t)b * n * n)) tm_die("%s", tm_error());
    }
    double *P = mallocCheck((size_t)L * L * sizeof *P);
    rorope_assemble(V, &p.s, P);
    json_object_set_new(out, "V0", array(V, nn));
    FitResult res;
    if (rorope_fit_layer(&p, &x, P, &res, NULL)) tm_die("%s", tm_error());
    json_object_set_new(out, "fit", json_pack("{sfsfsisfso}", "mse_before", res.mse_before, "mse_after", res.mse_after,
                                              "best_step", res.best_step, "orth", orth_error(P, L), "P_rope",
                                              array(P, (int64_t)r * L)));
    snprintf(path, sizeof path, "%s/out.json", argv[1]);
    if (json_dump_file(out, path, JSON_INDENT(1))) tm_die("%s: cannot write", path);
    json_decref(out);
    free(V);
    free(S);
    free(dS);
    free(Sb);
    free(Qb);
    free(P);
    free(inv_freq);
    st_close(&in);
    MPI_Finalize();
    return 0;
}
