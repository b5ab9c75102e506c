/* A model's part on the GPU (model_gpu.h). */
#include "model/cuda/model_gpu.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/crossentropy.h"
#include "model/cuda/kernels.h"
#include "model/softcap.h"

static void *dev_buf(GpuModel *gm, size_t bytes) {
    gm->bytes += bytes;
    return gpu_alloc(bytes);
}

/* Room kept free beside resident weights: cuBLAS's workspace, the bf16
 * input copies, a statistics pass's sums. */
#define GPU_STREAM_MARGIN ((size_t)1 << 30)

/* Whether the part's layers stream: forced, or their blocks larger than
 * what the GPU has left. */
static int want_stream(const GpuCtx *g, const Model *m) {
    const char *force = getenv("TRANSMLA_GPU_STREAM_WEIGHTS");
    if (force && strcmp(force, "1") == 0) return 1;
    size_t need = GPU_STREAM_MARGIN, free_b = 0, total_b = 0;
    for (int l = m->part.first; l < m->part.end; l++) {
        GpuLayer shapes;
        LayerImage img;
        if (layer_image_make(&img, &shapes, g->precision, &m->cfg, &m->w.layers[l], l, IMAGE_LAYOUT)) return 0;
        need += img.bytes;
        layer_image_free(&img);
        free(shapes.experts);
    }
    return cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && need > free_b;
}

static int upload_layers(GpuModel *gm, GpuCtx *g, const Model *m) {
    int first = m->part.first, n_layers = m->part.end - first;
    gm->layers = callocCheck((size_t)(n_layers > 0 ? n_layers : 1), sizeof *gm->layers);
    if ((gm->streamed = want_stream(g, m))) {
        if (layer_stream_init(&gm->stream, gm->layers, g, m)) return -1;
        gm->bytes += gm->stream.bytes;
        return 0;
    }
    for (int l = 0; l < n_layers; l++) {
        if (gpu_layer_upload(&gm->layers[l], g, &m->cfg, &m->w.layers[first + l], first + l)) return -1;
        gm->bytes += gm->layers[l].bytes;
    }
    return 0;
}

int gpu_model_init(GpuModel *gm, GpuCtx *g, const Model *m, int B, int T) {
    memset(gm, 0, sizeof *gm);
    const ModelConfig *c = &m->cfg;
    gm->m = m;
    gm->B = B;
    gm->T = T;
    size_t N = (size_t)B * T;
    if (m->part.head) {
        gm->final_norm = gpu_upload_f32(m->w.final_norm, c->hidden_size);
        gpu_mat_upload(&gm->head, g, &m->w.lm_head);
        gm->bytes += gpu_mat_bytes(&gm->head);
        gm->vocab_chunk = model_head_vocab_chunk((int)N, c->vocab_size);
        gm->logits = dev_buf(gm, N * gm->vocab_chunk * sizeof(float));
        gm->ce_max = dev_buf(gm, N * sizeof(float));
        gm->ce_target = dev_buf(gm, N * sizeof(float));
        gm->ce_sum = dev_buf(gm, N * sizeof(double));
        gm->targets = dev_buf(gm, N * sizeof(int32_t));
    }
    rope_table_init(&gm->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    int32_t *pos = mallocCheck(N * sizeof *pos);
    for (size_t i = 0; i < N; i++) pos[i] = (int32_t)(i % (size_t)T);
    gpu_rows_upload(&gm->rows_buf, &gm->rows, &gm->rope, B, T, pos, NULL);
    free(pos);
    gpu_acts_init(&gm->acts, c, (int)N);
    gm->bytes += gm->acts.bytes;
    gm->x = dev_buf(gm, N * c->hidden_size * sizeof(float));
    /* the layers last: whether they fit depends on what the rest took */
    if (upload_layers(gm, g, m)) {
        gpu_model_free(gm);
        return -1;
    }
    return 0;
}

void gpu_model_free(GpuModel *gm) {
    if (gm->streamed) layer_stream_free(&gm->stream);
    if (gm->layers)
        for (int l = 0; l < gm->m->part.end - gm->m->part.first; l++) gpu_layer_free(&gm->layers[l]);
    free(gm->layers);
    gpu_free(gm->final_norm);
    gpu_mat_free(&gm->head);
    gpu_rows_free(&gm->rows_buf);
    rope_table_free(&gm->rope);
    gpu_acts_free(&gm->acts);
    void *bufs[] = {gm->x, gm->logits, gm->ce_max, gm->ce_target, gm->ce_sum, gm->targets};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) gpu_free(bufs[i]);
    memset(gm, 0, sizeof *gm);
}

int gpu_model_layers(GpuModel *gm, GpuCtx *g, const float *x_in, float *x_out, int b) {
    const ModelConfig *c = &gm->m->cfg;
    if (b > gm->B) return tm_fail("gpu_model_layers: %d sequences for activations of %d", b, gm->B);
    size_t bytes = (size_t)b * gm->T * c->hidden_size * sizeof(float);
    gpu_upload(gm->x, x_in, bytes);
    GpuRows rows = gm->rows;
    rows.B = b;
    for (int l = 0; l < gm->m->part.end - gm->m->part.first; l++) {
        if (gm->streamed && layer_stream_fetch(&gm->stream, g, gm->layers, l)) return -1;
        if (gpu_layer_forward(g, c, &gm->layers[l], gm->m->part.first + l, gm->x, &rows, &gm->acts)) return -1;
        if (gm->streamed && layer_stream_release(&gm->stream, g, l)) return -1;
    }
    if (gpu_sync(g)) return -1;
    if (x_out) gpu_download(x_out, gm->x, bytes);
    return 0;
}

int gpu_model_head_nll(GpuModel *gm, GpuCtx *g, const int32_t *tokens, int b, double *nll, int64_t *n_predicted) {
    const ModelConfig *c = &gm->m->cfg;
    if (!gm->m->part.head) return tm_fail("gpu_model_head_nll: this part of the model holds no head");
    cudaStream_t s = (cudaStream_t)g->stream;
    int T = gm->T, N = b * T, V = c->vocab_size, chunk = gm->vocab_chunk;
    CrossEntropy ce;
    crossentropy_init(&ce, N);
    int32_t *targets = mallocCheck((size_t)N * sizeof *targets);
    for (int i = 0; i < N; i++) targets[i] = (i % T == T - 1) ? -1 : tokens[i + 1];
    gpu_upload(gm->targets, targets, (size_t)N * sizeof *targets);
    cuda_rmsnorm(gm->acts.xn, NULL, gm->x, gm->final_norm, N, c->hidden_size, (float)c->rms_norm_eps, s);
    cuda_crossentropy_reset(gm->ce_max, gm->ce_sum, gm->ce_target, N, s);
    int rc = 0;
    for (int v0 = 0; v0 < V && !rc; v0 += chunk) {
        int cols = V - v0 < chunk ? V - v0 : chunk;
        GpuMat rows = gpu_mat_rows(&gm->head, v0, cols);
        rc = gpu_linear(g, gm->logits, gm->acts.xn, &rows, NULL, N, 0);
        cuda_crossentropy_update(gm->ce_max, gm->ce_sum, gm->ce_target, gm->logits, N, cols, v0, gm->targets,
                                 (float)c->final_softcap, s);
    }
    if (!rc && !(rc = gpu_sync(g))) {
        gpu_download(ce.max, gm->ce_max, (size_t)N * sizeof(float));
        gpu_download(ce.sum, gm->ce_sum, (size_t)N * sizeof(double));
        gpu_download(ce.target_logit, gm->ce_target, (size_t)N * sizeof(float));
        *nll = crossentropy_finish(&ce, N, targets, n_predicted);
    }
    crossentropy_free(&ce);
    free(targets);
    return rc;
}

int gpu_model_logits(GpuModel *gm, GpuCtx *g, const int32_t *tokens, float *logits) {
    const ModelConfig *c = &gm->m->cfg;
    int N = gm->B * gm->T, D = c->hidden_size, V = c->vocab_size;
    if (!gm->m->part.embed || !gm->m->part.head || gm->vocab_chunk < V)
        return tm_fail("gpu_model_logits: wants the whole model and its vocabulary in one chunk");
    float *x = mallocCheck((size_t)N * D * sizeof(float));
    model_embed_rows(gm->m, tokens, N, x);
    int rc = gpu_model_layers(gm, g, x, NULL, gm->B);
    free(x);
    if (rc) return -1;
    cuda_rmsnorm(gm->acts.xn, NULL, gm->x, gm->final_norm, N, D, (float)c->rms_norm_eps, (cudaStream_t)g->stream);
    if (gpu_linear(g, gm->logits, gm->acts.xn, &gm->head, NULL, N, 0) || gpu_sync(g)) return -1;
    gpu_download(logits, gm->logits, (size_t)N * V * sizeof(float));
    softcap_forward(logits, (int64_t)N * V, (float)c->final_softcap);
    return 0;
}
