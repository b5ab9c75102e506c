#include "model/weights.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/finite.h"

/* What the config says one tensor must be. */
typedef struct {
    char name[160];
    int64_t rows, cols; /* vector: cols == 0 */
    Tensor *mat;        /* matrices bind as views ... */
    float **vec;        /* ... vectors as fp32 copies */
    float add;          /* added to each element of a vector (gemma2's (1 + w) norms) */
    char why[200];      /* the config fields that fix the shape, for messages */
} ParamSpec;

typedef struct {
    ParamSpec *v;
    int n, cap;
} SpecList;

static ParamSpec *add_spec(SpecList *l, const char *why, const char *fmt, int layer, int expert) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = realloc(l->v, (size_t)l->cap * sizeof *l->v);
        if (!l->v) tm_die("out of memory");
    }
    ParamSpec *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    if (expert >= 0) snprintf(s->name, sizeof s->name, fmt, layer, expert);
    else snprintf(s->name, sizeof s->name, fmt, layer);
    snprintf(s->why, sizeof s->why, "%s", why);
    return s;
}

static void add_mat(SpecList *l, Tensor *slot, int64_t rows, int64_t cols, const char *why, const char *fmt, int layer,
                    int expert) {
    ParamSpec *s = add_spec(l, why, fmt, layer, expert);
    s->rows = rows;
    s->cols = cols;
    s->mat = slot;
}

static void add_vec(SpecList *l, float **slot, int64_t n, const char *why, const char *fmt, int layer) {
    ParamSpec *s = add_spec(l, why, fmt, layer, -1);
    s->rows = n;
    s->vec = slot;
}

/* An RMSNorm weight of width D: gemma2's multiply by (1 + w). */
static void add_norm(SpecList *l, float **slot, const ModelConfig *c, const char *fmt, int layer) {
    add_vec(l, slot, c->hidden_size, "hidden_size", fmt, layer);
    if (c->norm_plus_one) l->v[l->n - 1].add = 1.0f;
}

static void gqa_attention_specs(SpecList *l, LayerWeights *L, const ModelConfig *c, int i) {
    int64_t D = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    char q_why[200], kv_why[200];
    snprintf(q_why, sizeof q_why, "num_attention_heads=%d x head_dim=%d, hidden_size=%lld", c->n_heads, c->head_dim,
             (long long)D);
    snprintf(kv_why, sizeof kv_why, "num_key_value_heads=%d x head_dim=%d, hidden_size=%lld", c->n_kv_heads,
             c->head_dim, (long long)D);
    if (c->fused_proj) {
        char why[200];
        snprintf(why, sizeof why, "(num_attention_heads=%d + 2 x num_key_value_heads=%d) x head_dim=%d, hidden_size=%lld",
                 c->n_heads, c->n_kv_heads, c->head_dim, (long long)D);
        add_mat(l, &L->qkv, qd + 2 * kvd, D, why, "model.layers.%d.self_attn.qkv_proj.weight", i, -1);
    } else {
        add_mat(l, &L->q, qd, D, q_why, "model.layers.%d.self_attn.q_proj.weight", i, -1);
        add_mat(l, &L->k, kvd, D, kv_why, "model.layers.%d.self_attn.k_proj.weight", i, -1);
        add_mat(l, &L->v, kvd, D, kv_why, "model.layers.%d.self_attn.v_proj.weight", i, -1);
    }
    add_mat(l, &L->o, D, qd, q_why, "model.layers.%d.self_attn.o_proj.weight", i, -1);
    if (c->qkv_bias) {
        const char *why = c->arch == TM_ARCH_QWEN2 ? "model_type qwen2 (q/k/v bias)" : "attention_bias=true";
        add_vec(l, &L->q_bias, qd, why, "model.layers.%d.self_attn.q_proj.bias", i);
        add_vec(l, &L->k_bias, kvd, why, "model.layers.%d.self_attn.k_proj.bias", i);
        add_vec(l, &L->v_bias, kvd, why, "model.layers.%d.self_attn.v_proj.bias", i);
    }
    if (c->o_bias) add_vec(l, &L->o_bias, D, "attention_bias=true", "model.layers.%d.self_attn.o_proj.bias", i);
    if (c->qk_norm) {
        add_vec(l, &L->q_head_norm, c->head_dim, "head_dim", "model.layers.%d.self_attn.q_norm.weight", i);
        add_vec(l, &L->k_head_norm, c->head_dim, "head_dim", "model.layers.%d.self_attn.k_norm.weight", i);
    }
}

/* DeepSeek-V3 attention: which tensors exist follows transformers'
 * DeepseekV3Attention (biases on q_a_proj, kv_a_proj_with_mqa and o_proj
 * only, under attention_bias). */
static void mla_attention_specs(SpecList *l, LayerWeights *L, const ModelConfig *c, int i) {
    const MlaConfig *m = &c->mla;
    int64_t D = c->hidden_size, H = c->n_heads, qk = m->qk_nope_head_dim + m->qk_rope_head_dim;
    int64_t R = m->kv_lora_rank, dr = m->qk_rope_head_dim, Rq = m->q_lora_rank;
    const char *q_why = "num_attention_heads x (qk_nope_head_dim + qk_rope_head_dim), hidden_size";
    const char *bias_why = "attention_bias=true";
    if (Rq) {
        add_mat(l, &L->q_a, Rq, D, "q_lora_rank, hidden_size", "model.layers.%d.self_attn.q_a_proj.weight", i, -1);
        if (c->qkv_bias) add_vec(l, &L->q_a_bias, Rq, bias_why, "model.layers.%d.self_attn.q_a_proj.bias", i);
        add_vec(l, &L->q_a_norm, Rq, "q_lora_rank", "model.layers.%d.self_attn.q_a_layernorm.weight", i);
        add_mat(l, &L->q_b, H * qk, Rq, "num_attention_heads x (qk_nope_head_dim + qk_rope_head_dim), q_lora_rank",
                "model.layers.%d.self_attn.q_b_proj.weight", i, -1);
    } else {
        add_mat(l, &L->q, H * qk, D, q_why, "model.layers.%d.self_attn.q_proj.weight", i, -1);
        if (m->q_bias) add_vec(l, &L->q_bias, H * qk, "converter's exact model", "model.layers.%d.self_attn.q_proj.bias", i);
    }
    add_mat(l, &L->kv_a, R + dr, D, "kv_lora_rank + qk_rope_head_dim, hidden_size",
            "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", i, -1);
    if (c->qkv_bias) add_vec(l, &L->kv_a_bias, R + dr, bias_why, "model.layers.%d.self_attn.kv_a_proj_with_mqa.bias", i);
    add_vec(l, &L->kv_a_norm, R, "kv_lora_rank", "model.layers.%d.self_attn.kv_a_layernorm.weight", i);
    add_mat(l, &L->kv_b, H * (m->qk_nope_head_dim + m->v_head_dim), R,
            "num_attention_heads x (qk_nope_head_dim + v_head_dim), kv_lora_rank",
            "model.layers.%d.self_attn.kv_b_proj.weight", i, -1);
    add_mat(l, &L->o, D, H * m->v_head_dim, "hidden_size, num_attention_heads x v_head_dim",
            "model.layers.%d.self_attn.o_proj.weight", i, -1);
    if (c->o_bias) add_vec(l, &L->o_bias, D, bias_why, "model.layers.%d.self_attn.o_proj.bias", i);
}

/* Expert tensor names: Mixtral's block_sparse_moe w1/w2/w3, DeepSeek's and
 * Qwen3-MoE's mlp.experts gate/up/down. */
static void moe_specs(SpecList *l, LayerWeights *L, const ModelConfig *c, int i) {
    int ds = c->arch == TM_ARCH_DEEPSEEK_V3 || c->arch == TM_ARCH_QWEN3_MOE;
    int64_t D = c->hidden_size, I = c->expert_intermediate_size;
    const char *why = ds ? "moe_intermediate_size, hidden_size" : "intermediate_size, hidden_size";
    const char *router_why = c->arch == TM_ARCH_DEEPSEEK_V3 ? "n_routed_experts, hidden_size"
                             : ds                          ? "num_experts, hidden_size"
                                                           : "num_local_experts, hidden_size";
    if (!L->experts) L->experts = callocCheck((size_t)c->n_experts, sizeof *L->experts); /* kept when bound */
    add_mat(l, &L->router, c->n_experts, D, router_why,
            ds ? "model.layers.%d.mlp.gate.weight" : "model.layers.%d.block_sparse_moe.gate.weight", i, -1);
    for (int e = 0; e < c->n_experts; e++) {
        ExpertWeights *E = &L->experts[e];
        add_mat(l, &E->gate, I, D, why,
                ds ? "model.layers.%d.mlp.experts.%d.gate_proj.weight" : "model.layers.%d.block_sparse_moe.experts.%d.w1.weight",
                i, e);
        add_mat(l, &E->down, D, I, why,
                ds ? "model.layers.%d.mlp.experts.%d.down_proj.weight" : "model.layers.%d.block_sparse_moe.experts.%d.w2.weight",
                i, e);
        add_mat(l, &E->up, I, D, why,
                ds ? "model.layers.%d.mlp.experts.%d.up_proj.weight" : "model.layers.%d.block_sparse_moe.experts.%d.w3.weight",
                i, e);
    }
}

static void dense_mlp_specs(SpecList *l, LayerWeights *L, const ModelConfig *c, int i) {
    int64_t D = c->hidden_size, I = c->intermediate_size;
    const char *why = "intermediate_size, hidden_size";
    if (c->fused_proj) {
        add_mat(l, &L->gate_up, 2 * I, D, "2 x intermediate_size, hidden_size", "model.layers.%d.mlp.gate_up_proj.weight",
                i, -1);
    } else {
        add_mat(l, &L->gate, I, D, why, "model.layers.%d.mlp.gate_proj.weight", i, -1);
        add_mat(l, &L->up, I, D, why, "model.layers.%d.mlp.up_proj.weight", i, -1);
    }
    add_mat(l, &L->down, D, I, why, "model.layers.%d.mlp.down_proj.weight", i, -1);
    if (c->mlp_bias) {
        add_vec(l, &L->gate_bias, I, "mlp_bias=true", "model.layers.%d.mlp.gate_proj.bias", i);
        add_vec(l, &L->up_bias, I, "mlp_bias=true", "model.layers.%d.mlp.up_proj.bias", i);
        add_vec(l, &L->down_bias, D, "mlp_bias=true", "model.layers.%d.mlp.down_proj.bias", i);
    }
}

/* The parameter list of a llama/qwen2/mistral/mixtral/deepseek_v3/qwen3/qwen3_moe/phi3/gemma2 model,
 * or of the part of it `p` names (the embedding also for a tied head). */
static void build_specs(SpecList *l, ModelWeights *w, const ModelConfig *c, const ModelPart *p) {
    int64_t D = c->hidden_size, V = c->vocab_size;
    const char *v_why = "vocab_size, hidden_size";
    if (p->embed || (p->head && c->tie_word_embeddings))
        add_mat(l, &w->embed, V, D, v_why, "model.embed_tokens.weight", 0, -1);
    for (int i = p->first; i < p->end; i++) {
        LayerWeights *L = &w->layers[i];
        add_norm(l, &L->input_norm, c, "model.layers.%d.input_layernorm.weight", i);
        if (hf_config_is_mla(c)) mla_attention_specs(l, L, c, i);
        else gqa_attention_specs(l, L, c, i);
        if (c->sandwich_norms) {
            add_norm(l, &L->attn_out_norm, c, "model.layers.%d.post_attention_layernorm.weight", i);
            add_norm(l, &L->post_norm, c, "model.layers.%d.pre_feedforward_layernorm.weight", i);
            add_norm(l, &L->mlp_out_norm, c, "model.layers.%d.post_feedforward_layernorm.weight", i);
        } else {
            add_norm(l, &L->post_norm, c, "model.layers.%d.post_attention_layernorm.weight", i);
        }
        if (hf_config_layer_is_moe(c, i)) moe_specs(l, L, c, i);
        else dense_mlp_specs(l, L, c, i);
    }
    if (p->head) {
        add_norm(l, &w->final_norm, c, "model.norm.weight", 0);
        if (!c->tie_word_embeddings) add_mat(l, &w->lm_head, V, D, "tie_word_embeddings=false", "lm_head.weight", 0, -1);
    }
}

int weights_tensor_part(const char *name) {
    static const char layers[] = "model.layers.";
    if (strncmp(name, layers, sizeof layers - 1) == 0) {
        const char *p = name + sizeof layers - 1;
        long long i = 0;
        if (*p < '0' || *p > '9') return WEIGHT_PART_OTHER;
        for (; *p >= '0' && *p <= '9'; p++)
            if ((i = 10 * i + (*p - '0')) > INT_MAX) return WEIGHT_PART_OTHER;
        return *p == '.' ? (int)i : WEIGHT_PART_OTHER;
    }
    if (strcmp(name, "model.embed_tokens.weight") == 0) return WEIGHT_PART_EMBED;
    if (strcmp(name, "model.norm.weight") == 0 || strcmp(name, "lm_head.weight") == 0) return WEIGHT_PART_HEAD;
    return WEIGHT_PART_OTHER;
}

int model_part_wants(const ModelPart *p, const ModelConfig *c, const char *name) {
    int k = weights_tensor_part(name);
    if (k >= 0) return k >= c->n_layers || (k >= p->first && k < p->end);
    if (k == WEIGHT_PART_EMBED) return p->embed || (p->head && c->tie_word_embeddings);
    if (k == WEIGHT_PART_HEAD) return p->head;
    return 1;
}

static ModelPart whole(const ModelConfig *c) { return (ModelPart){.first = 0, .end = c->n_layers, .embed = 1, .head = 1}; }

static void *own(ModelWeights *w, size_t bytes) {
    if (w->n_owned == w->cap_owned) {
        w->cap_owned = w->cap_owned ? 2 * w->cap_owned : 64;
        w->owned = realloc(w->owned, (size_t)w->cap_owned * sizeof *w->owned);
        if (!w->owned) tm_die("out of memory");
    }
    return w->owned[w->n_owned++] = mallocCheck(bytes);
}

static int bind_one(ModelWeights *w, const ParamSpec *s, const StTensor *t, const char *config_path) {
    char have[160], want[160];
    int64_t want_shape[2] = {s->rows, s->cols};
    int want_nd = s->cols ? 2 : 1;
    int ok = t->ndim == want_nd && t->shape[0] == s->rows && (want_nd == 1 || t->shape[1] == s->cols);
    if (!ok)
        return tm_fail("%s: tensor '%s' has shape %s, but %s (%s) implies %s", t->file, s->name,
                       st_shape_str(t->ndim, t->shape, have, sizeof have), config_path, s->why,
                       st_shape_str(want_nd, want_shape, want, sizeof want));
    if (!tm_dtype_is_weight_float(t->dtype))
        return tm_fail("%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16", t->file, s->name,
                       tm_dtype_name(t->dtype));
    size_t es = tm_dtype_size(t->dtype), bytes = (size_t)(t->end - t->begin);
    Tensor view = {.data = t->data, .dtype = t->dtype, .rows = want_nd == 2 ? s->rows : 1,
                   .cols = want_nd == 2 ? s->cols : s->rows, .name = t->name};
    if ((uintptr_t)view.data % es) { /* a legal but unaligned file: copy this one tensor */
        void *copy = own(w, bytes);
        memcpy(copy, t->data, bytes);
        view.data = copy;
    }
    if (s->mat) {
        *s->mat = view;
    } else {
        *s->vec = own(w, (size_t)s->rows * sizeof(float));
        tensor_to_f32(&view, 0, s->rows, *s->vec);
        for (int64_t i = 0; i < s->rows && s->add != 0; i++) (*s->vec)[i] += s->add;
    }
    w->n_params += view.rows * view.cols;
    w->n_bytes += bytes;
    return 0;
}

/* Tensors a checkpoint may carry that the forward pass does not use. */
static int ignorable(const char *name, const ModelConfig *c) {
    size_t n = strlen(name);
    const char *suffix = "rotary_emb.inv_freq";
    if (n >= strlen(suffix) && strcmp(name + n - strlen(suffix), suffix) == 0) return 1;
    return c->tie_word_embeddings && strcmp(name, "lm_head.weight") == 0;
}

static int shape_by_name(const void *a, const void *b) {
    return strcmp(((const WeightShape *)a)->name, ((const WeightShape *)b)->name);
}

static int name_vs_shape(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const WeightShape *)elem)->name);
}

int weights_bind(ModelWeights *w, const ModelConfig *c, const StSet *set, const char *config_path,
                 const ModelPart *part) {
    memset(w, 0, sizeof *w);
    if (part->first < 0 || part->first > part->end || part->end > c->n_layers)
        return tm_fail("%s: layers [%d, %d) are not a part of the model's %d layers (num_hidden_layers)", config_path,
                       part->first, part->end, c->n_layers);
    w->layers = callocCheck((size_t)c->n_layers, sizeof *w->layers);
    SpecList specs = {0};
    build_specs(&specs, w, c, part);
    char *used = callocCheck((size_t)set->n + 1, 1);
    int rc = 0;
    for (int i = 0; i < specs.n && !rc; i++) {
        int idx = st_set_index(set, specs.v[i].name);
        if (idx < 0) {
            rc = tm_fail("%s: missing tensor '%s', which %s (%s) requires", set->dir, specs.v[i].name, config_path,
                         specs.v[i].why);
            break;
        }
        used[idx] = 1;
        rc = bind_one(w, &specs.v[i], set->sorted[idx], config_path);
    }
    /* What is left must belong to another part of the model (looked up in the
     * whole model's list, made only when such a tensor turns up). */
    WeightShape *all = NULL;
    int n_all = -1;
    for (int i = 0; i < set->n && !rc; i++) {
        const char *name = set->sorted[i]->name;
        if (used[i] || ignorable(name, c)) continue;
        if (!model_part_wants(part, c, name)) {
            if (n_all < 0) {
                n_all = weights_expected(c, &all);
                qsort(all, (size_t)n_all, sizeof *all, shape_by_name);
            }
            if (bsearch(name, all, (size_t)n_all, sizeof *all, name_vs_shape)) continue;
        }
        rc = tm_fail("%s: tensor '%s' is not part of the model %s describes (model_type %s, num_hidden_layers=%d)",
                     set->sorted[i]->file, name, config_path, c->model_type, c->n_layers);
    }
    free(all);
    free(used);
    free(specs.v);
    if (rc) {
        weights_free(w, c);
        return -1;
    }
    if (c->tie_word_embeddings) w->lm_head = w->embed;
    weights_split_fused(w, c);
    w->dtype = part->first < part->end ? w->layers[part->first].o.dtype
               : w->embed.data         ? w->embed.dtype
                                       : w->lm_head.dtype;
    return 0;
}

/* Rows [row0, row0 + rows) of t, as a tensor of its own. */
static Tensor row_view(const Tensor *t, int64_t row0, int64_t rows) {
    Tensor v = *t;
    v.data = (const char *)t->data + (size_t)(row0 * t->cols) * tm_dtype_size(t->dtype);
    v.rows = rows;
    return v;
}

void weights_split_fused(ModelWeights *w, const ModelConfig *c) {
    if (!c->fused_proj) return;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
            I = c->intermediate_size;
    for (int i = 0; i < c->n_layers; i++) {
        LayerWeights *L = &w->layers[i];
        if (L->qkv.data) {
            L->q = row_view(&L->qkv, 0, qd);
            L->k = row_view(&L->qkv, qd, kvd);
            L->v = row_view(&L->qkv, qd + kvd, kvd);
        }
        if (L->gate_up.data) {
            L->gate = row_view(&L->gate_up, 0, I);
            L->up = row_view(&L->gate_up, I, I);
        }
    }
}

int weights_check_finite(const StSet *set, const ModelConfig *c, const ModelPart *part) {
    for (int i = 0; i < set->n; i++) {
        const StTensor *t = set->sorted[i];
        if (!tm_dtype_is_weight_float(t->dtype) || !model_part_wants(part, c, t->name)) continue;
        if (!tm_all_finite(t->data, t->dtype, (size_t)st_numel(t)))
            return tm_fail("%s: tensor '%s' holds NaN/Inf", t->file, t->name);
    }
    return 0;
}

int weights_slots(ModelWeights *w, const ModelConfig *c, const ModelPart *part, WeightSlot **out) {
    if (!w->layers) w->layers = callocCheck((size_t)c->n_layers, sizeof *w->layers);
    SpecList specs = {0};
    build_specs(&specs, w, c, part);
    WeightSlot *s = callocCheck((size_t)specs.n + 1, sizeof *s);
    for (int i = 0; i < specs.n; i++) {
        memcpy(s[i].name, specs.v[i].name, sizeof s[i].name);
        s[i].rows = specs.v[i].rows;
        s[i].cols = specs.v[i].cols;
        s[i].layer = weights_tensor_part(specs.v[i].name);
        s[i].mat = specs.v[i].mat;
        s[i].vec = specs.v[i].vec;
        s[i].add = specs.v[i].add;
    }
    int n = specs.n;
    free(specs.v);
    *out = s;
    return n;
}

int weights_expected(const ModelConfig *c, WeightShape **out) {
    ModelWeights scratch;
    memset(&scratch, 0, sizeof scratch);
    scratch.layers = callocCheck((size_t)c->n_layers, sizeof *scratch.layers);
    SpecList specs = {0};
    ModelPart all = whole(c);
    build_specs(&specs, &scratch, c, &all);
    WeightShape *w = callocCheck((size_t)specs.n, sizeof *w);
    for (int i = 0; i < specs.n; i++) {
        memcpy(w[i].name, specs.v[i].name, sizeof w[i].name);
        w[i].rows = specs.v[i].rows;
        w[i].cols = specs.v[i].cols;
    }
    int n = specs.n;
    free(specs.v);
    weights_free(&scratch, c);
    *out = w;
    return n;
}

void weights_free(ModelWeights *w, const ModelConfig *c) {
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    if (w->layers)
        for (int i = 0; i < c->n_layers; i++) free(w->layers[i].experts);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
