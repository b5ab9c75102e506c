/* A part's layers streamed through the GPU when their weights do not fit
 * it (issue 24): each layer's weights wait in pinned host memory as the
 * image of its device block (layer_image.h), and two device slots take
 * turns: while layer i runs from one, layer i+1's image is copied into the
 * other on a second stream, so the copies overlap the kernels. Events
 * order it: a layer's kernels wait for its copy, a copy into a slot waits
 * for the layer that ran from it. */
#ifndef TM_MODEL_CUDA_LAYER_STREAM_H
#define TM_MODEL_CUDA_LAYER_STREAM_H

#include "model/cuda/layer_image.h"
#include "model/model.h"

typedef struct {
    int n;                     /* layers */
    LayerImage *images;        /* [n], pinned */
    char *slot[2];             /* device blocks of the largest image */
    void *copies;              /* cudaStream_t of the copies */
    void *copied[2], *done[2]; /* cudaEvent_t: a slot's copy queued; its layer queued */
    size_t bytes, host_bytes;  /* device (the slots), pinned host (the images) */
} LayerStream;

/* The images of m's part, layers[i] given each layer's shapes; 0, or -1
 * with tm_error() (a layer type not on the GPU). */
int layer_stream_init(LayerStream *s, GpuLayer *layers, const GpuCtx *g, const Model *m);
void layer_stream_free(LayerStream *s);
/* Before layer i's kernels are queued: its copy queued (layer 0's at the
 * start of each pass; layer i+1's behind it), the compute stream made to
 * wait for it, and layers[i] bound to its slot. */
int layer_stream_fetch(LayerStream *s, GpuCtx *g, GpuLayer *layers, int i);
/* After layer i's kernels are queued: its slot may be refilled once they ran. */
int layer_stream_release(LayerStream *s, GpuCtx *g, int i);

#endif
