/* The arithmetic of the GPU's backward kernels (model/grad_row.h,
 * model/glu_act.h; model/cuda/grad_kernels.cu), run on the CPU the way the
 * kernels compose it and compared with the CPU engine:
 * - RMSNorm, plain and per head (QK-norm's [N, H+G] 1/rms made one per row,
 *   as the GPU keeps it): dinp and dweight against rmsnorm_backward and
 *   head_rmsnorm_backward, the row's sum split over 256 "threads";
 * - SwiGLU and GeGLU, forward with inputs kept and backward, against
 *   swiglu.c;
 * - the bias gradient against matmul_backward's;
 * - the head's cross-entropy gradient (no teacher), with and without the
 *   soft-cap, the vocabulary in chunks and rows without a target: the
 *   dlogits against a float64 softmax - onehot computed here, and dhidden
 *   = dlogits W against head_loss_forward_backward's.
 * No GPU needed. Tolerances are stated where each is checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "tests/fixture.h"
#include "io/base/rng.h"
#include "model/crossentropy.h"
#include "model/glu_act.h"
#include "model/grad_row.h"
#include "model/matmul.h"
#include "model/rmsnorm.h"
#include "model/softcap.h"
#include "model/swiglu.h"

enum { BLOCK = 256 }; /* grad_kernels.cu's threads per block */

/* uniform in [lo, hi) */
static float *random_floats(int64_t n, TmRng *r, double lo, double hi) {
    float *x = mallocCheck((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (rng_next(r) >> 11) * 0x1p-53 * (hi - lo));
    return x;
}

static float *copy_floats(const float *x, int64_t n) {
    float *y = mallocCheck((size_t)n * sizeof *y);
    memcpy(y, x, (size_t)n * sizeof *y);
    return y;
}

/* cuda_rmsnorm_backward as its kernels run it: per row, each thread's
 * strided partial sum, the partials added, then dx; then dweight a column
 * at a time. */
static void rms_backward_as_gpu(float *dinp, float *dweight, const float *dout, const float *inp, const float *w,
                                const float *rstd, int64_t rows, int C) {
    for (int64_t i = 0; i < rows; i++) {
        const float *x = inp + i * C, *dy = dout + i * C;
        double dot = 0.0;
        for (int t = 0; t < BLOCK; t++) dot += rms_dot_part(w, dy, x, C, t, BLOCK);
        float k = rms_grad_coef(dot, rstd[i], C);
        for (int j = 0; j < C; j++) dinp[i * C + j] += rms_grad_elem(x[j], dy[j], w[j], rstd[i], k);
    }
    for (int j = 0; j < C; j++) dweight[j] += rms_weight_grad_col(dout, inp, rstd, rows, C, j);
}

/* The GPU's dx differs from the CPU's only in the order the double sum is
 * added (partials by thread), which can move k = dot r^3 / C by an ulp, and
 * x k is a fraction of dx: dinp within 2.5e-7 of its scale (2 fp32 ulp).
 * dweight is the CPU's float sum in the same order: within 1e-7 (an ulp,
 * for a compiler that contracts differently). dinp and dweight start
 * non-zero, to check they are added to. */
static void check_rms(const char *what, const float *dinp_cpu, const float *dinp_gpu, const float *dw_cpu,
                      const float *dw_gpu, int64_t n, int C) {
    double ex = rel_error(dinp_gpu, dinp_cpu, n), ew = rel_error(dw_gpu, dw_cpu, C);
    print_message("%s: dinp %.2e (tolerance 2.5e-7), dweight %.2e (1e-7)\n", what, ex, ew);
    assert_true(ex <= 2.5e-7);
    assert_true(ew <= 1e-7);
}

static void rmsnorm_rows(void **state) {
    (void)state;
    TmRng r;
    rng_seed(&r, 21);
    int N = 5, C = 300; /* C > 256: a thread takes two columns, some one */
    int64_t n = (int64_t)N * C;
    float *inp = random_floats(n, &r, -2, 2), *dout = random_floats(n, &r, -1, 1), *w = random_floats(C, &r, 0.5, 1.5);
    float *dinp = random_floats(n, &r, -1, 1), *dw = random_floats(C, &r, -1, 1);
    float *out = mallocCheck((size_t)n * sizeof *out), *rstd = mallocCheck((size_t)N * sizeof *rstd);
    float *dinp_gpu = copy_floats(dinp, n), *dw_gpu = copy_floats(dw, C);
    rmsnorm_forward_train(out, rstd, inp, w, N, C, 1e-6);
    rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    rms_backward_as_gpu(dinp_gpu, dw_gpu, dout, inp, w, rstd, N, C);
    check_rms("rmsnorm", dinp, dinp_gpu, dw, dw_gpu, n, C);
    free(inp), free(dout), free(w), free(dinp), free(dw), free(out), free(rstd), free(dinp_gpu), free(dw_gpu);
}

/* QK-norm: q [N, H*d] and k [N, G*d] share the CPU's rinv [N, H+G]; the GPU
 * keeps [N*H] then [N*G], one 1/rms per (token, head) row. */
static void head_rmsnorm_rows(void **state) {
    (void)state;
    TmRng r;
    rng_seed(&r, 22);
    int N = 4, H = 3, G = 2, d = 64, heads[2] = {H, G};
    float *rinv = mallocCheck((size_t)N * (H + G) * sizeof *rinv);
    for (int part = 0; part < 2; part++) {
        int nh = heads[part];
        int64_t n = (int64_t)N * nh * d, rows = (int64_t)N * nh;
        float *inp = random_floats(n, &r, -3, 3), *dout = random_floats(n, &r, -1, 1),
              *w = random_floats(d, &r, 0.5, 1.5);
        float *dinp = random_floats(n, &r, -1, 1), *dw = random_floats(d, &r, -1, 1);
        float *out = mallocCheck((size_t)n * sizeof *out), *rstd = mallocCheck((size_t)rows * sizeof *rstd);
        float *dinp_gpu = copy_floats(dinp, n), *dw_gpu = copy_floats(dw, d), *ri = rinv + (part ? H : 0);
        head_rmsnorm_forward(out, ri, H + G, inp, w, N, nh, d, 1e-6);
        head_rmsnorm_backward(dinp, dw, dout, inp, w, ri, H + G, N, nh, d);
        for (int64_t i = 0; i < rows; i++) rstd[i] = ri[i / nh * (H + G) + i % nh];
        rms_backward_as_gpu(dinp_gpu, dw_gpu, dout, inp, w, rstd, rows, d);
        check_rms(part ? "head_rmsnorm k" : "head_rmsnorm q", dinp, dinp_gpu, dw, dw_gpu, n, d);
        free(inp), free(dout), free(w), free(dinp), free(dw), free(out), free(rstd), free(dinp_gpu), free(dw_gpu);
    }
    free(rinv);
}

/* glu_act and glu_grad are swiglu.c's expressions in swiglu.c's order:
 * within 1e-7 of the scale (an ulp; 0 where both compilers round alike).
 * Gates in [-12, 12] reach silu's and gelu's flat tails. */
static void glu(void **state) {
    (void)state;
    TmRng r;
    rng_seed(&r, 23);
    int64_t n = 4096;
    float *gate = random_floats(n, &r, -12, 12), *up = random_floats(n, &r, -2, 2), *dout = random_floats(n, &r, -1, 1);
    float *out = mallocCheck((size_t)n * sizeof *out), *out_gpu = mallocCheck((size_t)n * sizeof *out);
    float *dg = mallocCheck((size_t)n * sizeof *dg), *du = mallocCheck((size_t)n * sizeof *du);
    float *dg_gpu = mallocCheck((size_t)n * sizeof *dg), *du_gpu = mallocCheck((size_t)n * sizeof *du);
    for (int gelu = 0; gelu < 2; gelu++) {
        if (gelu) {
            geglu_forward_out(out, gate, up, n);
            geglu_backward(dg, du, dout, gate, up, n);
        } else {
            swiglu_forward_out(out, gate, up, n);
            swiglu_backward(dg, du, dout, gate, up, n);
        }
        for (int64_t i = 0; i < n; i++) {
            out_gpu[i] = glu_act(gate[i], gelu) * up[i];
            glu_grad(&dg_gpu[i], &du_gpu[i], dout[i], gate[i], up[i], gelu);
        }
        double eo = rel_error(out_gpu, out, n), eg = rel_error(dg_gpu, dg, n), eu = rel_error(du_gpu, du, n);
        print_message("%s: out %.2e, dgate %.2e, dup %.2e (tolerance 1e-7)\n", gelu ? "geglu" : "swiglu", eo, eg, eu);
        assert_true(eo <= 1e-7);
        assert_true(eg <= 1e-7);
        assert_true(eu <= 1e-7);
    }
    free(gate), free(up), free(dout), free(out), free(out_gpu), free(dg), free(du), free(dg_gpu), free(du_gpu);
}

/* column_sum is matmul_backward's float sum in row order: within 1e-7 (an ulp). */
static void bias_grad(void **state) {
    (void)state;
    TmRng r;
    rng_seed(&r, 24);
    int N = 37, n_in = 3, n_out = 70;
    float *dout = random_floats((int64_t)N * n_out, &r, -1, 1);
    float *wdata = random_floats((int64_t)n_out * n_in, &r, -1, 1);
    float *db = random_floats(n_out, &r, -1, 1), *db_gpu = copy_floats(db, n_out);
    Tensor W = {.data = wdata, .dtype = TM_F32, .rows = n_out, .cols = n_in, .name = "w"};
    matmul_backward(NULL, NULL, db, dout, NULL, &W, N);
    for (int j = 0; j < n_out; j++) db_gpu[j] += column_sum(dout, N, n_out, j);
    double e = rel_error(db_gpu, db, n_out);
    print_message("bias: dbias %.2e (tolerance 1e-7)\n", e);
    assert_true(e <= 1e-7);
    free(dout), free(wdata), free(db), free(db_gpu);
}

/* ---- the head's cross-entropy gradient ---- */

typedef struct {
    int N, V, D, chunk;
    float weight, cap;
    const int32_t *targets;
} HeadCase;

static float capped(float z, float cap) { return cap > 0 ? softcap(z, cap) : z; }

/* dlogits [N, V] of logits [N, V] as the GPU makes them: the capped chunks
 * folded by crossentropy_update (cuda_crossentropy_update's twin), lse by
 * ce_lse (cuda_crossentropy_lse), then each raw chunk through
 * ce_logit_grad (cuda_crossentropy_grad). */
static void ce_grad_as_gpu(float *dz, const float *z, const HeadCase *c) {
    CrossEntropy ce;
    crossentropy_init(&ce, c->N);
    float *part = mallocCheck((size_t)c->N * c->chunk * sizeof *part), *lse = mallocCheck((size_t)c->N * sizeof *lse);
    for (int v0 = 0; v0 < c->V; v0 += c->chunk) {
        int cols = c->V - v0 < c->chunk ? c->V - v0 : c->chunk;
        for (int i = 0; i < c->N; i++)
            for (int j = 0; j < cols; j++) part[i * cols + j] = capped(z[(int64_t)i * c->V + v0 + j], c->cap);
        crossentropy_update(&ce, c->N, part, cols, v0, c->targets);
    }
    for (int i = 0; i < c->N; i++) lse[i] = ce_lse(ce.max[i], ce.sum[i]);
    for (int v0 = 0; v0 < c->V; v0 += c->chunk) {
        int cols = c->V - v0 < c->chunk ? c->V - v0 : c->chunk;
        for (int i = 0; i < c->N; i++)
            for (int j = 0; j < cols; j++) {
                int64_t e = (int64_t)i * c->V + v0 + j;
                dz[e] = ce_logit_grad(z[e], lse[i], c->targets[i], v0 + j, c->weight, c->cap);
            }
    }
    free(part), free(lse);
    crossentropy_free(&ce);
}

/* The same gradient in float64: weight (softmax - onehot) (1 - tanh^2). */
static void ce_grad_f64(double *dz, const float *z, const HeadCase *c) {
    double *zc = mallocCheck((size_t)c->V * sizeof *zc);
    for (int i = 0; i < c->N; i++) {
        const float *zi = z + (int64_t)i * c->V;
        double mx = -INFINITY, s = 0.0;
        for (int j = 0; j < c->V; j++) {
            zc[j] = c->cap > 0 ? c->cap * tanh(zi[j] / (double)c->cap) : zi[j];
            mx = fmax(mx, zc[j]);
        }
        for (int j = 0; j < c->V; j++) s += exp(zc[j] - mx);
        for (int j = 0; j < c->V; j++) {
            double t = c->cap > 0 ? tanh(zi[j] / (double)c->cap) : 0.0;
            double g = c->weight * (exp(zc[j] - mx) / s - (j == c->targets[i]));
            dz[(int64_t)i * c->V + j] = c->targets[i] < 0 ? 0.0 : c->cap > 0 ? g * (1.0 - t * t) : g;
        }
    }
    free(zc);
}

/* logits = hidden W^T in double, rounded to float (both sides start from these). */
static void head_logits(float *z, const float *hidden, const float *w, const HeadCase *c) {
    for (int i = 0; i < c->N; i++)
        for (int v = 0; v < c->V; v++) {
            double s = 0.0;
            for (int k = 0; k < c->D; k++) s += (double)hidden[i * c->D + k] * w[v * c->D + k];
            z[(int64_t)i * c->V + v] = (float)s;
        }
}

static void check_head(const HeadCase *c, TmRng *r, double range) {
    int64_t nz = (int64_t)c->N * c->V, nh = (int64_t)c->N * c->D;
    /* logits of about +-range: hidden in [-1, 1), W scaled so a row's dot product reaches it */
    double wmax = 2.0 * range / c->D;
    float *hidden = random_floats(nh, r, -1, 1), *w = random_floats((int64_t)c->V * c->D, r, -wmax, wmax);
    float *z = mallocCheck((size_t)nz * sizeof *z), *dz = mallocCheck((size_t)nz * sizeof *dz);
    float *scratch = mallocCheck((size_t)c->N * c->chunk * sizeof *scratch);
    double *dz64 = mallocCheck((size_t)nz * sizeof *dz64);
    head_logits(z, hidden, w, c);
    ce_grad_as_gpu(dz, z, c);
    ce_grad_f64(dz64, z, c);
    double e_logit = 0.0;
    for (int64_t e = 0; e < nz; e++) e_logit = fmax(e_logit, fabs(dz[e] - dz64[e]));

    /* the engine's dhidden (its logits from an sgemm, a few ulp off ours) against dz W */
    float *dh_cpu = callocCheck((size_t)nh, sizeof *dh_cpu), *dh_gpu = mallocCheck((size_t)nh * sizeof *dh_gpu);
    Tensor W = {.data = w, .dtype = TM_F32, .rows = c->V, .cols = c->D, .name = "lm_head"};
    int64_t counted = 0;
    head_loss_forward_backward(dh_cpu, NULL, hidden, &W, c->targets, c->N, c->weight, c->cap, scratch, c->chunk,
                               &counted, NULL);
    for (int i = 0; i < c->N; i++)
        for (int k = 0; k < c->D; k++) {
            double s = 0.0;
            for (int v = 0; v < c->V; v++) s += (double)dz[(int64_t)i * c->V + v] * w[v * c->D + k];
            dh_gpu[i * c->D + k] = (float)s;
        }
    double e_hidden = rel_error(dh_gpu, dh_cpu, nh);
    /* dlogits: g = weight (p - onehot) (1 - t^2), whose error is about
     * weight p times that of zc - lse (both rounded to float: 2^-24 of
     * |zc|, |lse| <= ~35 here, 2e-6 each) plus expf's and tanhf's ulp:
     * 4e-6 * weight. dhidden: the engine's logits come from an sgemm (a
     * D-term float sum, a few ulp of |z|, moving p by ~1e-6 relative) and its
     * dhidden from another: 1e-5 of the scale. */
    print_message("head cap %g, weight %g: dlogits %.2e (tolerance %.1e), dhidden %.2e (1e-5)\n", c->cap, c->weight,
                  e_logit, 4e-6 * c->weight, e_hidden);
    assert_true(e_logit <= 4e-6 * c->weight);
    assert_true(e_hidden <= 1e-5);
    free(hidden), free(w), free(z), free(dz), free(scratch), free(dz64), free(dh_cpu), free(dh_gpu);
}

static void head_crossentropy(void **state) {
    (void)state;
    TmRng r;
    rng_seed(&r, 25);
    /* -1: rows without a loss; targets in the first, a middle and the short last chunk */
    static const int32_t targets[] = {3, -1, 49, 20, 0, -1, 17, 48};
    HeadCase plain = {.N = 8, .V = 50, .D = 16, .chunk = 16, .weight = 0.25f, .cap = 0.0f, .targets = targets};
    check_head(&plain, &r, 8.0);
    HeadCase capped_case = plain;
    capped_case.cap = 30.0f; /* gemma2's final soft-cap; logits up to +-60 reach tanh's bend */
    check_head(&capped_case, &r, 60.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rmsnorm_rows),     cmocka_unit_test(head_rmsnorm_rows),  cmocka_unit_test(glu),
        cmocka_unit_test(bias_grad),        cmocka_unit_test(head_crossentropy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
