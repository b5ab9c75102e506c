/* Absorbed vs non-absorbed attention: for every model, the token-by-token
 * decoder (model/decode.c: MLA caches only the latent and folds kv_b_proj
 * into query and output) must give the logits of the whole-sequence forward
 * (model/forward.c: per-head keys and values expanded from the latent).
 *
 * Models: random deepseek_v3 models built in memory, including the
 * converter's engine-only "exact" form (no latent norms, a q_proj bias) that
 * no config.json can describe: q_proj with interleaved rope; q_lora with
 * biases, half-split rope, llama3 scaling and qk_nope != v_head_dim; exact
 * mode; the Mixtral-form MoE after a dense first layer; gemma2_mla
 * (sandwich (1 + w) norms, GeGLU, a window of 5 on layer 0 of 2 < T_SEQ,
 * query_pre_attn_scalar 20 != qk 24, soft-caps, tied scaled embeddings,
 * q_lora). The fixture models (GQA, deepseek_v3 and gemma2_mla files) are
 * covered by test_decode.c.
 *
 * Tolerance |dec - full| <= 1e-4 (1 + max|logit|): both run in fp32 but sum
 * in different orders (latent-space dot products against per-head ones);
 * measured ~1e-6. A wrong absorption (a transposed kv_b block, rope on the
 * wrong dims, a missing norm) moves logits by 0.1 and more. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/decode.h"
#include "model/model.h"

#define T_SEQ 19

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float urand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

typedef struct {
    StTensor *t;
    int n;
} RandomWeights;

/* Every tensor the config implies, random; norms near 1, biases small. */
static RandomWeights random_weights(const ModelConfig *c) {
    WeightShape *ws;
    RandomWeights rw;
    rw.n = weights_expected(c, &ws);
    rw.t = callocCheck((size_t)rw.n, sizeof *rw.t);
    for (int i = 0; i < rw.n; i++) {
        int64_t numel = ws[i].cols ? ws[i].rows * ws[i].cols : ws[i].rows;
        float *data = mallocCheck((size_t)numel * sizeof *data);
        int is_norm = ws[i].cols == 0 && strstr(ws[i].name, "norm");
        float scale = ws[i].cols ? 1.5f / sqrtf((float)ws[i].cols) : 0.1f;
        for (int64_t j = 0; j < numel; j++) data[j] = is_norm ? 1.0f + 0.2f * urand() : scale * urand();
        rw.t[i].name = strdup(ws[i].name);
        rw.t[i].dtype = TM_F32;
        rw.t[i].ndim = ws[i].cols ? 2 : 1;
        rw.t[i].shape[0] = ws[i].rows;
        rw.t[i].shape[1] = ws[i].cols;
        rw.t[i].end = (uint64_t)numel * sizeof(float);
        rw.t[i].data = data;
        rw.t[i].file = "(random)";
    }
    free(ws);
    return rw;
}

static void random_weights_free(RandomWeights *rw) {
    for (int i = 0; i < rw->n; i++) {
        free(rw->t[i].name);
        free((void *)rw->t[i].data);
    }
    free(rw->t);
}

static void compare_decode_to_forward(const Model *m, uint64_t want_cache_bytes) {
    int V = m->cfg.vocab_size;
    int32_t ids[T_SEQ];
    for (int t = 0; t < T_SEQ; t++) ids[t] = (int32_t)((t * 37 + 11) % V);
    Workspace ws;
    workspace_init(&ws, &m->cfg, 1, T_SEQ);
    model_forward(m, ids, &ws);
    float *full = malloc((size_t)T_SEQ * V * sizeof *full), *dec = malloc((size_t)V * sizeof *dec);
    model_logits(m, ws.xn, T_SEQ, full);
    DecodeState st;
    assert_int_equal(decode_init(&st, m, T_SEQ), 0);
    assert_int_equal(decode_cache_bytes_per_token(&st, m), want_cache_bytes);
    double worst = 0;
    for (int t = 0; t < T_SEQ; t++) {
        assert_int_equal(decode_step(m, &st, ids[t], dec), 0);
        double big = 0, diff = 0;
        for (int v = 0; v < V; v++) {
            big = fmax(big, fabs(full[(size_t)t * V + v]));
            diff = fmax(diff, fabs(dec[v] - full[(size_t)t * V + v]));
        }
        worst = fmax(worst, diff / (1 + big));
        if (diff > 1e-4 * (1 + big)) fail_msg("position %d: decoder differs by %g (max |logit| %g)", t, diff, big);
    }
    printf("  worst relative difference %.2e\n", worst);
    assert_int_equal(decode_step(m, &st, ids[0], dec), -1); /* the cache is full */
    decode_free(&st, m);
    workspace_free(&ws);
    free(full);
    free(dec);
}

static ModelConfig mla_config(void) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.arch = TM_ARCH_DEEPSEEK_V3;
    snprintf(c.model_type, sizeof c.model_type, "deepseek_v3");
    c.hidden_size = 48;
    c.n_layers = 2;
    c.n_heads = c.n_kv_heads = 4;
    c.intermediate_size = 40;
    c.vocab_size = 70;
    c.rope_theta = 10000;
    c.rms_norm_eps = 1e-5;
    c.first_moe_layer = c.n_layers;
    c.mla = (MlaConfig){.kv_lora_rank = 20, .qk_nope_head_dim = 16, .qk_rope_head_dim = 8, .v_head_dim = 16,
                        .rope_interleave = 1, .latent_norms = 1};
    c.head_dim = c.rotary_dim = 8;
    return c;
}

static void run_mla(const ModelConfig *c) {
    RandomWeights rw = random_weights(c);
    StSet set;
    st_set_from_tensors(&set, rw.t, rw.n);
    Model m;
    if (model_init(&m, c, &set, "(test config)")) fail_msg("%s", tm_error());
    compare_decode_to_forward(&m, (uint64_t)(c->mla.kv_lora_rank + c->mla.qk_rope_head_dim) * c->n_layers * 4);
    model_free(&m);
    random_weights_free(&rw);
}

static void test_mla_q_proj_interleaved(void **state) {
    (void)state;
    ModelConfig c = mla_config();
    run_mla(&c);
}

static void test_mla_q_lora_bias_half_split(void **state) {
    (void)state;
    ModelConfig c = mla_config();
    c.mla.q_lora_rank = 24;
    c.mla.rope_interleave = 0;
    c.mla.v_head_dim = 12;
    c.qkv_bias = c.o_bias = 1;
    c.rope_scaling = (TmRopeScalingCfg){.type = TM_ROPE_LLAMA3, .factor = 8, .low_freq_factor = 1,
                                        .high_freq_factor = 4, .original_max_position_embeddings = 8};
    run_mla(&c);
}

static void test_mla_exact_no_norm_q_bias(void **state) {
    (void)state;
    ModelConfig c = mla_config();
    c.mla.latent_norms = 0;
    c.mla.q_bias = 1;
    run_mla(&c);
}

static void test_mla_moe(void **state) {
    (void)state;
    ModelConfig c = mla_config();
    c.n_experts = 4;
    c.n_experts_per_tok = 2;
    c.expert_intermediate_size = 24;
    c.first_moe_layer = 1;
    run_mla(&c);
}

/* gemma2's layers around MLA: everything the absorbed step must add to DeepSeek's */
static void test_gemma2_mla(void **state) {
    (void)state;
    ModelConfig c = mla_config();
    c.arch = TM_ARCH_GEMMA2_MLA;
    snprintf(c.model_type, sizeof c.model_type, "gemma2_mla");
    c.mla.q_lora_rank = 24;
    c.gelu_mlp = c.sandwich_norms = c.norm_plus_one = c.embed_scaled = c.tie_word_embeddings = 1;
    c.sliding_window = 5;
    c.window_even_layers = 1;
    c.query_pre_attn_scalar = 20;
    c.attn_softcap = 2.0;
    c.final_softcap = 8.0;
    run_mla(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mla_q_proj_interleaved),
        cmocka_unit_test(test_mla_q_lora_bias_half_split),
        cmocka_unit_test(test_mla_exact_no_norm_q_bias),
        cmocka_unit_test(test_mla_moe),
        cmocka_unit_test(test_gemma2_mla),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
