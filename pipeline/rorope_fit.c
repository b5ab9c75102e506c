#include "pipeline/rorope_fit.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/linalg.h"
#include "dist/topology.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "model/attention.h"
#include "model/matmul.h"
#include "model/rope.h"
#include "pipeline/fit_stream.h"
#include "pipeline/rorope_fit_gpu.h"
#include "pipeline/stream.h"

int cayley(int n, const double *S, double *Q) {
    double *A = mallocCheck((size_t)n * n * sizeof *A);
    for (int i = 0; i < n * n; i++) {
        A[i] = -S[i];
        Q[i] = S[i];
    }
    for (int i = 0; i < n; i++) {
        A[i * n + i] += 1;
        Q[i * n + i] += 1;
    }
    int rc = dsolve(n, n, A, Q);
    free(A);
    return rc;
}

int fit_data_mb_count(const FitData *x) { return fit_mb_count(x->nseq, x->batch); }

int fit_data_mb(const FitData *x, int m, int64_t *row0) { return fit_mb(x->nseq, x->batch, x->T, m, row0); }

/* One micro-batch's buffers (N rows at most) and the rope head's table. */
typedef struct {
    int N, H, G, d, r, L, D;
    RopeTable rope;          /* the rope head's r/2 frequencies over T positions */
    int32_t *pos;
    float *pr;               /* [r, L] P's rope rows */
    float *u, *kn;           /* [N, r] P_rope k; [N, L] k - P_rope^T u */
    float *qb, *kb;          /* [N, H*(d+r)], [N, G*(d+r)]: [nope ; rope] per head */
    float *out, *lse, *e;    /* [N, H*d], [N, H], [N, D] error after o_proj */
    float *dd, *dq, *dk, *dv;
    float *dpr;              /* [r, L] */
    RoropeFitGpu *gpu;       /* PIPE_CUDA: the micro-batches there, and only pr, dpr, the table and pos here */
} Scratch;

static void scratch_init(Scratch *w, const FitProblem *p, const FitData *x) {
    const RoropeShape *s = &p->s;
    memset(w, 0, sizeof *w);
    int T = x->T, H = p->H, d = s->d, r = s->r, G = s->G, L = G * d, half = r / 2;
    int N = x->batch * T, D = (int)p->o_proj->rows, qk = d + r;
    *w = (Scratch){.N = N, .H = H, .G = G, .d = d, .r = r, .L = L, .D = D};
    w->rope = (RopeTable){.max_pos = T, .half = half};
    w->rope.cos = mallocCheck((size_t)T * half * sizeof(float));
    w->rope.sin = mallocCheck((size_t)T * half * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int q = 0; q < half; q++) { /* pair q turns at the original frequency q * collapse */
            double angle = t * p->inv_freq[q * s->collapse];
            w->rope.cos[t * half + q] = (float)cos(angle);
            w->rope.sin[t * half + q] = (float)sin(angle);
        }
    w->pos = mallocCheck((size_t)N * sizeof *w->pos);
    for (int i = 0; i < N; i++) w->pos[i] = i % T;
    w->pr = mallocCheck((size_t)r * L * sizeof(float));
    w->dpr = mallocCheck((size_t)r * L * sizeof(float));
    if (p->device == PIPE_CUDA) {
        if (rorope_fit_gpu_init(&w->gpu, p, x, &w->rope, w->pos)) tm_die("rorope fit: %s", tm_error());
        return;
    }
    w->u = mallocCheck((size_t)N * r * sizeof(float));
    w->kn = mallocCheck((size_t)N * L * sizeof(float));
    w->qb = mallocCheck((size_t)N * H * qk * sizeof(float));
    w->kb = mallocCheck((size_t)N * G * qk * sizeof(float));
    w->out = mallocCheck((size_t)N * H * d * sizeof(float));
    w->lse = mallocCheck((size_t)N * H * sizeof(float));
    w->e = mallocCheck((size_t)N * D * sizeof(float));
    w->dd = mallocCheck((size_t)N * H * d * sizeof(float));
    w->dq = mallocCheck((size_t)N * H * qk * sizeof(float));
    w->dk = mallocCheck((size_t)N * G * qk * sizeof(float));
    w->dv = mallocCheck((size_t)N * L * sizeof(float));
}

static void scratch_free(Scratch *w) {
    rope_table_free(&w->rope);
    float *bufs[] = {w->pr, w->dpr, w->u, w->kn, w->qb, w->kb, w->out, w->lse, w->e, w->dd, w->dq, w->dk, w->dv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(w->pos);
    rorope_fit_gpu_free(w->gpu);
}

/* Forward of one micro-batch (rows [row0, row0 + n) of x, B windows): the
 * converted attention output into w->out, and the summed squared error after
 * o_proj. */
static double mb_forward(Scratch *w, const FitProblem *p, const FitData *x, int64_t row0, int B) {
    int n = B * x->T, H = w->H, G = w->G, d = w->d, r = w->r, L = w->L, qk = d + r;
    const float *q = x->q + row0 * H * d, *k = x->k + row0 * L, *v = x->v + row0 * L, *o = x->o + row0 * H * d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, L, 1, k, L, w->pr, L, 0, w->u, r);
    memcpy(w->kn, k, (size_t)n * L * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, L, r, -1, w->u, r, w->pr, L, 1, w->kn, L);
    for (int64_t i = 0; i < n; i++)
        for (int g = 0; g < G; g++) {
            float *kb = w->kb + (i * G + g) * qk;
            memcpy(kb, w->kn + i * L + g * d, (size_t)d * sizeof(float));
            memcpy(kb + d, w->u + i * r, (size_t)r * sizeof(float));
        }
    for (int h = 0; h < H; h++) {
        int g = h / (H / G);
        for (int64_t i = 0; i < n; i++)
            memcpy(w->qb + (i * H + h) * qk, q + i * H * d + h * d, (size_t)d * sizeof(float));
        /* the rope part: P_rope restricted to the group's slot, applied to q_h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, d, 1, q + h * d, H * d, w->pr + g * d, L, 0,
                    w->qb + h * qk + d, H * qk);
    }
    RopeLayout ql = {.n_heads = H, .head_stride = qk, .offset = d}, kl = {.n_heads = G, .head_stride = qk, .offset = d};
    rope_forward_pos(w->qb, (int64_t)H * qk, &w->rope, n, w->pos, &ql);
    rope_forward_pos(w->kb, (int64_t)G * qk, &w->rope, n, w->pos, &kl);
    attention_forward(w->out, w->lse, w->qb, w->kb, v, B, x->T, H, G, qk, d, NULL, p->window,
                      (float)(1.0 / sqrt(p->score_dim)), (float)p->softcap);
    for (int64_t i = 0; i < (int64_t)n * H * d; i++) w->dd[i] = w->out[i] - o[i];
    matmul_forward(w->e, w->dd, p->o_proj, NULL, n, 0);
    double sum = 0;
    for (int64_t i = 0; i < (int64_t)n * w->D; i++) sum += (double)w->e[i] * w->e[i];
    return sum;
}

/* Backward of mb_forward's error sum: w->dpr = its gradient w.r.t. P's rope rows. */
static void mb_backward(Scratch *w, const FitProblem *p, const FitData *x, int64_t row0, int B) {
    int n = B * x->T, H = w->H, G = w->G, d = w->d, r = w->r, L = w->L, qk = d + r;
    const float *q = x->q + row0 * H * d, *k = x->k + row0 * L, *v = x->v + row0 * L;
    memset(w->dd, 0, (size_t)n * H * d * sizeof(float));
    matmul_backward(w->dd, NULL, NULL, w->e, NULL, p->o_proj, n);
    for (int64_t i = 0; i < (int64_t)n * H * d; i++) w->dd[i] *= 2;
    attention_backward(w->dq, w->dk, w->dv, w->dd, w->out, w->lse, w->qb, w->kb, v, B, x->T, H, G, qk, d,
                       NULL, p->window, (float)(1.0 / sqrt(p->score_dim)), (float)p->softcap);
    RopeLayout ql = {.n_heads = H, .head_stride = qk, .offset = d}, kl = {.n_heads = G, .head_stride = qk, .offset = d};
    rope_backward_pos(w->dq, (int64_t)H * qk, &w->rope, n, w->pos, &ql);
    rope_backward_pos(w->dk, (int64_t)G * qk, &w->rope, n, w->pos, &kl);
    /* reuse kn as E = d/d(k - P_rope^T u) and u's gradient: the heads' rope parts summed */
    float *E = w->kn, *du = w->dv; /* dv is not needed: values do not depend on P */
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < r; j++) du[i * r + j] = 0;
        for (int g = 0; g < G; g++) {
            const float *dk = w->dk + (i * G + g) * qk;
            memcpy(E + i * L + g * d, dk, (size_t)d * sizeof(float));
            for (int j = 0; j < r; j++) du[i * r + j] += dk[d + j];
        }
    }
    /* u = P_rope k and kn = k - P_rope^T u: dP_rope = (du - E P_rope^T)^T k - u^T E */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, L, -1, E, L, w->pr, L, 1, du, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, L, n, 1, du, r, k, L, 0, w->dpr, L);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, L, n, -1, w->u, r, E, L, 1, w->dpr, L);
    for (int h = 0; h < H; h++) { /* queries: the rope part of head h is P_rope[:, slot g] q_h */
        int g = h / (H / G);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, d, n, 1, w->dq + h * qk + d, H * qk, q + h * d, H * d,
                    1, w->dpr + g * d, L);
    }
}

/* One micro-batch on the CPU or the GPU: its error sum; with grad, its
 * gradient in w->dpr; out (optional): its converted attention output. */
static double mb_pass(Scratch *w, const FitProblem *p, const FitData *x, int64_t row0, int B, int grad, float *out) {
    double sum;
    if (w->gpu) {
        if (rorope_fit_gpu_mb(w->gpu, p, x, row0, B, &sum, grad ? w->dpr : NULL, out))
            tm_die("rorope fit: %s", tm_error());
        return sum;
    }
    sum = mb_forward(w, p, x, row0, B);
    if (out) memcpy(out, w->out, (size_t)B * x->T * p->H * w->d * sizeof(float));
    if (grad) mb_backward(w, p, x, row0, B);
    return sum;
}

/* Every rank's per-micro-batch rows [1 + width] gathered into all[mb_total]
 * in micro-batch order. */
static void gather_parts(const FitProblem *p, const double *mine, int n_mine, int width, double *all) {
    int size;
    MPI_Comm_size(p->comm, &size);
    int info[2] = {p->mb_first, n_mine}, *infos = mallocCheck((size_t)2 * size * sizeof *infos);
    int *counts = mallocCheck((size_t)size * sizeof *counts), *displs = mallocCheck((size_t)size * sizeof *displs);
    MPI_Allgather(info, 2, MPI_INT, infos, 2, MPI_INT, p->comm);
    for (int i = 0; i < size; i++) {
        displs[i] = infos[2 * i] * width;
        counts[i] = infos[2 * i + 1] * width;
    }
    MPI_Allgatherv(mine, n_mine * width, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, p->comm);
    free(infos);
    free(counts);
    free(displs);
}

/* Bases V' = Cayley(S_b) V_b, and the Q_b (NULL: not wanted). */
static int turned_bases(const RoropeShape *s, const double *V, const double *S, double *Vt, double *Qs) {
    int nb = rorope_buckets(s), n = rorope_bucket_size(s), rc = 0;
    double *Q = mallocCheck((size_t)n * n * sizeof *Q);
    for (int b = 0; b < nb && !rc; b++) {
        int64_t o = (int64_t)b * n * n;
        rc = cayley(n, S + o, Q);
        if (!rc) dgemm_rm(0, 0, n, n, n, Q, V + o, Vt + o);
        if (!rc && Qs) memcpy(Qs + o, Q, (size_t)n * n * sizeof *Q);
    }
    free(Q);
    return rc;
}

/* rorope_fit_objective with the caller's scratch (made once per layer fit). */
static double objective(Scratch *w, const FitProblem *p, const FitData *x, const double *V, const double *S,
                        double *dS, float *o_fit) {
    const RoropeShape *s = &p->s;
    int nb = rorope_buckets(s), n = rorope_bucket_size(s), L = s->G * s->d, r = s->r;
    int64_t nn = (int64_t)nb * n * n;
    double *Vt = mallocCheck((size_t)nn * sizeof *Vt), *Qs = mallocCheck((size_t)nn * sizeof *Qs);
    double *P = mallocCheck((size_t)L * L * sizeof *P);
    if (turned_bases(s, V, S, Vt, Qs)) tm_die("rorope fit: %s", tm_error()); /* I - S with S skew is never singular */
    rorope_assemble(Vt, s, P);
    for (int64_t i = 0; i < (int64_t)r * L; i++) w->pr[i] = (float)P[i];
    if (w->gpu) rorope_fit_gpu_rotation(w->gpu, w->pr);

    /* each micro-batch alone: [error sum, dP_rope (r*L)] */
    int n_mb = fit_data_mb_count(x), width = 1 + (dS ? r * L : 0);
    double *mine = callocCheck((size_t)(n_mb ? n_mb : 1) * width, sizeof *mine);
    for (int m = 0; m < n_mb; m++) {
        int64_t row0;
        int B = fit_data_mb(x, m, &row0);
        double *part = mine + (int64_t)m * width;
        part[0] = mb_pass(w, p, x, row0, B, dS != NULL, o_fit ? o_fit + row0 * p->H * s->d : NULL);
        for (int64_t i = 0; dS && i < (int64_t)r * L; i++) part[1 + i] = w->dpr[i];
    }
    double *all = mallocCheck((size_t)p->mb_total * width * sizeof *all);
    gather_parts(p, mine, n_mb, width, all);
    double *sum = callocCheck((size_t)width, sizeof *sum);
    for (int m = 0; m < p->mb_total; m++)
        for (int i = 0; i < width; i++) sum[i] += all[(int64_t)m * width + i];
    long long tokens = 0, mine_tokens = (long long)x->nseq * x->T;
    MPI_Allreduce(&mine_tokens, &tokens, 1, MPI_LONG_LONG, MPI_SUM, p->comm);
    double norm = 1.0 / ((double)tokens * w->D), mse = sum[0] * norm;

    if (dS) { /* dP -> dV' -> dQ_b = dV'_b V_b^T -> dS_b = (I + S_b)^-1 dQ_b (Q_b + I)^T, made skew */
        memset(P, 0, (size_t)L * L * sizeof *P);
        for (int64_t i = 0; i < (int64_t)r * L; i++) P[i] = sum[1 + i] * norm;
        double *dVt = mallocCheck((size_t)nn * sizeof *dVt), *dQ = mallocCheck((size_t)n * n * sizeof *dQ);
        double *A = mallocCheck((size_t)n * n * sizeof *A), *QI = mallocCheck((size_t)n * n * sizeof *QI);
        rorope_assemble_adjoint(P, s, dVt);
        for (int b = 0; b < nb; b++) {
            int64_t o = (int64_t)b * n * n;
            dgemm_rm(0, 1, n, n, n, dVt + o, V + o, dQ);
            for (int i = 0; i < n * n; i++) QI[i] = Qs[o + i];
            for (int i = 0; i < n; i++) QI[i * n + i] += 1;
            dgemm_rm(0, 1, n, n, n, dQ, QI, A); /* dQ (Q + I)^T */
            for (int i = 0; i < n * n; i++) QI[i] = S[o + i];
            for (int i = 0; i < n; i++) QI[i * n + i] += 1;
            if (dsolve(n, n, QI, A)) tm_die("rorope fit: %s", tm_error());
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) dS[o + i * n + j] = A[i * n + j] - A[j * n + i];
        }
        free(dVt);
        free(dQ);
        free(A);
        free(QI);
    }
    free(sum);
    free(all);
    free(mine);
    free(P);
    free(Vt);
    free(Qs);
    return mse;
}

double rorope_fit_objective(const FitProblem *p, const FitData *x, const double *V, const double *S, double *dS,
                            float *o_fit) {
    Scratch w;
    scratch_init(&w, p, x);
    double mse = objective(&w, p, x, V, S, dS, o_fit);
    scratch_free(&w);
    return mse;
}

/* Entry i of the stacked S_b mixes two components that both lose RoPE.
 * Such mixes change no score, so at S = 0 the objective does not depend on
 * them; left free, Adam (scale-free) would turn their rounding-noise
 * gradients into full-size steps. They stay at 0. */
static int nope_pair(const RoropeShape *s, int64_t i) {
    int n = rorope_bucket_size(s), keep = s->freqfold / s->collapse;
    return (i % ((int64_t)n * n)) / n >= keep && i % n >= keep;
}

int rorope_fit_layer(const FitProblem *p, const FitData *x, double *P, FitResult *res, float *o_fit) {
    const RoropeShape *s = &p->s;
    double t0 = tm_now_s();
    int64_t nn = (int64_t)rorope_buckets(s) * rorope_bucket_size(s) * rorope_bucket_size(s);
    double *V = mallocCheck((size_t)nn * sizeof *V), *S = callocCheck((size_t)nn, sizeof *S);
    double *best = callocCheck((size_t)nn, sizeof *best), *g = mallocCheck((size_t)nn * sizeof *g);
    double *m1 = callocCheck((size_t)nn, sizeof *m1), *m2 = callocCheck((size_t)nn, sizeof *m2);
    rorope_extract(P, s, V);
    int blas_threads = matmul_threads_for(p->o_proj->rows * p->o_proj->cols);
    Scratch w;
    scratch_init(&w, p, x);
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double first = 0, lowest = INFINITY;
    int best_step = 0, stopped = 0;
    for (int step = 0; step <= p->steps; step++) {
        double mse = objective(&w, p, x, V, S, step < p->steps ? g : NULL, NULL);
        if (step == 0) first = mse;
        if (mse < lowest) {
            lowest = mse;
            best_step = step;
            memcpy(best, S, (size_t)nn * sizeof *S);
        }
        if (step == p->steps || first == 0) break; /* nothing to fit in an exact layer */
        if ((stopped = dist_stop_signal(p->comm) != 0)) break; /* at scale a layer takes minutes */
        /* Adam on the objective relative to its start */
        double b1 = 1 - pow(beta1, step + 1), b2 = 1 - pow(beta2, step + 1);
        for (int64_t i = 0; i < nn; i++) {
            if (nope_pair(s, i)) continue;
            double gi = g[i] / first;
            m1[i] = beta1 * m1[i] + (1 - beta1) * gi;
            m2[i] = beta2 * m2[i] + (1 - beta2) * gi * gi;
            S[i] -= p->lr * (m1[i] / b1) / (sqrt(m2[i] / b2) + eps);
        }
    }
    double *Vt = mallocCheck((size_t)nn * sizeof *Vt);
    int rc = stopped ? FIT_STOPPED : turned_bases(s, V, best, Vt, NULL);
    if (!rc) rorope_assemble(Vt, s, P);
    if (!rc && o_fit) objective(&w, p, x, V, best, NULL, o_fit);
    scratch_free(&w);
    matmul_threads_restore(blas_threads);
    *res = (FitResult){.mse_before = first, .mse_after = lowest, .best_step = best_step, .seconds = tm_now_s() - t0};
    free(V);
    free(S);
    free(best);
    free(g);
    free(m1);
    free(m2);
    free(Vt);
    return rc;
}

int rorope_fit_stream_cols(const ModelConfig *c, int sequential, int last_stage) {
    int D = c->hidden_size, Hd = c->n_heads * c->head_dim, L = c->n_kv_heads * c->head_dim;
    return D + 2 * Hd + 2 * L + (sequential ? Hd : last_stage ? 0 : D);
}
