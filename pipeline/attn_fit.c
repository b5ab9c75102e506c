#include "pipeline/attn_fit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/chunked.h"
#include "dist/ordered_sum.h"
#include "dist/topology.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "model/matmul.h"
#include "model/mla.h"
#include "pipeline/attn_fit_gpu.h"
#include "pipeline/fit_stream.h"

/* ---- parameters ---- */

static float *to_f32(const double *src, int64_t n, double fill) {
    float *w = mallocCheck((size_t)(n ? n : 1) * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = (float)(src ? src[i] : fill);
    return w;
}

static Tensor f32_tensor(const float *data, int64_t rows, int64_t cols) {
    return (Tensor){.data = data, .dtype = TM_F32, .rows = rows, .cols = cols};
}

/* A parameter from src (NULL: every element `fill`), with a zeroed gradient. */
static AttnParam *add_param(AttnParams *P, const char *name, const double *src, int64_t n, double fill) {
    AttnParam *q = &P->p[P->n++];
    *q = (AttnParam){.name = name, .w = to_f32(src, n, fill), .g = callocCheck((size_t)(n ? n : 1), sizeof(float)),
                     .n = n};
    P->total += n;
    return q;
}

/* The weight tensor and its gradient view of a [rows, cols] parameter. */
static void bind_matrix(const AttnParam *q, int64_t rows, int64_t cols, Tensor *w, Tensor *g) {
    *w = f32_tensor(q->w, rows, cols);
    *g = f32_tensor(q->g, rows, cols);
}

void attn_params_init(AttnParams *P, const AttnFitProblem *p, const MlaAttn *a, const Tensor *o_orig,
                      const float *o_bias) {
    memset(P, 0, sizeof *P);
    int64_t D = a->D, qk = (int64_t)a->H * (a->dn + a->dr), kvb = (int64_t)a->H * (a->dn + a->dv);
    int64_t lw = a->R + a->dr, Hdv = (int64_t)a->H * a->dv;
    LayerWeights *L = &P->L, *G = &P->G;
    if (a->Rq) {
        bind_matrix(add_param(P, "q_a", a->q_a, a->Rq * D, 0), a->Rq, D, &L->q_a, &G->q_a);
        if (a->q_a_bias) {
            AttnParam *b = add_param(P, "q_a_bias", a->q_a_bias, a->Rq, 0);
            L->q_a_bias = b->w, G->q_a_bias = b->g;
        }
        AttnParam *n = add_param(P, "q_a_norm", a->q_norm_w, a->Rq, a->q_norm);
        L->q_a_norm = n->w, G->q_a_norm = n->g;
        bind_matrix(add_param(P, "q_b", a->q_b, qk * a->Rq, 0), qk, a->Rq, &L->q_b, &G->q_b);
    } else {
        bind_matrix(add_param(P, "q", a->q, qk * D, 0), qk, D, &L->q, &G->q);
    }
    bind_matrix(add_param(P, "kv_a", a->kv_a, lw * D, 0), lw, D, &L->kv_a, &G->kv_a);
    if (a->kv_a_bias) {
        AttnParam *b = add_param(P, "kv_a_bias", a->kv_a_bias, lw, 0);
        L->kv_a_bias = b->w, G->kv_a_bias = b->g;
    }
    /* the export's norm: a fitted weight, else 1 in front of the kv_b fitted to it, else the latent's RMS */
    AttnParam *n = add_param(P, "kv_a_norm", a->kv_norm_w, a->R, a->kv_b_native ? 1.0 : a->kv_norm);
    L->kv_a_norm = n->w, G->kv_a_norm = n->g;
    bind_matrix(add_param(P, "kv_b", a->kv_b_native ? a->kv_b_native : a->kv_b, kvb * a->R, 0), kvb, a->R, &L->kv_b,
                &G->kv_b);
    float *o = mallocCheck((size_t)(D * Hdv) * sizeof *o);
    if (a->o) {
        for (int64_t i = 0; i < D * Hdv; i++) o[i] = (float)a->o[i];
    } else {
        tensor_to_f32(o_orig, 0, D * Hdv, o);
    }
    if (p->fit_o) {
        AttnParam *q = add_param(P, "o", NULL, D * Hdv, 0);
        free(q->w);
        q->w = o;
        bind_matrix(q, D, Hdv, &L->o, &G->o);
    } else {
        P->p[ATTN_MAX_PARAMS] = (AttnParam){.name = "o (frozen)", .w = o, .n = D * Hdv};
        L->o = f32_tensor(o, D, Hdv);
    }
    L->o_bias = (float *)o_bias;
}

void attn_params_free(AttnParams *P) {
    for (int i = 0; i < P->n; i++) {
        free(P->p[i].w);
        free(P->p[i].g);
    }
    free(P->p[ATTN_MAX_PARAMS].w);
    memset(P, 0, sizeof *P);
}

static const AttnParam *param(const AttnParams *P, const char *name) {
    for (int i = 0; i < P->n; i++)
        if (!strcmp(P->p[i].name, name)) return &P->p[i];
    return NULL;
}

/* dst (float64, allocated when NULL) = the parameter's values. */
static void store(const AttnParams *P, const char *name, double **dst) {
    const AttnParam *q = param(P, name);
    if (!q) return;
    if (!*dst) *dst = mallocCheck((size_t)q->n * sizeof **dst);
    for (int64_t i = 0; i < q->n; i++) (*dst)[i] = q->w[i];
}

void attn_params_store(const AttnParams *P, MlaAttn *a) {
    store(P, "q", &a->q);
    store(P, "q_a", &a->q_a);
    store(P, "q_a_bias", &a->q_a_bias);
    store(P, "q_a_norm", &a->q_norm_w);
    store(P, "q_b", &a->q_b);
    store(P, "kv_a", &a->kv_a);
    store(P, "kv_a_bias", &a->kv_a_bias);
    store(P, "kv_a_norm", &a->kv_norm_w);
    store(P, "kv_b", &a->kv_b_native);
    store(P, "o", &a->o);
    free(a->q_bias); /* DeepSeek's q_proj has none; the fitted weights make up for it */
    a->q_bias = NULL;
}

/* ---- the objective ---- */

/* One micro-batch's activations and the positions of its rows, on the
 * CPU or (PIPE_CUDA) the GPU's. */
typedef struct {
    MlaActs acts;
    RopeTable rope;
    int32_t *pos;
    float *e; /* [N, D] the block's output minus y */
    AttnFitGpu *gpu;
} Scratch;

static void scratch_init(Scratch *w, const AttnFitProblem *p, const AttnFitData *x) {
    const ModelConfig *c = p->c;
    int N = x->batch * x->T;
    memset(w, 0, sizeof *w);
    rope_table_init(&w->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, x->T);
    w->pos = mallocCheck((size_t)N * sizeof *w->pos);
    for (int i = 0; i < N; i++) w->pos[i] = i % x->T;
    if (p->device == PIPE_CUDA) {
        if (attn_fit_gpu_init(&w->gpu, p, x->batch, x->T, &w->rope, w->pos)) tm_die("attn-fit: %s", tm_error());
        return;
    }
    mla_acts_init(&w->acts, c, N, 1, 0);
    w->e = mallocCheck((size_t)N * c->hidden_size * sizeof *w->e);
}

static void scratch_free(Scratch *w) {
    mla_acts_free(&w->acts);
    rope_table_free(&w->rope);
    free(w->pos);
    free(w->e);
    attn_fit_gpu_free(w->gpu);
}

/* P's current weights to the GPU (nothing on the CPU, which reads P's own). */
static void scratch_weights(Scratch *w, const AttnFitProblem *p, const AttnParams *P) {
    if (w->gpu && attn_fit_gpu_weights(w->gpu, p, P)) tm_die("attn-fit: %s", tm_error());
}

static int local_mbs(const AttnFitData *x) { return fit_mb_count(x->nseq, x->batch); }

/* Micro-batch lm of this rank: its windows, first row in row0. */
static int local_mb(const AttnFitData *x, int lm, int64_t *row0) { return fit_mb(x->nseq, x->batch, x->T, lm, row0); }

static double local_pass(Scratch *w, const AttnFitProblem *p, const AttnFitData *x, AttnParams *P, int m0, int m1,
                         int stride, double norm, int grad, float *y_fit) {
    const ModelConfig *c = p->c;
    int D = c->hidden_size;
    double sum = 0;
    for (int m = m0; m < m1; m += stride) {
        int lm = m - p->mb_first;
        if (lm < 0 || lm >= local_mbs(x)) continue;
        int64_t row0;
        int B = local_mb(x, lm, &row0), n = B * x->T;
        const float *xn = x->xn + row0 * D, *y = x->y + row0 * D;
        if (w->gpu) {
            double s;
            if (attn_fit_gpu_mb(w->gpu, p, xn, y, B, norm, grad, P, y_fit ? y_fit + row0 * D : NULL, &s))
                tm_die("attn-fit: %s", tm_error());
            sum += s;
            continue;
        }
        for (int64_t i = 0; i < (int64_t)n * D; i++) w->e[i] = -y[i];
        LayerRows rows = {.B = B, .T = x->T, .pos = w->pos, .rope = &w->rope};
        mla_forward(c, &P->L, p->layer, xn, w->e, &rows, &w->acts);
        double s = 0;
        for (int64_t i = 0; i < (int64_t)n * D; i++) s += (double)w->e[i] * w->e[i];
        sum += s;
        if (y_fit)
            for (int64_t i = 0; i < (int64_t)n * D; i++) y_fit[row0 * D + i] = w->e[i] + y[i];
        if (!grad) continue;
        float scale = (float)(2.0 / norm);
        for (int64_t i = 0; i < (int64_t)n * D; i++) w->e[i] *= scale;
        mla_backward(c, &P->L, &P->G, p->layer, xn, w->e, NULL, &rows, &w->acts);
    }
    return sum / norm;
}

double attn_fit_local(const AttnFitProblem *p, const AttnFitData *x, AttnParams *P, int m0, int m1, double norm,
                      int grad, float *y_fit) {
    Scratch w;
    scratch_init(&w, p, x);
    scratch_weights(&w, p, P);
    double v = local_pass(&w, p, x, P, m0, m1, 1, norm, grad, y_fit);
    scratch_free(&w);
    return v;
}

/* Tokens x D of global micro-batches m0, m0 + stride, ... below m1, given
 * the windows of all of comm. */
static double elements(const AttnFitProblem *p, const AttnFitData *x, int64_t windows, int m0, int m1, int stride) {
    double n = 0;
    for (int m = m0; m < m1; m += stride) {
        int64_t left = windows - (int64_t)m * x->batch;
        n += (double)(left < x->batch ? left : x->batch) * x->T;
    }
    return n * p->c->hidden_size;
}

static int64_t all_windows(const AttnFitProblem *p, const AttnFitData *x) {
    long long mine = x->nseq, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_LONG_LONG, MPI_SUM, p->comm);
    return all;
}

static void zero_grads(AttnParams *P) {
    for (int i = 0; i < P->n; i++) memset(P->p[i].g, 0, (size_t)P->p[i].n * sizeof(float));
}

/* This rank's items among micro-batches m0, m0 + stride, ... (K of them):
 * [*k0, *k0 + count). */
static int local_items(const AttnFitProblem *p, const AttnFitData *x, int m0, int stride, int K, int *k0) {
    int count = 0;
    *k0 = 0;
    for (int k = 0; k < K; k++) {
        int lm = m0 + k * stride - p->mb_first;
        if (lm < 0 || lm >= local_mbs(x)) continue;
        if (count++ == 0) *k0 = k;
    }
    return count;
}

/* The error over micro-batches m0, m0+stride, ... < m1 of all of comm (NAN
 * when there are none); with grad, its gradient in P's g. Each micro-batch's
 * error and gradient is computed alone and they are added in micro-batch
 * order on every rank (dist/ordered_sum.h), so any layout of replicas gives
 * the one-process result bit for bit. */
static double pass(Scratch *w, const AttnFitProblem *p, const AttnFitData *x, AttnParams *P, int64_t windows, int m0,
                   int m1, int stride, int grad, float *y_fit) {
    double norm = elements(p, x, windows, m0, m1, stride);
    if (norm == 0) return NAN;
    scratch_weights(w, p, P); /* Adam or keep() changed them since the last pass */
    int K = (m1 - m0 + stride - 1) / stride, k0;
    int count = local_items(p, x, m0, stride, K, &k0);
    double *loss = callocCheck((size_t)K, sizeof *loss);
    OrderedSum g;
    if (grad) ordered_sum_init(&g, p->comm, P->total, k0, count);
    for (int k = k0; k < k0 + count; k++) {
        int m = m0 + k * stride;
        if (grad) zero_grads(P);
        loss[k] = local_pass(w, p, x, P, m, m + 1, 1, norm, grad, y_fit);
        for (int64_t i = 0, off = 0; grad && i < P->n; off += P->p[i].n, i++)
            ordered_sum_add(&g, k, off, P->p[i].g, P->p[i].n);
    }
    chunked_sum_f64(loss, K, p->comm); /* each filled on one rank, zero elsewhere: exact in any order */
    double v = 0;
    for (int k = 0; k < K; k++) v += loss[k];
    if (grad) {
        ordered_sum_finish(&g);
        for (int64_t i = 0, off = 0; i < P->n; off += P->p[i].n, i++)
            memcpy(P->p[i].g, g.sum + off, (size_t)P->p[i].n * sizeof(float));
        ordered_sum_free(&g);
    }
    free(loss);
    return v;
}

double attn_fit_objective(const AttnFitProblem *p, const AttnFitData *x, AttnParams *P, int grad) {
    Scratch w;
    scratch_init(&w, p, x);
    double v = pass(&w, p, x, P, all_windows(p, x), 0, p->mb_total - p->held, 1, grad, NULL);
    scratch_free(&w);
    return v;
}

/* ---- Adam ---- */

typedef struct {
    float *m1, *m2, *best; /* per parameter element, all parameters end to end */
} AdamState;

static void adam_step(AttnParams *P, AdamState *s, int step, double lr, double scale) {
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double b1 = 1 - pow(beta1, step + 1), b2 = 1 - pow(beta2, step + 1);
    int64_t off = 0;
    for (int i = 0; i < P->n; i++) {
        const AttnParam *q = &P->p[i];
        float *m1 = s->m1 + off, *m2 = s->m2 + off;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < q->n; j++) {
            double g = q->g[j] * scale;
            m1[j] = (float)(beta1 * m1[j] + (1 - beta1) * g);
            m2[j] = (float)(beta2 * m2[j] + (1 - beta2) * g * g);
            q->w[j] -= (float)(lr * (m1[j] / b1) / (sqrt(m2[j] / b2) + eps));
        }
        off += q->n;
    }
}

/* Copy every parameter into (to_best) or out of s->best. */
static void keep(AttnParams *P, AdamState *s, int to_best) {
    int64_t off = 0;
    for (int i = 0; i < P->n; i++) {
        size_t bytes = (size_t)P->p[i].n * sizeof(float);
        if (to_best) memcpy(s->best + off, P->p[i].w, bytes);
        else memcpy(P->p[i].w, s->best + off, bytes);
        off += P->p[i].n;
    }
}

int attn_fit_stream_cols(const ModelConfig *c, int sequential, int last_stage) {
    int D = c->hidden_size;
    return 3 * D + (sequential ? 2 * D : last_stage ? 0 : D);
}

uint64_t attn_fit_state_bytes(const ModelConfig *mla, int fit_o, int batch, int T, int mbs_per_step, int replicas) {
    const MlaConfig *m = &mla->mla;
    int64_t D = mla->hidden_size, H = mla->n_heads, R = m->kv_lora_rank, Rq = m->q_lora_rank;
    int64_t qk = H * (m->qk_nope_head_dim + m->qk_rope_head_dim), dr = m->qk_rope_head_dim;
    int64_t params = (Rq ? Rq * D + Rq + qk * Rq : qk * D) + (R + dr) * D + R +
                     H * ((int64_t)m->qk_nope_head_dim + m->v_head_dim) * R + (fit_o ? D * H * m->v_head_dim : 0);
    int N = batch * T;
    int share = replicas > 1 ? (mbs_per_step + replicas - 1) / replicas : mbs_per_step;
    return (uint64_t)params * sizeof(float) * 5 + ordered_sum_bytes(params, share, replicas == 1) +
           mla_acts_bytes(mla, N) + (uint64_t)N * D * sizeof(float);
}

int attn_fit_layer(const AttnFitProblem *p, const AttnFitData *x, MlaAttn *a, const Tensor *o_orig,
                   const float *o_bias, AttnFitResult *res, float *y_fit) {
    double t0 = tm_now_s();
    AttnParams P;
    attn_params_init(&P, p, a, o_orig, o_bias);
    int blas_threads = matmul_threads_for(P.L.o.rows * P.L.o.cols);
    AdamState s = {callocCheck((size_t)P.total, sizeof(float)), callocCheck((size_t)P.total, sizeof(float)),
                   mallocCheck((size_t)P.total * sizeof(float))};
    Scratch w;
    scratch_init(&w, p, x);
    int64_t windows = all_windows(p, x);
    int replicas;
    MPI_Comm_size(p->comm, &replicas);
    uint64_t bytes = attn_fit_state_bytes(p->c, p->fit_o, x->batch, x->T, p->per_step > 0 ? p->per_step : p->mb_total,
                                          replicas);
    int train = p->mb_total - p->held, held = p->held > 0 && train > 0;
    if (!held) train = p->mb_total;
    int stride = p->per_step > 0 && p->per_step < train ? (train + p->per_step - 1) / p->per_step : 1;
    *res = (AttnFitResult){.held_before = NAN, .held_after = NAN, .bytes = bytes};
    res->train_before = pass(&w, p, x, &P, windows, 0, train, 1, 0, NULL);
    double lowest = INFINITY, first = 0;
    int stopped = 0;
    for (int step = 0; step <= p->steps; step++) {
        /* the weights judged on held-back data (without any: on the training data) every
         * ATTN_JUDGE_EVERY steps and after the last: judging each step cost 30% of the fit */
        int judge = step % ATTN_JUDGE_EVERY == 0 || step == p->steps;
        double judged = !judge ? INFINITY
                        : held ? pass(&w, p, x, &P, windows, train, p->mb_total, 1, 0, NULL)
                        : step ? pass(&w, p, x, &P, windows, 0, train, 1, 0, NULL) : res->train_before;
        if (step == 0) res->held_before = held ? judged : NAN;
        if (judged < lowest) {
            lowest = judged;
            res->best_step = step;
            keep(&P, &s, 1);
        }
        if (step == p->steps || res->train_before == 0) break;
        if ((stopped = dist_stop_signal(p->comm) != 0)) break; /* at scale a layer takes minutes */
        double v = pass(&w, p, x, &P, windows, step % stride, train, stride, 1, NULL);
        if (step == 0) first = v > 0 ? v : 1;
        adam_step(&P, &s, step, p->lr, 1.0 / first); /* on the error relative to its start: eps means the same everywhere */
    }
    if (!stopped) {
        keep(&P, &s, 0);
        res->train_after = pass(&w, p, x, &P, windows, 0, train, 1, 0, y_fit);
        if (held) res->held_after = pass(&w, p, x, &P, windows, train, p->mb_total, 1, 0, y_fit);
        attn_params_store(&P, a);
    }
    res->seconds = tm_now_s() - t0;
    matmul_threads_restore(blas_threads);
    scratch_free(&w);
    attn_params_free(&P);
    free(s.m1);
    free(s.m2);
    free(s.best);
    return stopped ? ATTN_FIT_STOPPED : 0;
}
