/* Causal attention over whole sequences (attention.h). With lse or
 * documents: blocks of query rows against the keys they may see, with sgemm
 * for every product. Per block the scores live in
 * QBLOCK x (keys seen) floats per thread, never T x T per head. One thread
 * owns a (sequence, head) in the forward pass and a (sequence, kv group) in
 * the backward pass, so all writes to a row of dk/dv come from one thread
 * in a fixed order and the result does not depend on the thread count. The
 * sgemm calls run single-threaded inside the parallel loop. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/attention.h"
#include "model/attn_tile.h"
#include "model/simd.h"
#include "model/softcap.h"

#define QBLOCK 64

/* Keys query row i of sequence b may not see: those before its document's
 * start and, with a window, those window or more rows back. */
typedef struct {
    const int32_t *doc_start; /* NULL: one document per sequence */
    int window;               /* 0: none */
} KeyMask;

/* First key row query row i of sequence b may see. */
static inline int doc_lo(const KeyMask *mask, int b, int T, int i) {
    const int32_t *row = mask->doc_start ? mask->doc_start + (int64_t)b * T : NULL;
    if (row && (row[i] < 0 || row[i] > i)) tm_die("attention: doc_start %d of row %d is not in [0, %d]", row[i], i, i);
    return tile_row_lo(row, mask->window, i);
}

/* Query rows [i0, i1) of sequence b: the first key any of them sees. */
static int block_lo(const KeyMask *mask, int b, int T, int i0, int i1) {
    int lo = i0;
    for (int i = i0; i < i1; i++) {
        int l = doc_lo(mask, b, T, i);
        if (l < lo) lo = l;
    }
    return lo;
}

/* S[m, w] = scale * q_block k[lo ..]^T for the block's m rows and w keys. */
static void block_scores(float *S, const float *q, int64_t qs, const float *k, int64_t ks, int m, int w, int dqk,
                         float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, w, dqk, scale, q, qs, k, ks, 0.0f, S, w);
}

/* S[m, w] soft-capped in place (softcap 0: unchanged); the backward pass
 * recomputes tanh from the scaled scores to get the cap's derivative. */
static void block_softcap(float *S, int64_t n, float cap) {
    if (cap > 0)
        for (int64_t i = 0; i < n; i++) S[i] = softcap(S[i], cap);
}

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

TM_MULTIVERSION void attend_row(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t vs,
                                int lo, int i, int dqk, int dv, float scale, float cap, float *p) {
    float mx = -INFINITY;
    for (int j = lo; j <= i; j++) {
        p[j] = dot(qi, k + j * ks, dqk) * scale;
        if (cap > 0) p[j] = softcap(p[j], cap);
        if (p[j] > mx) mx = p[j];
    }
    double sum = 0.0;
    for (int j = lo; j <= i; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    float inv = (float)(1.0 / sum);
    memset(o, 0, (size_t)dv * sizeof(float));
    for (int j = lo; j <= i; j++) {
        const float *vj = v + j * vs;
        float w = p[j] * inv;
#pragma omp simd
        for (int c = 0; c < dv; c++) o[c] += w * vj[c];
    }
}

/* Whole sequences one query row at a time (no documents, no lse). */
static void attention_rows(float *out, const float *q, const float *k, const float *v, int B, int T, int H, int G,
                           int dqk, int dv, int window, float scale, float cap) {
    int rep = H / G;
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv, os = (int64_t)H * dv;
#pragma omp parallel
    {
        float *p = mallocCheck((size_t)T * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int g = h / rep;
                const float *kb = k + (int64_t)b * T * ks + (int64_t)g * dqk;
                const float *vb = v + (int64_t)b * T * vs + (int64_t)g * dv;
                for (int i = 0; i < T; i++) {
                    int lo = (window > 0 && i - window + 1 > 0) ? i - window + 1 : 0;
                    int64_t row = (int64_t)b * T + i;
                    attend_row(out + row * os + (int64_t)h * dv, q + row * qs + (int64_t)h * dqk, kb, vb, ks, vs, lo,
                               i, dqk, dv, scale, cap, p);
                }
            }
        free(p);
    }
}

/* OpenBLAS single-threaded (the caller's loop is parallel); returns the count to restore. */
static int blas_threads_off(void) {
    int n = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return n;
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int H,
                       int G, int dqk, int dv, const int32_t *doc_start, int window, float scale, float softcap) {
    if (!lse && !doc_start) {
        attention_rows(out, q, k, v, B, T, H, G, dqk, dv, window, scale, softcap);
        return;
    }
    int rep = H / G, blas = blas_threads_off();
    KeyMask mask = {doc_start, window};
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv, os = (int64_t)H * dv;
#pragma omp parallel
    {
        float *S = mallocCheck((size_t)QBLOCK * T * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int g = h / rep;
                for (int i0 = 0; i0 < T; i0 += QBLOCK) {
                    int i1 = i0 + QBLOCK < T ? i0 + QBLOCK : T, m = i1 - i0;
                    int lo = block_lo(&mask, b, T, i0, i1), w = i1 - lo;
                    int64_t row0 = (int64_t)b * T;
                    block_scores(S, q + (row0 + i0) * qs + h * dqk, qs, k + (row0 + lo) * ks + g * dqk, ks, m, w, dqk,
                                 scale);
                    block_softcap(S, (int64_t)m * w, softcap);
                    for (int r = 0; r < m; r++) { /* softmax over keys [doc_lo, i]; the rest weigh 0 */
                        int i = i0 + r, a = doc_lo(&mask, b, T, i) - lo, z = i - lo;
                        float *s = S + (int64_t)r * w, mx = -INFINITY;
                        for (int j = a; j <= z; j++) mx = s[j] > mx ? s[j] : mx;
                        double sum = 0.0;
                        for (int j = a; j <= z; j++) sum += s[j] = expf(s[j] - mx);
                        float inv = (float)(1.0 / sum);
                        for (int j = 0; j < w; j++) s[j] = j >= a && j <= z ? s[j] * inv : 0.0f;
                        if (lse) lse[(row0 + i) * H + h] = mx + (float)log(sum);
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, dv, w, 1.0f, S, w,
                                v + (row0 + lo) * vs + g * dv, vs, 0.0f, out + (row0 + i0) * os + h * dv, os);
                }
            }
        free(S);
    }
    openblas_set_num_threads(blas);
}

/* Flash-attention backward per block: P = exp(cap(S) - lse) recomputed,
 * dP = dout V^T, D_i = dout_i . out_i, dS = P (dP - D) cap'(S) scale; then
 * dq = dS K, dk += dS^T q, dv += P^T dout. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, int B, int T, int H, int G, int dqk,
                        int dv_dim, const int32_t *doc_start, int window, float scale, float softcap) {
    int rep = H / G, blas = blas_threads_off();
    KeyMask mask = {doc_start, window};
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv_dim, os = (int64_t)H * dv_dim;
#pragma omp parallel
    {
        float *P = mallocCheck((size_t)QBLOCK * T * sizeof(float)), *dS = mallocCheck((size_t)QBLOCK * T * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) {
                int64_t row0 = (int64_t)b * T;
                for (int j = 0; j < T; j++) {
                    memset(dk + (row0 + j) * ks + g * dqk, 0, (size_t)dqk * sizeof(float));
                    memset(dv + (row0 + j) * vs + g * dv_dim, 0, (size_t)dv_dim * sizeof(float));
                }
                for (int h = g * rep; h < (g + 1) * rep; h++)
                    for (int i0 = 0; i0 < T; i0 += QBLOCK) {
                        int i1 = i0 + QBLOCK < T ? i0 + QBLOCK : T, m = i1 - i0;
                        int lo = block_lo(&mask, b, T, i0, i1), w = i1 - lo;
                        const float *qb = q + (row0 + i0) * qs + h * dqk, *kb = k + (row0 + lo) * ks + g * dqk;
                        const float *vb = v + (row0 + lo) * vs + g * dv_dim, *dob = dout + (row0 + i0) * os + h * dv_dim;
                        block_scores(P, qb, qs, kb, ks, m, w, dqk, scale);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, w, dv_dim, 1.0f, dob, os, vb, vs, 0.0f,
                                    dS, w);
                        for (int r = 0; r < m; r++) {
                            int i = i0 + r, a = doc_lo(&mask, b, T, i) - lo, z = i - lo;
                            const float *o_i = out + (row0 + i) * os + h * dv_dim, *do_i = dob + (int64_t)r * os;
                            float l = lse[(row0 + i) * H + h], Di = 0.0f;
                            for (int c = 0; c < dv_dim; c++) Di += do_i[c] * o_i[c];
                            float *p = P + (int64_t)r * w, *ds = dS + (int64_t)r * w;
                            for (int j = 0; j < w; j++) {
                                float t = softcap > 0 ? tanhf(p[j] / softcap) : 0.0f; /* d cap(s)/ds = 1 - t^2 */
                                float sj = softcap > 0 ? softcap * t : p[j];
                                p[j] = j >= a && j <= z ? expf(sj - l) : 0.0f;
                                ds[j] = p[j] * (ds[j] - Di) * scale * (1.0f - t * t);
                            }
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, dqk, w, 1.0f, dS, w, kb, ks, 0.0f,
                                    dq + (row0 + i0) * qs + h * dqk, qs);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, dqk, m, 1.0f, dS, w, qb, qs, 1.0f,
                                    dk + (row0 + lo) * ks + g * dqk, ks);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, dv_dim, m, 1.0f, P, w, dob, os, 1.0f,
                                    dv + (row0 + lo) * vs + g * dv_dim, vs);
                    }
            }
        free(P);
        free(dS);
    }
    openblas_set_num_threads(blas);
}
