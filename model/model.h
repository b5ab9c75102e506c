/* A loaded model and the forward pass over a micro-batch of B sequences of T
 * tokens (positions 0..T-1 each). Single-process; knows nothing of MPI. */
#ifndef TM_MODEL_MODEL_H
#define TM_MODEL_MODEL_H

#include <stdint.h>

#include "io/hf_config.h"
#include "io/safetensors_set.h"
#include "model/crossentropy.h"
#include "model/layer.h"
#include "model/moe.h"
#include "model/rope.h"
#include "model/weights.h"

/* ModelPart (model/weights.h): which part of the model a process holds,
 * layers [first, end), the embedding, the final norm and head. */
typedef struct {
    ModelConfig cfg;
    StSet set;          /* the mapped files the weights point into */
    ModelWeights w;
    ModelPart part;     /* what of the model is bound; w.layers outside it stay zeroed */
} Model;

/* The whole model. */
ModelPart model_part_all(const ModelConfig *c);

/* Read DIR/config.json and DIR's safetensors, and bind and check the weights
 * (shapes, dtypes, and no NaN/Inf: weights_check_finite). */
int model_load(Model *m, const char *dir);
/* Bind weights from a set the caller built (takes ownership of `set`). */
int model_init(Model *m, const ModelConfig *cfg, StSet *set, const char *config_name);
/* model_load restricted to `part`: with an index file, only the shards holding
 * a tensor of the part are opened; only the part's tensors are bound (the
 * rest are neither bound nor touched). */
int model_load_part(Model *m, const char *dir, const ModelPart *part);
/* model_init restricted to `part`; `set` may hold other parts' tensors too. */
int model_init_part(Model *m, const ModelConfig *cfg, StSet *set, const char *config_name, const ModelPart *part);
void model_free(Model *m);

typedef struct Workspace Workspace;

/* Activations of one micro-batch for the forward alone; nothing here grows
 * with the model's depth. Each layer runs through layer_forward (model/layer.h),
 * in place on x. */
struct Workspace {
    int B, T;
    RopeTable rope;
    int32_t *pos;      /* [N] RoPE positions: 0..T-1 in each sequence */
    float *x;          /* [N, D] residual stream */
    float *xn;         /* [N, D] final norm of x; scratch while layers run (the activations' own) */
    LayerActs acts;    /* one layer's activations, forward only */
    float *logits;     /* [N, vocab_chunk]: the head runs in vocabulary chunks */
    int vocab_chunk;
    CrossEntropy ce;   /* running log-sum-exp per row */
    int32_t *targets;  /* [N] */
    uint64_t bytes;    /* activation buffers allocated (MoE scratch and rope table aside) */
    AttentionHook hook; /* NULL: none; called in every layer model_layers runs */
    void *hook_ctx;
};

/* B sequences of T tokens. */
void workspace_init(Workspace *ws, const ModelConfig *cfg, int B, int T);
/* The bytes workspace_init would count in ws->bytes, allocating nothing. */
uint64_t workspace_bytes(const ModelConfig *cfg, int B, int T);
void workspace_free(Workspace *ws);
/* The workspace's rows as layer_forward takes them: ws->B sequences of ws->T
 * from position 0, one document each, with ws->hook. */
LayerRows workspace_rows(const Workspace *ws);

/* tokens: [B*T]. Leaves the final-normed hidden states in ws->xn. Runs
 * model_embed, model_layers over [part.first, part.end), model_final_norm:
 * for a model holding the embedding and the head. */
void model_forward(const Model *m, const int32_t *tokens, Workspace *ws);
/* The forward pass in pieces, for a process holding part of the model. */
void model_embed(const Model *m, const int32_t *tokens, Workspace *ws); /* ws->x = embedding rows (part.embed) */
/* out[N, D] = the embedding rows of tokens, times sqrt(hidden_size) for gemma2
 * (cfg.embed_scaled): what model_embed and the decoder feed the first layer. */
void model_embed_rows(const Model *m, const int32_t *tokens, int N, float *out);
/* The factor model_embed_rows multiplies by (cfg.embed_scaled): sqrt(hidden_size)
 * rounded to embed_dtype, the dtype the embedding is stored in. */
float model_embed_normalizer(const ModelConfig *c, TmDType embed_dtype);
void model_layers(const Model *m, Workspace *ws, int first, int end);  /* ws->x through layers [first, end) of the part */
void model_final_norm(const Model *m, Workspace *ws);                  /* ws->xn = final norm of ws->x (part.head) */
/* NLL summed over the B*(T-1) predicted tokens, from ws->xn after
 * model_final_norm (part.head). */
double model_head_nll(const Model *m, const int32_t *tokens, Workspace *ws, int64_t *n_predicted);
/* Vocabulary columns per head chunk for N rows: about 64 MiB of logits at a
 * time, but at least 256 columns so each GEMM stays wide (evaluation and
 * training both chunk the head so). */
int model_head_vocab_chunk(int N, int V);
/* logits[n, V] of n rows of final hidden states. */
void model_logits(const Model *m, const float *hidden, int n, float *logits);
/* Forward plus next-token NLL summed over the B*(T-1) predicted tokens
 * (model_forward + model_head_nll). */
double model_nll(const Model *m, const int32_t *tokens, Workspace *ws, int64_t *n_predicted);

/* out[N, D] = embedding rows of tokens (no scaling: model_embed_rows scales). */
void embedding_forward(float *out, const int32_t *tokens, const Tensor *embed, int N);
/* Training: dembed[V, D] (fp32) += the rows of dout [N, D] at tokens
 * (deterministic: the same order whatever the thread count). */
void embedding_backward(float *dembed, const float *dout, const int32_t *tokens, int N, int D);

/* FLOPs of one forward (with head) over B sequences of T tokens: GEMMs plus
 * attention's QK^T and PV, counted as 2 per multiply-add. */
double model_forward_flops(const ModelConfig *c, int B, int T);
/* The FLOPs of layer l alone (dense or MoE MLP as config.json sets it). */
double model_layer_forward_flops(const ModelConfig *c, int l, int B, int T);

#endif
