#include "io/hf_config_limits.h"

#include "io/base/error.h"

/* Far above any published model, far below what breaks int arithmetic. */
enum {
    MAX_DIM = 1 << 20,          /* hidden_size, heads, per-head and latent widths */
    MAX_INTERMEDIATE = 1 << 22, /* MLP and expert widths */
    MAX_LAYERS = 1 << 12,       /* the stage planner is quadratic in layers */
    MAX_EXPERTS = 1 << 12,
    MAX_VOCAB = 1 << 26,        /* the tokenizer's id limit */
    MAX_WIDTH = 1 << 24,        /* heads x head width: products code keeps in int */
    MAX_TENSORS = 1 << 20,      /* the weight list plan and load build */
};

typedef struct {
    const char *key;
    int value, max;
} Limit;

static int check_fields(const char *file, const ModelConfig *c) {
    const MlaConfig *m = &c->mla;
    const Limit f[] = {
        {"hidden_size", c->hidden_size, MAX_DIM},
        {"num_hidden_layers", c->n_layers, MAX_LAYERS},
        {"num_attention_heads", c->n_heads, MAX_DIM},
        {"num_key_value_heads", c->n_kv_heads, MAX_DIM},
        {"head_dim", c->head_dim, MAX_DIM},
        {"intermediate_size", c->intermediate_size, MAX_INTERMEDIATE},
        {"vocab_size", c->vocab_size, MAX_VOCAB},
        {c->arch == TM_ARCH_DEEPSEEK_V3 ? "n_routed_experts"
         : c->arch == TM_ARCH_QWEN3_MOE ? "num_experts"
                                        : "num_local_experts",
         c->n_experts, MAX_EXPERTS},
        {"moe_intermediate_size", c->expert_intermediate_size, MAX_INTERMEDIATE},
        {"kv_lora_rank", m->kv_lora_rank, MAX_DIM},
        {"q_lora_rank", m->q_lora_rank, MAX_DIM},
        {"qk_nope_head_dim", m->qk_nope_head_dim, MAX_DIM},
        {"qk_rope_head_dim", m->qk_rope_head_dim, MAX_DIM},
        {"v_head_dim", m->v_head_dim, MAX_DIM},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].value > f[i].max)
            return tm_fail("%s: field '%s' is %d, above the limit %d", file, f[i].key, f[i].value, f[i].max);
    return 0;
}

static int check_widths(const char *file, const ModelConfig *c) {
    long long H = c->n_heads, G = c->n_kv_heads, qk = hf_config_qk_head_dim(c), vd = hf_config_v_head_dim(c);
    long long w = H * (qk > vd ? qk : vd), kw = G * (qk > vd ? qk : vd);
    if (w > MAX_WIDTH)
        return tm_fail("%s: field 'num_attention_heads' (%lld) x head width (%lld) = %lld, above the limit %d", file, H,
                       qk > vd ? qk : vd, w, MAX_WIDTH);
    if (kw > MAX_WIDTH)
        return tm_fail("%s: field 'num_key_value_heads' (%lld) x head width (%lld) = %lld, above the limit %d", file, G,
                       qk > vd ? qk : vd, kw, MAX_WIDTH);
    long long tensors = (long long)c->n_layers * (12 + 3LL * c->n_experts);
    if (tensors > MAX_TENSORS)
        return tm_fail("%s: field 'num_hidden_layers' (%d) x experts (%d): %lld weight tensors, above the limit %d",
                       file, c->n_layers, c->n_experts, tensors, MAX_TENSORS);
    return 0;
}

/* An upper estimate of the parameter count, in double so nothing overflows. */
static double param_count(const ModelConfig *c) {
    const MlaConfig *m = &c->mla;
    double D = c->hidden_size, H = c->n_heads, G = c->n_kv_heads;
    double qk = hf_config_qk_head_dim(c), vd = hf_config_v_head_dim(c);
    double attn = D * (H * qk + 2 * G * (qk > vd ? qk : vd) + H * vd);
    if (hf_config_is_mla(c))
        attn += D * ((double)m->kv_lora_rank + m->qk_rope_head_dim) +
                (double)m->kv_lora_rank * H * ((double)m->qk_nope_head_dim + m->v_head_dim) +
                (double)m->q_lora_rank * (D + H * qk);
    double mlp = 3 * D * c->intermediate_size;
    if (c->n_experts) mlp += (double)c->n_experts * (3 * D * c->expert_intermediate_size + D);
    return 2 * D * c->vocab_size + (double)c->n_layers * (attn + mlp + 2 * D);
}

int hf_config_check_limits(const char *file, const ModelConfig *c) {
    if (check_fields(file, c) || check_widths(file, c)) return -1;
    double n = param_count(c);
    if (n > TM_CONFIG_MAX_PARAMS)
        return tm_fail("%s: fields 'hidden_size', 'intermediate_size', 'num_hidden_layers' and 'vocab_size' describe "
                       "%.3g parameters, above the limit %.3g", file, n, TM_CONFIG_MAX_PARAMS);
    return 0;
}
