/* The forward pass, top to bottom. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/attention.h"
#include "model/crossentropy.h"
#include "model/matmul.h"
#include "model/mla.h"
#include "model/model.h"
#include "model/rmsnorm.h"
#include "model/softcap.h"
#include "model/swiglu.h"

ModelPart model_part_all(const ModelConfig *c) {
    return (ModelPart){.first = 0, .end = c->n_layers, .embed = 1, .head = 1};
}

int model_init_part(Model *m, const ModelConfig *cfg, StSet *set, const char *config_name, const ModelPart *part) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->set = *set;
    m->part = *part;
    memset(set, 0, sizeof *set);
    if (weights_bind(&m->w, &m->cfg, &m->set, config_name, &m->part)) {
        st_set_close(&m->set);
        return -1;
    }
    return 0;
}

int model_init(Model *m, const ModelConfig *cfg, StSet *set, const char *config_name) {
    ModelPart all = model_part_all(cfg);
    return model_init_part(m, cfg, set, config_name, &all);
}

typedef struct {
    const ModelPart *part;
    const ModelConfig *cfg;
} PartFilter;

static int part_keeps(const char *name, void *ctx) {
    const PartFilter *f = ctx;
    return model_part_wants(f->part, f->cfg, name);
}

/* Weights read from files are scanned for NaN/Inf once, here; a built
 * (converted) model is made of checked weights and checked results. */
static int check_loaded(Model *m) {
    if (!weights_check_finite(&m->set, &m->cfg, &m->part)) return 0;
    model_free(m);
    return -1;
}

int model_load_part(Model *m, const char *dir, const ModelPart *part) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ModelConfig cfg;
    StSet set;
    if (hf_config_load(&cfg, path)) return -1;
    PartFilter f = {part, &cfg};
    if (st_set_open_filtered(&set, dir, part_keeps, &f)) return -1;
    return model_init_part(m, &cfg, &set, path, part) ? -1 : check_loaded(m);
}

int model_load(Model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ModelConfig cfg;
    if (hf_config_load(&cfg, path)) return -1;
    ModelPart all = model_part_all(&cfg);
    StSet set;
    if (st_set_open(&set, dir)) return -1;
    return model_init_part(m, &cfg, &set, path, &all) ? -1 : check_loaded(m);
}

void model_free(Model *m) {
    weights_free(&m->w, &m->cfg);
    st_set_close(&m->set);
}

int model_head_vocab_chunk(int N, int V) {
    int cols = (int)((16 << 20) / N);
    if (cols < 256) cols = 256;
    return cols < V ? cols : V;
}

/* Elements of each activation buffer of a workspace (0: not needed): one
 * computation for workspace_init and for workspace_bytes, which only counts. */
typedef struct {
    size_t x, q, k, v, qk_rinv, att, lat, cn, kvb, h, logits, targets;
    int vocab_chunk;
} WsSizes;

static WsSizes workspace_sizes(const ModelConfig *c, int B, int T) {
    WsSizes s = {0};
    size_t N = (size_t)B * T, D = (size_t)c->hidden_size, H = (size_t)c->n_heads;
    s.x = N * D;
    s.q = N * H * hf_config_qk_head_dim(c);
    s.k = N * c->n_kv_heads * hf_config_qk_head_dim(c);
    s.v = N * c->n_kv_heads * hf_config_v_head_dim(c);
    s.att = N * H * hf_config_v_head_dim(c);
    if (c->qk_norm) s.qk_rinv = N * (H + (size_t)c->n_kv_heads);
    if (hf_config_is_mla(c)) {
        const MlaConfig *m = &c->mla;
        size_t lw = (size_t)m->kv_lora_rank + m->qk_rope_head_dim;
        size_t cw = (size_t)m->kv_lora_rank;
        if ((size_t)m->q_lora_rank > lw) lw = (size_t)m->q_lora_rank;
        if ((size_t)m->q_lora_rank > cw) cw = (size_t)m->q_lora_rank;
        s.lat = N * lw;
        s.cn = N * cw;
        s.kvb = N * H * (m->qk_nope_head_dim + m->v_head_dim);
    }
    if (hf_config_has_dense_layer(c)) s.h = N * (size_t)c->intermediate_size;
    s.vocab_chunk = model_head_vocab_chunk((int)N, c->vocab_size);
    s.logits = N * (size_t)s.vocab_chunk;
    s.targets = N;
    return s;
}

uint64_t workspace_bytes(const ModelConfig *c, int B, int T) {
    WsSizes s = workspace_sizes(c, B, T);
    return (2 * s.x + s.q + s.k + s.v + s.qk_rinv + s.att + s.lat + s.cn + s.kvb + 2 * s.h + s.logits) * sizeof(float) +
           s.targets * sizeof(int32_t);
}

/* Allocate for the workspace and count it in ws->bytes. */
static void *ws_alloc(Workspace *ws, size_t bytes) {
    ws->bytes += bytes;
    return mallocCheck(bytes);
}

void workspace_init(Workspace *ws, const ModelConfig *c, int B, int T) {
    memset(ws, 0, sizeof *ws);
    ws->B = B;
    ws->T = T;
    WsSizes s = workspace_sizes(c, B, T);
    size_t N = (size_t)B * T;
    rope_table_init(&ws->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    ws->x = ws_alloc(ws, s.x * sizeof(float));
    ws->xn = ws_alloc(ws, s.x * sizeof(float));
    ws->q = ws_alloc(ws, s.q * sizeof(float));
    ws->k = ws_alloc(ws, s.k * sizeof(float));
    ws->v = ws_alloc(ws, s.v * sizeof(float));
    if (s.qk_rinv) ws->qk_rinv = ws_alloc(ws, s.qk_rinv * sizeof(float));
    ws->att = ws_alloc(ws, s.att * sizeof(float));
    if (hf_config_is_mla(c)) {
        ws->lat = ws_alloc(ws, s.lat * sizeof(float));
        ws->cn = ws_alloc(ws, s.cn * sizeof(float));
        ws->kvb = ws_alloc(ws, s.kvb * sizeof(float));
    }
    if (c->n_experts)
        moe_scratch_init(&ws->moe, (int)N, c->hidden_size, c->expert_intermediate_size, c->n_experts,
                         c->n_experts_per_tok);
    if (s.h) {
        ws->h1 = ws_alloc(ws, s.h * sizeof(float));
        ws->h2 = ws_alloc(ws, s.h * sizeof(float));
    }
    ws->vocab_chunk = s.vocab_chunk;
    ws->logits = ws_alloc(ws, s.logits * sizeof(float));
    crossentropy_init(&ws->ce, (int)N);
    ws->targets = ws_alloc(ws, s.targets * sizeof(int32_t));
}

void workspace_free(Workspace *ws) {
    rope_table_free(&ws->rope);
    free(ws->x);
    free(ws->xn);
    free(ws->q);
    free(ws->k);
    free(ws->v);
    free(ws->qk_rinv);
    free(ws->att);
    free(ws->lat);
    free(ws->cn);
    free(ws->kvb);
    free(ws->h1);
    free(ws->h2);
    if (ws->moe.rows) moe_scratch_free(&ws->moe);
    free(ws->logits);
    crossentropy_free(&ws->ce);
    free(ws->targets);
    memset(ws, 0, sizeof *ws);
}

void embedding_forward(float *out, const int32_t *tokens, const Tensor *embed, int N) {
    int64_t D = embed->cols;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) tensor_to_f32(embed, (int64_t)tokens[i] * D, D, out + (int64_t)i * D);
}

/* Columns in blocks, each block's rows in token order: no two threads touch
 * the same element, and every element sums in the same order. */
void embedding_backward(float *dembed, const float *dout, const int32_t *tokens, int N, int D) {
    const int blk = 64;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < D; c0 += blk) {
        int c1 = c0 + blk < D ? c0 + blk : D;
        for (int i = 0; i < N; i++) {
            float *dst = dembed + (int64_t)tokens[i] * D;
            const float *src = dout + (int64_t)i * D;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

void gqa_qkv(const ModelConfig *c, const LayerWeights *L, int N, Workspace *ws) {
    int H = c->n_heads, G = c->n_kv_heads, d = c->head_dim;
    matmul_forward(ws->q, ws->xn, &L->q, L->q_bias, N, 0);
    matmul_forward(ws->k, ws->xn, &L->k, L->k_bias, N, 0);
    matmul_forward(ws->v, ws->xn, &L->v, L->v_bias, N, 0);
    if (!c->qk_norm) return;
    if (L->qk_rinv_fixed) {
        head_scale_forward(ws->q, L->q_head_norm, L->qk_rinv_fixed, N, H, d);
        head_scale_forward(ws->k, L->k_head_norm, L->qk_rinv_fixed + H, N, G, d);
        return;
    }
    head_rmsnorm_forward(ws->q, ws->qk_rinv, H + G, ws->q, L->q_head_norm, N, H, d, c->rms_norm_eps);
    head_rmsnorm_forward(ws->k, ws->qk_rinv + H, H + G, ws->k, L->k_head_norm, N, G, d, c->rms_norm_eps);
}

/* ws->x += out_norm(W in) over N rows (out_norm: gemma2's sandwich norm of a
 * block's output; NULL: plain x += W in). ws->xn is the scratch: the block's
 * input, no longer needed once its projections are made. */
void block_residual(const ModelConfig *c, const float *out_norm, const float *in, const Tensor *W, const float *bias,
                    int N, Workspace *ws) {
    if (!out_norm) {
        matmul_forward(ws->x, in, W, bias, N, 1);
        return;
    }
    int64_t n = (int64_t)N * c->hidden_size;
    matmul_forward(ws->xn, in, W, bias, N, 0);
    rmsnorm_forward(ws->xn, ws->xn, out_norm, N, c->hidden_size, c->rms_norm_eps);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) ws->x[i] += ws->xn[i];
}

/* x += o_proj(attention(rope(q), rope(k), v)) of xn (q, k per-head normed first for qk_norm models). */
static void gqa_attention_block(const ModelConfig *c, const LayerWeights *L, int layer, Workspace *ws) {
    int B = ws->B, T = ws->T, N = B * T, d = c->head_dim;
    gqa_qkv(c, L, N, ws);
    if (ws->hook) ws->hook(ws->hook_ctx, layer, ws);
    RopeLayout q_rope = {.n_heads = c->n_heads, .head_stride = d, .offset = 0, .interleave = 0};
    RopeLayout k_rope = {.n_heads = c->n_kv_heads, .head_stride = d, .offset = 0, .interleave = 0};
    rope_forward(ws->q, (int64_t)c->n_heads * d, &ws->rope, B, T, 0, &q_rope);
    rope_forward(ws->k, (int64_t)c->n_kv_heads * d, &ws->rope, B, T, 0, &k_rope);
    attention_forward(ws->att, ws->q, ws->k, ws->v, B, T, c->n_heads, c->n_kv_heads, c->head_dim, c->head_dim,
                      hf_config_layer_window(c, layer), (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    block_residual(c, L->attn_out_norm, ws->att, &L->o, L->o_bias, N, ws);
}

void attention_block(const ModelConfig *c, const LayerWeights *L, int layer, Workspace *ws) {
    if (hf_config_is_mla(c)) mla_attention_block(c, L, layer, ws);
    else gqa_attention_block(c, L, layer, ws);
}

/* x += down(silu(gate(xn)) * up(xn)) (gemma2: gelu_tanh, the sum normed), or the MoE of it. */
void mlp_block(const ModelConfig *c, const LayerWeights *L, int layer, Workspace *ws) {
    int N = ws->B * ws->T;
    if (hf_config_layer_is_moe(c, layer)) {
        moe_forward(ws->x, ws->xn, L, N, c->hidden_size, c->expert_intermediate_size, c->n_experts,
                    c->n_experts_per_tok, !c->moe_topk_raw, &ws->moe);
        return;
    }
    matmul_forward(ws->h1, ws->xn, &L->gate, L->gate_bias, N, 0);
    matmul_forward(ws->h2, ws->xn, &L->up, L->up_bias, N, 0);
    if (c->gelu_mlp) geglu_forward(ws->h1, ws->h2, (int64_t)N * c->intermediate_size);
    else swiglu_forward(ws->h1, ws->h2, (int64_t)N * c->intermediate_size);
    block_residual(c, L->mlp_out_norm, ws->h1, &L->down, L->down_bias, N, ws);
}

/* gemma2's sqrt(hidden_size), as transformers makes it: a tensor of the
 * embedding's dtype, so rounded to bf16/f16 for such weights. Public for the
 * trainer, whose embedding is an fp32 master of a maybe 16-bit stored one. */
float model_embed_normalizer(const ModelConfig *c, TmDType embed_dtype) {
    float f = (float)sqrt((double)c->hidden_size);
    switch (embed_dtype) {
    case TM_BF16: return tm_bf16_to_f32(tm_f32_to_bf16(f));
    case TM_F16: return tm_f16_to_f32(tm_f32_to_f16(f));
    default: return f;
    }
}

void model_embed_rows(const Model *m, const int32_t *tokens, int N, float *out) {
    embedding_forward(out, tokens, &m->w.embed, N);
    if (!m->cfg.embed_scaled) return;
    float s = model_embed_normalizer(&m->cfg, m->w.embed.dtype);
    int64_t n = (int64_t)N * m->cfg.hidden_size;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] *= s;
}

void model_embed(const Model *m, const int32_t *tokens, Workspace *ws) {
    if (!m->part.embed) tm_die("model_embed: this part of the model holds no embedding");
    model_embed_rows(m, tokens, ws->B * ws->T, ws->x);
}

void model_layers(const Model *m, Workspace *ws, int first, int end) {
    const ModelConfig *c = &m->cfg;
    int N = ws->B * ws->T, D = c->hidden_size;
    if (first < end && (first < m->part.first || end > m->part.end))
        tm_die("model_layers: layers [%d, %d) are not all in this part of the model, [%d, %d)", first, end,
               m->part.first, m->part.end);
    for (int l = first; l < end; l++) {
        const LayerWeights *L = &m->w.layers[l];
        rmsnorm_forward(ws->xn, ws->x, L->input_norm, N, D, c->rms_norm_eps);
        attention_block(c, L, l, ws);
        rmsnorm_forward(ws->xn, ws->x, L->post_norm, N, D, c->rms_norm_eps);
        mlp_block(c, L, l, ws);
    }
}

void model_final_norm(const Model *m, Workspace *ws) {
    if (!m->part.head) tm_die("model_final_norm: this part of the model holds no final norm");
    rmsnorm_forward(ws->xn, ws->x, m->w.final_norm, ws->B * ws->T, m->cfg.hidden_size, m->cfg.rms_norm_eps);
}

void model_forward(const Model *m, const int32_t *tokens, Workspace *ws) {
    model_embed(m, tokens, ws);
    model_layers(m, ws, m->part.first, m->part.end);
    model_final_norm(m, ws);
}

void model_logits(const Model *m, const float *hidden, int n, float *logits) {
    matmul_forward(logits, hidden, &m->w.lm_head, NULL, n, 0);
    softcap_forward(logits, (int64_t)n * m->cfg.vocab_size, (float)m->cfg.final_softcap);
}

double model_head_nll(const Model *m, const int32_t *tokens, Workspace *ws, int64_t *n_predicted) {
    int B = ws->B, T = ws->T, N = B * T, V = m->cfg.vocab_size;
    if (!m->part.head) tm_die("model_head_nll: this part of the model holds no head");
    for (int i = 0; i < N; i++) ws->targets[i] = (i % T == T - 1) ? -1 : tokens[i + 1];
    crossentropy_reset(&ws->ce, N);
    for (int v0 = 0; v0 < V; v0 += ws->vocab_chunk) {
        int cols = V - v0 < ws->vocab_chunk ? V - v0 : ws->vocab_chunk;
        matmul_forward_rows(ws->logits, cols, ws->xn, &m->w.lm_head, v0, v0 + cols, N, 0);
        softcap_forward(ws->logits, (int64_t)N * cols, (float)m->cfg.final_softcap);
        crossentropy_update(&ws->ce, N, ws->logits, cols, v0, ws->targets);
    }
    return crossentropy_finish(&ws->ce, N, ws->targets, n_predicted);
}

double model_nll(const Model *m, const int32_t *tokens, Workspace *ws, int64_t *n_predicted) {
    model_forward(m, tokens, ws);
    return model_head_nll(m, tokens, ws, n_predicted);
}

/* Layer l's MLP per token: dense (intermediate_size), or the router and
 * num_experts_per_tok experts of expert_intermediate_size (qwen3_moe's and
 * deepseek_v3's moe_intermediate_size, Mixtral's intermediate_size). */
static double mlp_flops_per_token(const ModelConfig *c, int l) {
    double D = c->hidden_size;
    if (!hf_config_layer_is_moe(c, l)) return 6 * D * c->intermediate_size;
    return 2 * D * c->n_experts + c->n_experts_per_tok * 6 * D * (double)c->expert_intermediate_size;
}

double model_layer_forward_flops(const ModelConfig *c, int l, int B, int T) {
    double D = c->hidden_size, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    double per_token = 2 * D * (qd + 2 * kvd) + 2 * qd * D + mlp_flops_per_token(c, l);
    double attn_per_seq = 2.0 * c->n_heads * c->head_dim * (double)T * (T + 1);
    return (double)B * T * per_token + B * attn_per_seq;
}

double model_forward_flops(const ModelConfig *c, int B, int T) {
    double f = 2.0 * B * T * c->hidden_size * c->vocab_size;
    for (int l = 0; l < c->n_layers; l++) f += model_layer_forward_flops(c, l, B, T);
    return f;
}
