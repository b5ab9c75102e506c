#include "io/hf_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/base/error.h"
#include "io/hf_config_limits.h"
#include "io/json_util.h"

const char *tm_arch_name(TmArch a) {
    switch (a) {
    case TM_ARCH_LLAMA: return "llama";
    case TM_ARCH_QWEN2: return "qwen2";
    case TM_ARCH_MISTRAL: return "mistral";
    case TM_ARCH_MIXTRAL: return "mixtral";
    case TM_ARCH_DEEPSEEK_V3: return "deepseek_v3";
    case TM_ARCH_QWEN3: return "qwen3";
    case TM_ARCH_QWEN3_MOE: return "qwen3_moe";
    case TM_ARCH_PHI3: return "phi3";
    case TM_ARCH_GEMMA2: return "gemma2";
    case TM_ARCH_GEMMA2_MLA: return "gemma2_mla";
    }
    return "?";
}

static int parse_arch(const char *file, const json_t *root, ModelConfig *c) {
    const char *mt;
    if (tm_json_str_or(file, root, "model_type", NULL, &mt)) return -1;
    if (!mt) return tm_fail("%s: required field 'model_type' is missing", file);
    static const TmArch archs[] = {TM_ARCH_LLAMA, TM_ARCH_QWEN2, TM_ARCH_MISTRAL, TM_ARCH_MIXTRAL,
                                   TM_ARCH_DEEPSEEK_V3, TM_ARCH_QWEN3, TM_ARCH_QWEN3_MOE, TM_ARCH_PHI3,
                                   TM_ARCH_GEMMA2, TM_ARCH_GEMMA2_MLA};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(mt, tm_arch_name(archs[i])) == 0) {
            c->arch = archs[i];
            snprintf(c->model_type, sizeof c->model_type, "%s", mt);
            return 0;
        }
    return tm_fail("%s: field 'model_type' is '%s'; supported: llama, qwen2, mistral, mixtral, deepseek_v3, "
                   "qwen3, qwen3_moe, phi3, gemma2, gemma2_mla",
                   file, mt);
}

/* A positive int field that fits an int. */
static int positive(const char *file, const json_t *root, const char *key, long long dflt, int *out) {
    long long v;
    if ((dflt > 0 ? tm_json_int_or(file, root, key, dflt, &v) : tm_json_int(file, root, key, &v))) return -1;
    if (v <= 0 || v > (1LL << 30)) return tm_fail("%s: field '%s' is %lld, must be a positive integer", file, key, v);
    *out = (int)v;
    return 0;
}

static int parse_rope_scaling(const char *file, const json_t *root, TmRopeScalingCfg *rs) {
    rs->type = TM_ROPE_PLAIN;
    const json_t *o = json_object_get(root, "rope_scaling");
    if (!o || json_is_null(o)) return 0;
    if (!json_is_object(o)) return tm_fail("%s: field 'rope_scaling' is not an object", file);
    const char *type;
    if (tm_json_str_or(file, o, "rope_type", NULL, &type)) return -1;
    if (!type && tm_json_str_or(file, o, "type", NULL, &type)) return -1;
    if (!type || strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "linear") == 0) {
        rs->type = TM_ROPE_LINEAR;
        if (tm_json_num_or(file, o, "factor", 0, &rs->factor)) return -1;
        if (rs->factor <= 0) return tm_fail("%s: field 'rope_scaling.factor' must be positive", file);
        return 0;
    }
    if (strcmp(type, "llama3") != 0)
        return tm_fail("%s: field 'rope_scaling.rope_type' is '%s'; supported: default, linear, llama3%s", file, type,
                       strcmp(type, "longrope") == 0 ? " (Phi-3 longrope is not implemented)" : "");
    rs->type = TM_ROPE_LLAMA3;
    if (tm_json_num_or(file, o, "factor", 0, &rs->factor) ||
        tm_json_num_or(file, o, "low_freq_factor", 0, &rs->low_freq_factor) ||
        tm_json_num_or(file, o, "high_freq_factor", 0, &rs->high_freq_factor) ||
        tm_json_int_or(file, o, "original_max_position_embeddings", 0, &rs->original_max_position_embeddings))
        return -1;
    if (rs->factor <= 0 || rs->low_freq_factor <= 0 || rs->high_freq_factor <= rs->low_freq_factor ||
        rs->original_max_position_embeddings <= 0)
        return tm_fail("%s: field 'rope_scaling' (llama3) needs factor > 0, 0 < low_freq_factor < high_freq_factor "
                       "and original_max_position_embeddings > 0", file);
    return 0;
}

static int parse_token_id(const char *file, const json_t *root, const char *key, long long *out) {
    const json_t *v = json_object_get(root, key);
    if (json_is_array(v)) v = json_array_get(v, 0);  /* Llama-3 instruct lists several EOS ids */
    *out = json_is_integer(v) ? json_integer_value(v) : -1;
    return 0;
}

/* An int field that may be null or missing (-> dflt) and must lie in [lo, hi]. */
static int int_in(const char *file, const json_t *root, const char *key, long long dflt, long long lo, long long hi,
                  int *out) {
    long long v;
    if (tm_json_int_or(file, root, key, dflt, &v)) return -1;
    if (v < lo || v > hi) return tm_fail("%s: field '%s' is %lld, must be in [%lld, %lld]", file, key, v, lo, hi);
    *out = (int)v;
    return 0;
}

/* DeepSeek-V3's attention fields (deepseek_v3 and gemma2_mla), with
 * transformers' DeepseekV3Config defaults for missing keys. */
static int parse_mla_attention(const char *file, const json_t *root, ModelConfig *c) {
    MlaConfig *m = &c->mla;
    const json_t *ql = json_object_get(root, "q_lora_rank");
    if (positive(file, root, "kv_lora_rank", 512, &m->kv_lora_rank) ||
        (!(ql && json_is_null(ql)) && positive(file, root, "q_lora_rank", 1536, &m->q_lora_rank)) ||
        positive(file, root, "qk_nope_head_dim", 128, &m->qk_nope_head_dim) ||
        positive(file, root, "qk_rope_head_dim", 64, &m->qk_rope_head_dim) ||
        positive(file, root, "v_head_dim", 128, &m->v_head_dim) ||
        tm_json_bool_or(file, root, "rope_interleave", 1, &m->rope_interleave))
        return -1;
    m->latent_norms = 1;
    if (m->qk_rope_head_dim % 2)
        return tm_fail("%s: field 'qk_rope_head_dim' is %d; RoPE needs an even width", file, m->qk_rope_head_dim);
    /* transformers builds the rotary table from head_dim, which DeepseekV3Config sets to qk_rope_head_dim */
    if (json_object_get(root, "head_dim") && c->head_dim != m->qk_rope_head_dim)
        return tm_fail("%s: field 'head_dim' (%d) differs from 'qk_rope_head_dim' (%d)", file, c->head_dim,
                       m->qk_rope_head_dim);
    c->head_dim = m->qk_rope_head_dim;
    c->n_kv_heads = c->n_heads;
    return 0;
}

/* DeepSeek-V3: the MLA fields, then the MoE's, which run only in the form
 * transmla exports (softmax router, top-k renormalised, no shared experts,
 * one group). */
static int parse_deepseek_v3(const char *file, const json_t *root, ModelConfig *c, int attn_bias) {
    if (parse_mla_attention(file, root, c)) return -1;
    c->qkv_bias = c->o_bias = attn_bias;
    c->mlp_bias = 0;

    int first_dense = 0, n_routed = 0, shared = 0, n_group = 1, topk_group = 1, norm_topk = 1, freq = 1;
    const json_t *nr = json_object_get(root, "n_routed_experts"), *ns = json_object_get(root, "n_shared_experts");
    double scaling;
    const char *scoring, *topk_method;
    if (int_in(file, root, "first_k_dense_replace", 3, 0, 1 << 30, &first_dense) ||
        (!(nr && json_is_null(nr)) && int_in(file, root, "n_routed_experts", 256, 0, 1 << 20, &n_routed)) ||
        (!(ns && json_is_null(ns)) && int_in(file, root, "n_shared_experts", 1, 0, 1 << 20, &shared)) ||
        int_in(file, root, "n_group", 8, 1, 1 << 20, &n_group) ||
        int_in(file, root, "topk_group", 4, 1, 1 << 20, &topk_group) ||
        int_in(file, root, "moe_layer_freq", 1, 1, 1 << 20, &freq) ||
        tm_json_bool_or(file, root, "norm_topk_prob", 1, &norm_topk) ||
        tm_json_num_or(file, root, "routed_scaling_factor", 2.5, &scaling) ||
        tm_json_str_or(file, root, "scoring_func", "sigmoid", &scoring) ||
        tm_json_str_or(file, root, "topk_method", "noaux_tc", &topk_method))
        return -1;
    c->first_moe_layer = first_dense;
    if (n_routed == 0 || first_dense >= c->n_layers) return 0; /* every layer dense */
    if (positive(file, root, "num_experts_per_tok", 8, &c->n_experts_per_tok) ||
        positive(file, root, "moe_intermediate_size", 2048, &c->expert_intermediate_size))
        return -1;
    c->n_experts = n_routed;
    c->moe_topk_raw = !norm_topk; /* softmax routing without renormalisation (a Qwen3-MoE export) */
    if (c->n_experts_per_tok > n_routed)
        return tm_fail("%s: field 'num_experts_per_tok' (%d) exceeds 'n_routed_experts' (%d)", file,
                       c->n_experts_per_tok, n_routed);
    const char *unsupported = strcmp(scoring, "softmax") ? "scoring_func must be \"softmax\""
                            : shared ? "n_shared_experts must be null or 0"
                            : n_group != 1 || topk_group != 1 ? "n_group and topk_group must be 1"
                            : scaling != 1.0 ? "routed_scaling_factor must be 1.0"
                            : freq != 1 ? "moe_layer_freq must be 1"
                            : strcmp(topk_method, "noaux_tc") == 0 ? "topk_method must not be noaux_tc"
                            : NULL;
    if (unsupported)
        return tm_fail("%s: deepseek_v3 MoE layers are supported only in the Mixtral/Qwen3-MoE form transmla exports: %s", file,
                       unsupported);
    return 0;
}

/* Qwen3's window (transformers' Qwen3Config: with use_sliding_window, the
 * layers layer_types names "sliding_attention", else those from
 * max_window_layers on; qwen3_moe: every layer). The engine has one window
 * for all layers: a model mixing windowed and full layers is refused. */
static int parse_qwen3_window(const char *file, const json_t *root, ModelConfig *c, int use_sw, long long sw) {
    if (!use_sw || sw == 0) return 0; /* transformers: no window unless both are set */
    if (sw < 0 || sw > (1LL << 30)) return tm_fail("%s: field 'sliding_window' is %lld", file, sw);
    int n_sliding = c->n_layers, mwl = 0;
    if (c->arch == TM_ARCH_QWEN3) {
        const json_t *lt = json_object_get(root, "layer_types");
        n_sliding = 0;
        if (lt && !json_is_null(lt)) {
            if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layers)
                return tm_fail("%s: field 'layer_types' must be a list of num_hidden_layers (%d) strings", file,
                               c->n_layers);
            for (int l = 0; l < c->n_layers; l++) {
                const char *s = json_string_value(json_array_get(lt, (size_t)l));
                if (!s || (strcmp(s, "sliding_attention") && strcmp(s, "full_attention")))
                    return tm_fail("%s: field 'layer_types' entry %d is not \"full_attention\" or "
                                   "\"sliding_attention\"", file, l);
                n_sliding += strcmp(s, "sliding_attention") == 0;
            }
        } else {
            if (int_in(file, root, "max_window_layers", 28, 0, 1 << 30, &mwl)) return -1;
            n_sliding = mwl < c->n_layers ? c->n_layers - mwl : 0;
        }
    }
    if (n_sliding && n_sliding != c->n_layers)
        return tm_fail("%s: fields 'use_sliding_window' and '%s' give %d of %d layers a sliding window; the engine "
                       "runs one window for all layers or none",
                       file, json_object_get(root, "layer_types") ? "layer_types" : "max_window_layers", n_sliding,
                       c->n_layers);
    c->sliding_window = n_sliding ? (int)sw : 0;
    return 0;
}

/* Qwen3-MoE's MLP (Qwen2MoeDecoderLayer): layer l is sparse unless
 * mlp_only_layers lists it or (l + 1) % decoder_sparse_step != 0; the router
 * is a softmax over all experts then top-k, renormalised only under
 * norm_topk_prob. The engine's MoE layers are [first_moe_layer, n_layers). */
static int parse_qwen3_moe(const char *file, const json_t *root, ModelConfig *c) {
    int n_experts = 0, step = 1, norm_topk = 0;
    const json_t *only = json_object_get(root, "mlp_only_layers");
    if (int_in(file, root, "num_experts", 128, 0, 1 << 20, &n_experts) ||
        int_in(file, root, "decoder_sparse_step", 1, 1, 1 << 30, &step) ||
        tm_json_bool_or(file, root, "norm_topk_prob", 0, &norm_topk))
        return -1;
    c->moe_topk_raw = !norm_topk;
    if (only && !json_is_null(only) && !json_is_array(only))
        return tm_fail("%s: field 'mlp_only_layers' is not a list of layer indices", file);
    size_t n_only = only && json_is_array(only) ? json_array_size(only) : 0;
    for (size_t i = 0; i < n_only; i++)
        if (!json_is_integer(json_array_get(only, i)))
            return tm_fail("%s: field 'mlp_only_layers' entry %zu is not an integer", file, i);
    c->first_moe_layer = c->n_layers;
    if (n_experts == 0) return 0; /* every layer dense */
    int first = c->n_layers, pattern_ok = 1;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        int listed = 0;
        for (size_t i = 0; i < n_only; i++) listed |= json_integer_value(json_array_get(only, i)) == l;
        int moe = !listed && (l + 1) % step == 0;
        if (moe && first != l + 1) pattern_ok = 0; /* a sparse layer below a dense one */
        if (moe) first = l;
    }
    if (!pattern_ok)
        return tm_fail("%s: fields 'mlp_only_layers' and 'decoder_sparse_step' (%d) mix dense and MoE layers; the "
                       "engine runs MoE only in a last run of layers [k, num_hidden_layers)", file, step);
    c->first_moe_layer = first;
    if (first == c->n_layers) return 0;
    if (positive(file, root, "num_experts_per_tok", 8, &c->n_experts_per_tok) ||
        positive(file, root, "moe_intermediate_size", 768, &c->expert_intermediate_size))
        return -1;
    if (c->n_experts_per_tok > n_experts)
        return tm_fail("%s: field 'num_experts_per_tok' (%d) exceeds 'num_experts' (%d)", file, c->n_experts_per_tok,
                       n_experts);
    c->n_experts = n_experts;
    return 0;
}

/* A soft-capping field: null means none (0), missing takes transformers' default. */
static int softcap(const char *file, const json_t *root, const char *key, double dflt, double *out) {
    const json_t *v = json_object_get(root, key);
    *out = 0;
    if (v && json_is_null(v)) return 0;
    if (tm_json_num_or(file, root, key, dflt, out)) return -1;
    if (!(*out > 0 && *out < 1e30)) return tm_fail("%s: field '%s' is %g, must be positive or null", file, key, *out);
    return 0;
}

/* Gemma-2 (transformers' Gemma2Config and modeling_gemma2.py): (1 + w)
 * RMSNorms, sandwich norms around attention and MLP, GeGLU (tanh), scores
 * scaled by query_pre_attn_scalar^-1/2 and soft-capped, logits soft-capped,
 * embeddings times sqrt(hidden_size), the window on the layers layer_types
 * names "sliding_attention" (by default the even ones). */
static int parse_gemma2(const char *file, const json_t *root, ModelConfig *c, int attn_bias, long long sw) {
    const char *act;
    int bidir = 0;
    if (tm_json_str_or(file, root, "hidden_activation", "gelu_pytorch_tanh", &act) ||
        tm_json_num_or(file, root, "query_pre_attn_scalar", 256, &c->query_pre_attn_scalar) || /* gemma2_mla: below */
        softcap(file, root, "attn_logit_softcapping", 50.0, &c->attn_softcap) ||
        softcap(file, root, "final_logit_softcapping", 30.0, &c->final_softcap) ||
        tm_json_bool_or(file, root, "use_bidirectional_attention", 0, &bidir))
        return -1;
    if (strcmp(act, "gelu_pytorch_tanh") != 0)
        return tm_fail("%s: field 'hidden_activation' is '%s'; gemma2 runs only gelu_pytorch_tanh", file, act);
    if (!(c->query_pre_attn_scalar > 0 && c->query_pre_attn_scalar < 1e30))
        return tm_fail("%s: field 'query_pre_attn_scalar' is %g, must be positive", file, c->query_pre_attn_scalar);
    if (bidir) return tm_fail("%s: field 'use_bidirectional_attention' is true; only causal attention is supported", file);
    if (sw < 0 || sw > (1LL << 30)) return tm_fail("%s: field 'sliding_window' is %lld", file, sw);
    c->qkv_bias = c->o_bias = attn_bias;
    c->mlp_bias = 0;
    c->gelu_mlp = c->sandwich_norms = c->norm_plus_one = c->embed_scaled = 1;
    c->sliding_window = (int)sw;
    c->window_even_layers = 1;
    const json_t *lt = json_object_get(root, "layer_types");
    if (!lt || json_is_null(lt)) return 0;
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layers)
        return tm_fail("%s: field 'layer_types' must be a list of num_hidden_layers (%d) strings", file, c->n_layers);
    int alternate = 1, all_sliding = 1, all_full = 1;
    for (int l = 0; l < c->n_layers; l++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)l));
        if (!s || (strcmp(s, "sliding_attention") && strcmp(s, "full_attention")))
            return tm_fail("%s: field 'layer_types' entry %d is not \"full_attention\" or \"sliding_attention\"",
                           file, l);
        int sliding = strcmp(s, "sliding_attention") == 0;
        alternate &= sliding == !(l % 2);
        all_sliding &= sliding;
        all_full &= !sliding;
    }
    if (all_full) c->sliding_window = 0;
    else if (all_sliding) c->window_even_layers = 0;
    else if (!alternate)
        return tm_fail("%s: field 'layer_types' mixes sliding and full layers in a pattern the engine does not run "
                       "(supported: alternating from a sliding layer 0, all sliding, all full)", file);
    return 0;
}

/* rotary_dim: transformers' int(head_dim * partial_rotary_factor) for phi3,
 * the whole head otherwise (deepseek_v3's head_dim is qk_rope_head_dim). */
static int parse_rotary_dim(const char *file, const json_t *root, ModelConfig *c) {
    c->rotary_dim = c->head_dim;
    if (c->arch != TM_ARCH_PHI3) return 0;
    double f;
    if (tm_json_num_or(file, root, "partial_rotary_factor", 1.0, &f)) return -1;
    if (!(f > 0 && f <= 1)) return tm_fail("%s: field 'partial_rotary_factor' is %g, must be in (0, 1]", file, f);
    c->rotary_dim = (int)(c->head_dim * f);
    if (c->rotary_dim < 2 || c->rotary_dim % 2)
        return tm_fail("%s: field 'partial_rotary_factor' (%g) x head_dim (%d) gives %d rotary dims; RoPE needs an even "
                       "number, at least 2", file, f, c->head_dim, c->rotary_dim);
    return 0;
}

static int is_gemma2(const ModelConfig *c) { return c->arch == TM_ARCH_GEMMA2 || c->arch == TM_ARCH_GEMMA2_MLA; }

/* What each model_type adds or fixes: biases, windows, experts, its own fields. */
static int parse_arch_fields(const char *file, const json_t *root, ModelConfig *c, int attn_bias, int use_sw,
                             long long sw) {
    switch (c->arch) {
    case TM_ARCH_LLAMA:
        c->qkv_bias = c->o_bias = attn_bias;
        break;
    case TM_ARCH_QWEN2:
        c->qkv_bias = 1;
        c->mlp_bias = 0;
        if (use_sw) return tm_fail("%s: field 'use_sliding_window' is true; qwen2 sliding-window layers are not supported", file);
        break;
    case TM_ARCH_MIXTRAL:
        if (positive(file, root, "num_local_experts", 0, &c->n_experts) ||
            positive(file, root, "num_experts_per_tok", 0, &c->n_experts_per_tok))
            return -1;
        if (c->n_experts_per_tok > c->n_experts)
            return tm_fail("%s: field 'num_experts_per_tok' (%d) exceeds 'num_local_experts' (%d)", file,
                           c->n_experts_per_tok, c->n_experts);
        /* mixtral attention is mistral's */
        /* fall through */
    case TM_ARCH_MISTRAL:
        c->mlp_bias = 0;
        if (sw < 0 || sw > (1LL << 30)) return tm_fail("%s: field 'sliding_window' is %lld", file, sw);
        c->sliding_window = (int)sw;
        break;
    case TM_ARCH_DEEPSEEK_V3:
        if (parse_deepseek_v3(file, root, c, attn_bias)) return -1;
        break;
    case TM_ARCH_QWEN3_MOE:
        if (parse_qwen3_moe(file, root, c)) return -1;
        /* qwen3_moe attention is qwen3's */
        /* fall through */
    case TM_ARCH_QWEN3:
        c->qkv_bias = c->o_bias = attn_bias;
        c->mlp_bias = 0;
        c->qk_norm = 1;
        if (parse_qwen3_window(file, root, c, use_sw, sw)) return -1;
        break;
    case TM_ARCH_PHI3: /* no biases; the window (null: none) on every layer, counted as mistral's */
        c->mlp_bias = 0;
        c->fused_proj = 1;
        if (sw < 0 || sw > (1LL << 30)) return tm_fail("%s: field 'sliding_window' is %lld", file, sw);
        c->sliding_window = (int)sw;
        break;
    case TM_ARCH_GEMMA2:
        if (parse_gemma2(file, root, c, attn_bias, sw)) return -1;
        break;
    case TM_ARCH_GEMMA2_MLA: /* gemma2 with DeepSeek's attention; scores scaled as DeepSeek's unless it says */
        if (parse_gemma2(file, root, c, attn_bias, sw) || parse_mla_attention(file, root, c)) return -1;
        if (!json_object_get(root, "query_pre_attn_scalar"))
            c->query_pre_attn_scalar = c->mla.qk_nope_head_dim + c->mla.qk_rope_head_dim;
        break;
    }
    return 0;
}

static int parse_fields(const char *file, const json_t *root, ModelConfig *c) {
    if (parse_arch(file, root, c)) return -1;
    if (positive(file, root, "hidden_size", 0, &c->hidden_size) ||
        positive(file, root, "num_hidden_layers", 0, &c->n_layers) ||
        positive(file, root, "num_attention_heads", 0, &c->n_heads) ||
        positive(file, root, "num_key_value_heads", c->n_heads, &c->n_kv_heads) ||
        positive(file, root, "intermediate_size", c->arch == TM_ARCH_DEEPSEEK_V3 ? 18432 : 0, &c->intermediate_size) ||
        positive(file, root, "vocab_size", 0, &c->vocab_size))
        return -1;
    /* Qwen3Config defaults head_dim to 128, Gemma2Config to 256; the others (and Qwen3MoeConfig) to
     * hidden_size / heads */
    if (positive(file, root, "head_dim",
                 c->arch == TM_ARCH_QWEN3 ? 128 : c->arch == TM_ARCH_GEMMA2 || c->arch == TM_ARCH_GEMMA2_MLA ? 256 : c->hidden_size / c->n_heads > 0 ? c->hidden_size / c->n_heads : 1,
                 &c->head_dim))
        return -1;
    if (tm_json_int_or(file, root, "max_position_embeddings", 0, &c->max_position_embeddings) ||
        tm_json_num_or(file, root, "rope_theta", c->arch == TM_ARCH_MIXTRAL ? 1e6 : 10000.0, &c->rope_theta) ||
        tm_json_num_or(file, root, "rms_norm_eps", c->arch == TM_ARCH_MIXTRAL || c->arch == TM_ARCH_PHI3 ? 1e-5 : 1e-6,
                       &c->rms_norm_eps) ||
        tm_json_bool_or(file, root, "tie_word_embeddings", is_gemma2(c), &c->tie_word_embeddings) ||
        parse_rope_scaling(file, root, &c->rope_scaling) || parse_token_id(file, root, "bos_token_id", &c->bos_token_id) ||
        parse_token_id(file, root, "eos_token_id", &c->eos_token_id))
        return -1;

    const char *act;
    if (tm_json_str_or(file, root, "hidden_act", "silu", &act)) return -1;
    if (!is_gemma2(c) && strcmp(act, "silu") != 0) /* gemma2's MLP reads hidden_activation */ return tm_fail("%s: field 'hidden_act' is '%s'; only silu is supported", file, act);

    const char *dt;
    if (tm_json_str_or(file, root, "torch_dtype", NULL, &dt)) return -1;
    c->torch_dtype = !dt ? TM_DTYPE_INVALID
                   : strcmp(dt, "float32") == 0 ? TM_F32
                   : strcmp(dt, "float16") == 0 ? TM_F16
                   : strcmp(dt, "bfloat16") == 0 ? TM_BF16 : TM_DTYPE_INVALID;

    int attn_bias = 0, use_sw = 0;
    long long sw = 0;
    if (tm_json_bool_or(file, root, "attention_bias", 0, &attn_bias) ||
        tm_json_bool_or(file, root, "mlp_bias", 0, &c->mlp_bias) ||
        /* transformers' Mistral/Qwen3 configs default a missing sliding_window to 4096; null means none */
        tm_json_int_or(file, root, "sliding_window",
                       (c->arch == TM_ARCH_MISTRAL || c->arch == TM_ARCH_QWEN3 || c->arch == TM_ARCH_QWEN3_MOE ||
                        is_gemma2(c)) &&
                               !json_object_get(root, "sliding_window")
                           ? 4096
                           : 0,
                       &sw) ||
        tm_json_bool_or(file, root, "use_sliding_window", 0, &use_sw))
        return -1;
    if (parse_arch_fields(file, root, c, attn_bias, use_sw, sw)) return -1;
    if (parse_rotary_dim(file, root, c)) return -1;
    if (c->n_experts && !c->expert_intermediate_size) c->expert_intermediate_size = c->intermediate_size;
    if (c->n_heads % c->n_kv_heads)
        return tm_fail("%s: field 'num_attention_heads' (%d) is not a multiple of 'num_key_value_heads' (%d)", file,
                       c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2) return tm_fail("%s: field 'head_dim' is %d; RoPE needs an even head_dim", file, c->head_dim);
    if (c->rms_norm_eps <= 0) return tm_fail("%s: field 'rms_norm_eps' must be positive", file);
    if (c->rope_theta <= 1) return tm_fail("%s: field 'rope_theta' must be greater than 1", file);
    return hf_config_check_limits(file, c);
}

int hf_config_load(ModelConfig *cfg, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    json_t *root = tm_json_load_object(path);
    if (!root) return -1;
    int rc = parse_fields(path, root, cfg);
    json_decref(root);
    return rc;
}

int hf_config_layer_is_moe(const ModelConfig *c, int l) { return c->n_experts > 0 && l >= c->first_moe_layer; }

int hf_config_has_dense_layer(const ModelConfig *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (!hf_config_layer_is_moe(c, l)) return 1;
    return 0;
}

int hf_config_is_mla(const ModelConfig *c) { return c->arch == TM_ARCH_DEEPSEEK_V3 || c->arch == TM_ARCH_GEMMA2_MLA; }

int hf_config_qk_head_dim(const ModelConfig *c) {
    return hf_config_is_mla(c) ? c->mla.qk_nope_head_dim + c->mla.qk_rope_head_dim : c->head_dim;
}

int hf_config_v_head_dim(const ModelConfig *c) { return hf_config_is_mla(c) ? c->mla.v_head_dim : c->head_dim; }

int hf_config_layer_window(const ModelConfig *c, int l) {
    return c->window_even_layers && l % 2 ? 0 : c->sliding_window;
}

double hf_config_score_dim(const ModelConfig *c) {
    return c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : (double)hf_config_qk_head_dim(c);
}

double hf_config_attn_scale(const ModelConfig *c) {
    return 1.0 / sqrt(hf_config_score_dim(c));
}
