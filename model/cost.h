/* What each layer costs, from config.json alone: stored bytes and forward
 * FLOPs. The stage split of convert, finetune and plan is made from these
 * (with dist/partition.h), so the three agree on which layers a stage owns. */
#ifndef TM_MODEL_COST_H
#define TM_MODEL_COST_H

#include <stdint.h>

#include "io/hf_config.h"

/* Stored bytes of each layer (layer[n_layers], added to), and of the
 * embedding and the final norm + head (a tied embedding counts in both: the
 * last stage maps it as its head). */
void model_part_bytes(const ModelConfig *c, TmDType dtype, uint64_t *layer, uint64_t *embed, uint64_t *head);
/* Forward FLOPs per token of layer l over windows of T tokens (a dense
 * layer's MLP is intermediate_size wide, an MoE layer's experts
 * expert_intermediate_size, only num_experts_per_tok of them run). */
double model_layer_flops_per_token(const ModelConfig *c, int l, int T);
/* cost[l] = layer l's share of the model's bytes plus its share of the
 * forward FLOPs; the embedding rides on layer 0, norm and head on the last.
 * Independent of any run setting (bf16 bytes, 2048-token windows). */
void model_layer_costs(const ModelConfig *c, double *cost);

#endif
