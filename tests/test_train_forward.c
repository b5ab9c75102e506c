/* One forward per layer type: evaluation's model_layers (activations for the
 * forward alone, run in place) and training's layer_forward (activations
 * kept for the backward pass, out of place, positions and documents given as
 * arrays) are the same code and must agree, on every layer of
 * every MLA fixture (q_proj and q_lora, both rope layouts, biases, llama3
 * scaling, dense and MoE, F32/F16/BF16 weights) and of every GQA fixture
 * (llama, qwen2, mistral and phi3 with their windows, mixtral, qwen3 with its
 * QK-norm, qwen3_moe, gemma2 with its windowed even layers, soft-caps,
 * sandwich and (1 + w) norms and GeGLU), each layer fed the hidden states
 * the inference forward gives it on the fixture's tokens (rows of 8 tokens:
 * the fixtures' windows, 5 and 6, are shorter).
 * Tolerance 1e-5 max|y|: evaluation's attention runs a query row at a time,
 * training's in sgemm blocks (model/attention.h), so the sums run in other
 * orders (measured 1e-7..3.5e-7 relative); a wrong layer index, rope layout
 * or norm moves the output by far more. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/base/checked.h"
#include "model/model.h"
#include "model/rope.h"
#include "model/layer.h"
#include "tests/fixture.h"

/* Largest |a - b| over n, and largest |b| in *max_ref. */
static float max_abs_diff(const float *a, const float *b, int64_t n, float *max_ref) {
    float d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmaxf(d, fabsf(a[i] - b[i]));
        r = fmaxf(r, fabsf(b[i]));
    }
    *max_ref = r;
    return d;
}

typedef struct {
    int mla, gqa, gemma2, windowed_layers;
} Counts;

/* Checks every layer of the fixture; counts what it covered. */
static void check_fixture(const char *name, Counts *n) {
    FixtureMeta meta = fixture_meta(name);
    Model m;
    fixture_model(&m, name);
    const ModelConfig *c = &m.cfg;
    assert_int_equal(hf_config_is_mla(c), fixture_is_mla(name));
    *(hf_config_is_mla(c) ? &n->mla : &n->gqa) += 1;
    n->gemma2 += c->arch == TM_ARCH_GEMMA2 || c->arch == TM_ARCH_GEMMA2_MLA;
    int32_t *ids = fixture_tokens(name, &meta);
    int T = 8, B = meta.batch * meta.seqlen / T, N = B * T, D = c->hidden_size;
    assert_true(B >= 1);
    Workspace ws;
    workspace_init(&ws, c, B, T);
    model_embed(&m, ids, &ws);
    RopeTable rt;
    rope_table_init(&rt, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    LayerActs acts;
    layer_acts_init(&acts, c, B, T, 1);
    float *x = mallocCheck((size_t)N * D * sizeof *x), *y = mallocCheck((size_t)N * D * sizeof *y);
    int32_t *pos = mallocCheck((size_t)N * sizeof *pos), *doc = callocCheck((size_t)N, sizeof *doc);
    for (int i = 0; i < N; i++) pos[i] = i % T; /* one document per row: what model_layers computes */
    LayerRows rows = {.B = B, .T = T, .pos = pos, .doc_start = doc, .rope = &rt};
    for (int l = 0; l < c->n_layers; l++) {
        memcpy(x, ws.x, (size_t)N * D * sizeof *x);
        model_layers(&m, &ws, l, l + 1);
        layer_forward(c, &m.w.layers[l], l, x, y, &rows, &acts);
        float ref, d = max_abs_diff(y, ws.x, (int64_t)N * D, &ref);
        int window = hf_config_layer_window(c, l);
        n->windowed_layers += window > 0 && window < T;
        printf("%-30s layer %d%s: max |train - inference| %.3g (max |y| %.3g)\n", name, l,
               window ? " (windowed)" : "", d, ref);
        if (!(d <= 1e-5f * ref))
            fail_msg("%s layer %d: the training forward differs from the inference one", name, l);
    }
    free(x);
    free(y);
    free(pos);
    free(doc);
    free(ids);
    layer_acts_free(&acts);
    rope_table_free(&rt);
    workspace_free(&ws);
    model_free(&m);
}

static void every_layer_of_every_fixture(void **state) {
    (void)state;
    json_t *list = fixture_list();
    size_t i;
    json_t *v;
    Counts n = {0};
    json_array_foreach(list, i, v) check_fixture(json_string_value(v), &n);
    json_decref(list);
    if (n.mla < 6 || n.gqa < 14 || n.gemma2 < 4 || n.windowed_layers < 4)
        fail_msg("only %d MLA, %d GQA (%d gemma2) fixtures and %d layers with a window shorter than the rows in "
                 "fixtures.json (6, 14, 4 and 4 expected; rerun make_fixtures)", n.mla, n.gqa, n.gemma2,
                 n.windowed_layers);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_layer_of_every_fixture)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
