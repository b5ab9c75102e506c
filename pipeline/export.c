#include "pipeline/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/write_tensors.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/hf_folder.h"
#include "io/json_util.h"
#include "io/safetensors_write.h"
#include "model/tensor.h"
#include "model/weights.h"

/* Keys of the source config.json a DeepSeek config shares. */
static const char *carried_keys[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                     "num_attention_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                                     "rope_scaling", "tie_word_embeddings", "bos_token_id", "eos_token_id",
                                     "pad_token_id", "initializer_range", "hidden_act"};

/* The MLA attention's fields, shared by deepseek_v3 and gemma2_mla. */
static void set_mla_fields(json_t *o, const ModelConfig *c) {
    const MlaConfig *m = &c->mla;
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_heads));
    json_object_set_new(o, "head_dim", json_integer(m->qk_rope_head_dim)); /* transformers' rotary width */
    json_object_set_new(o, "kv_lora_rank", json_integer(m->kv_lora_rank));
    json_object_set_new(o, "q_lora_rank", m->q_lora_rank ? json_integer(m->q_lora_rank) : json_null());
    json_object_set_new(o, "qk_rope_head_dim", json_integer(m->qk_rope_head_dim));
    json_object_set_new(o, "qk_nope_head_dim", json_integer(m->qk_nope_head_dim));
    json_object_set_new(o, "v_head_dim", json_integer(m->v_head_dim));
    json_object_set_new(o, "rope_interleave", json_boolean(m->rope_interleave));
    json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
}

static const char *dtype_name(TmDType dtype) {
    return dtype == TM_BF16 ? "bfloat16" : dtype == TM_F16 ? "float16" : "float32";
}

/* gemma2_mla: the source's Gemma-2 config (norms, GeGLU, soft-caps, windows,
 * layer_types) with the MLA fields; the original's score scale is folded
 * into q_proj, so query_pre_attn_scalar becomes DeepSeek's
 * qk_nope_head_dim + qk_rope_head_dim. */
static json_t *gemma2_mla_config_json(const ModelConfig *c, json_t *src, TmDType dtype) {
    json_t *o = json_deep_copy(src);
    json_object_set_new(o, "architectures", json_pack("[s]", "Gemma2MlaForCausalLM"));
    json_object_set_new(o, "model_type", json_string("gemma2_mla"));
    set_mla_fields(o, c);
    json_object_set_new(o, "query_pre_attn_scalar", json_real(c->query_pre_attn_scalar));
    json_object_set_new(o, "torch_dtype", json_string(dtype_name(dtype)));
    return o;
}

json_t *export_config_json(const ModelConfig *c, const char *src_config_path, TmDType dtype) {
    json_t *src = tm_json_load_object(src_config_path);
    if (!src) return NULL;
    if (c->arch == TM_ARCH_GEMMA2_MLA) {
        json_t *o = gemma2_mla_config_json(c, src, dtype);
        json_decref(src);
        return o;
    }
    json_t *o = json_object();
    json_object_set_new(o, "architectures", json_pack("[s]", "DeepseekV3ForCausalLM"));
    json_object_set_new(o, "model_type", json_string("deepseek_v3"));
    for (size_t i = 0; i < sizeof carried_keys / sizeof carried_keys[0]; i++) {
        json_t *v = json_object_get(src, carried_keys[i]);
        if (v) json_object_set(o, carried_keys[i], v);
    }
    set_mla_fields(o, c);
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    if (c->n_experts) {
        /* Mixtral's and Qwen3-MoE's router: softmax over all experts, top-k,
         * renormalised unless the original keeps the raw weights */
        json_object_set_new(o, "first_k_dense_replace", json_integer(c->first_moe_layer));
        json_object_set_new(o, "n_routed_experts", json_integer(c->n_experts));
        json_object_set_new(o, "num_experts_per_tok", json_integer(c->n_experts_per_tok));
        json_object_set_new(o, "moe_intermediate_size", json_integer(c->expert_intermediate_size));
        json_object_set_new(o, "scoring_func", json_string("softmax"));
        json_object_set_new(o, "topk_method", json_string("greedy"));
        json_object_set_new(o, "norm_topk_prob", json_boolean(!c->moe_topk_raw));
        json_object_set_new(o, "routed_scaling_factor", json_real(1.0));
        json_object_set_new(o, "n_group", json_integer(1));
        json_object_set_new(o, "topk_group", json_integer(1));
        json_object_set_new(o, "n_shared_experts", json_null());
        json_object_set_new(o, "moe_layer_freq", json_integer(1));
    } else {
        json_object_set_new(o, "first_k_dense_replace", json_integer(c->n_layers));
        json_object_set_new(o, "n_routed_experts", json_null());
        json_object_set_new(o, "n_shared_experts", json_null());
    }
    json_object_set_new(o, "torch_dtype", json_string(dtype_name(dtype)));
    json_decref(src);
    return o;
}

void export_tensors_init(ExportTensors *e, const BuiltModel *native, TmDType dtype, int with_embedding) {
    memset(e, 0, sizeof *e);
    e->t = callocCheck((size_t)native->n + 1, sizeof *e->t);
    e->converted = callocCheck((size_t)native->n + 1, sizeof *e->converted);
    for (int i = 0; i < native->n; i++) {
        const StTensor *t = &native->tensors[i];
        if (!with_embedding && weights_tensor_part(t->name) == WEIGHT_PART_EMBED) continue;
        StWriteTensor *w = &e->t[e->n];
        w->name = t->name;
        w->ndim = t->ndim;
        memcpy(w->shape, t->shape, sizeof t->shape);
        w->dtype = dtype;
        w->data = t->data;
        if (t->dtype != dtype) {
            /* a dtype change costs one copy of the tensor until the write */
            int64_t numel = 1;
            for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
            Tensor view = {.data = t->data, .dtype = t->dtype, .rows = 1, .cols = numel, .name = t->name};
            float *f = mallocCheck((size_t)numel * sizeof *f);
            tensor_to_f32(&view, 0, numel, f);
            if (dtype == TM_F32) {
                e->converted[e->n] = f;
            } else {
                e->converted[e->n] = tensor_f32_to_16bit(f, numel, dtype);
                free(f);
            }
            w->data = e->converted[e->n];
        }
        e->n++;
    }
}

void export_tensors_free(ExportTensors *e) {
    for (int i = 0; i < e->n; i++) free(e->converted[i]);
    free(e->converted);
    free(e->t);
    memset(e, 0, sizeof *e);
}

int export_metadata(const char *dir, const ModelConfig *cfg, const char *src_dir, TmDType dtype) {
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/config.json", src_dir);
    json_t *o = export_config_json(cfg, src, dtype);
    if (!o) return -1;
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    int rc = json_dump_file(o, dst, JSON_INDENT(2) | JSON_SORT_KEYS) ? tm_fail("%s: cannot write", dst) : 0;
    json_decref(o);
    return rc ? rc : hf_copy_tokenizer_files(dir, src_dir, 0);
}

int export_model(const Topology *t, const char *dir, const BuiltModel *native, const char *src_dir, TmDType dtype,
                 uint64_t max_shard_bytes) {
    int writer = t->replica == 0;
    ExportTensors e = {0};
    if (writer) export_tensors_init(&e, native, dtype, t->stage == 0);
    int rc = dist_write_tensors(t, dir, e.t, e.n, writer, max_shard_bytes);
    if (!rc && t->rank == 0) rc = export_metadata(dir, &native->model.cfg, src_dir, dtype);
    export_tensors_free(&e);
    return dist_agree(MPI_COMM_WORLD, rc);
}
