#include "io/hf_config.h"

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
    case TM_ARCH_PHI3: return "phi3";
    }
    return "?";
}

static int parse_arch(const char *file, const json_t *root, ModelConfig *c) {
    const char *mt;
    if (tm_json_str_or(file, root, "model_type", NULL, &mt)) return -1;
    if (!mt) return tm_fail("%s: required field 'model_type' is missing", file);
    static const TmArch archs[] = {TM_ARCH_LLAMA, TM_ARCH_QWEN2, TM_ARCH_MISTRAL, TM_ARCH_MIXTRAL,
                                   TM_ARCH_DEEPSEEK_V3, TM_ARCH_PHI3};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(mt, tm_arch_name(archs[i])) == 0) {
            c->arch = archs[i];
            snprintf(c->model_type, sizeof c->model_type, "%s", mt);
            return 0;
        }
    return tm_fail("%s: field 'model_type' is '%s'; supported: llama, qwen2, mistral, mixtral, deepseek_v3, phi3",
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

/* DeepSeek-V3's MLA and MoE fields, with transformers' DeepseekV3Config
 * defaults for missing keys. The MoE runs only in the form transmla exports
 * (softmax router, top-k renormalised, no shared experts, one group). */
static int parse_deepseek_v3(const char *file, const json_t *root, ModelConfig *c, int attn_bias) {
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
    if (c->n_experts_per_tok > n_routed)
        return tm_fail("%s: field 'num_experts_per_tok' (%d) exceeds 'n_routed_experts' (%d)", file,
                       c->n_experts_per_tok, n_routed);
    const char *unsupported = strcmp(scoring, "softmax") ? "scoring_func must be \"softmax\""
                            : shared ? "n_shared_experts must be null or 0"
                            : n_group != 1 || topk_group != 1 ? "n_group and topk_group must be 1"
                            : !norm_topk ? "norm_topk_prob must be true"
                            : scaling != 1.0 ? "routed_scaling_factor must be 1.0"
                            : freq != 1 ? "moe_layer_freq must be 1"
                            : strcmp(topk_method, "noaux_tc") == 0 ? "topk_method must not be noaux_tc"
                            : NULL;
    if (unsupported)
        return tm_fail("%s: deepseek_v3 MoE layers are supported only in the Mixtral form transmla exports: %s", file,
                       unsupported);
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

static int parse_fields(const char *file, const json_t *root, ModelConfig *c) {
    if (parse_arch(file, root, c)) return -1;
    if (positive(file, root, "hidden_size", 0, &c->hidden_size) ||
        positive(file, root, "num_hidden_layers", 0, &c->n_layers) ||
        positive(file, root, "num_attention_heads", 0, &c->n_heads) ||
        positive(file, root, "num_key_value_heads", c->n_heads, &c->n_kv_heads) ||
        positive(file, root, "intermediate_size", c->arch == TM_ARCH_DEEPSEEK_V3 ? 18432 : 0, &c->intermediate_size) ||
        positive(file, root, "vocab_size", 0, &c->vocab_size))
        return -1;
    if (positive(file, root, "head_dim", c->hidden_size / c->n_heads > 0 ? c->hidden_size / c->n_heads : 1,
                 &c->head_dim))
        return -1;
    if (tm_json_int_or(file, root, "max_position_embeddings", 0, &c->max_position_embeddings) ||
        tm_json_num_or(file, root, "rope_theta", c->arch == TM_ARCH_MIXTRAL ? 1e6 : 10000.0, &c->rope_theta) ||
        tm_json_num_or(file, root, "rms_norm_eps", c->arch == TM_ARCH_MIXTRAL || c->arch == TM_ARCH_PHI3 ? 1e-5 : 1e-6,
                       &c->rms_norm_eps) ||
        tm_json_bool_or(file, root, "tie_word_embeddings", 0, &c->tie_word_embeddings) ||
        parse_rope_scaling(file, root, &c->rope_scaling) || parse_token_id(file, root, "bos_token_id", &c->bos_token_id) ||
        parse_token_id(file, root, "eos_token_id", &c->eos_token_id))
        return -1;

    const char *act;
    if (tm_json_str_or(file, root, "hidden_act", "silu", &act)) return -1;
    if (strcmp(act, "silu") != 0) return tm_fail("%s: field 'hidden_act' is '%s'; only silu is supported", file, act);

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
        /* transformers' MistralConfig defaults a missing sliding_window to 4096; null means none */
        tm_json_int_or(file, root, "sliding_window",
                       c->arch == TM_ARCH_MISTRAL && !json_object_get(root, "sliding_window") ? 4096 : 0, &sw) ||
        tm_json_bool_or(file, root, "use_sliding_window", 0, &use_sw))
        return -1;
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
    case TM_ARCH_PHI3: /* no biases; the window (null: none) on every layer, counted as mistral's */
        c->mlp_bias = 0;
        c->fused_proj = 1;
        if (sw < 0 || sw > (1LL << 30)) return tm_fail("%s: field 'sliding_window' is %lld", file, sw);
        c->sliding_window = (int)sw;
        break;
    }
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

int hf_config_qk_head_dim(const ModelConfig *c) {
    return c->arch == TM_ARCH_DEEPSEEK_V3 ? c->mla.qk_nope_head_dim + c->mla.qk_rope_head_dim : c->head_dim;
}

int hf_config_v_head_dim(const ModelConfig *c) {
    return c->arch == TM_ARCH_DEEPSEEK_V3 ? c->mla.v_head_dim : c->head_dim;
}
