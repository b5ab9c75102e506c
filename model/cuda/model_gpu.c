/* A whole model on the GPU (model_gpu.h). */
#include "model/cuda/model_gpu.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/kernels.h"
#include "model/softcap.h"

int gpu_model_init(GpuModel *gm, GpuCtx *g, const Model *m, int B, int T) {
    memset(gm, 0, sizeof *gm);
    const ModelConfig *c = &m->cfg;
    if (m->part.first != 0 || m->part.end != c->n_layers || !m->part.embed || !m->part.head)
        return tm_fail("--device cuda: the GPU forward wants the whole model on one rank");
    gm->m = m;
    gm->B = B;
    gm->T = T;
    gm->layers = callocCheck((size_t)c->n_layers, sizeof *gm->layers);
    for (int l = 0; l < c->n_layers; l++) {
        if (gpu_layer_upload(&gm->layers[l], g, c, &m->w.layers[l], l)) {
            gpu_model_free(gm);
            return -1;
        }
        gm->bytes += gm->layers[l].bytes;
    }
    gm->final_norm = gpu_upload_f32(m->w.final_norm, c->hidden_size);
    gpu_mat_upload(&gm->head, g, &m->w.lm_head);
    gm->bytes += gpu_mat_bytes(&gm->head);
    size_t N = (size_t)B * T;
    rope_table_init(&gm->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    int32_t *pos = mallocCheck(N * sizeof *pos);
    for (size_t i = 0; i < N; i++) pos[i] = (int32_t)(i % (size_t)T);
    gpu_rows_upload(&gm->rows_buf, &gm->rows, &gm->rope, B, T, pos, NULL);
    free(pos);
    gpu_acts_init(&gm->acts, c, (int)N);
    gm->x = gpu_alloc(N * c->hidden_size * sizeof(float));
    gm->logits = gpu_alloc(N * c->vocab_size * sizeof(float));
    gm->bytes += gm->acts.bytes + N * ((size_t)c->hidden_size + c->vocab_size) * sizeof(float);
    return 0;
}

void gpu_model_free(GpuModel *gm) {
    if (gm->layers)
        for (int l = 0; l < gm->m->cfg.n_layers; l++) gpu_layer_free(&gm->layers[l]);
    free(gm->layers);
    gpu_free(gm->final_norm);
    gpu_mat_free(&gm->head);
    gpu_rows_free(&gm->rows_buf);
    rope_table_free(&gm->rope);
    gpu_acts_free(&gm->acts);
    gpu_free(gm->x);
    gpu_free(gm->logits);
    memset(gm, 0, sizeof *gm);
}

int gpu_model_logits(GpuModel *gm, GpuCtx *g, const int32_t *tokens, float *logits) {
    const ModelConfig *c = &gm->m->cfg;
    int N = gm->B * gm->T, D = c->hidden_size, V = c->vocab_size;
    float *x = mallocCheck((size_t)N * D * sizeof(float));
    model_embed_rows(gm->m, tokens, N, x);
    gpu_upload(gm->x, x, (size_t)N * D * sizeof(float));
    free(x);
    for (int l = 0; l < c->n_layers; l++)
        if (gpu_layer_forward(g, c, &gm->layers[l], l, gm->x, &gm->rows, &gm->acts)) return -1;
    cuda_rmsnorm(gm->acts.xn, gm->x, gm->final_norm, N, D, (float)c->rms_norm_eps, (cudaStream_t)g->stream);
    if (gpu_linear(g, gm->logits, gm->acts.xn, &gm->head, NULL, N, 0) || gpu_sync(g)) return -1;
    gpu_download(logits, gm->logits, (size_t)N * V * sizeof(float));
    softcap_forward(logits, (int64_t)N * V, (float)c->final_softcap);
    return 0;
}
