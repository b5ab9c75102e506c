/* The rotation fit's micro-batches on a GPU (rorope_fit_gpu.h). Without
 * CUDA built in, rorope_fit_gpu_init says so. */
#include "pipeline/rorope_fit_gpu.h"

#include <math.h>
#include <stdlib.h>

#include "io/base/checked.h"
#include "io/base/error.h"

#ifdef TRANSMLA_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "model/cuda/attention_cuda.h"
#include "model/cuda/grad_kernels.h"
#include "model/cuda/kernels.h"
#include "model/cuda/layer_gpu.h"

struct RoropeFitGpu {
    GpuCtx g;
    GpuMat o_proj; /* fp32 */
    GpuRowsBuf rows_buf;
    GpuRows rows;
    int H, G, d, r, L, D, qk;
    int resident;         /* q, k, v, o of all of x's rows uploaded once */
    float *q, *k, *v, *o; /* [rows, H*d], [rows, L], [rows, L], [rows, H*d]: all of x's, or one micro-batch's */
    float *pr, *dpr;      /* [r, L] P's rope rows and their gradient */
    float *u, *kn;        /* [N, r], [N, L] as the CPU's Scratch */
    float *qb, *kb, *out, *lse, *e, *dd, *dq, *dk, *dv, *delta;
    double *sq;
};

/* Whether bytes fit in half the device's free memory. */
static int fits(size_t bytes) {
    size_t free_b = 0, total = 0;
    return cudaMemGetInfo(&free_b, &total) == cudaSuccess && bytes <= free_b / 2;
}

static void alloc_scratch(RoropeFitGpu *f, size_t N, size_t rows) {
    int H = f->H, G = f->G, d = f->d, r = f->r, L = f->L, qk = f->qk;
    float **data[] = {&f->q, &f->k, &f->v, &f->o};
    size_t widths[] = {(size_t)H * d, (size_t)L, (size_t)L, (size_t)H * d};
    for (int i = 0; i < 4; i++) *data[i] = gpu_alloc(rows * widths[i] * sizeof(float));
    struct {
        float **p;
        size_t n;
    } bufs[] = {{&f->pr, (size_t)r * L},       {&f->dpr, (size_t)r * L},   {&f->u, N * r},
                {&f->kn, N * L},               {&f->qb, N * H * qk},       {&f->kb, N * G * qk},
                {&f->out, N * H * d},          {&f->lse, N * H},           {&f->e, N * f->D},
                {&f->dd, N * H * d},           {&f->dq, N * H * qk},       {&f->dk, N * G * qk},
                {&f->dv, N * (L > r ? L : r)}, {&f->delta, N * H}};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) *bufs[i].p = gpu_alloc(bufs[i].n * sizeof(float));
    f->sq = gpu_alloc(sizeof(double));
}

int rorope_fit_gpu_init(RoropeFitGpu **out, const FitProblem *p, const FitData *x, const RopeTable *rope,
                        const int32_t *pos) {
    *out = NULL;
    int count = gpu_count();
    if (count == 0) return tm_fail("--device cuda: no GPU is visible to this process");
    RoropeFitGpu *f = callocCheck(1, sizeof *f);
    if (gpu_ctx_init(&f->g, p->local_rank % count, GPU_FP32)) {
        gpu_ctx_free(&f->g);
        free(f);
        return -1;
    }
    const RoropeShape *s = &p->s;
    f->H = p->H, f->G = s->G, f->d = s->d, f->r = s->r, f->L = s->G * s->d, f->D = (int)p->o_proj->rows;
    f->qk = s->d + s->r;
    size_t N = (size_t)x->batch * x->T, all = (size_t)x->nseq * x->T;
    size_t per_row = (size_t)(2 * f->H * f->d + 2 * f->L) * sizeof(float);
    f->resident = fits(all * per_row);
    alloc_scratch(f, N, f->resident ? all : N);
    if (f->resident) {
        gpu_upload(f->q, x->q, all * f->H * f->d * sizeof(float));
        gpu_upload(f->k, x->k, all * f->L * sizeof(float));
        gpu_upload(f->v, x->v, all * f->L * sizeof(float));
        gpu_upload(f->o, x->o, all * f->H * f->d * sizeof(float));
    }
    gpu_mat_upload(&f->o_proj, &f->g, p->o_proj);
    gpu_rows_upload(&f->rows_buf, &f->rows, rope, x->batch, x->T, pos, NULL);
    *out = f;
    return 0;
}

void rorope_fit_gpu_free(RoropeFitGpu *f) {
    if (!f) return;
    void *bufs[] = {f->q,  f->k,  f->v,   f->o,  f->pr, f->dpr, f->u,  f->kn,    f->qb, f->kb,
                    f->out, f->lse, f->e, f->dd, f->dq, f->dk,  f->dv, f->delta, f->sq};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) gpu_free(bufs[i]);
    gpu_mat_free(&f->o_proj);
    gpu_rows_free(&f->rows_buf);
    gpu_ctx_free(&f->g);
    free(f);
}

void rorope_fit_gpu_rotation(RoropeFitGpu *f, const float *pr) {
    gpu_upload(f->pr, pr, (size_t)f->r * f->L * sizeof(float));
}

/* mb_forward (rorope_fit.c) on the device: the error after o_proj in f->e. */
static int forward(RoropeFitGpu *f, const FitProblem *p, const float *q, const float *k, const float *v,
                   const float *o, int B, int T) {
    GpuCtx *g = &f->g;
    cudaStream_t s = (cudaStream_t)g->stream;
    int n = B * T, H = f->H, G = f->G, d = f->d, r = f->r, L = f->L, qk = f->qk;
    if (gpu_gemm_rm(g, 0, 1, n, r, L, 1, k, L, f->pr, L, 0, f->u, r)) return -1;
    gpu_copy(g, f->kn, k, (size_t)n * L);
    if (gpu_gemm_rm(g, 0, 0, n, L, r, -1, f->u, r, f->pr, L, 1, f->kn, L)) return -1;
    /* each group's key [kn_g ; u] is MLA's [nope ; the shared rope key] with G heads */
    cuda_mla_heads(f->kb, NULL, f->kn, f->u, n, G, d, r, 0, 0, s);
    cuda_copy_rows(f->qb, qk, q, d, (int64_t)n * H, d, s);
    for (int h = 0; h < H; h++) /* the rope part: P_rope restricted to the group's slot, applied to q_h */
        if (gpu_gemm_rm(g, 0, 1, n, r, d, 1, q + h * d, H * d, f->pr + h / (H / G) * d, L, 0, f->qb + h * qk + d,
                        H * qk))
            return -1;
    const GpuRows *w = &f->rows;
    cuda_rope(f->qb, (int64_t)H * qk, w->rope_cos, w->rope_sin, w->rope_half, n, w->pos, H, qk, d, 0, s);
    cuda_rope(f->kb, (int64_t)G * qk, w->rope_cos, w->rope_sin, w->rope_half, n, w->pos, G, qk, d, 0, s);
    if (cuda_attention_forward(f->out, f->lse, f->qb, f->kb, v, B, T, H, G, qk, d, NULL, p->window,
                               (float)(1.0 / sqrt(p->score_dim)), (float)p->softcap, s))
        return tm_fail("CUDA: the attention kernel did not launch (head dims %d, %d)", qk, d);
    gpu_copy(g, f->dd, o, (size_t)n * H * d); /* dd = out - o, as -o + out */
    cuda_scale(f->dd, (int64_t)n * H * d, -1.0f, s);
    cuda_add(f->dd, f->out, (int64_t)n * H * d, s);
    return gpu_linear(g, f->e, f->dd, &f->o_proj, NULL, n, 0);
}

/* mb_backward (rorope_fit.c) on the device: f->dpr = the error sum's gradient w.r.t. P's rope rows. */
static int backward(RoropeFitGpu *f, const FitProblem *p, const float *q, const float *k, const float *v, int B,
                    int T) {
    GpuCtx *g = &f->g;
    cudaStream_t s = (cudaStream_t)g->stream;
    int n = B * T, H = f->H, G = f->G, d = f->d, r = f->r, L = f->L, qk = f->qk;
    gpu_zero(g, f->dd, (size_t)n * H * d);
    if (gpu_linear_backward(g, f->dd, NULL, NULL, f->e, NULL, &f->o_proj, n)) return -1;
    cuda_scale(f->dd, (int64_t)n * H * d, 2.0f, s);
    if (cuda_attention_backward(f->dq, f->dk, f->dv, f->delta, f->dd, f->out, f->lse, f->qb, f->kb, v, B, T, H, G, qk,
                                d, NULL, p->window, (float)(1.0 / sqrt(p->score_dim)), (float)p->softcap, s))
        return tm_fail("CUDA: the attention's backward kernel did not launch (head dims %d, %d)", qk, d);
    const GpuRows *w = &f->rows;
    cuda_rope_backward(f->dq, (int64_t)H * qk, w->rope_cos, w->rope_sin, w->rope_half, n, w->pos, H, qk, d, 0, s);
    cuda_rope_backward(f->dk, (int64_t)G * qk, w->rope_cos, w->rope_sin, w->rope_half, n, w->pos, G, qk, d, 0, s);
    /* E = d/d(k - P_rope^T u) into kn, u's gradient (the groups' rope parts summed) into dv */
    float *E = f->kn, *du = f->dv;
    cuda_mla_heads_backward(E, du, f->dk, NULL, n, G, d, r, 0, 0, s);
    /* dP_rope = (du - E P_rope^T)^T k - u^T E, then each head's query part */
    if (gpu_gemm_rm(g, 0, 1, n, r, L, -1, E, L, f->pr, L, 1, du, r) ||
        gpu_gemm_rm(g, 1, 0, r, L, n, 1, du, r, k, L, 0, f->dpr, L) ||
        gpu_gemm_rm(g, 1, 0, r, L, n, -1, f->u, r, E, L, 1, f->dpr, L))
        return -1;
    for (int h = 0; h < H; h++)
        if (gpu_gemm_rm(g, 1, 0, r, d, n, 1, f->dq + h * qk + d, H * qk, q + h * d, H * d, 1, f->dpr + h / (H / G) * d,
                        L))
            return -1;
    return 0;
}

int rorope_fit_gpu_mb(RoropeFitGpu *f, const FitProblem *p, const FitData *x, int64_t row0, int B, double *sum,
                      float *dpr, float *out) {
    int64_t n = (int64_t)B * x->T, Hd = (int64_t)f->H * f->d, L = f->L, at = f->resident ? row0 : 0;
    if (!f->resident) {
        gpu_upload(f->q, x->q + row0 * Hd, (size_t)(n * Hd) * sizeof(float));
        gpu_upload(f->k, x->k + row0 * L, (size_t)(n * L) * sizeof(float));
        gpu_upload(f->v, x->v + row0 * L, (size_t)(n * L) * sizeof(float));
        gpu_upload(f->o, x->o + row0 * Hd, (size_t)(n * Hd) * sizeof(float));
    }
    const float *q = f->q + at * Hd, *k = f->k + at * L, *v = f->v + at * L, *o = f->o + at * Hd;
    if (forward(f, p, q, k, v, o, B, x->T)) return -1;
    cuda_sum_squares(f->sq, f->e, n * f->D, (cudaStream_t)f->g.stream);
    if (dpr && backward(f, p, q, k, v, B, x->T)) return -1;
    if (gpu_sync(&f->g)) return -1;
    gpu_download(sum, f->sq, sizeof(double));
    if (out) gpu_download(out, f->out, (size_t)(n * Hd) * sizeof(float));
    if (dpr) gpu_download(dpr, f->dpr, (size_t)f->r * L * sizeof(float));
    return 0;
}

#else

int rorope_fit_gpu_init(RoropeFitGpu **f, const FitProblem *p, const FitData *x, const RopeTable *rope,
                        const int32_t *pos) {
    (void)p, (void)x, (void)rope, (void)pos;
    *f = NULL;
    return tm_fail("--device cuda: this transmla was built without CUDA (cmake -DTRANSMLA_CUDA=ON)");
}
void rorope_fit_gpu_free(RoropeFitGpu *f) { (void)f; }
void rorope_fit_gpu_rotation(RoropeFitGpu *f, const float *pr) { (void)f, (void)pr; }
int rorope_fit_gpu_mb(RoropeFitGpu *f, const FitProblem *p, const FitData *x, int64_t row0, int B, double *sum,
                      float *dpr, float *out) {
    (void)f, (void)p, (void)x, (void)row0, (void)B, (void)sum, (void)dpr, (void)out;
    return tm_fail("rorope_fit_gpu: built without CUDA");
}

#endif
