#include "pipeline/build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

void mla_config_from(ModelConfig *out, const ModelConfig *orig, const MlaAttn *a, BuildKind kind, int rope_interleave) {
    *out = *orig;
    /* gemma2 keeps its norms, GeGLU, soft-caps and windows around MLA attention (our gemma2_mla format) */
    int gemma = orig->arch == TM_ARCH_GEMMA2;
    out->arch = gemma ? TM_ARCH_GEMMA2_MLA : TM_ARCH_DEEPSEEK_V3;
    snprintf(out->model_type, sizeof out->model_type, "%s", tm_arch_name(out->arch));
    out->n_kv_heads = orig->n_heads;
    out->head_dim = out->rotary_dim = a->dr;
    out->fused_proj = 0;
    out->qkv_bias = out->o_bias = orig->qkv_bias || orig->o_bias;
    if (!gemma) out->sliding_window = out->window_even_layers = 0; /* DeepSeek attention has no window */
    /* mla_from_rorope folds the original's score scale into the queries */
    out->query_pre_attn_scalar = gemma ? a->dn + a->dr : 0;
    out->qk_norm = 0;
    out->first_moe_layer = orig->n_experts ? orig->first_moe_layer : orig->n_layers;
    out->mla = (MlaConfig){.kv_lora_rank = a->R, .q_lora_rank = a->Rq, .qk_nope_head_dim = a->dn,
                           .qk_rope_head_dim = a->dr, .v_head_dim = a->dv, .rope_interleave = rope_interleave,
                           .latent_norms = kind != BUILD_EXACT,
                           .q_bias = kind != BUILD_NATIVE && a->Rq == 0 && a->q_bias != NULL};
}

int build_drops_q_bias(const MlaAttn *a) { return a->Rq == 0 && a->q_bias != NULL; }

static void *own(BuiltModel *b, size_t bytes) {
    if (b->n_owned == b->cap_owned) {
        b->cap_owned = b->cap_owned ? 2 * b->cap_owned : 64;
        b->owned = realloc(b->owned, (size_t)b->cap_owned * sizeof *b->owned);
        if (!b->owned) tm_die("out of memory");
    }
    return b->owned[b->n_owned++] = callocCheck(1, bytes);
}

static StTensor *push(BuiltModel *b, const char *name) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->tensors = realloc(b->tensors, (size_t)b->cap * sizeof *b->tensors);
        if (!b->tensors) tm_die("out of memory");
    }
    StTensor *t = &b->tensors[b->n++];
    memset(t, 0, sizeof *t);
    t->name = own(b, strlen(name) + 1);
    strcpy(t->name, name);
    t->file = "(converted model)";
    return t;
}

/* Rope rows are kept in rotate-half order while converting; DeepSeek's
 * interleaved layout wants pair i at rows (2i, 2i+1). Row i of a width-dr
 * rope block in the output comes from row rope_src(i). */
static int rope_src(int i, int dr, int interleave) { return interleave ? (i % 2 ? i / 2 + dr / 2 : i / 2) : i; }

/* An fp32 tensor [rows, cols] (cols 0: a vector) from float64 rows; rows in
 * [rope0, rope0 + dr) of each block of `block` rows are permuted by rope_src. */
static void add_f32(BuiltModel *b, const char *name, const double *src, int64_t rows, int64_t cols, int block,
                    int rope0, int dr, int interleave) {
    StTensor *t = push(b, name);
    int64_t w = cols ? cols : 1;
    float *data = own(b, (size_t)(rows * w) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        int64_t sr = r;
        if (block) {
            int64_t in_block = r % block;
            if (in_block >= rope0 && in_block < rope0 + dr)
                sr = r - in_block + rope0 + rope_src((int)(in_block - rope0), dr, interleave);
        }
        for (int64_t c = 0; c < w; c++) data[r * w + c] = src ? (float)src[sr * w + c] : 0.0f;
    }
    t->dtype = TM_F32;
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->begin = 0;
    t->end = (uint64_t)(rows * w) * sizeof(float);
    t->data = data;
}

/* A vector: `values` when set (a fitted norm weight), else `value` throughout. */
static void add_vector(BuiltModel *b, const char *name, int64_t n, const double *values, double value) {
    double *v = mallocCheck((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = values ? values[i] : value;
    add_f32(b, name, v, n, 0, 0, 0, 0, 0);
    free(v);
}

static void add_const(BuiltModel *b, const char *name, int64_t n, double value) { add_vector(b, name, n, NULL, value); }

/* The deepseek_v3 name of a tensor carried over unchanged; 0 when the
 * conversion replaces or drops it. */
static int carried_name(const char *name, const ModelConfig *orig, char *out, size_t n) {
    int layer, expert, len = 0;
    char w[8];
    if (orig->tie_word_embeddings && strcmp(name, "lm_head.weight") == 0) return 0;
    if (strstr(name, "rotary_emb.inv_freq")) return 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &len) == 1 && len > 0) {
        const char *rest = name + len;
        if (!strncmp(rest, "self_attn.q_proj.", 17) || !strncmp(rest, "self_attn.k_proj.", 17) ||
            !strncmp(rest, "self_attn.v_proj.", 17) || !strncmp(rest, "self_attn.qkv_proj.", 19))
            return 0;
        if (!strcmp(rest, "self_attn.q_norm.weight") || !strcmp(rest, "self_attn.k_norm.weight"))
            return 0; /* QK-norm: folded into the projections (pipeline/qk_fold.c) */
        if (!strcmp(rest, "block_sparse_moe.gate.weight")) {
            snprintf(out, n, "model.layers.%d.mlp.gate.weight", layer);
            return 1;
        }
        if (sscanf(rest, "block_sparse_moe.experts.%d.%2[w123].weight", &expert, w) == 2) {
            const char *proj = !strcmp(w, "w1") ? "gate_proj" : !strcmp(w, "w2") ? "down_proj" : "up_proj";
            snprintf(out, n, "model.layers.%d.mlp.experts.%d.%s.weight", layer, expert, proj);
            return 1;
        }
    }
    snprintf(out, n, "%s", name);
    return 1;
}

/* phi3's mlp.gate_up_proj [gate; up] carried as DeepSeek's gate_proj and
 * up_proj: two views of its halves. 0 when `name` is not such a tensor. */
static int carry_gate_up(BuiltModel *b, const StTensor *src, const char *name) {
    static const char fused[] = "mlp.gate_up_proj.weight";
    size_t n = strlen(name), nf = sizeof fused - 1;
    if (n < nf || strcmp(name + n - nf, fused) || src->ndim != 2) return 0;
    uint64_t half = (src->end - src->begin) / 2;
    for (int k = 0; k < 2; k++) {
        char out[192];
        snprintf(out, sizeof out, "%.*s%s", (int)(n - nf), name, k ? "mlp.up_proj.weight" : "mlp.gate_proj.weight");
        StTensor *t = push(b, out);
        char *keep = t->name;
        *t = *src;
        t->name = keep;
        t->shape[0] = src->shape[0] / 2;
        t->begin = src->begin + k * half;
        t->end = t->begin + half;
        t->data = (const char *)src->data + k * half;
    }
    return 1;
}

/* The original o_proj of a layer whose attention fit made a new one. */
static int refitted_o_proj(const char *name, const MlaAttn *layers, const ModelPart *part) {
    int layer, len = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &len) != 1 || !len) return 0;
    if (layer < part->first || layer >= part->end) return 0;
    return !strcmp(name + len, "self_attn.o_proj.weight") && layers[layer].o;
}

static void add_layer(BuiltModel *b, const MlaAttn *a, int l, const ModelConfig *c, int has_o_bias) {
    /* the native export takes the kv_b_proj fitted to its layernorm, when there is one */
    int fitted = c->mla.latent_norms && a->kv_b_native;
    char name[192];
    int H = a->H, D = a->D, qk = a->dn + a->dr, dr = a->dr, il = c->mla.rope_interleave;
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.self_attn." suffix, l), name)
    if (a->Rq) {
        add_f32(b, NAME("q_a_proj.weight"), a->q_a, a->Rq, D, 0, 0, 0, 0);
        if (c->qkv_bias) add_f32(b, NAME("q_a_proj.bias"), a->q_a_bias, a->Rq, 0, 0, 0, 0, 0);
        add_vector(b, NAME("q_a_layernorm.weight"), a->Rq, a->q_norm_w, a->q_norm);
        add_f32(b, NAME("q_b_proj.weight"), a->q_b, (int64_t)H * qk, a->Rq, qk, a->dn, dr, il);
    } else {
        add_f32(b, NAME("q_proj.weight"), a->q, (int64_t)H * qk, D, qk, a->dn, dr, il);
        if (c->mla.q_bias) add_f32(b, NAME("q_proj.bias"), a->q_bias, (int64_t)H * qk, 0, qk, a->dn, dr, il);
    }
    add_f32(b, NAME("kv_a_proj_with_mqa.weight"), a->kv_a, a->R + dr, D, a->R + dr, a->R, dr, il);
    if (c->qkv_bias) add_f32(b, NAME("kv_a_proj_with_mqa.bias"), a->kv_a_bias, a->R + dr, 0, a->R + dr, a->R, dr, il);
    add_vector(b, NAME("kv_a_layernorm.weight"), a->R, a->kv_norm_w, fitted ? 1.0 : a->kv_norm);
    add_f32(b, NAME("kv_b_proj.weight"), fitted ? a->kv_b_native : a->kv_b, (int64_t)H * (a->dn + a->dv), a->R, 0, 0,
            0, 0);
    if (a->o) add_f32(b, NAME("o_proj.weight"), a->o, D, (int64_t)H * a->dv, 0, 0, 0, 0);
    if (c->o_bias && !has_o_bias) add_const(b, NAME("o_proj.bias"), D, 0.0);
#undef NAME
}

int built_model_init(BuiltModel *b, const Model *orig, const MlaAttn *layers, BuildKind kind, int rope_interleave) {
    memset(b, 0, sizeof *b);
    const ModelPart *part = &orig->part;
    if (part->first >= part->end)
        return tm_fail("cannot build a converted model of a part with no layers ([%d, %d))", part->first, part->end);
    ModelConfig cfg;
    mla_config_from(&cfg, &orig->cfg, &layers[part->first], kind, rope_interleave);
    char name[192];
    for (int i = 0; i < orig->set.n; i++) {
        const StTensor *src = orig->set.sorted[i];
        if (!model_part_wants(part, &orig->cfg, src->name)) continue; /* another part's */
        if (!carried_name(src->name, &orig->cfg, name, sizeof name) || refitted_o_proj(src->name, layers, part)) continue;
        if (carry_gate_up(b, src, name)) continue;
        StTensor *t = push(b, name);
        char *keep = t->name;
        *t = *src;
        t->name = keep;
    }
    for (int l = part->first; l < part->end; l++)
        add_layer(b, &layers[l], l, &cfg, orig->w.layers[l].o_bias != NULL);
    StSet set;
    st_set_from_tensors(&set, b->tensors, b->n);
    if (model_init_part(&b->model, &cfg, &set, "(converted model)", part)) {
        built_model_free(b);
        return -1;
    }
    return 0;
}

void built_model_free(BuiltModel *b) {
    if (b->model.w.layers) model_free(&b->model);
    for (int i = 0; i < b->n_owned; i++) free(b->owned[i]);
    free(b->owned);
    free(b->tensors);
    memset(b, 0, sizeof *b);
}
