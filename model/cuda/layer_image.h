/* A layer's weights on the GPU as one block of device memory (issue 24):
 * its matrices in the context's precision, its vectors in fp32 and a MoE
 * layer's router and experts, laid out one after another in an image of
 * the block made on the host, which the GpuLayer's pointers are bound to.
 * A resident layer (gpu_layer_upload) copies its image once; a streamed
 * one (model_gpu.c, for parts larger than the GPU) keeps it in pinned host
 * memory and copies it into one of two device slots before each use. The
 * layout and fill are plain host code: tests/test_layer_image.c binds an
 * image to itself and reads every weight back on the CPU. */
#ifndef TM_MODEL_CUDA_LAYER_IMAGE_H
#define TM_MODEL_CUDA_LAYER_IMAGE_H

#include "model/cuda/layer_gpu.h"

typedef struct {
    size_t bytes; /* of the block */
    char *host;   /* the image */
    int pinned;   /* host from cudaHostAlloc (else malloc, or NULL: the layout alone) */
    int n;        /* pieces, in layer_image.c's order */
    size_t *off;  /* each piece's offset in the block, SIZE_MAX: absent */
} LayerImage;

/* Where layer_image_make puts the image: nowhere (the layout alone:
 * img->bytes and the offsets), malloc'ed memory, or pinned memory. */
typedef enum { IMAGE_LAYOUT, IMAGE_HOST, IMAGE_PINNED } ImageMemory;

/* gl's shapes (its pointers unbound) and the image of layer `layer`'s
 * weights L for `precision`; -1 with tm_error() for what the GPU does not
 * run (a linearised QK-norm). */
int layer_image_make(LayerImage *img, GpuLayer *gl, GpuPrecision precision, const ModelConfig *c,
                     const LayerWeights *L, int layer, ImageMemory memory);
void layer_image_free(LayerImage *img);
/* gl's weight pointers into the block at base (device memory holding the
 * image, or the image itself). */
void layer_image_bind(GpuLayer *gl, const LayerImage *img, char *base);

#endif
