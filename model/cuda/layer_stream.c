/* Layers streamed through two device slots (layer_stream.h). */
#include "model/cuda/layer_stream.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

static int cuda_ok(const char *what, cudaError_t e) {
    return e == cudaSuccess ? 0 : tm_fail("CUDA: %s: %s", what, cudaGetErrorString(e));
}

int layer_stream_init(LayerStream *s, GpuLayer *layers, const GpuCtx *g, const Model *m) {
    memset(s, 0, sizeof *s);
    int first = m->part.first;
    s->n = m->part.end - first;
    s->images = callocCheck((size_t)(s->n > 0 ? s->n : 1), sizeof *s->images);
    size_t most = 0;
    for (int i = 0; i < s->n; i++) {
        if (layer_image_make(&s->images[i], &layers[i], g->precision, &m->cfg, &m->w.layers[first + i], first + i,
                             IMAGE_PINNED)) {
            layer_stream_free(s);
            return -1;
        }
        s->host_bytes += s->images[i].bytes;
        most = s->images[i].bytes > most ? s->images[i].bytes : most;
    }
    for (int k = 0; k < 2; k++) {
        s->slot[k] = gpu_alloc(most);
        s->bytes += most;
    }
    cudaStream_t copies;
    if (cuda_ok("cudaStreamCreate (weight copies)", cudaStreamCreate(&copies))) return -1;
    s->copies = copies;
    for (int k = 0; k < 2; k++) {
        cudaEvent_t a, b;
        if (cuda_ok("cudaEventCreate", cudaEventCreateWithFlags(&a, cudaEventDisableTiming)) ||
            cuda_ok("cudaEventCreate", cudaEventCreateWithFlags(&b, cudaEventDisableTiming)))
            return -1;
        s->copied[k] = a;
        s->done[k] = b;
    }
    return 0;
}

void layer_stream_free(LayerStream *s) {
    if (s->copies) cudaStreamSynchronize((cudaStream_t)s->copies);
    for (int i = 0; s->images && i < s->n; i++) layer_image_free(&s->images[i]);
    free(s->images);
    for (int k = 0; k < 2; k++) {
        gpu_free(s->slot[k]);
        if (s->copied[k]) cudaEventDestroy((cudaEvent_t)s->copied[k]);
        if (s->done[k]) cudaEventDestroy((cudaEvent_t)s->done[k]);
    }
    if (s->copies) cudaStreamDestroy((cudaStream_t)s->copies);
    memset(s, 0, sizeof *s);
}

/* Layer i's image into slot i % 2 once the layer that ran from it is done. */
static int queue_copy(LayerStream *s, int i) {
    int k = i % 2;
    cudaStream_t c = (cudaStream_t)s->copies;
    if (cuda_ok("cudaStreamWaitEvent", cudaStreamWaitEvent(c, (cudaEvent_t)s->done[k], 0)) ||
        cuda_ok("cudaMemcpyAsync (layer weights)",
                cudaMemcpyAsync(s->slot[k], s->images[i].host, s->images[i].bytes, cudaMemcpyHostToDevice, c)))
        return -1;
    return cuda_ok("cudaEventRecord", cudaEventRecord((cudaEvent_t)s->copied[k], c));
}

int layer_stream_fetch(LayerStream *s, GpuCtx *g, GpuLayer *layers, int i) {
    if ((i == 0 && queue_copy(s, 0)) || (i + 1 < s->n && queue_copy(s, i + 1))) return -1;
    int k = i % 2;
    if (cuda_ok("cudaStreamWaitEvent", cudaStreamWaitEvent((cudaStream_t)g->stream, (cudaEvent_t)s->copied[k], 0)))
        return -1;
    layer_image_bind(&layers[i], &s->images[i], s->slot[k]);
    return 0;
}

int layer_stream_release(LayerStream *s, GpuCtx *g, int i) {
    return cuda_ok("cudaEventRecord", cudaEventRecord((cudaEvent_t)s->done[i % 2], (cudaStream_t)g->stream));
}
