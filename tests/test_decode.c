/* Token-by-token decoder (model/decode.h) against the whole-sequence forward
 * (model_forward + model_logits) on every golden fixture of
 * tests/ref/make_fixtures.py: the GQA ones (llama, qwen2, mistral with a
 * sliding window of 5 < T = 13, which the decoder must apply too, mixtral
 * MoE, qwen3, phi3, gemma2) and the MLA ones: deepseek_v3, and gemma2_mla
 * (gemma2's layers around MLA: the absorbed step must apply each layer's
 * window, the score scale query_pre_attn_scalar^-1/2, the score soft-cap
 * and the sandwich norm of the attention output).
 *
 * For each fixture and each of its token sequences (B=1, T tokens from
 * position 0) the decoder's logits at every position must match the
 * forward's row: max_v |dec - full| <= 1e-4 + 1e-4 max_v |full|. Both run in
 * fp32, but for MLA the decoder uses the absorbed form (the cache holds the
 * normed latent and the rope key; kv_b_proj is folded into the query and the
 * output), so its sums run in a different order from the forward's per-head
 * keys and values: latent-space dot products of length kv_lora_rank instead
 * of head-space ones; GQA differs only in one-row vs many-row GEMMs. A wrong
 * cache (position, window, rope offset, absorbed block) moves logits by 0.1
 * and more; the golden test (test_forward) ties the forward to the float64
 * reference.
 *
 * Greedy generation (greedy_matches_forward): on both gemma2_mla fixtures,
 * gemma2 and mistral_window, 4 prompt + 16 generated tokens (> the window)
 * with the latent (or K/V) cache pick the tokens the forward's argmax picks
 * when the whole sequence is recomputed from scratch at every step, and the
 * step logits agree within the tolerance above.
 *
 * Batched decoding (batch_matches_single): three sequences stepped together
 * (decode_step_batch: B-row GEMMs, one cache per sequence) give each
 * sequence's one-at-a-time logits within the tolerance above (the GEMMs'
 * sums may run in another order), on MLA, windowed and MoE fixtures.
 *
 * Also: the cache holds (kv_lora_rank + qk_rope_head_dim) fp32 per token and
 * layer for MLA and 2 * kv_heads * head_dim for GQA, both read from
 * config.json here; a step past max_T fails with -1 and leaves the state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/error.h"
#include "model/decode.h"
#include "model/model.h"
#include "tests/fixture.h"

#define ATOL 1e-4
#define RTOL 1e-4

static long long cfg_int(const json_t *c, const char *key, long long dflt) {
    const json_t *v = json_object_get(c, key);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* Cache bytes per token the config implies, from config.json itself. */
static uint64_t expected_cache_bytes(const char *name, int *is_mla) {
    char path[1100];
    fixture_path(path, sizeof path, name, "config.json");
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    if (!c) fail_msg("%s: %s", path, je.text);
    const char *mt = json_string_value(json_object_get(c, "model_type"));
    assert_non_null(mt);
    long long L = cfg_int(c, "num_hidden_layers", -1), width;
    *is_mla = strcmp(mt, "deepseek_v3") == 0 || strcmp(mt, "gemma2_mla") == 0;
    if (*is_mla) {
        width = cfg_int(c, "kv_lora_rank", -1) + cfg_int(c, "qk_rope_head_dim", -1);
    } else {
        long long H = cfg_int(c, "num_attention_heads", -1);
        long long G = cfg_int(c, "num_key_value_heads", H);
        long long d = cfg_int(c, "head_dim", cfg_int(c, "hidden_size", -1) / H);
        width = 2 * G * d;
    }
    json_decref(c);
    assert_true(L > 0 && width > 0);
    return (uint64_t)(width * L * 4);
}

static void check_fixture(const char *name) {
    FixtureMeta meta = fixture_meta(name);
    int B = meta.batch, T = meta.seqlen, V = meta.vocab;
    Model m;
    fixture_model(&m, name);
    assert_int_equal(m.cfg.vocab_size, V);
    int is_mla;
    uint64_t want_bytes = expected_cache_bytes(name, &is_mla);
    assert_int_equal(is_mla, hf_config_is_mla(&m.cfg));
    int32_t *ids = fixture_tokens(name, &meta);

    Workspace ws;
    workspace_init(&ws, &m.cfg, 1, T);
    float *full = malloc((size_t)T * V * sizeof *full), *dec = malloc((size_t)V * sizeof *dec);
    assert_true(full && dec);
    double worst = 0.0, max_logit = 0.0;
    for (int b = 0; b < B; b++) {
        const int32_t *seq = ids + (size_t)b * T;
        model_forward(&m, seq, &ws);
        model_logits(&m, ws.xn, T, full);

        DecodeState st;
        if (decode_init(&st, &m, T)) fail_msg("%s: decode_init: %s", name, tm_error());
        assert_int_equal(decode_cache_bytes_per_token(&st, &m), want_bytes);
        for (int t = 0; t < T; t++) {
            if (decode_step(&m, &st, seq[t], dec)) fail_msg("%s: decode_step %d: %s", name, t, tm_error());
            const float *row = full + (size_t)t * V;
            double big = 0.0, diff = 0.0;
            int at = 0;
            for (int v = 0; v < V; v++) {
                big = fmax(big, fabs(row[v]));
                double e = fabs((double)dec[v] - row[v]);
                if (e > diff) diff = e, at = v;
            }
            max_logit = fmax(max_logit, big);
            worst = fmax(worst, diff / (ATOL / RTOL + big));
            if (!(diff <= ATOL + RTOL * big))
                fail_msg("%s: sequence %d position %d token %d: decoder logit %d is %.7f, forward %.7f "
                         "(|diff| %.2e > %.2e)", name, b, t, (int)seq[t], at, dec[at], row[at], diff,
                         ATOL + RTOL * big);
        }
        assert_int_equal(st.n, T);
        /* the cache is full: one more step fails and changes nothing */
        assert_int_equal(decode_step(&m, &st, seq[0], dec), -1);
        assert_int_equal(st.n, T);
        decode_free(&st, &m);
    }
    printf("  %-28s %s  T=%d x%d  cache %4llu B/token  max |logit| %.3f  worst |diff|/(1+max|logit|) %.2e%s\n",
           name, is_mla ? "MLA (absorbed)" : "GQA           ", T, B, (unsigned long long)want_bytes, max_logit,
           worst, m.cfg.sliding_window > 0 && m.cfg.sliding_window < T ? "  (window < T)" : "");
    assert_true(max_logit > 1.0); /* a degenerate fixture would prove nothing */

    workspace_free(&ws);
    free(full);
    free(dec);
    free(ids);
    model_free(&m);
}

static void all_fixtures(void **state) {
    json_t *list = fixture_list();
    size_t i;
    json_t *v;
    int n_mla = 0, n_window = 0;
    json_array_foreach(list, i, v) {
        const char *name = json_string_value(v);
        check_fixture(name);
        n_mla += fixture_is_mla(name);
        n_window += strcmp(name, "mistral_window") == 0;
    }
    /* the decoder's two paths and its sliding window were all exercised */
    assert_true(json_array_size(list) >= 10);
    assert_true(n_mla >= 4);
    assert_int_equal(n_window, 1);
    json_decref(list);
}

static int argmax(const float *z, int n) {
    int best = 0;
    for (int v = 1; v < n; v++)
        if (z[v] > z[best]) best = v;
    return best;
}

/* Last row of the forward's logits for seq[0..n): the whole prefix run from scratch. */
static void forward_last_row(const Model *m, const int32_t *seq, int n, float *full, float *row) {
    Workspace ws;
    workspace_init(&ws, &m->cfg, 1, n);
    model_forward(m, seq, &ws);
    model_logits(m, ws.xn, n, full);
    memcpy(row, full + (size_t)(n - 1) * m->cfg.vocab_size, (size_t)m->cfg.vocab_size * sizeof *row);
    workspace_free(&ws);
}

/* Greedy generation as `transmla generate` runs it (latent cache, argmax fed
 * back) against the forward's argmax recomputed from scratch over the whole
 * sequence at each step: PROMPT + GEN_NEW tokens, more than the window, so
 * the windowed layers drop cached latents. Same tokens; logits within the
 * decoder tolerance above (measured in the printout). */
#define PROMPT 4
#define GEN_NEW 16
static void greedy_one(const char *name) {
    FixtureMeta meta = fixture_meta(name);
    Model m;
    fixture_model(&m, name);
    int V = m.cfg.vocab_size, n = PROMPT + GEN_NEW;
    assert_true(m.cfg.sliding_window > 0 && m.cfg.sliding_window < n - 1);
    int32_t *ids = fixture_tokens(name, &meta), seq[PROMPT + GEN_NEW];
    memcpy(seq, ids, PROMPT * sizeof *seq);
    float *dec = malloc((size_t)V * sizeof *dec), *ref = malloc((size_t)V * sizeof *ref);
    float *full = malloc((size_t)n * V * sizeof *full);
    DecodeState st;
    if (decode_init(&st, &m, n)) fail_msg("%s: decode_init: %s", name, tm_error());
    double worst = 0.0, min_gap = 1e30;
    for (int t = 0; t < n - 1; t++) {
        if (decode_step(&m, &st, seq[t], dec)) fail_msg("%s: decode_step %d: %s", name, t, tm_error());
        if (t < PROMPT - 1) continue;
        forward_last_row(&m, seq, t + 1, full, ref);
        double big = 0.0, diff = 0.0;
        for (int v = 0; v < V; v++) {
            big = fmax(big, fabs(ref[v]));
            diff = fmax(diff, fabs((double)dec[v] - ref[v]));
        }
        worst = fmax(worst, diff / (ATOL / RTOL + big));
        if (!(diff <= ATOL + RTOL * big)) fail_msg("%s: step %d: decoder logits differ by %.2e", name, t, diff);
        int a = argmax(dec, V), b = argmax(ref, V);
        for (int v = 0; v < V; v++)
            if (v != b) min_gap = fmin(min_gap, ref[b] - ref[v]);
        if (a != b) fail_msg("%s: generated token %d: latent cache picks %d, the forward %d", name, t + 1 - PROMPT, a, b);
        seq[t + 1] = a;
    }
    printf("  %-20s greedy %d+%d tokens (window %d):", name, PROMPT, GEN_NEW, m.cfg.sliding_window);
    for (int t = PROMPT; t < n; t++) printf(" %d", (int)seq[t]);
    printf("\n  %-20s same tokens; worst |diff|/(1+max|logit|) %.2e, smallest top-1 gap %.2e\n", "", worst, min_gap);
    decode_free(&st, &m);
    free(dec);
    free(ref);
    free(full);
    free(ids);
    model_free(&m);
}

static void greedy_matches_forward(void **state) {
    (void)state;
    const char *names[] = {"gemma2_mla", "gemma2_mla_qlora", "gemma2", "mistral_window"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) greedy_one(names[k]);
}

/* decode_step past max_T returns -1 with an error, for both attention kinds;
 * decode_init with a small max_T works and the state stays usable to free. */
static void step_past_capacity(void **state) {
    const char *names[] = {"llama_gqa2_bf16", "dsv3_qlora_bias_llama3_f16"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        Model m;
        fixture_model(&m, names[k]);
        float *logits = malloc((size_t)m.cfg.vocab_size * sizeof *logits);
        DecodeState st;
        assert_int_equal(decode_init(&st, &m, 2), 0);
        assert_int_equal(decode_step(&m, &st, 3, logits), 0);
        assert_int_equal(decode_step(&m, &st, 4, logits), 0);
        tm_clear_error();
        for (int extra = 0; extra < 3; extra++) {
            assert_int_equal(decode_step(&m, &st, 5, logits), -1);
            assert_int_equal(st.n, 2);
        }
        assert_true(strlen(tm_error()) > 0);
        decode_free(&st, &m);
        free(logits);
        model_free(&m);
    }
}

static void batch_matches_single(void **state) {
    (void)state;
    const char *names[] = {"dsv3_moe_softmax", "gemma2_mla", "mistral_window", "llama_gqa2_bf16", "qwen3"};
    enum { NB = 3 };
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        FixtureMeta meta = fixture_meta(names[k]);
        int T = meta.seqlen, V = meta.vocab, total = meta.batch * T;
        Model m;
        fixture_model(&m, names[k]);
        int32_t *ids = fixture_tokens(names[k], &meta), seq[NB][64];
        assert_true(T <= 64);
        for (int b = 0; b < NB; b++)
            for (int t = 0; t < T; t++) seq[b][t] = ids[(t * (b + 1) + 5 * b) % total];
        float *one = malloc((size_t)NB * T * V * sizeof *one), *many = malloc((size_t)NB * V * sizeof *many);
        for (int b = 0; b < NB; b++) {
            DecodeState st;
            assert_int_equal(decode_init(&st, &m, T), 0);
            for (int t = 0; t < T; t++) assert_int_equal(decode_step(&m, &st, seq[b][t], one + ((size_t)b * T + t) * V), 0);
            decode_free(&st, &m);
        }
        DecodeState st;
        assert_int_equal(decode_init_batch(&st, &m, T, NB), 0);
        double worst = 0;
        for (int t = 0; t < T; t++) {
            int32_t tok[NB];
            for (int b = 0; b < NB; b++) tok[b] = seq[b][t];
            assert_int_equal(decode_step_batch(&m, &st, tok, many), 0);
            for (int b = 0; b < NB; b++) {
                const float *want = one + ((size_t)b * T + t) * V, *got = many + (size_t)b * V;
                double mx = 0, d = 0;
                for (int v = 0; v < V; v++) {
                    mx = fmax(mx, fabs(want[v]));
                    d = fmax(d, fabs(got[v] - want[v]));
                }
                if (d > ATOL + RTOL * mx) fail_msg("%s: sequence %d position %d: batched logits differ by %g", names[k], b, t, d);
                worst = fmax(worst, d);
            }
        }
        printf("decode: %-20s %d sequences batched == one at a time (max |diff| %.2e)\n", names[k], NB, worst);
        decode_free(&st, &m);
        free(one);
        free(many);
        free(ids);
        model_free(&m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_fixtures),
        cmocka_unit_test(step_past_capacity),
        cmocka_unit_test(greedy_matches_forward),
        cmocka_unit_test(batch_matches_single),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
