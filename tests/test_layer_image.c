/* The host side of a layer's weights on the GPU (model/cuda/layer_image.h),
 * which needs no GPU: every layer of every fixture (GQA, qwen3's QK-norm,
 * phi3, gemma2's sandwich norms, MLA with and without q_lora, the MoE ones
 * with their routers and experts) and of bytelm-dev laid out for fp32 and
 * for bf16, the image bound to itself, and each weight read back through
 * the GpuLayer's pointers: every matrix equals its tensor converted by
 * tensor_to_f32 (and, for bf16, rounded by tm_f32_to_bf16), bit for bit;
 * every vector its source; shapes as the tensors'; weights the layer lacks
 * NULL; pieces 256-byte aligned, inside the block and not overlapping;
 * the layout alone (IMAGE_LAYOUT, what decides streaming) the same block.
 * Exact comparisons: the fill is a copy or the one rounding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "io/base/checked.h"
#include "model/cuda/layer_image.h"

/* m's data equals t converted for the precision, element by element. */
static void same_matrix(const GpuMat *m, const Tensor *t, int bf16, const char *what, int layer) {
    if (!t->data) {
        if (m->data) fail_msg("layer %d: %s is absent but bound", layer, what);
        return;
    }
    if (!m->data || m->rows != t->rows || m->cols != t->cols || m->bf16 != bf16)
        fail_msg("layer %d: %s bound as [%lld x %lld] bf16 %d, tensor [%lld x %lld]", layer, what, (long long)m->rows,
                 (long long)m->cols, m->bf16, (long long)t->rows, (long long)t->cols);
    int64_t n = t->rows * t->cols;
    float *want = mallocCheck((size_t)n * sizeof *want);
    tensor_to_f32(t, 0, n, want);
    for (int64_t i = 0; i < n; i++) {
        int same = bf16 ? ((const uint16_t *)m->data)[i] == tm_f32_to_bf16(want[i])
                        : memcmp((const float *)m->data + i, want + i, sizeof(float)) == 0;
        if (!same) fail_msg("layer %d: %s element %lld differs from the tensor", layer, what, (long long)i);
    }
    free(want);
}

static void same_vector(const float *got, const float *src, int64_t n, const char *what, int layer) {
    if (!src) {
        if (got) fail_msg("layer %d: %s is absent but bound", layer, what);
        return;
    }
    if (!got || memcmp(got, src, (size_t)n * sizeof *src) != 0) fail_msg("layer %d: %s differs", layer, what);
}

/* Offsets aligned, inside the block, in order and not overlapping (the
 * order is the layout's: each piece starts at or after the previous end). */
static void sane_offsets(const LayerImage *img) {
    size_t end = 0;
    for (int i = 0; i < img->n; i++) {
        if (img->off[i] == SIZE_MAX) continue;
        assert_int_equal(img->off[i] % 256, 0);
        assert_true(img->off[i] >= end && img->off[i] < img->bytes);
        end = img->off[i] + 1;
    }
}

static void check_layer(const Model *m, int l, int bf16) {
    const ModelConfig *c = &m->cfg;
    const LayerWeights *L = &m->w.layers[l];
    GpuLayer gl;
    LayerImage img;
    assert_int_equal(layer_image_make(&img, &gl, bf16 ? GPU_BF16 : GPU_FP32, c, L, l, IMAGE_HOST), 0);
    sane_offsets(&img);
    GpuLayer shapes;
    LayerImage layout; /* the layout alone: the same block */
    assert_int_equal(layer_image_make(&layout, &shapes, bf16 ? GPU_BF16 : GPU_FP32, c, L, l, IMAGE_LAYOUT), 0);
    assert_null(layout.host);
    assert_int_equal(layout.bytes, img.bytes);
    assert_int_equal(layout.n, img.n);
    assert_memory_equal(layout.off, img.off, (size_t)img.n * sizeof *img.off);
    layer_image_free(&layout);
    free(shapes.experts);
    layer_image_bind(&gl, &img, img.host);
    const GpuMat *mats[] = {&gl.q, &gl.k, &gl.v, &gl.o, &gl.gate, &gl.up, &gl.down, &gl.q_a, &gl.q_b, &gl.kv_a,
                            &gl.kv_b};
    const Tensor *ts[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->q_a, &L->q_b, &L->kv_a,
                          &L->kv_b};
    const char *names[] = {"q", "k", "v", "o", "gate", "up", "down", "q_a", "q_b", "kv_a", "kv_b"};
    for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) same_matrix(mats[i], ts[i], bf16, names[i], l);
    const MlaConfig *a = &c->mla;
    int D = c->hidden_size, I = c->intermediate_size, hd = c->head_dim;
    int qd = c->n_heads * hf_config_qk_head_dim(c), kvd = c->n_kv_heads * hd;
    struct {
        const float *got, *src;
        int64_t n;
        const char *name;
    } vecs[] = {{gl.q_bias, L->q_bias, qd, "q_bias"},
                {gl.k_bias, L->k_bias, kvd, "k_bias"},
                {gl.v_bias, L->v_bias, kvd, "v_bias"},
                {gl.o_bias, L->o_bias, D, "o_bias"},
                {gl.gate_bias, L->gate_bias, I, "gate_bias"},
                {gl.up_bias, L->up_bias, I, "up_bias"},
                {gl.down_bias, L->down_bias, D, "down_bias"},
                {gl.input_norm, L->input_norm, D, "input_norm"},
                {gl.post_norm, L->post_norm, D, "post_norm"},
                {gl.attn_out_norm, L->attn_out_norm, D, "attn_out_norm"},
                {gl.mlp_out_norm, L->mlp_out_norm, D, "mlp_out_norm"},
                {gl.q_head_norm, L->q_head_norm, hd, "q_head_norm"},
                {gl.k_head_norm, L->k_head_norm, hd, "k_head_norm"},
                {gl.q_a_bias, L->q_a_bias, a->q_lora_rank, "q_a_bias"},
                {gl.kv_a_bias, L->kv_a_bias, a->kv_lora_rank + a->qk_rope_head_dim, "kv_a_bias"},
                {gl.q_a_norm, L->q_a_norm, a->q_lora_rank, "q_a_norm"},
                {gl.kv_a_norm, L->kv_a_norm, a->kv_lora_rank, "kv_a_norm"}};
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++)
        same_vector(vecs[i].got, vecs[i].src, vecs[i].n, vecs[i].name, l);
    assert_int_equal(gl.n_experts, hf_config_layer_is_moe(c, l) ? c->n_experts : 0);
    if (gl.n_experts) same_matrix(&gl.router, &L->router, bf16, "router", l);
    for (int e = 0; e < gl.n_experts; e++) {
        same_matrix(&gl.experts[3 * e], &L->experts[e].gate, bf16, "expert gate", l);
        same_matrix(&gl.experts[3 * e + 1], &L->experts[e].up, bf16, "expert up", l);
        same_matrix(&gl.experts[3 * e + 2], &L->experts[e].down, bf16, "expert down", l);
    }
    assert_int_equal(gl.bytes, img.bytes);
    layer_image_free(&img);
    free(gl.experts);
}

static void check_model(const Model *m) {
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int l = 0; l < m->cfg.n_layers; l++) check_layer(m, l, bf16);
}

static void every_fixture(void **state) {
    (void)state;
    json_t *list = fixture_list();
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        Model m;
        fixture_model(&m, json_string_value(v));
        check_model(&m);
        model_free(&m);
    }
    json_decref(list);
}

static void bytelm(void **state) {
    (void)state;
    Model m;
    model_load_or_fail(&m, TM_SOURCE_DIR "/data/models/bytelm-dev");
    check_model(&m);
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_fixture), cmocka_unit_test(bytelm)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
