/* Golden-logit test: the engine's logits for every fixture model (made by
 * tests/ref/make_fixtures.py with its own float64 numpy forward pass) must
 * match the reference. The fixtures are the GQA ones (llama, qwen2, mistral,
 * mixtral; qwen3 with per-head q/k norms, f32 and bf16 with biases; qwen3_moe
 * with a dense layer and unrenormalised top-2, and all-sparse renormalised)
 * and four deepseek_v3 (MLA) ones: plain q_proj with interleaved
 * rope; q_lora with biases, half-split rope and llama3 scaling (f16, sharded);
 * the Mixtral-form MoE after a dense layer (golden logits with tm_ref's
 * vLLM router, the only MoE form the engine runs); tied bf16; and two
 * gemma2_mla (gemma2's layers around MLA: plain q_proj with rotate-half rope,
 * f32; q_lora with interleaved rope, bf16; both with windowed and full
 * layers, soft-caps and an explicit query_pre_attn_scalar; measured 5.6e-6
 * and 3.5e-6).
 *
 * Tolerance: |ours - ref| <= 5e-5 + 1e-5 |ref|. The reference reads the same
 * stored (f32/f16/bf16) weights, so the only difference is our fp32
 * arithmetic: sums of at most a few hundred terms over two layers, measured
 * at 2e-6..5e-6 for a float32 numpy run of the same models. The bound leaves
 * ~10x headroom and is still 4+ orders below what a real mistake does (a
 * wrong RoPE pairing, a missing bias, a wrong kv group or MoE route moves
 * logits by 0.1..5). The same bound serves the MLA fixtures: their sums are
 * no longer (kv_b_proj reads a 20..24-wide latent, o_proj 32..64 inputs), the
 * deliberately small latents (mean square ~2e-4, so the latent norms' eps
 * counts) are normalised before anything sums over them, and the engine's
 * error measures 1.5e-6..2.7e-6 there, as on the GQA fixtures (0.9e-6..3.6e-6).
 * What a mistake does there, per make_fixtures.py's checks: rms_norm_eps
 * instead of 1e-6 in the latent norms moves logits by 0.2..0.3, unit latent
 * norm weights by 1..3, the other rope layout by 3..8, transformers' sigmoid
 * routing instead of softmax by 1.8; on the qwen3 fixtures unit q/k norm
 * weights move logits by 3..5, no QK-norm by 3..6, the other norm_topk_prob
 * by 0.6..1.6. */
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

#include "model/model.h"
#include "tests/fixture.h"

#define ATOL 5e-5
#define RTOL 1e-5

/* Mean next-token NLL computed from the reference logits, in double. */
static double ref_nll_sum(const double *logits, const int32_t *ids, int B, int T, int V) {
    double total = 0.0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const double *z = logits + ((size_t)b * T + t) * V;
            double mx = z[0], s = 0.0;
            for (int v = 1; v < V; v++) mx = fmax(mx, z[v]);
            for (int v = 0; v < V; v++) s += exp(z[v] - mx);
            total += log(s) + mx - z[ids[b * T + t + 1]];
        }
    return total;
}

static void check_fixture(const char *name) {
    FixtureMeta meta = fixture_meta(name);
    int B = meta.batch, T = meta.seqlen, V = meta.vocab;
    Model m;
    fixture_model(&m, name);
    assert_int_equal(m.cfg.vocab_size, V);
    int32_t *ids = fixture_tokens(name, &meta);
    double *ref = fixture_f64(name, "logits.f64", (size_t)B * T * V);

    Workspace ws;
    workspace_init(&ws, &m.cfg, B, T);
    model_forward(&m, ids, &ws);
    float *ours = malloc((size_t)B * T * V * sizeof *ours);
    model_logits(&m, ws.xn, B * T, ours);
    double max_err = 0.0, max_ref = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < (size_t)B * T * V; i++) {
        double err = fabs(ours[i] - ref[i]) - RTOL * fabs(ref[i]);
        if (err > max_err) max_err = err, worst = i;
        max_ref = fmax(max_ref, fabs(ref[i]));
    }
    printf("  %-28s B=%d T=%d V=%d  max |logit| %.3f  max excess error %.2e\n", name, B, T, V, max_ref, max_err);
    assert_true(max_ref > 1.0); /* a degenerate fixture would prove nothing */
    if (max_err > ATOL)
        fail_msg("%s: logit %zu is %.7f, reference %.7f", name, worst, ours[worst], ref[worst]);

    /* the loss path (chunked head + cross-entropy) against NLL of the reference logits */
    int64_t predicted;
    double nll = model_nll(&m, ids, &ws, &predicted);
    assert_int_equal(predicted, (int64_t)B * (T - 1));
    double want = ref_nll_sum(ref, ids, B, T, V);
    if (fabs(nll - want) > 1e-5 * predicted) fail_msg("%s: NLL sum %.9f, reference %.9f", name, nll, want);
    /* the head in vocabulary chunks of 7 columns (online log-sum-exp) agrees */
    ws.vocab_chunk = 7;
    double chunked = model_nll(&m, ids, &ws, &predicted);
    if (fabs(chunked - want) > 1e-5 * predicted) fail_msg("%s: chunked NLL sum %.9f, reference %.9f", name, chunked, want);

    /* one sequence at a time gives the same logits as the batch */
    Workspace one;
    workspace_init(&one, &m.cfg, 1, T);
    model_forward(&m, ids + T, &one);
    float *row = malloc((size_t)T * V * sizeof *row);
    model_logits(&m, one.xn, T, row);
    for (size_t i = 0; i < (size_t)T * V; i++) assert_true(fabsf(row[i] - ours[(size_t)T * V + i]) <= 1e-5f);
    free(row);
    workspace_free(&one);

    workspace_free(&ws);
    free(ours);
    free(ref);
    free(ids);
    model_free(&m);
}

static void all_fixtures(void **state) {
    json_t *list = fixture_list(); /* fails unless it lists every REQUIRED fixture (fixture.c) */
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) check_fixture(json_string_value(v));
    json_decref(list);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(all_fixtures)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
