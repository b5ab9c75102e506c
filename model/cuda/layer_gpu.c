/* One layer on the GPU (layer_gpu.h), step for step model/layer.c's
 * forward with gqa.c's attention block (MLA's: mla_gpu.c). */
#include "model/cuda/layer_gpu.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/attention_cuda.h"
#include "model/cuda/grad_kernels.h"
#include "model/cuda/kernels.h"
#include "model/cuda/stats_gpu.h"

void gpu_rows_upload(GpuRowsBuf *b, GpuRows *rows, const RopeTable *rt, int B, int T, const int32_t *pos,
                     const int32_t *doc_start) {
    size_t tab = (size_t)rt->max_pos * rt->half, n = (size_t)B * T;
    b->cos = gpu_upload_f32(rt->cos, (int64_t)tab);
    b->sin = gpu_upload_f32(rt->sin, (int64_t)tab);
    b->pos = gpu_alloc(n * sizeof(int32_t));
    gpu_upload(b->pos, pos, n * sizeof(int32_t));
    b->doc_start = NULL;
    if (doc_start) {
        b->doc_start = gpu_alloc(n * sizeof(int32_t));
        gpu_upload(b->doc_start, doc_start, n * sizeof(int32_t));
    }
    *rows = (GpuRows){.B = B, .T = T, .pos = b->pos, .doc_start = b->doc_start, .rope_cos = b->cos,
                      .rope_sin = b->sin, .rope_half = rt->half};
}

void gpu_rows_free(GpuRowsBuf *b) {
    gpu_free(b->cos);
    gpu_free(b->sin);
    gpu_free(b->pos);
    gpu_free(b->doc_start);
    memset(b, 0, sizeof *b);
}

static float *acts_buf(GpuActs *a, size_t n) { return gpu_alloc_counted(&a->bytes, n * sizeof(float)); }

/* The attention's row widths in floats: queries, keys, values, output
 * (MLA: per-head keys and values). */
typedef struct {
    size_t qw, kw, vw, att;
} AttnWidths;

static AttnWidths attn_widths(const ModelConfig *c) {
    size_t H = (size_t)c->n_heads, qk = (size_t)hf_config_qk_head_dim(c), dv = (size_t)hf_config_v_head_dim(c);
    size_t kv_heads = hf_config_is_mla(c) ? H : (size_t)c->n_kv_heads;
    return (AttnWidths){.qw = H * qk, .kw = kv_heads * qk, .vw = kv_heads * dv, .att = H * dv};
}

/* gpu_acts_init's buffers; mlp 0: none for the MLP or the experts. */
static void acts_init(GpuActs *a, const ModelConfig *c, int N, int mlp) {
    memset(a, 0, sizeof *a);
    const MlaConfig *m = &c->mla;
    int mla = hf_config_is_mla(c);
    size_t n = (size_t)N, D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, H = (size_t)c->n_heads;
    AttnWidths w = attn_widths(c);
    size_t qw = w.qw, kw = w.kw, vw = w.vw;
    a->N = N;
    a->xn = acts_buf(a, n * D);
    a->q = acts_buf(a, n * qw);
    a->k = acts_buf(a, n * kw);
    a->v = acts_buf(a, n * vw);
    a->att = acts_buf(a, n * w.att);
    int dense = 0; /* some layer has a dense MLP (all-MoE models use the experts' own buffers) */
    for (int l = 0; l < c->n_layers && !dense && mlp; l++) dense = !hf_config_layer_is_moe(c, l);
    if (dense) {
        a->h1 = acts_buf(a, n * I);
        a->h2 = acts_buf(a, n * I);
    }
    if (c->sandwich_norms) a->o = acts_buf(a, n * D);
    if (mla) {
        if (m->q_lora_rank) a->qa = acts_buf(a, n * m->q_lora_rank);
        a->lat = acts_buf(a, n * (m->kv_lora_rank + m->qk_rope_head_dim));
        a->cn = acts_buf(a, n * m->kv_lora_rank);
        a->kvb = acts_buf(a, n * H * (size_t)(m->qk_nope_head_dim + m->v_head_dim));
    }
    if (c->qk_norm) a->rinv = acts_buf(a, n * (H + (size_t)c->n_kv_heads));
    if (c->n_experts && mlp) gpu_moe_acts_init(a, c, N);
    a->q16 = gpu_alloc(n * (qw + kw + vw) * 2);
    a->k16 = a->q16 + n * qw;
    a->v16 = a->k16 + n * kw;
    a->bytes += n * (qw + kw + vw) * 2;
    /* the forward alone runs in place */
    a->xn2 = a->scratch = a->xn;
    a->act = a->h1;
    a->attn_o = a->mlp_o = a->o;
    a->q_pre = a->q;
    a->k_pre = a->k;
    a->qan = a->qa;
    a->craw = a->cn;
}

void gpu_acts_init(GpuActs *a, const ModelConfig *c, int N) { acts_init(a, c, N, 1); }

/* MLA's training buffers: q_a's and the latent's outputs before and after
 * their norms, and their gradients (mla_acts_init's). */
static void mla_train_bufs(GpuActs *a, const ModelConfig *c, size_t n) {
    const MlaConfig *m = &c->mla;
    size_t R = (size_t)m->kv_lora_rank, Rq = (size_t)m->q_lora_rank;
    if (Rq) {
        a->qan = acts_buf(a, n * Rq);
        a->rstd_q = acts_buf(a, n);
        a->dqa = acts_buf(a, n * Rq);
        a->dqan = acts_buf(a, n * Rq);
    }
    a->craw = acts_buf(a, n * R);
    a->rstd_c = acts_buf(a, n);
    a->dlat = acts_buf(a, n * (R + m->qk_rope_head_dim));
    a->dc = acts_buf(a, n * R);
    a->dcr = acts_buf(a, n * R);
}

void gpu_acts_init_train(GpuActs *a, const ModelConfig *c, int N, int mlp) {
    acts_init(a, c, N, mlp);
    a->train = 1;
    size_t n = (size_t)N, D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, H = (size_t)c->n_heads;
    AttnWidths w = attn_widths(c);
    size_t qw = w.qw, kw = w.kw, vw = w.vw;
    a->rstd1 = acts_buf(a, n);
    a->rstd2 = acts_buf(a, n);
    a->lse = acts_buf(a, n * H);
    a->dxn = acts_buf(a, n * D);
    if (mlp) {
        a->x_mid = acts_buf(a, n * D);
        a->xn2 = acts_buf(a, n * D);
        a->dx_mid = acts_buf(a, n * D);
    }
    if (a->h1) { /* some layer has a dense MLP */
        a->act = acts_buf(a, n * I);
        a->dh1 = acts_buf(a, n * I);
        a->dh2 = acts_buf(a, n * I);
        a->dact = acts_buf(a, n * I);
    }
    a->dq = acts_buf(a, n * qw);
    a->dk = acts_buf(a, n * kw);
    a->dv = acts_buf(a, n * vw);
    a->datt = acts_buf(a, n * w.att);
    a->delta = acts_buf(a, n * H);
    a->scratch = a->dxn; /* free while the forward runs; xn is kept */
    if (c->sandwich_norms) {
        a->rstd_ao = acts_buf(a, n);
        a->rstd_mo = acts_buf(a, n);
        a->mlp_o = acts_buf(a, n * D); /* attn_o keeps o */
        a->dblk = acts_buf(a, n * D);
    }
    if (c->qk_norm) {
        a->q_pre = acts_buf(a, n * qw);
        a->k_pre = acts_buf(a, n * kw);
        a->dq_pre = acts_buf(a, n * qw);
        a->dk_pre = acts_buf(a, n * kw);
    }
    if (hf_config_is_mla(c)) mla_train_bufs(a, c, n);
    if (c->n_experts && mlp) gpu_moe_acts_init_train(a, c, N);
}

void gpu_acts_free(GpuActs *a) {
    if (a->train) { /* what gpu_acts_init_train made (attn_o is o; xn2, q_pre, k_pre, qan, craw may be aliases) */
        float *own[] = {a->rstd1, a->rstd2, a->rstd_ao, a->rstd_mo, a->x_mid, a->xn2 != a->xn ? a->xn2 : NULL,
                        a->act, a->mlp_o, a->lse,
                        a->dx_mid, a->dxn, a->dblk, a->dh1, a->dh2, a->dact, a->dq, a->dk, a->dv, a->datt,
                        a->dq_pre, a->dk_pre, a->delta, a->q_pre != a->q ? a->q_pre : NULL,
                        a->k_pre != a->k ? a->k_pre : NULL, a->qan != a->qa ? a->qan : NULL, a->rstd_q,
                        a->craw != a->cn ? a->craw : NULL, a->rstd_c, a->dlat, a->dc, a->dcr, a->dqa, a->dqan};
        for (size_t i = 0; i < sizeof own / sizeof *own; i++) gpu_free(own[i]);
    }
    float *all[] = {a->xn, a->q, a->k, a->v, a->att, a->h1, a->h2, a->o, a->qa, a->lat, a->cn, a->kvb, a->rinv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gpu_free(all[i]);
    gpu_free(a->q16);
    free(a->host);
    gpu_moe_acts_free(a);
    memset(a, 0, sizeof *a);
}

int gpu_attention(GpuCtx *g, const ModelConfig *c, int layer, GpuActs *a, const GpuRows *r) {
    int mla = hf_config_is_mla(c), H = c->n_heads, G = mla ? H : c->n_kv_heads;
    int dqk = hf_config_qk_head_dim(c), dv = hf_config_v_head_dim(c), window = hf_config_layer_window(c, layer);
    int64_t N = (int64_t)r->B * r->T;
    float scale = (float)hf_config_attn_scale(c), cap = (float)c->attn_softcap;
    cudaStream_t s = (cudaStream_t)g->stream;
    int rc;
    if (g->precision == GPU_BF16 && !a->lse && cuda_attention_bf16_fits(dqk, dv)) {
        cuda_to_bf16(a->q16, a->q, N * H * dqk, s);
        cuda_to_bf16(a->k16, a->k, N * G * dqk, s);
        cuda_to_bf16(a->v16, a->v, N * G * dv, s);
        rc = cuda_attention_forward_bf16(a->att, NULL, a->q16, a->k16, a->v16, r->B, r->T, H, G, dqk, dv,
                                         r->doc_start, window, scale, cap, s);
    } else {
        rc = cuda_attention_forward(a->att, a->lse, a->q, a->k, a->v, r->B, r->T, H, G, dqk, dv, r->doc_start,
                                    window, scale, cap, s);
    }
    return rc ? tm_fail("CUDA: the attention kernel did not launch (head dims %d, %d)", dqk, dv) : 0;
}

/* n floats of device src into the host copy at *at, advanced past them. */
static const float *to_host(float **at, const float *src, size_t n) {
    float *p = *at;
    gpu_download(p, src, n * sizeof(float));
    *at += n;
    return p;
}

static int call_hook(GpuCtx *g, const ModelConfig *c, int layer, const GpuRows *r, GpuActs *a) {
    size_t N = (size_t)r->B * r->T, H = (size_t)c->n_heads, G = (size_t)c->n_kv_heads;
    size_t qw = H * hf_config_qk_head_dim(c), d = (size_t)c->head_dim;
    int mla = hf_config_is_mla(c);
    size_t lw = (size_t)c->mla.kv_lora_rank + c->mla.qk_rope_head_dim;
    size_t need = N * (mla ? qw + lw : qw + 2 * G * d + (c->qk_norm ? 2 * (H + G) : 0));
    if (need > a->host_n) {
        free(a->host);
        a->host = mallocCheck(need * sizeof(float));
        a->host_n = need;
    }
    if (gpu_sync(g)) return -1;
    float *at = a->host;
    AttnProjections p = {.N = (int)N, .q = to_host(&at, a->q, N * qw)};
    if (mla) {
        p.lat = to_host(&at, a->lat, N * lw);
    } else {
        p.k = to_host(&at, a->k, N * G * d);
        p.v = to_host(&at, a->v, N * G * d);
    }
    if (!mla && c->qk_norm) { /* the CPU's [N, H+G] layout: a row's q heads, then its k heads */
        const float *rq = to_host(&at, a->rinv, N * H), *rk = to_host(&at, a->rinv + N * H, N * G);
        float *rinv = at;
        for (size_t i = 0; i < N; i++) {
            memcpy(rinv + i * (H + G), rq + i * H, H * sizeof(float));
            memcpy(rinv + i * (H + G) + H, rk + i * G, G * sizeof(float));
        }
        p.qk_rinv = rinv;
    }
    r->hook(r->hook_ctx, layer, &p);
    return 0;
}

int gpu_projections(GpuCtx *g, const ModelConfig *c, int layer, const GpuRows *r, GpuActs *a) {
    if (r->stats) return gpu_stats_add(g, r->stats, c, layer, a, r->B * r->T);
    return r->hook ? call_hook(g, c, layer, r, a) : 0;
}

/* The GQA attention block of xn added into out (o_proj included). */
static int attention_block(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, int layer, const float *xn, float *out,
                           int accumulate, const GpuRows *r, GpuActs *a) {
    cudaStream_t s = (cudaStream_t)g->stream;
    int N = r->B * r->T, H = c->n_heads, G = c->n_kv_heads, d = c->head_dim;
    float eps = (float)c->rms_norm_eps;
    float *qkv[] = {a->q_pre, a->k_pre, a->v};
    const GpuMat *w_qkv[] = {&gl->q, &gl->k, &gl->v};
    const float *b_qkv[] = {gl->q_bias, gl->k_bias, gl->v_bias};
    if (gpu_linear_many(g, 3, qkv, xn, w_qkv, b_qkv, N)) return -1;
    if (c->qk_norm) {
        cuda_rmsnorm(a->q, a->rinv, a->q_pre, gl->q_head_norm, (int64_t)N * H, d, eps, s);
        cuda_rmsnorm(a->k, a->rinv + (size_t)N * H, a->k_pre, gl->k_head_norm, (int64_t)N * G, d, eps, s);
    }
    if (gpu_projections(g, c, layer, r, a)) return -1;
    cuda_rope(a->q, (int64_t)H * d, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, H, d, 0, 0, s);
    cuda_rope(a->k, (int64_t)G * d, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, G, d, 0, 0, s);
    if (gpu_attention(g, c, layer, a, r)) return -1;
    return gpu_linear(g, out, a->att, &gl->o, gl->o_bias, N, accumulate);
}

static int mlp_block(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const float *xn, float *out, int accumulate,
                     int N, GpuActs *a) {
    if (gl->n_experts) return gpu_moe_block(g, c, gl, xn, out, accumulate, N, a);
    float *gate_up[] = {a->h1, a->h2};
    const GpuMat *w_gate_up[] = {&gl->gate, &gl->up};
    const float *b_gate_up[] = {gl->gate_bias, gl->up_bias};
    if (gpu_linear_many(g, 2, gate_up, xn, w_gate_up, b_gate_up, N)) return -1;
    int64_t NI = (int64_t)N * c->intermediate_size;
    if (a->act == a->h1) cuda_glu(a->h1, a->h2, NI, c->gelu_mlp, (cudaStream_t)g->stream);
    else cuda_glu_out(a->act, a->h1, a->h2, NI, c->gelu_mlp, (cudaStream_t)g->stream); /* h1 kept */
    return gpu_linear(g, out, a->act, &gl->down, gl->down_bias, N, accumulate);
}

int gpu_layer_forward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, int layer, float *x, const GpuRows *rows,
                      GpuActs *a) {
    cudaStream_t s = (cudaStream_t)g->stream;
    int N = rows->B * rows->T, D = c->hidden_size;
    float eps = (float)c->rms_norm_eps;
    if (N > a->N) return tm_fail("gpu_layer_forward: %d rows in activations for %d", N, a->N);
    int sandwich = c->sandwich_norms;
    /* with sandwich norms a block writes its output to attn_o / mlp_o, normed into scratch and added; else
     * straight into x */
    float *attn_blk = sandwich ? a->attn_o : x, *mlp_blk = sandwich ? a->mlp_o : x;
    cuda_rmsnorm(a->xn, a->rstd1, x, gl->input_norm, N, D, eps, s);
    if (hf_config_is_mla(c) ? gpu_mla_attention(g, c, gl, layer, a->xn, attn_blk, !sandwich, rows, a)
                            : attention_block(g, c, gl, layer, a->xn, attn_blk, !sandwich, rows, a))
        return -1;
    if (sandwich) {
        cuda_rmsnorm(a->scratch, a->rstd_ao, a->attn_o, gl->attn_out_norm, N, D, eps, s);
        cuda_add(x, a->scratch, (int64_t)N * D, s);
    }
    if (a->x_mid) gpu_copy(g, a->x_mid, x, (size_t)N * D);
    cuda_rmsnorm(a->xn2, a->rstd2, x, gl->post_norm, N, D, eps, s);
    if (mlp_block(g, c, gl, a->xn2, mlp_blk, !sandwich, N, a)) return -1;
    if (sandwich) {
        cuda_rmsnorm(a->scratch, a->rstd_mo, a->mlp_o, gl->mlp_out_norm, N, D, eps, s);
        cuda_add(x, a->scratch, (int64_t)N * D, s);
    }
    return 0;
}
