#include "model/decode.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/attention.h"
#include "model/gqa.h"
#include "model/matmul.h"
#include "model/mla.h"
#include "model/rmsnorm.h"

static int is_mla(const Model *m) { return hf_config_is_mla(&m->cfg); }

static void rows_init(DecodeRows *r, const ModelConfig *c, int B) {
    size_t D = (size_t)c->hidden_size, H = (size_t)c->n_heads;
    size_t qk = hf_config_qk_head_dim(c), dv = hf_config_v_head_dim(c), kv = (size_t)c->n_kv_heads * c->head_dim;
    r->x = mallocCheck(B * D * sizeof(float));
    r->xn = mallocCheck(B * D * sizeof(float));
    r->o = mallocCheck(B * D * sizeof(float));
    r->q = mallocCheck(B * H * qk * sizeof(float));
    r->att = mallocCheck(B * H * dv * sizeof(float));
    if (hf_config_is_mla(c)) {
        const MlaConfig *m = &c->mla;
        size_t lw = (size_t)m->kv_lora_rank + m->qk_rope_head_dim, cw = (size_t)m->kv_lora_rank;
        if ((size_t)m->q_lora_rank > lw) lw = (size_t)m->q_lora_rank; /* also q_a's output */
        if ((size_t)m->q_lora_rank > cw) cw = (size_t)m->q_lora_rank;
        r->lat = mallocCheck(B * lw * sizeof(float));
        r->cn = mallocCheck(B * cw * sizeof(float));
    } else {
        r->k = mallocCheck(B * kv * sizeof(float));
        r->v = mallocCheck(B * kv * sizeof(float));
    }
    if (hf_config_has_dense_layer(c)) {
        r->h1 = mallocCheck(B * (size_t)c->intermediate_size * sizeof(float));
        r->h2 = mallocCheck(B * (size_t)c->intermediate_size * sizeof(float));
    }
    if (c->n_experts)
        moe_scratch_init(&r->moe, B, c->hidden_size, c->expert_intermediate_size, c->n_experts, c->n_experts_per_tok);
}

static void rows_free(DecodeRows *r) {
    float *all[] = {r->x, r->xn, r->o, r->q, r->att, r->lat, r->cn, r->k, r->v, r->h1, r->h2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    if (r->moe.rows) moe_scratch_free(&r->moe);
    memset(r, 0, sizeof *r);
}

/* r->x += out_norm(r->o), r->o [B, D] a block's output (sandwich norms). */
static void add_normed(const ModelConfig *c, const float *out_norm, int B, DecodeRows *r) {
    int64_t n = (int64_t)B * c->hidden_size;
    rmsnorm_forward(r->o, r->o, out_norm, B, c->hidden_size, c->rms_norm_eps);
    for (int64_t i = 0; i < n; i++) r->x[i] += r->o[i];
}

/* r->x += o_proj of the attention output (through the sandwich norm). */
static void attn_out(const ModelConfig *c, const LayerWeights *L, int B, DecodeRows *r) {
    if (!L->attn_out_norm) {
        matmul_forward(r->x, r->att, &L->o, L->o_bias, B, 1);
        return;
    }
    matmul_forward(r->o, r->att, &L->o, L->o_bias, B, 0);
    add_normed(c, L->attn_out_norm, B, r);
}

/* r->x += the MLP of r->xn (through the sandwich norm). */
static void mlp_out(const ModelConfig *c, const LayerWeights *L, int layer, int B, DecodeRows *r) {
    if (!L->mlp_out_norm) {
        mlp_apply(c, L, layer, r->xn, r->x, B, r->h1, r->h2, r->h1, &r->moe);
        return;
    }
    memset(r->o, 0, (size_t)B * c->hidden_size * sizeof(float));
    mlp_apply(c, L, layer, r->xn, r->o, B, r->h1, r->h2, r->h1, &r->moe);
    add_normed(c, L->mlp_out_norm, B, r);
}

int decode_init(DecodeState *st, const Model *m, int max_T) { return decode_init_batch(st, m, max_T, 1); }

int decode_init_batch(DecodeState *st, const Model *m, int max_T, int B) {
    const ModelConfig *c = &m->cfg;
    memset(st, 0, sizeof *st);
    st->max_T = max_T;
    st->batch = B;
    int H = c->n_heads, R = c->mla.kv_lora_rank;
    st->width = is_mla(m) ? R + c->mla.qk_rope_head_dim : 2 * c->n_kv_heads * c->head_dim;
    st->cache = mallocCheck((size_t)c->n_layers * B * max_T * st->width * sizeof(float));
    rows_init(&st->r, c, B);
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
    rows_free(&st->r);
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
    DecodeRows *r = &st->r;
    int B = st->batch, H = c->n_heads, dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim;
    int R = m->kv_lora_rank, qk = dn + dr, w = st->width;
    mla_queries(c, L, r->xn, B, r->lat, r->cn, NULL, r->q);
    matmul_forward(r->lat, r->xn, &L->kv_a, L->kv_a_bias, B, 0);
    mla_latent(c, L, r->lat, B, r->cn, r->cn, NULL);
    RopeLayout q_rope = {.n_heads = H, .head_stride = qk, .offset = dn, .interleave = m->rope_interleave};
    RopeLayout k_rope = {.n_heads = 1, .head_stride = R + dr, .offset = R, .interleave = m->rope_interleave};
    rope_forward(r->q, (int64_t)H * qk, &st->rope, B, 1, pos, &q_rope);
    rope_forward(r->lat, R + dr, &st->rope, B, 1, pos, &k_rope);
    for (int b = 0; b < B; b++) {
        float *row = cache_of(st, layer, b) + (size_t)pos * w;
        memcpy(row, r->cn + (size_t)b * R, (size_t)R * sizeof(float));
        memcpy(row + R, r->lat + (size_t)b * (R + dr) + R, (size_t)dr * sizeof(float));
    }
    const float *kv_b = st->kv_b[layer];
    float scale = (float)hf_config_attn_scale(c), cap = (float)c->attn_softcap;
    int lo = window_start(c, layer, pos);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        /* query against a cache row [c ; k_pe]: [W_kb_h^T q_nope_h ; q_pe_h] */
        const float *qn = r->q + ((size_t)b * H + h) * qk;
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
            r->att[((size_t)b * H + h) * dv + i] = acc;
        }
    }
    attn_out(c, L, B, r);
}

static void gqa_step(const ModelConfig *c, const LayerWeights *L, int layer, DecodeState *st, int pos) {
    DecodeRows *r = &st->r;
    int B = st->batch, H = c->n_heads, G = c->n_kv_heads, d = c->head_dim, w = st->width, rep = H / G;
    gqa_project(c, L, r->xn, B, r->q, r->k, r->q, r->k, r->v, NULL);
    RopeLayout q_rope = {.n_heads = H, .head_stride = d, .offset = 0, .interleave = 0};
    RopeLayout k_rope = {.n_heads = G, .head_stride = d, .offset = 0, .interleave = 0};
    rope_forward(r->q, (int64_t)H * d, &st->rope, B, 1, pos, &q_rope);
    rope_forward(r->k, (int64_t)G * d, &st->rope, B, 1, pos, &k_rope);
    for (int b = 0; b < B; b++) {
        float *row = cache_of(st, layer, b) + (size_t)pos * w;
        memcpy(row, r->k + (size_t)b * G * d, (size_t)G * d * sizeof(float));
        memcpy(row + G * d, r->v + (size_t)b * G * d, (size_t)G * d * sizeof(float));
    }
    int lo = window_start(c, layer, pos);
    float scale = (float)hf_config_attn_scale(c), cap = (float)c->attn_softcap;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H, g = h / rep;
        const float *cache = cache_of(st, layer, b);
        attend_row(r->att + ((size_t)b * H + h) * d, r->q + ((size_t)b * H + h) * d, cache + g * d,
                   cache + G * d + g * d, w, w, lo, pos, d, d, scale, cap,
                   st->scores + (size_t)omp_get_thread_num() * st->max_T);
    }
    attn_out(c, L, B, r);
}

int decode_step(const Model *m, DecodeState *st, int32_t token, float *logits) {
    if (st->batch != 1) return tm_fail("decode_step: the state holds %d sequences (decode_step_batch)", st->batch);
    return decode_step_batch(m, st, &token, logits);
}

int decode_step_batch(const Model *m, DecodeState *st, const int32_t *tokens, float *logits) {
    const ModelConfig *c = &m->cfg;
    if (st->n >= st->max_T) return tm_fail("decode: the cache holds %d tokens and is full", st->max_T);
    DecodeRows *r = &st->r;
    int B = st->batch, pos = st->n, D = c->hidden_size;
    model_embed_rows(m, tokens, B, r->x);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->w.layers[l];
        rmsnorm_forward(r->xn, r->x, L->input_norm, B, D, c->rms_norm_eps);
        if (is_mla(m)) mla_step(c, L, l, st, pos);
        else gqa_step(c, L, l, st, pos);
        rmsnorm_forward(r->xn, r->x, L->post_norm, B, D, c->rms_norm_eps);
        mlp_out(c, L, l, B, r);
    }
    rmsnorm_forward(r->xn, r->x, m->w.final_norm, B, D, c->rms_norm_eps);
    model_logits(m, r->xn, B, logits);
    st->n++;
    return 0;
}
