/* The forward pass, top to bottom. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/crossentropy.h"
#include "model/matmul.h"
#include "model/model.h"
#include "model/rmsnorm.h"
#include "model/softcap.h"

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

/* The workspace's own buffers beside its layer activations: x, the head's
 * logits chunk and targets (xn is the activations' scratch). */
static uint64_t own_bytes(const ModelConfig *c, int B, int T) {
    size_t N = (size_t)B * T;
    return (N * c->hidden_size + N * (size_t)model_head_vocab_chunk((int)N, c->vocab_size)) * sizeof(float) +
           N * sizeof(int32_t);
}

uint64_t workspace_bytes(const ModelConfig *c, int B, int T) {
    return own_bytes(c, B, T) + layer_acts_bytes(c, B, T, 0);
}

void workspace_init(Workspace *ws, const ModelConfig *c, int B, int T) {
    memset(ws, 0, sizeof *ws);
    ws->B = B;
    ws->T = T;
    size_t N = (size_t)B * T, ND = N * c->hidden_size;
    rope_table_init(&ws->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    ws->pos = mallocCheck(N * sizeof *ws->pos);
    for (size_t i = 0; i < N; i++) ws->pos[i] = (int32_t)(i % (size_t)T);
    ws->x = mallocCheck(ND * sizeof(float));
    ws->vocab_chunk = model_head_vocab_chunk((int)N, c->vocab_size);
    ws->logits = mallocCheck(N * ws->vocab_chunk * sizeof(float));
    crossentropy_init(&ws->ce, (int)N);
    ws->targets = mallocCheck(N * sizeof(int32_t));
    layer_acts_init(&ws->acts, c, B, T, 0);
    ws->xn = layer_acts_scratch(&ws->acts);
    ws->bytes = own_bytes(c, B, T) + ws->acts.bytes;
}

void workspace_free(Workspace *ws) {
    rope_table_free(&ws->rope);
    free(ws->pos);
    free(ws->x);
    layer_acts_free(&ws->acts);
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

LayerRows workspace_rows(const Workspace *ws) {
    return (LayerRows){.B = ws->B, .T = ws->T, .pos = ws->pos, .rope = &ws->rope, .hook = ws->hook,
                       .hook_ctx = ws->hook_ctx};
}

void model_layers(const Model *m, Workspace *ws, int first, int end) {
    if (first < end && (first < m->part.first || end > m->part.end))
        tm_die("model_layers: layers [%d, %d) are not all in this part of the model, [%d, %d)", first, end,
               m->part.first, m->part.end);
    LayerRows rows = workspace_rows(ws);
    for (int l = first; l < end; l++) layer_forward(&m->cfg, &m->w.layers[l], l, ws->x, ws->x, &rows, &ws->acts);
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
