#include "model/decode.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/attention.h"
#include "model/matmul.h"
#include "model/mla.h"
#include "model/rmsnorm.h"

static int is_mla(const Model *m) { return hf_config_is_mla(&m->cfg); }

int decode_init(DecodeState *st, const Model *m, int max_T) { return decode_init_batch(st, m, max_T, 1); }

int decode_init_batch(DecodeState *st, const Model *m, int max_T, int B) {
    const ModelConfig *c = &m->cfg;
    memset(st, 0, sizeof *st);
    st->max_T = max_T;
    st->batch = B;
    int H = c->n_heads, R = c->mla.kv_lora_rank;
    st->width = is_mla(m) ? R + c->mla.qk_rope_head_dim : 2 * c->n_kv_heads * c->head_dim;
    st->cache = mallocCheck((size_t)c->n_layers * B * max_T * st->width * sizeof(float));
    workspace_init(&st->ws, c, B, 1);
    rope_table_init(&st->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, max_T);
    st->scores = mallocCheck((size_t)omp_get_max_threads() * max_T * sizeof(float));
    if (is_mla(m)) {
        st->kv_b = callocCheck((size_t)c->n_layers, sizeof *st->kv_b);
        for (int l = 0; l < c->n_layers; l++) {
            const Tensor *t = &m->w.layers[l].kv_b;
            st->kv_b[l] = mallocCheck((size_t)(t->rows * t->cols) * sizeof(float));
            tensor_to_f32(t, 0, t->rows * t->cols, st->kv_b[l]);
        }
        st->q_lat = mallocCheck((size_t)B * H * st->width * sizeof(float));
        st->o_lat = mallocCheck((size_t)B * H * R * sizeof(float));
    }
    return 0;
}

void decode_free(DecodeState *st, const Model *m) {
    if (st->kv_b)
        for (int l = 0; l < m->cfg.n_layers; l++) free(st->kv_b[l]);
    free(st->kv_b);
    free(st->cache);
    free(st->scores);
    free(st->q_lat);
    free(st->o_lat);
    workspace_free(&st->ws);
    rope_table_free(&st->rope);
    memset(st, 0, sizeof *st);
}

/* Layer l's cache of sequence b: [max_T][width]. */
static float *cache_of(const DecodeState *st, int layer, int b) {
    return st->cache + ((size_t)layer * st->batch + b) * st->max_T * st->width;
}

uint64_t decode_cache_bytes_per_token(const DecodeState *st, const Model *m) {
    return (uint64_t)st->width * m->cfg.n_layers * sizeof(float);
}

/* First cached position the token at `pos` sees in layer l: i - j < window. */
static int window_start(const ModelConfig *c, int layer, int pos) {
    int window = hf_config_layer_window(c, layer);
    return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

/* Absorbed MLA for the tokens at `pos`: scores against cached latents
 * through q_lat_h = W_kb_h^T q_nope_h, outputs through W_vb_h o_lat_h.
 * Scale, soft-cap and window are the forward's (gemma2_mla has all three). */
static void mla_step(const ModelConfig *c, const LayerWeights *L, int layer, DecodeState *st, int pos) {
    const MlaConfig *m = &c->mla;
    Workspace *ws = &st->ws;
    int B = st->batch, H = c->n_heads, dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim;
    int R = m->kv_lora_rank, qk = dn + dr, w = st->width;
    mla_queries(c, L, ws->xn, B, ws);
    matmul_forward(ws->lat, ws->xn, &L->kv_a, L->kv_a_bias, B, 0);
    mla_latent(c, L, B, ws);
    RopeLayout q_rope = {.n_heads = H, .head_stride = qk, .offset = dn, .interleave = m->rope_interleave};
    RopeLayout k_rope = {.n_heads = 1, .head_stride = R + dr, .offset = R, .interleave = m->rope_interleave};
    rope_forward(ws->q, (int64_t)H * qk, &st->rope, B, 1, pos, &q_rope);
    rope_forward(ws->lat, R + dr, &st->rope, B, 1, pos, &k_rope);
    for (int b = 0; b < B; b++) {
        float *row = cache_of(st, layer, b) + (size_t)pos * w;
        memcpy(row, ws->cn + (size_t)b * R, (size_t)R * sizeof(float));
        memcpy(row + R, ws->lat + (size_t)b * (R + dr) + R, (size_t)dr * sizeof(float));
    }
    const float *kv_b = st->kv_b[layer];
    float scale = (float)hf_config_attn_scale(c), cap = (float)c->attn_softcap;
    int lo = window_start(c, layer, pos);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        /* query against a cache row [c ; k_pe]: [W_kb_h^T q_nope_h ; q_pe_h] */
        const float *qn = ws->q + ((size_t)b * H + h) * qk;
        const float *wk = kv_b + (size_t)h * (dn + dv) * R, *wv = wk + (size_t)dn * R;
        float *ql = st->q_lat + (size_t)bh * w, *ol = st->o_lat + (size_t)bh * R;
        memset(ql, 0, (size_t)R * sizeof(float));
        for (int i = 0; i < dn; i++)
            for (int j = 0; j < R; j++) ql[j] += qn[i] * wk[(size_t)i * R + j];
        memcpy(ql + R, qn + dn, (size_t)dr * sizeof(float));
        /* values are the cached latents themselves; W_vb_h maps the mix out */
        const float *cache = cache_of(st, layer, b);
        attend_row(ol, ql, cache, cache, w, w, lo, pos, w, R, scale, cap,
                   st->scores + (size_t)omp_get_thread_num() * st->max_T);
        for (int i = 0; i < dv; i++) {
            float acc = 0;
            for (int j = 0; j < R; j++) acc += wv[(size_t)i * R + j] * ol[j];
            ws->att[((size_t)b * H + h) * dv + i] = acc;
        }
    }
    block_residual(c, L->attn_out_norm, ws->att, &L->o, L->o_bias, B, ws);
}

static void gqa_step(const ModelConfig *c, const LayerWeights *L, int layer, DecodeState *st, int pos) {
    Workspace *ws = &st->ws;
    int B = st->batch, H = c->n_heads, G = c->n_kv_heads, d = c->head_dim, w = st->width, rep = H / G;
    gqa_qkv(c, L, B, ws);
    RopeLayout q_rope = {.n_heads = H, .head_stride = d, .offset = 0, .interleave = 0};
    RopeLayout k_rope = {.n_heads = G, .head_stride = d, .offset = 0, .interleave = 0};
    rope_forward(ws->q, (int64_t)H * d, &st->rope, B, 1, pos, &q_rope);
    rope_forward(ws->k, (int64_t)G * d, &st->rope, B, 1, pos, &k_rope);
    for (int b = 0; b < B; b++) {
        float *row = cache_of(st, layer, b) + (size_t)pos * w;
        memcpy(row, ws->k + (size_t)b * G * d, (size_t)G * d * sizeof(float));
        memcpy(row + G * d, ws->v + (size_t)b * G * d, (size_t)G * d * sizeof(float));
    }
    int lo = window_start(c, layer, pos);
    float scale = (float)hf_config_attn_scale(c), cap = (float)c->attn_softcap;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H, g = h / rep;
        const float *cache = cache_of(st, layer, b);
        attend_row(ws->att + ((size_t)b * H + h) * d, ws->q + ((size_t)b * H + h) * d, cache + g * d,
                   cache + G * d + g * d, w, w, lo, pos, d, d, scale, cap,
                   st->scores + (size_t)omp_get_thread_num() * st->max_T);
    }
    block_residual(c, L->attn_out_norm, ws->att, &L->o, L->o_bias, B, ws);
}

int decode_step(const Model *m, DecodeState *st, int32_t token, float *logits) {
    if (st->batch != 1) return tm_fail("decode_step: the state holds %d sequences (decode_step_batch)", st->batch);
    return decode_step_batch(m, st, &token, logits);
}

int decode_step_batch(const Model *m, DecodeState *st, const int32_t *tokens, float *logits) {
    const ModelConfig *c = &m->cfg;
    if (st->n >= st->max_T) return tm_fail("decode: the cache holds %d tokens and is full", st->max_T);
    Workspace *ws = &st->ws;
    int B = st->batch, pos = st->n, D = c->hidden_size;
    model_embed_rows(m, tokens, B, ws->x);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->w.layers[l];
        rmsnorm_forward(ws->xn, ws->x, L->input_norm, B, D, c->rms_norm_eps);
        if (is_mla(m)) mla_step(c, L, l, st, pos);
        else gqa_step(c, L, l, st, pos);
        rmsnorm_forward(ws->xn, ws->x, L->post_norm, B, D, c->rms_norm_eps);
        mlp_block(c, L, l, ws);
    }
    rmsnorm_forward(ws->xn, ws->x, m->w.final_norm, B, D, c->rms_norm_eps);
    model_logits(m, ws->xn, B, logits);
    st->n++;
    return 0;
}
