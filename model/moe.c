#include "model/moe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/matmul.h"
#include "model/swiglu.h"

void moe_scratch_init(MoeScratch *s, int N, int D, int inter, int E, int k) {
    s->router_logits = mallocCheck((size_t)N * E * sizeof(float));
    s->expert_of = mallocCheck((size_t)N * k * sizeof(int));
    s->weight_of = mallocCheck((size_t)N * k * sizeof(float));
    s->rows = mallocCheck((size_t)N * sizeof(int));
    s->xe = mallocCheck((size_t)N * D * sizeof(float));
    s->ye = mallocCheck((size_t)N * D * sizeof(float));
    s->h1 = mallocCheck((size_t)N * inter * sizeof(float));
    s->h2 = mallocCheck((size_t)N * inter * sizeof(float));
}

void moe_scratch_free(MoeScratch *s) {
    free(s->router_logits);
    free(s->expert_of);
    free(s->weight_of);
    free(s->rows);
    free(s->xe);
    free(s->ye);
    free(s->h1);
    free(s->h2);
    memset(s, 0, sizeof *s);
}

/* Top-k routing of one row of router logits: experts chosen and their
 * softmax weights, renormalised over the k chosen when renorm. */
static void moe_route(const float *logits, int E, int k, int renorm, int *experts, float *weights) {
    double mx = -INFINITY, sum = 0.0;
    for (int e = 0; e < E; e++) mx = logits[e] > mx ? logits[e] : mx;
    for (int e = 0; e < E; e++) sum += exp(logits[e] - mx);
    /* selection on the logits equals selection on the softmax; ties go to the lower index */
    double picked = 0.0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= experts[t] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
        }
        experts[j] = best;
        weights[j] = (float)(exp(logits[best] - mx) / sum);
        picked += weights[j];
    }
    if (renorm)
        for (int j = 0; j < k; j++) weights[j] = (float)(weights[j] / picked);
}

void moe_route_rows(const float *logits, int N, int E, int k, int renorm, int *expert_of, float *weight_of) {
    for (int i = 0; i < N; i++)
        moe_route(logits + (size_t)i * E, E, k, renorm, expert_of + (size_t)i * k, weight_of + (size_t)i * k);
}

/* s->rows = the token rows routed to expert e (in order), s->xe = their
 * inputs; returns how many. */
static int gather_expert_rows(MoeScratch *s, const float *inp, int N, int D, int k, int e) {
    int n = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++)
            if (s->expert_of[(size_t)i * k + j] == e) s->rows[n++] = i;
    for (int r = 0; r < n; r++) memcpy(s->xe + (size_t)r * D, inp + (size_t)s->rows[r] * D, (size_t)D * sizeof(float));
    return n;
}

void moe_forward(float *out, const float *inp, const LayerWeights *L, int N, int D, int inter, int E, int k,
                 int renorm, MoeScratch *s) {
    matmul_forward(s->router_logits, inp, &L->router, NULL, N, 0);
    moe_route_rows(s->router_logits, N, E, k, renorm, s->expert_of, s->weight_of);
    for (int e = 0; e < E; e++) {
        int n = gather_expert_rows(s, inp, N, D, k, e);
        if (!n) continue;
        const ExpertWeights *X = &L->experts[e];
        matmul_forward(s->h1, s->xe, &X->gate, NULL, n, 0);
        matmul_forward(s->h2, s->xe, &X->up, NULL, n, 0);
        swiglu_forward(s->h1, s->h2, (int64_t)n * inter);
        matmul_forward(s->ye, s->h1, &X->down, NULL, n, 0);
        for (int r = 0; r < n; r++) {
            int i = s->rows[r];
            float w = 0.0f;
            for (int j = 0; j < k; j++)
                if (s->expert_of[(size_t)i * k + j] == e) w = s->weight_of[(size_t)i * k + j];
            float *o = out + (size_t)i * D;
            const float *y = s->ye + (size_t)r * D;
            for (int c = 0; c < D; c++) o[c] += w * y[c];
        }
    }
}

void moe_router_grad(float *dz, const float *logits, const int *expert_of, const float *weight_of, const float *dw,
                     int N, int E, int k, int renorm) {
    memset(dz, 0, (size_t)N * E * sizeof(float));
    for (int i = 0; i < N; i++) {
        const float *w = weight_of + (size_t)i * k, *g = dw + (size_t)i * k;
        float mean = 0.0f;
        for (int j = 0; j < k; j++) mean += w[j] * g[j];
        float *dzi = dz + (size_t)i * E;
        if (renorm) {
            for (int j = 0; j < k; j++) dzi[expert_of[(size_t)i * k + j]] = w[j] * (g[j] - mean);
            continue;
        }
        const float *z = logits + (size_t)i * E;
        double mx = -INFINITY, sum = 0.0;
        for (int e = 0; e < E; e++) mx = z[e] > mx ? z[e] : mx;
        for (int e = 0; e < E; e++) sum += exp(z[e] - mx);
        for (int e = 0; e < E; e++) dzi[e] = (float)(-exp(z[e] - mx) / sum * mean);
        for (int j = 0; j < k; j++) dzi[expert_of[(size_t)i * k + j]] += w[j] * g[j];
    }
}

/* out_i = sum_j w_ij y_e(ij)(x_i) with w = softmax over the k chosen logits
 * (renorm) or the full softmax p at the chosen experts (no renorm).
 * Per expert (in order, so dinp sums deterministically): recompute its
 * activations on its rows, dy = w dout, back through down/swiglu/gate,up;
 * dw_ij = dout_i . y_e. Then the router: renorm: dz_j = w_j (dw_j - sum_m
 * w_m dw_m) on the chosen logits, 0 on the others; no renorm: dz_e = p_e
 * ([e chosen] dw_e - sum_m w_m dw_m) on every logit. */
void moe_backward(float *dinp, LayerWeights *G, const float *dout, const float *inp, const LayerWeights *L, int N,
                  int D, int inter, int E, int k, int renorm, MoeScratch *s) {
    float *dw = callocCheck((size_t)N * k, sizeof(float));
    float *act = mallocCheck((size_t)N * inter * sizeof(float));
    float *dxe = mallocCheck((size_t)N * D * sizeof(float));
    for (int e = 0; e < E; e++) {
        int n = gather_expert_rows(s, inp, N, D, k, e);
        if (!n) continue;
        const ExpertWeights *X = &L->experts[e];
        ExpertWeights *GX = G->experts ? &G->experts[e] : NULL;
        matmul_forward(s->h1, s->xe, &X->gate, NULL, n, 0);
        matmul_forward(s->h2, s->xe, &X->up, NULL, n, 0);
        swiglu_forward_out(act, s->h1, s->h2, (int64_t)n * inter);
        matmul_forward(s->ye, act, &X->down, NULL, n, 0);
        /* ye becomes dy = w dout once dw has read it */
        for (int r = 0; r < n; r++) {
            int i = s->rows[r], jj = 0;
            for (int j = 0; j < k; j++)
                if (s->expert_of[(size_t)i * k + j] == e) jj = j;
            float w = s->weight_of[(size_t)i * k + jj], d = 0.0f;
            const float *o = dout + (size_t)i * D;
            float *y = s->ye + (size_t)r * D;
            for (int c = 0; c < D; c++) {
                d += o[c] * y[c];
                y[c] = w * o[c];
            }
            dw[(size_t)i * k + jj] = d;
        }
        matmul_backward(NULL, GX ? tensor_grad_data(&GX->down) : NULL, NULL, s->ye, act, &X->down, n);
        memset(act, 0, (size_t)n * inter * sizeof(float)); /* now dL/d(down's input) */
        matmul_backward(act, NULL, NULL, s->ye, NULL, &X->down, n);
        swiglu_backward(s->h1, s->h2, act, s->h1, s->h2, (int64_t)n * inter);
        memset(dxe, 0, (size_t)n * D * sizeof(float));
        matmul_backward(dxe, GX ? tensor_grad_data(&GX->gate) : NULL, NULL, s->h1, s->xe, &X->gate, n);
        matmul_backward(dxe, GX ? tensor_grad_data(&GX->up) : NULL, NULL, s->h2, s->xe, &X->up, n);
        for (int r = 0; r < n; r++) {
            float *di = dinp + (size_t)s->rows[r] * D;
            const float *src = dxe + (size_t)r * D;
            for (int c = 0; c < D; c++) di[c] += src[c];
        }
    }
    float *dz = mallocCheck((size_t)N * E * sizeof(float));
    moe_router_grad(dz, s->router_logits, s->expert_of, s->weight_of, dw, N, E, k, renorm);
    matmul_backward(dinp, tensor_grad_data(&G->router), NULL, dz, inp, &L->router, N);
    free(dz);
    free(dw);
    free(act);
    free(dxe);
}
