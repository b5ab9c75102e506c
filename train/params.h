/* The parameters a rank trains: fp32 master copies of its part of the model
 * (the model's weights are rebound to them, so the forward pass reads the
 * masters), their gradients and AdamW moments, in one arena each, ordered as
 * the model is (embedding, layer by layer, final norm, head). A layer's
 * gradients are contiguous: one allreduce bucket per layer. Frozen
 * parameters keep their stored weights and get no gradient or moments.
 * Norm vectors are held as the factor the forward multiplies by (gemma2's
 * 1 + w, as model/weights.c loads them), in the masters and checkpoints
 * alike; only the exported model subtracts the 1 again (train/save_model.c). */
#ifndef TM_TRAIN_PARAMS_H
#define TM_TRAIN_PARAMS_H

#include <stdint.h>

#include "model/model.h"

typedef enum { TRAIN_ALL, TRAIN_ATTENTION, TRAIN_ATTENTION_NORMS } TrainWhat;

/* "all", "attention", "attention+norms"; -1 on anything else. */
int train_what_parse(const char *s, TrainWhat *out);
const char *train_what_name(TrainWhat w);

typedef struct {
    char name[160];
    int64_t rows, cols, n;   /* cols == 0: a vector */
    int layer;               /* layer index, or WEIGHT_PART_EMBED / WEIGHT_PART_HEAD */
    int decay;               /* AdamW weight decay applies (matrices; not norms or biases) */
    TmDType stored;          /* dtype in the source model: the export's dtype */
    float *w, *g, *m, *v;    /* slices of the arenas */
} Param;

typedef struct {
    int64_t first, end;      /* gradient elements [first, end) of the arena */
    int layer;
} GradBucket;

typedef struct {
    Param *p;
    int n;
    int64_t total;           /* trainable elements */
    int64_t frozen;          /* elements of the part left frozen */
    float *w, *g, *m, *v;    /* arenas of `total` floats */
    GradBucket *buckets;     /* by layer, in the model's order */
    int n_buckets;
    ModelWeights grads;      /* mirrors the model: trained slots point into g, frozen ones are NULL */
    TmDType embed_dtype;     /* the embedding's stored dtype (gemma2's embedding scale is rounded to it) */
} ParamSet;

/* Copy the trainable weights of m's part into fp32 masters and rebind m to
 * them. Every architecture the engine runs trains (0 always). */
int params_init(ParamSet *ps, Model *m, TrainWhat what);
void params_free(ParamSet *ps, const ModelConfig *c);
void params_zero_grads(ParamSet *ps);
/* Sum of squared gradients of this rank's parameters (double). */
double params_grad_sq(const ParamSet *ps);
/* The bucket holding layer `layer`'s gradients, or NULL. */
const GradBucket *params_bucket(const ParamSet *ps, int layer);

#endif
