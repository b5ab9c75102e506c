/* A layer's weights as one block (layer_image.h), and the resident upload
 * and free of layer_gpu.h built on it. */
#include "model/cuda/layer_image.h"

#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

enum { N_MATS = 11, N_VECS = 17, ALIGN = 256 };

/* One piece of the block: a matrix (mat, from t) or an fp32 vector (vec, from src, len floats). */
typedef struct {
    GpuMat *mat;
    const Tensor *t;
    float **vec;
    const float *src;
    int64_t len;
} Piece;

/* gl's pieces in the block's order: the matrices, the vectors, a MoE
 * layer's router and each expert's gate, up, down; with L (and c) their
 * sources too. */
static int layer_pieces(GpuLayer *gl, const ModelConfig *c, const LayerWeights *L, Piece *p) {
    GpuMat *d[N_MATS] = {&gl->q, &gl->k, &gl->v, &gl->o, &gl->gate, &gl->up, &gl->down,
                         &gl->q_a, &gl->q_b, &gl->kv_a, &gl->kv_b};
    float **v[N_VECS] = {&gl->q_bias, &gl->k_bias, &gl->v_bias, &gl->o_bias, &gl->gate_bias, &gl->up_bias,
                         &gl->down_bias, &gl->input_norm, &gl->post_norm, &gl->attn_out_norm, &gl->mlp_out_norm,
                         &gl->q_head_norm, &gl->k_head_norm, &gl->q_a_bias, &gl->kv_a_bias, &gl->q_a_norm,
                         &gl->kv_a_norm};
    int n = 0;
    for (int i = 0; i < N_MATS; i++) p[n++] = (Piece){.mat = d[i]};
    for (int i = 0; i < N_VECS; i++) p[n++] = (Piece){.vec = v[i]};
    if (gl->n_experts) p[n++] = (Piece){.mat = &gl->router};
    for (int i = 0; i < 3 * gl->n_experts; i++) p[n++] = (Piece){.mat = &gl->experts[i]};
    if (!L) return n;
    const Tensor *h[N_MATS] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down,
                               &L->q_a, &L->q_b, &L->kv_a, &L->kv_b};
    const float *src[N_VECS] = {L->q_bias, L->k_bias, L->v_bias, L->o_bias, L->gate_bias, L->up_bias,
                                L->down_bias, L->input_norm, L->post_norm, L->attn_out_norm, L->mlp_out_norm,
                                L->q_head_norm, L->k_head_norm, L->q_a_bias, L->kv_a_bias, L->q_a_norm,
                                L->kv_a_norm};
    const MlaConfig *m = &c->mla;
    int D = c->hidden_size, I = c->intermediate_size, hd = c->head_dim, R = m->kv_lora_rank, Rq = m->q_lora_rank;
    int qd = c->n_heads * hf_config_qk_head_dim(c), kvd = c->n_kv_heads * hd;
    int len[N_VECS] = {qd, kvd, kvd, D, I, I, D, D, D, D, D, hd, hd, Rq, R + m->qk_rope_head_dim, Rq, R};
    for (int i = 0; i < N_MATS; i++) p[i].t = h[i];
    for (int i = 0; i < N_VECS; i++) p[N_MATS + i].src = src[i], p[N_MATS + i].len = len[i];
    if (!gl->n_experts) return n;
    p[N_MATS + N_VECS].t = &L->router;
    for (int e = 0; e < gl->n_experts; e++) {
        const Tensor *t[3] = {&L->experts[e].gate, &L->experts[e].up, &L->experts[e].down};
        for (int i = 0; i < 3; i++) p[N_MATS + N_VECS + 1 + 3 * e + i].t = t[i];
    }
    return n;
}

static size_t piece_bytes(const Piece *p, int bf16) {
    if (p->mat) return p->t->data ? (size_t)(p->t->rows * p->t->cols) * (bf16 ? 2 : 4) : 0;
    return p->src ? (size_t)p->len * sizeof(float) : 0;
}

enum { PANEL = 1 << 20 }; /* elements converted at a time */

/* t into dst as fp32 or bf16, panel by panel. */
static void fill_mat(char *dst, const Tensor *t, int bf16, float *panel) {
    int64_t n = t->rows * t->cols;
    for (int64_t at = 0; at < n; at += PANEL) {
        int64_t k = n - at < PANEL ? n - at : PANEL;
        tensor_to_f32(t, at, k, bf16 ? panel : (float *)dst + at);
        for (int64_t i = 0; bf16 && i < k; i++) ((uint16_t *)dst)[at + i] = tm_f32_to_bf16(panel[i]);
    }
}

int layer_image_make(LayerImage *img, GpuLayer *gl, GpuPrecision precision, const ModelConfig *c,
                     const LayerWeights *L, int layer, ImageMemory memory) {
    memset(img, 0, sizeof *img);
    memset(gl, 0, sizeof *gl);
    if (L->qk_rinv_fixed) return tm_fail("--device cuda: a linearised QK-norm is not on the GPU");
    int bf16 = precision == GPU_BF16;
    if (hf_config_layer_is_moe(c, layer) && L->router.data) { /* the attention fit binds the attention alone */
        gl->n_experts = c->n_experts;
        gl->experts = callocCheck((size_t)3 * c->n_experts, sizeof *gl->experts);
    }
    Piece *p = mallocCheck((size_t)(N_MATS + N_VECS + 1 + 3 * gl->n_experts) * sizeof *p);
    img->n = layer_pieces(gl, c, L, p);
    img->off = mallocCheck((size_t)img->n * sizeof *img->off);
    for (int i = 0; i < img->n; i++) {
        size_t b = piece_bytes(&p[i], bf16);
        img->off[i] = b ? img->bytes : SIZE_MAX;
        img->bytes += (b + ALIGN - 1) / ALIGN * ALIGN;
        if (b && p[i].mat) *p[i].mat = (GpuMat){.rows = p[i].t->rows, .cols = p[i].t->cols, .bf16 = bf16};
    }
    gl->bytes = img->bytes;
    if (memory == IMAGE_LAYOUT) {
        free(p);
        return 0;
    }
    img->pinned = memory == IMAGE_PINNED;
    img->host = img->pinned ? gpu_host_alloc(img->bytes) : mallocCheck(img->bytes ? img->bytes : 1);
    float *panel = mallocCheck(PANEL * sizeof *panel);
    for (int i = 0; i < img->n; i++) {
        if (img->off[i] == SIZE_MAX) continue;
        if (p[i].mat)
            fill_mat(img->host + img->off[i], p[i].t, bf16, panel);
        else
            memcpy(img->host + img->off[i], p[i].src, (size_t)p[i].len * sizeof(float));
    }
    free(panel);
    free(p);
    return 0;
}

void layer_image_free(LayerImage *img) {
    if (img->pinned)
        gpu_host_free(img->host);
    else
        free(img->host);
    free(img->off);
    memset(img, 0, sizeof *img);
}

void layer_image_bind(GpuLayer *gl, const LayerImage *img, char *base) {
    Piece *p = mallocCheck((size_t)img->n * sizeof *p);
    int n = layer_pieces(gl, NULL, NULL, p);
    for (int i = 0; i < n && i < img->n; i++) {
        void *at = img->off[i] == SIZE_MAX ? NULL : base + img->off[i];
        if (p[i].mat)
            p[i].mat->data = at;
        else
            *p[i].vec = at;
    }
    free(p);
}

int gpu_layer_upload(GpuLayer *gl, const GpuCtx *g, const ModelConfig *c, const LayerWeights *L, int layer) {
    memset(gl, 0, sizeof *gl);
    return gpu_layer_refresh(gl, g, c, L, layer);
}

int gpu_layer_refresh(GpuLayer *gl, const GpuCtx *g, const ModelConfig *c, const LayerWeights *L, int layer) {
    void *block = gl->block;
    size_t bytes = gl->bytes;
    free(gl->experts); /* layer_image_make starts gl afresh */
    LayerImage img;
    if (layer_image_make(&img, gl, g->precision, c, L, layer, IMAGE_HOST)) {
        gpu_free(block);
        return -1;
    }
    if (!block || img.bytes != bytes) {
        gpu_free(block);
        block = gpu_alloc(img.bytes);
    } else {
        cudaStreamSynchronize((cudaStream_t)g->stream); /* no kernel still reads the old weights */
    }
    gl->block = block;
    gpu_upload(block, img.host, img.bytes);
    layer_image_bind(gl, &img, block);
    layer_image_free(&img);
    return 0;
}

void gpu_layer_free(GpuLayer *gl) {
    gpu_free(gl->block);
    free(gl->experts);
    memset(gl, 0, sizeof *gl);
}
