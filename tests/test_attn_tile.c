/* The tiled attention the CUDA kernel runs (model/attn_tile.h: key ranges of
 * a query tile, the online softmax carried across key tiles), run on the CPU
 * with the same helpers and compared with the CPU engine's attention_forward
 * (blocked, with lse): outputs and log-sum-exps within 2e-6 relative (fp32
 * both ways; the engine sums exp in double over whole rows, the tiles in
 * float tile by tile). Cases: GQA heads, packed documents, a sliding
 * window, gemma2's soft-cap, tiles that do not divide T, a key tile that a
 * row sees none of. The backward pass's row functions (model/
 * attn_grad_tile.h) in loops over rows and heads, as the GPU threads run
 * them, against the engine's attention_backward on the same shapes (within
 * 3e-6, see check_backward). With --gpu (ctest gpu_attention, label gpu;
 * CUDA builds): the same cases through the CUDA kernels (forward and
 * backward) against the CPU engine, exit 77 (skipped) when no GPU is
 * visible. */
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
#include "model/attention.h"
#include "model/attn_grad_tile.h"
#include "model/attn_tile.h"
#ifdef TRANSMLA_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "model/cuda/attention_cuda.h"
#include "model/cuda/kernels.h"
#endif

typedef struct {
    int B, T, H, G, dqk, dv, window;
    float scale, cap;
    const int32_t *doc_start;
} Shape;

/* What one GPU thread does for query row i of (b, h): walk the key tiles of
 * its query tile [i0, i1), keep the online softmax, divide at the end. */
static void tiled_row(float *o, float *lse, const float *qi, const float *kb, const float *vb, const Shape *s,
                      const int32_t *doc_row, int i, int i0, int i1, int ktile, float *acc) {
    int64_t ks = (int64_t)s->G * s->dqk, vs = (int64_t)s->G * s->dv;
    int row_lo = tile_row_lo(doc_row, s->window, i);
    TileSoftmax t = tile_softmax_start();
    memset(acc, 0, (size_t)s->dv * sizeof *acc);
    for (int j0 = tile_block_lo(doc_row, s->window, i0, i1); j0 < i1; j0 += ktile) {
        int j1 = j0 + ktile < i1 ? j0 + ktile : i1, a = j0 > row_lo ? j0 : row_lo, z = j1 - 1 < i ? j1 - 1 : i;
        float sc[64], mx = -INFINITY;
        for (int j = a; j <= z; j++) {
            float d = 0.0f;
            for (int c = 0; c < s->dqk; c++) d += qi[c] * kb[j * ks + c];
            sc[j - j0] = tile_score(d, s->scale, s->cap);
            mx = sc[j - j0] > mx ? sc[j - j0] : mx;
        }
        float f = tile_softmax_rescale(&t, mx); /* no key of this tile seen: mx -inf, f 1 */
        for (int c = 0; c < s->dv; c++) acc[c] *= f;
        for (int j = a; j <= z; j++) {
            float p = tile_softmax_add(&t, sc[j - j0]);
            for (int c = 0; c < s->dv; c++) acc[c] += p * vb[j * vs + c];
        }
    }
    for (int c = 0; c < s->dv; c++) o[c] = acc[c] / t.l;
    *lse = tile_softmax_lse(&t);
}

static void tiled_attention(float *out, float *lse, const float *q, const float *k, const float *v, const Shape *s,
                            int qtile, int ktile) {
    int rep = s->H / s->G;
    int64_t qs = (int64_t)s->H * s->dqk, os = (int64_t)s->H * s->dv;
    float *acc = mallocCheck((size_t)s->dv * sizeof *acc);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++) {
            const int32_t *doc_row = s->doc_start ? s->doc_start + (int64_t)b * s->T : NULL;
            const float *kb = k + (int64_t)b * s->T * s->G * s->dqk + (h / rep) * s->dqk;
            const float *vb = v + (int64_t)b * s->T * s->G * s->dv + (h / rep) * s->dv;
            for (int i0 = 0; i0 < s->T; i0 += qtile) {
                int i1 = i0 + qtile < s->T ? i0 + qtile : s->T;
                for (int i = i0; i < i1; i++) {
                    int64_t row = (int64_t)b * s->T + i;
                    tiled_row(out + row * os + h * s->dv, lse + row * s->H + h, q + row * qs + h * s->dqk, kb, vb, s,
                              doc_row, i, i0, i1, ktile, acc);
                }
            }
        }
    free(acc);
}

/* uniform in [-2, 2): scores of a few units, so the softmax is far from flat */
static float *random_floats(int64_t n, TmRng *r) {
    float *x = mallocCheck((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((rng_next(r) >> 11) * 0x1p-53 * 4.0 - 2.0);
    return x;
}

/* --gpu: a CUDA kernel in place of tiled_attention: 1 the fp32 one, 2 the
 * tensor-core one (bf16 inputs) */
static int on_gpu;

#ifdef TRANSMLA_HAVE_CUDA
static float *to_device(const void *x, size_t bytes) {
    void *d = NULL;
    assert_int_equal(cudaMalloc(&d, bytes ? bytes : 1), cudaSuccess);
    if (x) assert_int_equal(cudaMemcpy(d, x, bytes, cudaMemcpyHostToDevice), cudaSuccess);
    return d;
}

static void gpu_attention(float *out, float *lse, const float *q, const float *k, const float *v, const Shape *s) {
    size_t rows = (size_t)s->B * s->T, fq = rows * s->H * s->dqk * 4, fk = rows * s->G * s->dqk * 4,
           fv = rows * s->G * s->dv * 4, fo = rows * s->H * s->dv * 4, fl = rows * s->H * 4;
    float *dq = to_device(q, fq), *dk = to_device(k, fk), *dv = to_device(v, fv), *dout = to_device(NULL, fo),
          *dlse = to_device(NULL, fl);
    int32_t *ddoc = s->doc_start ? (int32_t *)to_device(s->doc_start, rows * 4) : NULL;
    if (on_gpu == 2) {
        uint16_t *q16 = (uint16_t *)to_device(NULL, fq / 2), *k16 = (uint16_t *)to_device(NULL, fk / 2),
                 *v16 = (uint16_t *)to_device(NULL, fv / 2);
        cuda_to_bf16(q16, dq, (int64_t)(fq / 4), 0);
        cuda_to_bf16(k16, dk, (int64_t)(fk / 4), 0);
        cuda_to_bf16(v16, dv, (int64_t)(fv / 4), 0);
        assert_int_equal(cuda_attention_forward_bf16(dout, dlse, q16, k16, v16, s->B, s->T, s->H, s->G, s->dqk, s->dv,
                                                     ddoc, s->window, s->scale, s->cap, 0), 0);
        cudaFree(q16), cudaFree(k16), cudaFree(v16);
    } else {
        assert_int_equal(cuda_attention_forward(dout, dlse, dq, dk, dv, s->B, s->T, s->H, s->G, s->dqk, s->dv, ddoc,
                                                s->window, s->scale, s->cap, 0), 0);
    }
    assert_int_equal(cudaMemcpy(out, dout, fo, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_int_equal(cudaMemcpy(lse, dlse, fl, cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout), cudaFree(dlse), cudaFree(ddoc);
}
#endif

static void check(const Shape *s, int qtile, int ktile) {
    TmRng r;
    rng_seed(&r, 11);
    int64_t rows = (int64_t)s->B * s->T;
    float *q = random_floats(rows * s->H * s->dqk, &r), *k = random_floats(rows * s->G * s->dqk, &r), *v = random_floats(rows * s->G * s->dv, &r);
    float *o1 = mallocCheck((size_t)(rows * s->H * s->dv) * sizeof(float)), *o2 = mallocCheck((size_t)(rows * s->H * s->dv) * sizeof(float));
    float *l1 = mallocCheck((size_t)(rows * s->H) * sizeof(float)), *l2 = mallocCheck((size_t)(rows * s->H) * sizeof(float));
    attention_forward(o1, l1, q, k, v, s->B, s->T, s->H, s->G, s->dqk, s->dv, s->doc_start, s->window, s->scale, s->cap);
#ifdef TRANSMLA_HAVE_CUDA
    if (on_gpu) gpu_attention(o2, l2, q, k, v, s);
    else
#endif
        tiled_attention(o2, l2, q, k, v, s, qtile, ktile);
    double dout = rel_error(o2, o1, rows * s->H * s->dv), dlse = rel_error(l2, l1, rows * s->H);
    const char *who[] = {"CPU", "GPU", "GPU bf16"};
    print_message("%s d %d, tiles %d x %d, window %d, cap %g, documents %s: out %.2e, lse %.2e\n", who[on_gpu], s->dqk,
                  qtile, ktile, s->window, s->cap, s->doc_start ? "yes" : "no", dout, dlse);
    /* the device's expf/logf are within 2 ulp, not correctly rounded; the
     * tensor-core kernel rounds q, k, v and the weights to bf16 (2^-9
     * relative each), which moves outputs of a few units by ~1e-2 */
    double tol = on_gpu == 2 ? 3e-2 : on_gpu ? 1e-5 : 2e-6;
    assert_true(dout < tol);
    assert_true(dlse < tol);
    free(q), free(k), free(v), free(o1), free(o2), free(l1), free(l2);
}

/* The backward pass as the GPU threads run it: D per (row, head), then dq
 * per (query row, head), then dk, dv per (key row, kv head). */
static void rowwise_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                             const float *q, const float *k, const float *v, const Shape *s) {
    int rep = s->H / s->G;
    int64_t rows = (int64_t)s->B * s->T, qs = (int64_t)s->H * s->dqk, ks = (int64_t)s->G * s->dqk,
            vs = (int64_t)s->G * s->dv, os = (int64_t)s->H * s->dv;
    float *D = mallocCheck((size_t)(rows * s->H) * sizeof *D);
    for (int64_t e = 0; e < rows * s->H; e++) D[e] = attn_grad_delta(dout + e * s->dv, out + e * s->dv, s->dv);
    for (int b = 0; b < s->B; b++) {
        int64_t row0 = (int64_t)b * s->T;
        const int32_t *doc_row = s->doc_start ? s->doc_start + row0 : NULL;
        for (int h = 0; h < s->H; h++)
            for (int i = 0; i < s->T; i++) {
                int64_t row = row0 + i, g = h / rep;
                attn_grad_dq_row(dq + row * qs + h * s->dqk, q + row * qs + h * s->dqk, dout + row * os + h * s->dv,
                                 lse[row * s->H + h], D[row * s->H + h], k + row0 * ks + g * s->dqk,
                                 v + row0 * vs + g * s->dv, ks, vs, doc_row, s->window, i, s->dqk, s->dv, s->scale,
                                 s->cap);
            }
        for (int g = 0; g < s->G; g++)
            for (int j = 0; j < s->T; j++) {
                int64_t row = row0 + j;
                attn_grad_dkv_row(dk + row * ks + g * s->dqk, dv + row * vs + g * s->dv, k + row * ks + g * s->dqk,
                                  v + row * vs + g * s->dv, q + row0 * qs, dout + row0 * os, lse + row0 * s->H,
                                  D + row0 * s->H, qs, os, s->H, g * rep, rep, doc_row, s->window, j, s->T, s->dqk,
                                  s->dv, s->scale, s->cap);
            }
    }
    free(D);
}

#ifdef TRANSMLA_HAVE_CUDA
static void gpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                   const float *lse, const float *q, const float *k, const float *v, const Shape *s) {
    size_t rows = (size_t)s->B * s->T, fq = rows * s->H * s->dqk * 4, fk = rows * s->G * s->dqk * 4,
           fv = rows * s->G * s->dv * 4, fo = rows * s->H * s->dv * 4, fl = rows * s->H * 4;
    float *d_q = to_device(q, fq), *d_k = to_device(k, fk), *d_v = to_device(v, fv), *d_dout = to_device(dout, fo),
          *d_out = to_device(out, fo), *d_lse = to_device(lse, fl), *d_delta = to_device(NULL, fl),
          *d_dq = to_device(NULL, fq), *d_dk = to_device(NULL, fk), *d_dv = to_device(NULL, fv);
    int32_t *ddoc = s->doc_start ? (int32_t *)to_device(s->doc_start, rows * 4) : NULL;
    assert_int_equal(cuda_attention_backward(d_dq, d_dk, d_dv, d_delta, d_dout, d_out, d_lse, d_q, d_k, d_v, s->B, s->T,
                                             s->H, s->G, s->dqk, s->dv, ddoc, s->window, s->scale, s->cap, 0), 0);
    assert_int_equal(cudaMemcpy(dq, d_dq, fq, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_int_equal(cudaMemcpy(dk, d_dk, fk, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_int_equal(cudaMemcpy(dv, d_dv, fv, cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(d_q), cudaFree(d_k), cudaFree(d_v), cudaFree(d_dout), cudaFree(d_out), cudaFree(d_lse);
    cudaFree(d_delta), cudaFree(d_dq), cudaFree(d_dk), cudaFree(d_dv), cudaFree(ddoc);
}
#endif

/* dq, dk, dv of the row helpers (on the CPU, or with --gpu the CUDA
 * kernels) against the engine's attention_backward on the same out and lse. */
static void check_backward(const Shape *s) {
    TmRng r;
    rng_seed(&r, 12);
    int64_t rows = (int64_t)s->B * s->T, nq = rows * s->H * s->dqk, nk = rows * s->G * s->dqk,
            nv = rows * s->G * s->dv, no = rows * s->H * s->dv;
    float *q = random_floats(nq, &r), *k = random_floats(nk, &r), *v = random_floats(nv, &r),
          *dout = random_floats(no, &r);
    float *out = mallocCheck((size_t)no * sizeof(float)), *lse = mallocCheck((size_t)(rows * s->H) * sizeof(float));
    float *grads[2][3];
    for (int w = 0; w < 2; w++) {
        grads[w][0] = mallocCheck((size_t)nq * sizeof(float));
        grads[w][1] = mallocCheck((size_t)nk * sizeof(float));
        grads[w][2] = mallocCheck((size_t)nv * sizeof(float));
    }
    attention_forward(out, lse, q, k, v, s->B, s->T, s->H, s->G, s->dqk, s->dv, s->doc_start, s->window, s->scale,
                      s->cap);
    attention_backward(grads[0][0], grads[0][1], grads[0][2], dout, out, lse, q, k, v, s->B, s->T, s->H, s->G, s->dqk,
                       s->dv, s->doc_start, s->window, s->scale, s->cap);
#ifdef TRANSMLA_HAVE_CUDA
    if (on_gpu) gpu_attention_backward(grads[1][0], grads[1][1], grads[1][2], dout, out, lse, q, k, v, s);
    else
#endif
        rowwise_backward(grads[1][0], grads[1][1], grads[1][2], dout, out, lse, q, k, v, s);
    double ddq = rel_error(grads[1][0], grads[0][0], nq), ddk = rel_error(grads[1][1], grads[0][1], nk),
           ddv = rel_error(grads[1][2], grads[0][2], nv);
    print_message("backward %s d %d/%d, H %d G %d, window %d, cap %g, documents %s: dq %.2e, dk %.2e, dv %.2e\n",
                  on_gpu ? "GPU" : "CPU", s->dqk, s->dv, s->H, s->G, s->window, s->cap, s->doc_start ? "yes" : "no",
                  ddq, ddk, ddv);
    /* fp32 both ways, summed in other orders (the engine's sgemms over
     * blocks, the helpers key by key): at most 9.4e-7 of the largest
     * gradient measured over these cases, so 3e-6; the device's expf and
     * tanhf (2 ulp) and fused multiply-adds: the forward's 1e-5 */
    double tol = on_gpu ? 1e-5 : 3e-6;
    assert_true(ddq < tol);
    assert_true(ddk < tol);
    assert_true(ddv < tol);
    for (int w = 0; w < 2; w++) free(grads[w][0]), free(grads[w][1]), free(grads[w][2]);
    free(q), free(k), free(v), free(dout), free(out), free(lse);
}

static void plain_gqa(void **state) {
    Shape s = {.B = 2, .T = 50, .H = 4, .G = 2, .dqk = 16, .dv = 12, .scale = 0.25f};
    check(&s, 16, 16);
    check(&s, 7, 13); /* tiles that divide nothing */
    check_backward(&s);
}

static void documents_window_softcap(void **state) {
    int32_t doc[2 * 45];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 45; i++) doc[b * 45 + i] = i < 10 ? 0 : i < 31 ? 10 : 31 - 5 * b; /* b=1: doc starts at 26 */
    Shape s = {.B = 2, .T = 45, .H = 6, .G = 3, .dqk = 8, .dv = 8, .scale = 0.3f, .doc_start = doc};
    check(&s, 8, 8); /* rows of the third document see no key of the first tiles */
    check_backward(&s);
    s.window = 5;
    check(&s, 16, 4);
    check_backward(&s);
    s.cap = 2.0f;
    check(&s, 5, 9);
    check_backward(&s);
    s.doc_start = NULL;
    check(&s, 64, 64);
    check_backward(&s);
}

/* Real head widths (64, 128; MLA's 192 and 128) over 64-row tiles, the last one partial:
 * what the tensor-core kernel takes; with --gpu both kernels run. */
static void wide_heads(void **state) {
    int32_t doc[2 * 150];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 150; i++) doc[b * 150 + i] = i < 70 ? 0 : i < 97 ? 70 : 97 - 20 * b;
    int kernels = on_gpu ? 2 : 1;
    for (int kern = 1; kern <= kernels; kern++) {
        if (on_gpu) on_gpu = kern;
        for (int d = 64; d <= 128; d += 64) {
            Shape s = {.B = 2, .T = 150, .H = 8, .G = 2, .dqk = d, .dv = d, .scale = 1.0f / sqrtf((float)d)};
            check(&s, 64, 64);
            if (on_gpu < 2) check_backward(&s); /* the backward is fp32 only */
            s.doc_start = doc;
            s.window = 40;
            check(&s, 64, 64);
            if (on_gpu < 2) check_backward(&s);
            s.cap = 3.0f;
            check(&s, 64, 64);
            if (on_gpu < 2) check_backward(&s);
        }
        /* MLA's heads: queries and keys [nope; rope] wider than the values */
        Shape mla = {.B = 2, .T = 150, .H = 4, .G = 4, .dqk = 192, .dv = 128, .scale = 1.0f / sqrtf(192.0f),
                     .doc_start = doc, .window = 40};
        check(&mla, 64, 64);
        if (on_gpu < 2) check_backward(&mla);
    }
}

/* tile_block_lo is the least row_lo of the tile, by brute force. */
static void block_lo_is_least_row_lo(void **state) {
    int32_t doc[40];
    for (int i = 0; i < 40; i++) doc[i] = i < 13 ? 0 : i < 22 ? 13 : 22;
    for (int w = 0; w < 8; w += 3)
        for (int i0 = 0; i0 < 40; i0++)
            for (int i1 = i0 + 1; i1 <= 40; i1++) {
                int lo = i0;
                for (int i = i0; i < i1; i++) lo = tile_row_lo(doc, w, i) < lo ? tile_row_lo(doc, w, i) : lo;
                assert_int_equal(tile_block_lo(doc, w, i0, i1), lo);
            }
}

/* The recurrence alone: scores in any tile order give the lse of the whole. */
static void softmax_recurrence(void **state) {
    float s[9] = {0.3f, -2.0f, 5.0f, 1.0f, -INFINITY, 4.5f, 0.0f, -1.0f, 2.0f};
    double ref = 0;
    for (int j = 0; j < 9; j++) ref += exp(s[j] - 5.0);
    ref = 5.0 + log(ref);
    TileSoftmax t = tile_softmax_start();
    for (int j0 = 0; j0 < 9; j0 += 2) {
        float mx = -INFINITY;
        for (int j = j0; j < j0 + 2 && j < 9; j++) mx = s[j] > mx ? s[j] : mx;
        tile_softmax_rescale(&t, mx);
        for (int j = j0; j < j0 + 2 && j < 9; j++) tile_softmax_add(&t, s[j]);
    }
    assert_true(fabs(tile_softmax_lse(&t) - ref) < 1e-6);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--gpu")) {
        int n = 0;
#ifdef TRANSMLA_HAVE_CUDA
        if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
#endif
        if (n == 0) {
            printf("gpu_attention: skipped, no GPU visible (or CUDA not compiled in)\n");
            return 77;
        }
        on_gpu = 1;
        const struct CMUnitTest gpu[] = {cmocka_unit_test(plain_gqa), cmocka_unit_test(documents_window_softcap),
                                         cmocka_unit_test(wide_heads)};
        return cmocka_run_group_tests(gpu, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_gqa),
        cmocka_unit_test(documents_window_softcap),
        cmocka_unit_test(wide_heads),
        cmocka_unit_test(block_lo_is_least_row_lo),
        cmocka_unit_test(softmax_recurrence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
