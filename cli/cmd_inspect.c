#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/model.h"

int cmd_inspect(int argc, char **argv) {
    const char *model_path = TRANSMLA_DEFAULT_MODEL;
    int json = 0;
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &model_path, "DIR", "Hugging Face model folder (default: the bundled bytelm-dev)", 0},
        {"json", ARG_FLAG, &json, "", "print one JSON object on stdout instead of text", 0},
    };
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0],
                   "usage: transmla inspect [--model-path DIR] [--json]\n\n"
                   "Architecture, parameter count and KV-cache bytes per token of a model."))
        return cli_fail();
    Model m;
    if (model_load(&m, model_path)) return cli_fail();
    const ModelConfig *c = &m.cfg;
    /* GQA caches K and V of every kv head; MLA only the latent and the rope
     * key; both at the weights' stored width */
    int mla = hf_config_is_mla(c);
    long long per_token = mla ? c->mla.kv_lora_rank + c->mla.qk_rope_head_dim : 2LL * c->n_kv_heads * c->head_dim;
    long long kv_layer = per_token * (long long)tm_dtype_size(m.w.dtype);
    const char *attn = mla ? "mla" : "gqa";
    long long kv_total = kv_layer * c->n_layers;
    if (json) {
        printf("{\"model_path\": \"%s\", \"model_type\": \"%s\", \"attention\": \"%s\", \"dtype\": \"%s\", "
               "\"num_hidden_layers\": %d, \"hidden_size\": %d, \"num_attention_heads\": %d, "
               "\"num_key_value_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, \"vocab_size\": %d, "
               "\"num_local_experts\": %d, \"num_experts_per_tok\": %d, \"tie_word_embeddings\": %s, "
               "\"parameters\": %lld, \"weight_bytes\": %llu, \"kv_cache_bytes_per_token_per_layer\": %lld, "
               "\"kv_cache_bytes_per_token\": %lld}\n",
               model_path, c->model_type, attn, tm_dtype_name(m.w.dtype), c->n_layers, c->hidden_size, c->n_heads,
               c->n_kv_heads, c->head_dim, c->intermediate_size, c->vocab_size, c->n_experts, c->n_experts_per_tok,
               c->tie_word_embeddings ? "true" : "false", (long long)m.w.n_params, (unsigned long long)m.w.n_bytes,
               kv_layer, kv_total);
    } else {
        printf("model        %s\n", model_path);
        printf("architecture %s, %s attention, %s weights\n", c->model_type, mla ? "MLA" : "GQA", tm_dtype_name(m.w.dtype));
        if (mla)
            printf("latent       kv_lora_rank %d, q_lora_rank %d, qk_nope %d + qk_rope %d, v_head_dim %d\n",
                   c->mla.kv_lora_rank, c->mla.q_lora_rank, c->mla.qk_nope_head_dim, c->mla.qk_rope_head_dim,
                   c->mla.v_head_dim);
        printf("layers       %d, hidden %d, intermediate %d, vocab %d\n", c->n_layers, c->hidden_size,
               c->intermediate_size, c->vocab_size);
        printf("heads        %d query, %d key/value (group %d), head_dim %d%s\n", c->n_heads, c->n_kv_heads,
               c->n_heads / c->n_kv_heads, c->head_dim, c->qk_norm ? ", per-head q/k RMSNorm before RoPE" : "");
        if (c->n_experts)
            printf("experts      %d, %d per token%s, layers %d..%d\n", c->n_experts, c->n_experts_per_tok,
                   c->moe_topk_raw ? " (weights not renormalised)" : "", c->first_moe_layer, c->n_layers - 1);
        char partial[64] = "";
        if (c->rotary_dim != c->head_dim)
            snprintf(partial, sizeof partial, ", the first %d of %d dims of each head", c->rotary_dim, c->head_dim);
        printf("rope         theta %g%s%s%s\n", c->rope_theta, c->rope_scaling.type == TM_ROPE_LLAMA3 ? ", llama3 scaling" : c->rope_scaling.type == TM_ROPE_LINEAR ? ", linear scaling" : "",
               partial, c->sliding_window ? ", sliding window" : "");
        if (c->sandwich_norms) /* gemma2 and gemma2_mla */
            printf("gemma2       (1 + w) RMSNorms%s, sandwich norms, GeGLU (tanh), score scale %g^-1/2, soft-caps %g "
                   "(scores) and %g (logits) (0: none), window %d on %s, embeddings x sqrt(%d)\n",
                   mla ? " (the latent norms: w)" : "", c->query_pre_attn_scalar, c->attn_softcap, c->final_softcap,
                   c->sliding_window,
                   c->window_even_layers ? "even layers" : "every layer", c->hidden_size);
        printf("parameters   %lld (%.3f M), %llu bytes%s\n", (long long)m.w.n_params, m.w.n_params / 1e6,
               (unsigned long long)m.w.n_bytes, c->tie_word_embeddings ? ", head tied to embedding" : "");
        printf("KV cache     %lld bytes/token/layer, %lld bytes/token over %d layers\n", kv_layer, kv_total,
               c->n_layers);
    }
    model_free(&m);
    return 0;
}
