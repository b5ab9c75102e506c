/* Converted models in memory: a deepseek_v3 config plus a tensor set whose
 * attention tensors are fp32 copies of the converted layers, and whose other
 * tensors (embedding, norms, MLP/MoE, head) point into the original model's
 * mapping, renamed to DeepSeek's names where they differ. */
#ifndef TM_PIPELINE_BUILD_H
#define TM_PIPELINE_BUILD_H

#include "model/model.h"
#include "pipeline/mla_layer.h"

typedef enum {
    BUILD_EXACT,  /* the converted function: no latent norms, q_proj bias kept */
    BUILD_NATIVE, /* what a DeepSeek loader computes from the export: latent norms on, no q_proj bias */
    BUILD_NATIVE_Q_BIAS, /* the export plus the q_proj bias it cannot hold: prices dropping it */
} BuildKind;

typedef struct {
    Model model;
    StTensor *tensors;
    int n, cap;
    void **owned;
    int n_owned, cap_owned;
} BuiltModel;

/* The deepseek_v3 (for gemma2: gemma2_mla) description of `orig` with layers shaped like `a`. */
void mla_config_from(ModelConfig *out, const ModelConfig *orig, const MlaAttn *a, BuildKind kind, int rope_interleave);
/* Build and bind the same part of the model as orig->part (layers: one
 * MlaAttn per layer, indexed by global layer number; only those of the part
 * are read, and the part must hold at least one layer). Carries over only the
 * part's tensors of orig's set. */
int built_model_init(BuiltModel *b, const Model *orig, const MlaAttn *layers, BuildKind kind, int rope_interleave);
void built_model_free(BuiltModel *b);

/* Whether the original carries a q_proj bias the DeepSeek layout cannot hold
 * (no q_lora_rank: q_proj has no bias slot there). */
int build_drops_q_bias(const MlaAttn *a);

#endif
