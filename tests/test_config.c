/* config.json parsing: the published configs of the target models, and the
 * errors a wrong config must give (naming file and field). Expected values
 * are read off the JSON files by eye, not computed by the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/base/error.h"
#include "io/hf_config.h"

static void qwen25_72b(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/qwen2.5-72b-instruct.config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_QWEN2);
    assert_int_equal(c.hidden_size, 8192);
    assert_int_equal(c.n_layers, 80);
    assert_int_equal(c.n_heads, 64);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 128); /* no head_dim key: hidden / heads */
    assert_int_equal(c.intermediate_size, 29568);
    assert_int_equal(c.vocab_size, 152064);
    assert_true(c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_int_equal(c.sliding_window, 0); /* use_sliding_window false */
    assert_true(c.rope_theta == 1e6 && c.rms_norm_eps == 1e-6);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.torch_dtype, TM_BF16);
}

static void mixtral_8x7b(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/mixtral-8x7b-v0.1.config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_MIXTRAL);
    assert_int_equal(c.n_experts, 8);
    assert_int_equal(c.n_experts_per_tok, 2);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.intermediate_size, 14336);
    assert_int_equal(c.sliding_window, 0); /* null */
    assert_false(c.qkv_bias);
}

static void llama32_1b(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/llama-3.2-1b.config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_LLAMA);
    assert_int_equal(c.head_dim, 64);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.rope_scaling.type, TM_ROPE_LLAMA3);
    assert_true(c.rope_scaling.factor == 32.0 && c.rope_scaling.low_freq_factor == 1.0 &&
                c.rope_scaling.high_freq_factor == 4.0);
    assert_int_equal(c.rope_scaling.original_max_position_embeddings, 8192);
    assert_int_equal(c.bos_token_id, 128000);
}

static void phi_4(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/phi-4.config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_PHI3);
    assert_int_equal(c.hidden_size, 5120);
    assert_int_equal(c.n_layers, 40);
    assert_int_equal(c.n_heads, 40);
    assert_int_equal(c.n_kv_heads, 10);
    assert_int_equal(c.head_dim, 128); /* no head_dim key: 5120 / 40 */
    assert_int_equal(c.rotary_dim, 128); /* no partial_rotary_factor: 1.0 */
    assert_int_equal(c.intermediate_size, 17920);
    assert_int_equal(c.vocab_size, 100352);
    assert_int_equal(c.n_experts, 0);
    assert_true(c.fused_proj && !c.qk_norm && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_int_equal(c.sliding_window, 0); /* null */
    assert_true(c.rope_theta == 250000 && c.rms_norm_eps == 1e-5);
    assert_int_equal(c.rope_scaling.type, TM_ROPE_PLAIN); /* rope_scaling null */
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.torch_dtype, TM_BF16);
}

static void qwen3_8b(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/qwen3-8b.config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_QWEN3);
    assert_int_equal(c.hidden_size, 4096);
    assert_int_equal(c.n_layers, 36);
    assert_int_equal(c.n_heads, 32);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.rotary_dim, 128);
    assert_int_equal(c.intermediate_size, 12288);
    assert_int_equal(c.vocab_size, 151936);
    assert_int_equal(c.n_experts, 0);
    assert_true(c.qk_norm && !c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.fused_proj);
    assert_int_equal(c.sliding_window, 0); /* use_sliding_window false */
    assert_true(c.rope_theta == 1e6 && c.rms_norm_eps == 1e-6);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.torch_dtype, TM_BF16);
}

static void qwen3_30b_a3b(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/qwen3-30b-a3b.config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_QWEN3_MOE);
    assert_int_equal(c.hidden_size, 2048);
    assert_int_equal(c.n_layers, 48);
    assert_int_equal(c.n_heads, 32);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 128); /* head_dim key; 2048 / 32 would be 64 */
    assert_int_equal(c.intermediate_size, 6144);
    assert_int_equal(c.expert_intermediate_size, 768); /* moe_intermediate_size */
    assert_int_equal(c.n_experts, 128);
    assert_int_equal(c.n_experts_per_tok, 8);
    assert_int_equal(c.first_moe_layer, 0); /* mlp_only_layers [], decoder_sparse_step 1 */
    assert_false(c.moe_topk_raw); /* norm_topk_prob true */
    assert_true(c.qk_norm && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_int_equal(c.vocab_size, 151936);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.rope_theta == 1e6 && c.rms_norm_eps == 1e-6);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.torch_dtype, TM_BF16);
}

/* google/gemma-2-9b-it's config.json (transcribed from a quoted copy): alternating windows,
 * scalar 256 = head_dim, caps 50/30, tied, (1 + w) sandwich norms. */
static void gemma2_9b_it(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/gemma-2-9b-it.config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_GEMMA2);
    assert_int_equal(c.hidden_size, 3584);
    assert_int_equal(c.n_layers, 42);
    assert_int_equal(c.n_heads, 16);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 256);
    assert_int_equal(c.rotary_dim, 256);
    assert_int_equal(c.intermediate_size, 14336);
    assert_int_equal(c.vocab_size, 256000);
    assert_int_equal(c.max_position_embeddings, 8192);
    assert_true(c.query_pre_attn_scalar == 256 && c.attn_softcap == 50 && c.final_softcap == 30);
    assert_true(c.gelu_mlp && c.sandwich_norms && c.norm_plus_one && c.embed_scaled && c.tie_word_embeddings);
    assert_true(!c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm && c.n_experts == 0);
    assert_int_equal(hf_config_layer_window(&c, 0), 4096);
    assert_int_equal(hf_config_layer_window(&c, 41), 0);
    assert_int_equal(hf_config_layer_window(&c, 40), 4096);
    assert_true(c.rope_theta == 10000 && c.rms_norm_eps == 1e-6);
    assert_true(c.bos_token_id == 2 && c.eos_token_id == 1);
    assert_int_equal(c.torch_dtype, TM_BF16);
}

/* Parse `json` from a temp file into c; returns hf_config_load's result and
 * the file's name in path (removed by then). */
static int load_json(const char *json, ModelConfig *c, char path[32]) {
    snprintf(path, 32, "/tmp/tm_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    fputs(json, fp);
    fclose(fp);
    int rc = hf_config_load(c, path);
    unlink(path);
    return rc;
}

/* Parse `json`, expect failure mentioning `needle` and the file. */
static void expect_error(const char *json, const char *needle) {
    char path[32];
    ModelConfig c;
    int rc = load_json(json, &c, path);
    const char *msg = tm_error();
    if (rc == 0 || !strstr(msg, needle) || !strstr(msg, path))
        fail_msg("config %s: rc %d, message '%s', wanted '%s' and the path", json, rc, msg, needle);
}

#define BASE "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"intermediate_size\": 96, \"vocab_size\": 50, "

static void bad_configs(void **state) {
    expect_error("{" BASE "\"model_type\": \"gpt2\", \"num_attention_heads\": 4}", "'model_type' is 'gpt2'");
    expect_error("{" BASE "\"num_attention_heads\": 4}", "'model_type' is missing");
    expect_error("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, \"num_key_value_heads\": 3}",
                 "'num_attention_heads' (4) is not a multiple of 'num_key_value_heads' (3)");
    expect_error("{" BASE "\"model_type\": \"llama\"}", "'num_attention_heads' is missing");
    expect_error("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": \"4\"}", "'num_attention_heads' is not an integer");
    expect_error("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": -4}", "'num_attention_heads' is -4");
    expect_error("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, \"rope_scaling\": {\"rope_type\": \"yarn\"}}",
                 "'rope_scaling.rope_type' is 'yarn'");
    expect_error("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, \"hidden_act\": \"gelu\"}", "'hidden_act'");
    expect_error("{" BASE "\"model_type\": \"llama\", \"num_attention_heads\": 4, \"head_dim\": 15}", "'head_dim' is 15");
    expect_error("{" BASE "\"model_type\": \"mixtral\", \"num_attention_heads\": 4}", "'num_local_experts' is missing");
    expect_error("{" BASE "\"model_type\": \"mixtral\", \"num_attention_heads\": 4, \"num_local_experts\": 2, "
                 "\"num_experts_per_tok\": 3}", "'num_experts_per_tok' (3) exceeds");
    expect_error("{" BASE "\"model_type\": \"qwen2\", \"num_attention_heads\": 4, \"use_sliding_window\": true}",
                 "'use_sliding_window'");
    /* phi3: 16 * 0.1875 = 3 rotary dims, odd */
    expect_error("{" BASE "\"model_type\": \"phi3\", \"num_attention_heads\": 4, \"partial_rotary_factor\": 0.1875}",
                 "'partial_rotary_factor' (0.1875) x head_dim (16) gives 3 rotary dims");
    expect_error("{" BASE "\"model_type\": \"phi3\", \"num_attention_heads\": 4, \"partial_rotary_factor\": 1.5}",
                 "'partial_rotary_factor' is 1.5");
    expect_error("{" BASE "\"model_type\": \"phi3\", \"num_attention_heads\": 4, \"rope_scaling\": {\"type\": \"longrope\", "
                 "\"short_factor\": [1], \"long_factor\": [2]}}", "'rope_scaling.rope_type' is 'longrope'");
    expect_error("[1, 2]", "not a JSON object");
    expect_error("{\"model_type\": \"llama\",", "not valid JSON");
    expect_error("{\"model_type\": \"llama\", \"model_type\": \"llama\"}", "not valid JSON");
}

static void defaults_follow_transformers(void **state) {
    char path[32];
    ModelConfig c;
    assert_int_equal(load_json("{" BASE "\"model_type\": \"mistral\", \"num_attention_heads\": 4}", &c, path), 0);
    assert_int_equal(c.sliding_window, 4096); /* MistralConfig's default */
    assert_int_equal(c.n_kv_heads, 4);        /* defaults to num_attention_heads */
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rope_theta == 10000.0 && c.rms_norm_eps == 1e-6);
    assert_int_equal(c.rotary_dim, 16);
    assert_false(c.fused_proj);
}

static void qwen3_dev(void **state) {
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/../shared/models/qwen3-dev/config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_QWEN3);
    assert_string_equal(tm_arch_name(c.arch), "qwen3");
    assert_true(c.qk_norm);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.n_kv_heads, 2);
    assert_true(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_int_equal(c.sliding_window, 0);
    assert_int_equal(c.n_experts, 0);
    assert_true(c.rms_norm_eps == 1e-6);
}

#define QWEN3 "{" BASE "\"model_type\": \"qwen3\", \"num_attention_heads\": 4"
#define QWEN3_MOE "{" BASE "\"model_type\": \"qwen3_moe\", \"num_attention_heads\": 4, \"num_experts\": 4, " \
                  "\"num_experts_per_tok\": 2, \"moe_intermediate_size\": 8"

static void qwen3_fields(void **state) {
    ModelConfig c;
    char path[32];
    assert_int_equal(load_json(QWEN3 ", \"attention_bias\": true}", &c, path), 0);
    assert_int_equal(c.head_dim, 128); /* Qwen3Config's default, not hidden / heads */
    assert_true(c.qk_norm && c.qkv_bias && c.o_bias);
    assert_int_equal(c.sliding_window, 0);
    /* a window on every layer (max_window_layers 0) or on none is one engine window */
    assert_int_equal(load_json(QWEN3 ", \"use_sliding_window\": true, \"max_window_layers\": 0}", &c, path), 0);
    assert_int_equal(c.sliding_window, 4096);
    assert_int_equal(load_json(QWEN3 ", \"use_sliding_window\": true, \"sliding_window\": 64}", &c, path), 0);
    assert_int_equal(c.sliding_window, 0); /* max_window_layers 28 >= 2 layers: none windowed */
    assert_int_equal(load_json(QWEN3 ", \"use_sliding_window\": false, \"max_window_layers\": 0}", &c, path), 0);
    assert_int_equal(c.sliding_window, 0);

    assert_int_equal(load_json(QWEN3_MOE ", \"mlp_only_layers\": [0]}", &c, path), 0);
    assert_int_equal(c.arch, TM_ARCH_QWEN3_MOE);
    assert_true(c.qk_norm);
    assert_int_equal(c.head_dim, 16); /* Qwen3MoeConfig has no head_dim: hidden / heads */
    assert_int_equal(c.n_experts, 4);
    assert_int_equal(c.n_experts_per_tok, 2);
    assert_int_equal(c.expert_intermediate_size, 8);
    assert_int_equal(c.first_moe_layer, 1);
    assert_true(c.moe_topk_raw); /* norm_topk_prob defaults to false */
    assert_int_equal(load_json(QWEN3_MOE ", \"norm_topk_prob\": true, \"decoder_sparse_step\": 2}", &c, path), 0);
    assert_false(c.moe_topk_raw);
    assert_int_equal(c.first_moe_layer, 1); /* (l + 1) % 2 == 0: layer 1 of 2 */
    assert_int_equal(load_json(QWEN3_MOE ", \"mlp_only_layers\": [0, 1]}", &c, path), 0);
    assert_int_equal(c.n_experts, 0); /* every layer dense */
    assert_int_equal(load_json("{" BASE "\"model_type\": \"qwen3_moe\", \"num_attention_heads\": 4, "
                               "\"num_experts\": 0}", &c, path), 0);
    assert_int_equal(c.n_experts, 0);
    assert_int_equal(load_json("{" BASE "\"model_type\": \"mixtral\", \"num_attention_heads\": 4, "
                               "\"num_local_experts\": 2, \"num_experts_per_tok\": 1}", &c, path), 0);
    assert_false(c.moe_topk_raw); /* Mixtral renormalises */

    expect_error(QWEN3 ", \"use_sliding_window\": true, \"max_window_layers\": 1}", "'max_window_layers'");
    expect_error(QWEN3 ", \"use_sliding_window\": true, \"layer_types\": [\"full_attention\", "
                 "\"sliding_attention\"]}", "'layer_types'");
    expect_error(QWEN3 ", \"use_sliding_window\": true, \"layer_types\": [\"full_attention\"]}", "'layer_types'");
    expect_error(QWEN3_MOE ", \"mlp_only_layers\": [1]}", "'mlp_only_layers'");
    expect_error(QWEN3_MOE ", \"mlp_only_layers\": 1}", "'mlp_only_layers'");
    expect_error(QWEN3_MOE ", \"decoder_sparse_step\": 0}", "'decoder_sparse_step'");
    expect_error("{\"hidden_size\": 64, \"num_hidden_layers\": 3, \"intermediate_size\": 96, \"vocab_size\": 50, "
                 "\"model_type\": \"qwen3_moe\", \"num_attention_heads\": 4, \"num_experts\": 4, "
                 "\"num_experts_per_tok\": 2, \"decoder_sparse_step\": 2}", "'decoder_sparse_step'");
    expect_error("{" BASE "\"model_type\": \"qwen3_moe\", \"num_attention_heads\": 4, \"num_experts\": 4, "
                 "\"num_experts_per_tok\": 5}", "'num_experts_per_tok' (5) exceeds 'num_experts' (4)");
}

/* Phi3Config: rms_norm_eps 1e-5, sliding_window None, the leading
 * int(head_dim * partial_rotary_factor) dims rotated (Phi-4-mini: 0.75). */
static void phi3_config(void **state) {
    char path[32];
    ModelConfig c;
    assert_int_equal(load_json("{\"model_type\": \"phi3\", \"hidden_size\": 3072, \"num_hidden_layers\": 32, \"intermediate_size\": 8192, "
          "\"vocab_size\": 200064, \"num_attention_heads\": 24, \"num_key_value_heads\": 8, "
          "\"partial_rotary_factor\": 0.75, \"tie_word_embeddings\": true}", &c, path), 0);
    assert_int_equal(c.arch, TM_ARCH_PHI3);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.rotary_dim, 96);
    assert_true(c.fused_proj && c.tie_word_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.rms_norm_eps == 1e-5);
}

/* gemma2-dev's config.json, and Gemma2Config's defaults and layer_types. */
#define GEMMA2 "{" BASE "\"model_type\": \"gemma2\", \"num_attention_heads\": 4"
static void gemma2_config(void **state) {
    char path[32];
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/../shared/models/gemma2-dev/config.json"), 0);
    assert_int_equal(c.arch, TM_ARCH_GEMMA2);
    assert_string_equal(tm_arch_name(c.arch), "gemma2");
    assert_int_equal(c.head_dim, 64);
    assert_true(c.query_pre_attn_scalar == 80 && c.attn_softcap == 50 && c.final_softcap == 30);
    assert_true(c.gelu_mlp && c.sandwich_norms && c.norm_plus_one && c.embed_scaled && c.tie_word_embeddings);
    assert_int_equal(c.sliding_window, 128);
    assert_int_equal(hf_config_layer_window(&c, 0), 128);
    assert_int_equal(hf_config_layer_window(&c, 1), 0);
    assert_int_equal(hf_config_layer_window(&c, 2), 128);
    assert_true(hf_config_attn_scale(&c) == 1.0 / sqrt(80.0));
    /* Gemma2Config defaults: head_dim 256, scalar 256, caps 50 and 30, window 4096, tied */
    assert_int_equal(load_json(GEMMA2 "}", &c, path), 0);
    assert_int_equal(c.head_dim, 256);
    assert_true(c.query_pre_attn_scalar == 256 && c.attn_softcap == 50 && c.final_softcap == 30);
    assert_true(c.tie_word_embeddings && c.rms_norm_eps == 1e-6);
    assert_int_equal(hf_config_layer_window(&c, 0), 4096);
    assert_int_equal(hf_config_layer_window(&c, 1), 0);
    /* null caps: none; layer_types all sliding, all full */
    assert_int_equal(load_json(GEMMA2 ", \"attn_logit_softcapping\": null, \"final_logit_softcapping\": null, "
                                      "\"layer_types\": [\"sliding_attention\", \"sliding_attention\"]}", &c, path), 0);
    assert_true(c.attn_softcap == 0 && c.final_softcap == 0);
    assert_int_equal(hf_config_layer_window(&c, 1), 4096);
    assert_int_equal(load_json(GEMMA2 ", \"layer_types\": [\"full_attention\", \"full_attention\"]}", &c, path), 0);
    assert_int_equal(hf_config_layer_window(&c, 0), 0);
    /* other architectures: one window for every layer */
    assert_int_equal(load_json("{" BASE "\"model_type\": \"mistral\", \"num_attention_heads\": 4, \"sliding_window\": 7}",
                               &c, path), 0);
    assert_int_equal(hf_config_layer_window(&c, 1), 7);
    assert_true(hf_config_attn_scale(&c) == 1.0 / sqrt(16.0));
    expect_error(GEMMA2 ", \"layer_types\": [\"full_attention\", \"sliding_attention\"]}", "'layer_types'");
    expect_error(GEMMA2 ", \"layer_types\": [\"sliding_attention\"]}", "'layer_types'");
    expect_error(GEMMA2 ", \"hidden_activation\": \"gelu\"}", "'hidden_activation'");
    expect_error(GEMMA2 ", \"query_pre_attn_scalar\": 0}", "'query_pre_attn_scalar'");
    expect_error(GEMMA2 ", \"attn_logit_softcapping\": -1}", "'attn_logit_softcapping'");
    expect_error(GEMMA2 ", \"use_bidirectional_attention\": true}", "'use_bidirectional_attention'");
}

/* gemma2_mla (a converted gemma2): DeepSeek's attention fields, gemma2's everything else; the
 * scale from query_pre_attn_scalar, qk_nope_head_dim + qk_rope_head_dim when absent. */
#define GEMMA2_MLA "{" BASE "\"model_type\": \"gemma2_mla\", \"num_attention_heads\": 4, \"kv_lora_rank\": 16, " \
    "\"q_lora_rank\": null, \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 8, \"v_head_dim\": 12, " \
    "\"sliding_window\": 5, \"attn_logit_softcapping\": 3.0"
static void gemma2_mla_config(void **state) {
    char path[32];
    ModelConfig c;
    assert_int_equal(load_json(GEMMA2_MLA ", \"query_pre_attn_scalar\": 20}", &c, path), 0);
    assert_int_equal(c.arch, TM_ARCH_GEMMA2_MLA);
    assert_true(hf_config_is_mla(&c));
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.mla.q_lora_rank, 0);
    assert_true(c.mla.latent_norms && c.mla.rope_interleave);
    assert_int_equal(hf_config_qk_head_dim(&c), 24);
    assert_true(hf_config_attn_scale(&c) == 1.0 / sqrt(20.0));
    assert_true(c.attn_softcap == 3 && c.final_softcap == 30);
    assert_true(c.gelu_mlp && c.sandwich_norms && c.norm_plus_one && c.embed_scaled && c.tie_word_embeddings);
    assert_int_equal(hf_config_layer_window(&c, 0), 5);
    assert_int_equal(hf_config_layer_window(&c, 1), 0);
    assert_int_equal(load_json(GEMMA2_MLA "}", &c, path), 0);
    assert_true(hf_config_attn_scale(&c) == 1.0 / sqrt(24.0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gemma2_9b_it), cmocka_unit_test(gemma2_mla_config),
        cmocka_unit_test(qwen25_72b), cmocka_unit_test(mixtral_8x7b), cmocka_unit_test(llama32_1b),
        cmocka_unit_test(phi_4), cmocka_unit_test(qwen3_8b), cmocka_unit_test(qwen3_30b_a3b),
        cmocka_unit_test(bad_configs), cmocka_unit_test(defaults_follow_transformers),
        cmocka_unit_test(qwen3_dev), cmocka_unit_test(qwen3_fields), cmocka_unit_test(phi3_config),
        cmocka_unit_test(gemma2_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
