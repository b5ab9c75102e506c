#!/usr/bin/python3
"""Write small random-weight fixture models with float64 reference logits.

Usage:  /usr/bin/python3 tests/ref/make_fixtures.py OUTDIR

For each fixture OUTDIR/<name>/ holds
  config.json                 HF style (architectures, model_type, torch_dtype, ...)
  model.safetensors           or model-0000i-of-0000N.safetensors + model.safetensors.index.json
  tokens.u32                  B*T little-endian uint32 ids (B sequences of T tokens)
  logits.f64                  B*T*V little-endian float64 logits, [b][t][v], each sequence
                              run on its own with positions 0..T-1
  meta.json                   {"batch", "seqlen", "vocab", "dtype"}
and OUTDIR/fixtures.json lists the names.

deepseek_v3 (MLA) fixtures carry golden logits from tm_ref with router "vllm"
(the only MoE form the engine runs: softmax scores, one group, no shared
experts, renormalised top-k, scale 1, which is also Mixtral's routing); for
the dense ones the router does not enter and "hf" gives the same logits.

Reference logits come from the weights as stored (rounded to F16/BF16 and read
back through tm_ref's reader), so an fp32 engine differs from them only by its
arithmetic.  Everything is seeded and deterministic.

If the shared second-opinion oracle refmodel.py is found ($TM_SHARED_REF, or
<repo>/../shared/reference), every fixture is cross-checked against it and the
script exits 1 if any |difference| exceeds 1e-9.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tm_ref  # noqa: E402

B, T = 2, 13
TOL = 1e-9

TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
        "qwen2": "Qwen2ForCausalLM", "mixtral": "MixtralForCausalLM",
        "deepseek_v3": "DeepseekV3ForCausalLM", "qwen3": "Qwen3ForCausalLM",
        "qwen3_moe": "Qwen3MoeForCausalLM", "phi3": "Phi3ForCausalLM", "gemma2": "Gemma2ForCausalLM",
        "gemma2_mla": "Gemma2MlaForCausalLM"}  # our own format: no transformers class reads it


def base_config(model_type, D, L, H, G, d, I, V, dtype, **extra):
    c = {
        "architectures": [ARCH[model_type]],
        "model_type": model_type,
        "hidden_size": D,
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "num_key_value_heads": G,
        "head_dim": d,
        "intermediate_size": I,
        "vocab_size": V,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": TORCH_DTYPE[dtype],
    }
    c.update(extra)
    return c


def dsv3_config(D, L, H, q_lora, R, dn, dr, dv, I, V, dtype, moe=None, **extra):
    """A deepseek_v3 config.json with every key the forward pass reads written out
    (DeepseekV3Config's defaults are DeepSeek-V3's sizes and its sigmoid router, so
    nothing may be left to them).  moe: None (every layer dense: no routed experts)
    or dict(first_dense, experts, top_k, moe_I) in the Mixtral form."""
    c = {
        "architectures": [ARCH["deepseek_v3"]],
        "model_type": "deepseek_v3",
        "hidden_size": D,
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "num_key_value_heads": H,
        "q_lora_rank": q_lora,
        "kv_lora_rank": R,
        "qk_nope_head_dim": dn,
        "qk_rope_head_dim": dr,
        "v_head_dim": dv,
        "head_dim": dr,  # what DeepseekV3Config stores: the rotary width
        "intermediate_size": I,
        "vocab_size": V,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rope_interleave": True,
        "attention_bias": False,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "first_k_dense_replace": L,
        "n_routed_experts": None,
        "moe_intermediate_size": I,
        "num_experts_per_tok": None,
        "n_shared_experts": None,
        "n_group": 1,
        "topk_group": 1,
        "scoring_func": "softmax",
        "topk_method": "greedy",
        "norm_topk_prob": True,
        "routed_scaling_factor": 1.0,
        "moe_layer_freq": 1,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": TORCH_DTYPE[dtype],
    }
    if moe:
        c.update(first_k_dense_replace=moe["first_dense"], n_routed_experts=moe["experts"],
                 num_experts_per_tok=moe["top_k"], moe_intermediate_size=moe["moe_I"])
    c.update(extra)
    return c


def gemma2_mla_config(D, L, H, q_lora, R, dn, dr, dv, I, V, dtype, qpas, caps, window, **extra):
    """A gemma2_mla config.json (a converted Gemma-2: gemma2's layers, DeepSeek's MLA
    attention), every field written out: dsv3_config's attention and sizes without its
    MoE keys, with Gemma-2's; qpas: query_pre_attn_scalar, caps: (attention, final logit)
    soft-caps."""
    c = dsv3_config(D, L, H, q_lora, R, dn, dr, dv, I, V, dtype)
    for k in ("rope_scaling", "first_k_dense_replace", "n_routed_experts", "moe_intermediate_size",
              "num_experts_per_tok", "n_shared_experts", "n_group", "topk_group", "scoring_func",
              "topk_method", "norm_topk_prob", "routed_scaling_factor", "moe_layer_freq"):
        del c[k]
    c.update(architectures=[ARCH["gemma2_mla"]], model_type="gemma2_mla", rms_norm_eps=1e-6,
             hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
             query_pre_attn_scalar=qpas, attn_logit_softcapping=caps[0], final_logit_softcapping=caps[1],
             sliding_window=window, bos_token_id=2, eos_token_id=1)
    c.update(extra)
    return c


# name -> (config, storage dtype, number of shards, seed[, deepseek_v3 router])
def fixture_specs():
    return {
        "llama_mha_tied": (
            base_config("llama", D=32, L=2, H=4, G=4, d=8, I=48, V=64, dtype="F32",
                        tie_word_embeddings=True, attention_bias=False, mlp_bias=False),
            "F32", 1, 101),
        "llama_gqa2_bf16": (
            base_config("llama", D=64, L=2, H=4, G=2, d=16, I=96, V=100, dtype="BF16",
                        attention_bias=True, mlp_bias=True),
            "BF16", 1, 102),
        # head_dim 16 with H*d = 128 != D = 64 (explicit head_dim, as Mistral-Nemo-like configs do).
        # original_max_position_embeddings 64 (not 8): at theta 5e5 and d 16 the wavelengths are
        # 6.3, 32.4, 167, ... so with low/high factors 1/4 the bands are wl<16 high, 16..64 medium,
        # >64 low and all three occur (with 8 the shortest wavelength 2*pi > 8/4 and no high band).
        "llama3_gqa4_f16": (
            base_config("llama", D=64, L=2, H=8, G=2, d=16, I=96, V=96, dtype="F16",
                        rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
            "F16", 2, 103),
        "qwen2_bias": (
            base_config("qwen2", D=32, L=2, H=4, G=2, d=8, I=64, V=80, dtype="F32",
                        rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False,
                        sliding_window=4096, max_window_layers=2),
            "F32", 1, 104),
        "mistral_window": (
            base_config("mistral", D=64, L=2, H=4, G=1, d=16, I=64, V=72, dtype="F32",
                        sliding_window=5),
            "F32", 1, 105),
        "mixtral_moe_bf16": (
            base_config("mixtral", D=32, L=2, H=4, G=2, d=8, I=48, V=64, dtype="BF16",
                        rope_theta=1000000.0, num_local_experts=4, num_experts_per_tok=2,
                        sliding_window=None, router_aux_loss_coef=0.02, output_router_logits=False),
            "BF16", 1, 106),
        # qwen3: per-head q_norm/k_norm (weights far from 1) before RoPE; head_dim 16 with
        # H*d = 64 != D = 32; no biases (attention_bias false, the default)
        "qwen3": (
            base_config("qwen3", D=32, L=2, H=4, G=2, d=16, I=64, V=80, dtype="F32",
                        rms_norm_eps=1e-6, rope_theta=1000000.0, attention_bias=False,
                        use_sliding_window=False, sliding_window=None, max_window_layers=2),
            "F32", 1, 111),
        # bf16 weights, multi-query, attention_bias true (q/k/v and o biases in Qwen3Attention)
        "qwen3_bf16": (
            base_config("qwen3", D=64, L=2, H=4, G=1, d=16, I=96, V=96, dtype="BF16",
                        attention_bias=True, use_sliding_window=False, sliding_window=4096,
                        max_window_layers=28),
            "BF16", 1, 112),
        # qwen3_moe: layer 0 dense (mlp_only_layers), layers 1-2 sparse; softmax top-2 of 4 experts
        # NOT renormalised (norm_topk_prob false, the default); moe_intermediate_size 40 != 64
        "qwen3_moe": (
            base_config("qwen3_moe", D=32, L=3, H=4, G=2, d=8, I=64, V=64, dtype="F32",
                        rms_norm_eps=1e-6, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=40,
                        mlp_only_layers=[0], decoder_sparse_step=1, norm_topk_prob=False,
                        use_sliding_window=False, sliding_window=None),
            "F32", 1, 113),
        # qwen3_moe, every layer sparse, top-2 renormalised (norm_topk_prob true), no head_dim
        # field (Qwen3MoeConfig: hidden_size / heads = 8)
        "qwen3_moe_norm": (
            {k: v for k, v in base_config("qwen3_moe", D=32, L=2, H=4, G=4, d=8, I=48, V=64, dtype="F32",
                                          num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                                          norm_topk_prob=True).items() if k != "head_dim"},
            "F32", 1, 114),
        # phi3: fused qkv_proj / gate_up_proj; partial_rotary_factor 0.75 rotates the leading
        # 12 of each head's 16 dims (Phi-4-mini's factor), 4 dims carry no position
        "phi3": (
            base_config("phi3", D=64, L=2, H=4, G=2, d=16, I=96, V=80, dtype="F32",
                        partial_rotary_factor=0.75, sliding_window=None),
            "F32", 1, 111),
        # bf16, tied, half the head rotated, a window of 6 tokens (transformers' sliding_window)
        "phi3_bf16": (
            base_config("phi3", D=32, L=2, H=4, G=1, d=8, I=48, V=64, dtype="BF16",
                        partial_rotary_factor=0.5, sliding_window=6, tie_word_embeddings=True),
            "BF16", 1, 112),
        # gemma2: 3 layers (0 and 2 windowed, 1 full), a window of 5 < T; caps small enough to
        # bite (scores reach ~|5|, logits ~|8|); query_pre_attn_scalar 24 != head_dim 16;
        # norm weights stored far from 0, so (1 + w) and w differ everywhere
        "gemma2": (
            base_config("gemma2", D=32, L=3, H=4, G=2, d=16, I=64, V=80, dtype="F32", rms_norm_eps=1e-6,
                        hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                        tie_word_embeddings=True, query_pre_attn_scalar=24, attn_logit_softcapping=3.0,
                        final_logit_softcapping=5.0, sliding_window=5),
            "F32", 1, 113),
        # bf16: sqrt(48) = 6.928 is 6.9375 as a bf16 normalizer; layer_types given explicitly
        "gemma2_bf16": (
            base_config("gemma2", D=48, L=2, H=4, G=2, d=16, I=64, V=64, dtype="BF16", rms_norm_eps=1e-6,
                        hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                        tie_word_embeddings=True, query_pre_attn_scalar=32, attn_logit_softcapping=4.0,
                        final_logit_softcapping=6.0, sliding_window=6,
                        layer_types=["sliding_attention", "full_attention"]),
            "BF16", 1, 114),
        # gemma2_mla (a converted gemma2): 3 layers (0 and 2 windowed, 1 full), a window of 5 < T;
        # plain q_proj, rotate-half rope; query_pre_attn_scalar 20 written out and != qk_nope + qk_rope
        # = 24 (its default); rms_norm_eps 1e-5, so the latent norms' fixed 1e-6 shows; (1 + w)
        # norms stored far from 0, latent norms (plain w) near 1
        "gemma2_mla": (
            gemma2_mla_config(D=32, L=3, H=4, q_lora=None, R=16, dn=16, dr=8, dv=12, I=64, V=80, dtype="F32",
                              qpas=20, caps=(3.0, 5.0), window=5, rope_interleave=False, rms_norm_eps=1e-5),
            "F32", 1, 115),
        # bf16, q_a/q_a_layernorm/q_b, interleaved rope, layer_types given, window 6, scalar 16 != 20
        "gemma2_mla_qlora": (
            gemma2_mla_config(D=48, L=2, H=4, q_lora=24, R=20, dn=12, dr=8, dv=16, I=64, V=64, dtype="BF16",
                              qpas=16, caps=(4.0, 6.0), window=6,
                              layer_types=["sliding_attention", "full_attention"]),
            "BF16", 1, 116),
        # deepseek_v3 (MLA).  Latent projections are scaled so the latents' mean square is
        # ~2e-4: the latent RMSNorms' eps (1e-6, whatever rms_norm_eps says) then matters.
        # (a) plain q_proj, interleaved rope, every layer dense, no biases, qk_nope 16 != v_head 12
        "dsv3_noqlora_dense": (
            dsv3_config(D=48, L=2, H=4, q_lora=None, R=24, dn=16, dr=8, dv=12, I=80, V=88, dtype="F32"),
            "F32", 1, 107, "hf"),
        # (b) q_a/q_a_layernorm/q_b, half-split rope, biases on q_a, kv_a and o, llama3 rope
        # scaling: at theta 5e5 and rope width 8 the wavelengths are 6.3, 167, 4.4e3, 1.2e5,
        # so original_max_position_embeddings 256 with factors 1/4 gives high, medium, low, low
        "dsv3_qlora_bias_llama3_f16": (
            dsv3_config(D=64, L=2, H=4, q_lora=32, R=24, dn=12, dr=8, dv=16, I=96, V=96, dtype="F16",
                        rope_interleave=False, attention_bias=True, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
            "F16", 2, 108, "hf"),
        # (c) MoE in the Mixtral form (softmax, 1 group, no shared experts, renormalised top-2,
        # scale 1) after one dense layer; moe_intermediate_size 40 != intermediate_size 64;
        # rms_norm_eps 1e-6, where transformers' and vLLM's latent norms agree too
        "dsv3_moe_softmax": (
            dsv3_config(D=32, L=3, H=4, q_lora=16, R=24, dn=16, dr=8, dv=12, I=64, V=64, dtype="F32",
                        rms_norm_eps=1e-6, rope_theta=1000000.0,
                        moe=dict(first_dense=1, experts=4, top_k=2, moe_I=40)),
            "F32", 1, 109, "vllm"),
        # (d) tied embeddings (no lm_head tensor), bf16 weights, qk_nope 8 != v_head 16
        "dsv3_tied_bf16": (
            dsv3_config(D=32, L=2, H=2, q_lora=12, R=20, dn=8, dr=8, dv=16, I=48, V=100, dtype="BF16",
                        tie_word_embeddings=True),
            "BF16", 1, 110, "hf"),
    }


# latent projection rows (q_a_proj, the kv_lora_rank rows of kv_a_proj_with_mqa) are
# scaled by this on top of the usual 1.5/sqrt(fan_in)
LATENT_GAIN = 0.01


def make_weights(cfg, seed):
    """Random weights, float64, in HF names, in a fixed order."""
    if cfg.mla:
        return make_weights_dsv3(cfg, seed)
    rng = np.random.default_rng(seed)
    D, H, G, d, I, V = cfg.D, cfg.H, cfg.G, cfg.d, cfg.I, cfg.V
    W = {}

    def lin(name, out_f, in_f, bias):
        W[name + ".weight"] = rng.standard_normal((out_f, in_f)) * (1.5 / np.sqrt(in_f))
        if bias:
            W[name + ".bias"] = rng.standard_normal(out_f) * 0.1

    def norm(name, n):
        if cfg.gemma2:  # stored around 0 in real checkpoints; here away from 0 so both w and 1 + w show
            W[name] = rng.uniform(0.2, 1.2, n)
        else:
            W[name] = 1.0 + 0.1 * rng.standard_normal(n)

    # tied models read logits through the embedding: keep it at output-layer scale
    W["model.embed_tokens.weight"] = rng.standard_normal((V, D)) * (1.5 / np.sqrt(D) if cfg.tie else 1.0)
    for l in range(cfg.n_layers):
        p = "model.layers.%d." % l
        norm(p + "input_layernorm.weight", D)
        if cfg.model_type == "phi3":  # fused as stored: rows [q; k; v] and [gate; up]
            lin(p + "self_attn.qkv_proj", (H + 2 * G) * d, D, False)
            lin(p + "self_attn.o_proj", D, H * d, False)
            norm(p + "post_attention_layernorm.weight", D)
            lin(p + "mlp.gate_up_proj", 2 * I, D, False)
            lin(p + "mlp.down_proj", D, I, False)
            continue
        lin(p + "self_attn.q_proj", H * d, D, cfg.qkv_bias)
        lin(p + "self_attn.k_proj", G * d, D, cfg.qkv_bias)
        lin(p + "self_attn.v_proj", G * d, D, cfg.qkv_bias)
        lin(p + "self_attn.o_proj", D, H * d, cfg.o_bias)
        if cfg.qk_norm:  # far from 1, so that an unapplied weight shows
            W[p + "self_attn.q_norm.weight"] = rng.uniform(0.3, 2.0, d)
            W[p + "self_attn.k_norm.weight"] = rng.uniform(0.3, 2.0, d)
        norm(p + "post_attention_layernorm.weight", D)
        if cfg.gemma2:
            norm(p + "pre_feedforward_layernorm.weight", D)
            norm(p + "post_feedforward_layernorm.weight", D)
        if cfg.sparse[l]:
            q = p + "mlp."
            W[q + "gate.weight"] = rng.standard_normal((cfg.n_experts, D)) * (1.5 / np.sqrt(D))
            for e in range(cfg.n_experts):
                lin(q + "experts.%d.gate_proj" % e, cfg.moe_I, D, False)
                lin(q + "experts.%d.up_proj" % e, cfg.moe_I, D, False)
                lin(q + "experts.%d.down_proj" % e, D, cfg.moe_I, False)
        elif cfg.model_type == "mixtral":
            q = p + "block_sparse_moe."
            W[q + "gate.weight"] = rng.standard_normal((cfg.n_experts, D)) * (1.5 / np.sqrt(D))
            for e in range(cfg.n_experts):
                lin(q + "experts.%d.w1" % e, I, D, False)
                lin(q + "experts.%d.w2" % e, D, I, False)
                lin(q + "experts.%d.w3" % e, I, D, False)
        else:
            lin(p + "mlp.gate_proj", I, D, cfg.mlp_bias)
            lin(p + "mlp.up_proj", I, D, cfg.mlp_bias)
            lin(p + "mlp.down_proj", D, I, cfg.mlp_bias)
    norm("model.norm.weight", D)
    if not cfg.tie:
        lin("lm_head", V, D, False)
    return W


def make_weights_dsv3(cfg, seed):
    """Random deepseek_v3 weights, float64, HF names (DeepseekV3ForCausalLM), fixed order."""
    rng = np.random.default_rng(seed)
    D, H, V, I = cfg.D, cfg.H, cfg.V, cfg.I
    dn, dr, dv, R, Rq = cfg.qk_nope, cfg.qk_rope, cfg.v_head, cfg.kv_lora_rank, cfg.q_lora_rank
    W = {}

    def lin(name, out_f, in_f, gain=1.0):
        W[name + ".weight"] = rng.standard_normal((out_f, in_f)) * (1.5 * gain / np.sqrt(in_f))

    def bias(name, n, scale=0.1):
        W[name + ".bias"] = rng.standard_normal(n) * scale

    def norm(name, n):
        W[name] = 1.0 + 0.1 * rng.standard_normal(n)

    gemma = getattr(cfg, "gemma2", False)

    def outer_norm(name, n):  # gemma2_mla's (1 + w) norms: far from 0, so both w and 1 + w show
        if gemma:
            W[name] = rng.uniform(0.2, 1.2, n)
        else:
            norm(name, n)

    W["model.embed_tokens.weight"] = rng.standard_normal((V, D)) * (1.5 / np.sqrt(D) if cfg.tie else 1.0)
    for l in range(cfg.n_layers):
        p = "model.layers.%d." % l
        a = p + "self_attn."
        outer_norm(p + "input_layernorm.weight", D)
        if Rq is None:
            lin(a + "q_proj", H * (dn + dr), D)
        else:
            lin(a + "q_a_proj", Rq, D, LATENT_GAIN)
            if cfg.attention_bias:
                bias(a + "q_a_proj", Rq, 0.1 * LATENT_GAIN)
            norm(a + "q_a_layernorm.weight", Rq)
            lin(a + "q_b_proj", H * (dn + dr), Rq)
        lin(a + "kv_a_proj_with_mqa", R + dr, D)
        W[a + "kv_a_proj_with_mqa.weight"][:R] *= LATENT_GAIN   # the latent rows; the rope key rows keep O(1)
        if cfg.attention_bias:
            bias(a + "kv_a_proj_with_mqa", R + dr)
            W[a + "kv_a_proj_with_mqa.bias"][:R] *= LATENT_GAIN
        norm(a + "kv_a_layernorm.weight", R)
        lin(a + "kv_b_proj", H * (dn + dv), R)
        lin(a + "o_proj", D, H * dv)
        if cfg.attention_bias:
            bias(a + "o_proj", D)
        outer_norm(p + "post_attention_layernorm.weight", D)
        if gemma:
            outer_norm(p + "pre_feedforward_layernorm.weight", D)
            outer_norm(p + "post_feedforward_layernorm.weight", D)
        m = p + "mlp."
        if cfg.is_moe_layer(l):
            W[m + "gate.weight"] = rng.standard_normal((cfg.n_routed, D)) * (1.5 / np.sqrt(D))
            for e in range(cfg.n_routed):
                q = m + "experts.%d." % e
                lin(q + "gate_proj", cfg.moe_I, D)
                lin(q + "up_proj", cfg.moe_I, D)
                lin(q + "down_proj", D, cfg.moe_I)
        else:
            lin(m + "gate_proj", I, D)
            lin(m + "up_proj", I, D)
            lin(m + "down_proj", D, I)
    outer_norm("model.norm.weight", D)
    if not cfg.tie:
        lin("lm_head", V, D)
    return W


def build(outdir, name, raw_cfg, dtype, nshards, seed, router="hf"):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    for fn in os.listdir(d):  # stale shards from an earlier run would confuse loaders
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(d, fn))
    cfg = tm_ref.Config(raw_cfg, router=router)
    W = make_weights(cfg, seed)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(raw_cfg, f, indent=2)
        f.write("\n")
    if nshards > 1:
        tm_ref.write_sharded(d, W, nshards, dtype)
    else:
        tm_ref.write_safetensors(os.path.join(d, "model.safetensors"), W, dtype)

    # reference from the stored weights, through the full load path
    cfg2, W2 = tm_ref.load_model(d, router=router)
    assert set(W2) == set(W)
    for k in W:
        assert np.array_equal(W2[k], tm_ref.quantize(W[k], dtype)), k
    rng = np.random.default_rng(seed + 1000)
    ids = rng.integers(0, cfg.V, size=(B, T), dtype=np.int64)
    lg = np.stack([tm_ref.logits(cfg2, W2, ids[b]) for b in range(B)])
    ids.astype("<u4").tofile(os.path.join(d, "tokens.u32"))
    np.ascontiguousarray(lg, dtype="<f8").tofile(os.path.join(d, "logits.f64"))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"batch": B, "seqlen": T, "vocab": cfg.V, "dtype": dtype}, f)
        f.write("\n")
    return cfg2, W2, ids, lg


def sanity(name, cfg, W, ids, lg):
    """Properties the fixtures are meant to exercise."""
    notes = []
    assert np.all(np.isfinite(lg))
    if cfg.rope_scaling:
        reg = tm_ref.llama3_regimes(cfg)
        notes.append("llama3 bands " + ",".join(r[0] for r in reg))
        if set(reg) != {"high", "medium", "low"}:
            raise SystemExit("%s: llama3 rope scaling does not exercise all three bands: %s" % (name, reg))
    w = cfg.windows[0]
    if w is not None and w < T:
        # the window must change the result: compare with the same model, window removed
        full = tm_ref.Config(dict(cfg.raw, sliding_window=None))
        lf = tm_ref.logits(full, W, ids[0])
        early = np.abs(lf[:w] - lg[0, :w]).max()
        late = np.abs(lf[w:] - lg[0, w:]).max()
        notes.append("window %d: no-window diff %.1e for t<%d, %.2f after" % (w, early, w, late))
        if early > 1e-12 or late < 1e-2:
            raise SystemExit("%s: sliding window not exercised as intended" % name)
    if cfg.mla:
        notes += sanity_dsv3(name, cfg, W, ids, lg)
    if cfg.qk_norm:
        # the per-head norms and their weights each change the logits
        unit = {k: (np.ones_like(v) if k.endswith(("q_norm.weight", "k_norm.weight")) else v) for k, v in W.items()}
        plain = tm_ref.Config(cfg.raw)
        plain.qk_norm = False
        d_unit = float(np.abs(tm_ref.logits(cfg, unit, ids[0]) - lg[0]).max())
        d_none = float(np.abs(tm_ref.logits(plain, W, ids[0]) - lg[0]).max())
        notes.append("unit q/k norm weights move logits %.2f, no QK-norm %.2f" % (d_unit, d_none))
        if min(d_unit, d_none) < 1e-2:
            raise SystemExit("%s: the QK-norm is not exercised" % name)
    if cfg.model_type == "phi3":
        notes += sanity_phi3(name, cfg, W, ids, lg)
    if cfg.model_type in ("gemma2", "gemma2_mla"):
        notes += sanity_gemma2(name, cfg, W, ids, lg)
    if cfg.n_experts:
        # every expert gets picked somewhere, and no token's top-k is a near-tie in any layer
        # (an fp32 engine must make the same routing choices); router inputs captured in the forward
        seen, gaps = set(), []
        qwen = cfg.model_type == "qwen3_moe"
        fn, gate = ("qwen3_moe_block", "mlp.gate") if qwen else ("moe_mlp", "block_sparse_moe.gate")
        orig = getattr(tm_ref, fn)

        def spy(cfg_, W_, layer, h):
            r = h @ W_["model.layers.%d.%s.weight" % (layer, gate)].T
            srt = np.sort(r, axis=-1)[:, ::-1]
            gaps.append(float((srt[:, cfg_.top_k - 1] - srt[:, cfg_.top_k]).min()))
            seen.update((layer, e) for e in np.argsort(-r, axis=-1, kind="stable")[:, :cfg_.top_k].reshape(-1))
            return orig(cfg_, W_, layer, h)
        setattr(tm_ref, fn, spy)
        try:
            for b in range(ids.shape[0]):
                tm_ref.logits(cfg, W, ids[b])
        finally:
            setattr(tm_ref, fn, orig)
        moe_layers = [ly for ly in range(cfg.n_layers) if cfg.sparse[ly] or not qwen]
        used = [len({e for (l, e) in seen if l == ly}) for ly in moe_layers]
        if qwen:
            flip = tm_ref.Config(dict(cfg.raw, norm_topk_prob=not cfg.norm_topk_prob))
            notes.append("sparse layers %s; norm_topk_prob %s, the other setting moves logits %.2f"
                         % (moe_layers, cfg.norm_topk_prob, float(np.abs(tm_ref.logits(flip, W, ids[0]) - lg[0]).max())))
        notes.append("experts used per layer %s of %d, min top-k logit gap %.1e" % (used, cfg.n_experts, min(gaps)))
        if min(gaps) < 1e-3 or min(used) < cfg.n_experts:
            raise SystemExit("%s: routing not exercised as intended (near-tie or unused expert)" % name)
    return notes


def sanity_gemma2(name, cfg, W, ids, lg):
    """Both window kinds occur, and each gemma2 feature moves the logits: both soft-caps, the scalar
    (the window itself is checked in sanity)."""
    notes = []
    windowed = [l for l, w in enumerate(cfg.windows) if w is not None]
    if not windowed or len(windowed) == cfg.n_layers or min(cfg.windows[l] for l in windowed) >= T:
        raise SystemExit("%s: needs windowed (window < %d) and full layers" % (name, T))
    mla = cfg.model_type == "gemma2_mla"
    # gemma2_mla without the field scales by (qk_nope + qk_rope)^-1/2: dropping it must matter
    no_scalar = {k: v for k, v in cfg.raw.items() if k != "query_pre_attn_scalar"} if mla else \
        dict(cfg.raw, query_pre_attn_scalar=cfg.d)
    for what, raw in (("attention soft-cap", dict(cfg.raw, attn_logit_softcapping=None)),
                      ("final soft-cap", dict(cfg.raw, final_logit_softcapping=None)),
                      ("query_pre_attn_scalar", no_scalar)):
        moved = float(np.abs(tm_ref.logits(tm_ref.Config(raw), W, ids[0]) - lg[0]).max())
        notes.append("no %s: %.2f" % (what, moved) if what != "query_pre_attn_scalar" else
                     "%s scale: %.2f" % ("qk_nope+qk_rope" if mla else "head_dim", moved))
        if moved < 1e-2:
            raise SystemExit("%s: %s not exercised" % (name, what))
    if mla:
        # the latent norms multiply by w, the others by (1 + w): the other convention must show
        plus1 = {k: (v + 1.0 if k.endswith(("q_a_layernorm.weight", "kv_a_layernorm.weight")) else v)
                 for k, v in W.items()}
        moved = float(np.abs(tm_ref.logits(cfg, plus1, ids[0]) - lg[0]).max())
        notes.append("latent norms as (1 + w): %.2f" % moved)
        if moved < 1e-2:
            raise SystemExit("%s: the latent norms' convention not exercised" % name)
    return notes


def sanity_phi3(name, cfg, W, ids, lg):
    """The partial rotary matters, and with the whole head rotated phi3 is mistral (llama with the window) on the
    unfused tensors (the split of qkv_proj / gate_up_proj checked through the llama path)."""
    full = dict(cfg.raw, partial_rotary_factor=1.0)
    lf = tm_ref.logits(tm_ref.Config(full), W, ids[0])
    moved = float(np.abs(lf - lg[0]).max())
    llama = dict(full, model_type="mistral", architectures=["MistralForCausalLM"])  # llama with the window
    H, G, d, I = cfg.H, cfg.G, cfg.d, cfg.I
    U = {}
    for k, v in W.items():
        if k.endswith("qkv_proj.weight"):
            p = k[:-len("qkv_proj.weight")]
            U[p + "q_proj.weight"], U[p + "k_proj.weight"], U[p + "v_proj.weight"] = np.split(v, [H * d, (H + G) * d])
        elif k.endswith("gate_up_proj.weight"):
            p = k[:-len("gate_up_proj.weight")]
            U[p + "gate_proj.weight"], U[p + "up_proj.weight"] = v[:I], v[I:]
        else:
            U[k] = v
    same = float(np.abs(tm_ref.logits(tm_ref.Config(llama), U, ids[0]) - lf).max())
    if moved < 1e-2 or same > 1e-12:
        raise SystemExit("%s: partial rotary not exercised (%.1e) or fused split differs from mistral (%.1e)"
                         % (name, moved, same))
    return ["rotary %d of %d dims; all rotated moves logits %.2f; that vs mistral unfused %.1e"
            % (cfg.rope_dim, d, moved, same)]


def sanity_dsv3(name, cfg, W, ids, lg):
    """deepseek_v3: the features each fixture carries change its logits, and the MoE
    routing is well conditioned for an fp32 engine."""
    notes = []

    def variant(**raw_changes):
        return tm_ref.Config(dict(cfg.raw, **raw_changes), router=cfg.router)

    def moved(c, what, floor=1e-2, W_=W):
        diff = float(np.abs(tm_ref.logits(c, W_, ids[0]) - lg[0]).max())
        if diff < floor:
            raise SystemExit("%s: %s does not change the logits (%.1e)" % (name, what, diff))
        return diff

    notes.append("qk_nope %d v_head %d kv_lora %d q_lora %s rope %s"
                 % (cfg.qk_nope, cfg.v_head, cfg.kv_lora_rank, cfg.q_lora_rank,
                    "interleaved" if cfg.rope_interleave else "half-split"))
    notes.append("other rope layout moves logits %.2f"
                 % moved(variant(rope_interleave=not cfg.rope_interleave), "the rope layout"))
    # the latent norms' weights (near 1, not 1) are applied
    unit = {k: (np.ones_like(v) if k.endswith(("q_a_layernorm.weight", "kv_a_layernorm.weight")) else v)
            for k, v in W.items()}
    notes.append("unit latent norm weights move logits %.2f" % moved(cfg, "the latent norms' weights", W_=unit))
    # the latent norms' eps is 1e-6 whatever rms_norm_eps says (transformers)
    if cfg.eps != cfg.latent_eps:
        c = variant()
        c.latent_eps = cfg.eps
        notes.append("latent eps = rms_norm_eps would move logits %.1e" % moved(c, "latent eps vs rms_norm_eps", 1e-3))
    moe_layers = [l for l in range(cfg.n_layers) if cfg.is_moe_layer(l)]
    other = tm_ref.with_router(cfg, "hf" if cfg.router == "vllm" else "vllm")
    if not moe_layers:
        # dense: the router cannot enter, both semantics give the same logits
        if not np.array_equal(tm_ref.logits(other, W, ids[0]), lg[0]):
            raise SystemExit("%s: dense model, yet the hf and vllm routers differ" % name)
        return notes
    if cfg.router != "vllm" or cfg.scoring_func != "softmax" or cfg.n_shared or cfg.routed_scaling != 1.0:
        raise SystemExit("%s: the engine runs deepseek_v3 MoE only in the Mixtral form (router vllm)" % name)
    notes.append("transformers' sigmoid routing would move logits %.2f" % moved(other, "the router semantics"))
    seen, gaps = set(), []
    orig = tm_ref.dsv3_moe

    def spy(cfg_, W_, layer, h):
        r = h @ W_["model.layers.%d.mlp.gate.weight" % layer].T
        srt = np.sort(r, axis=-1)[:, ::-1]
        gaps.append(float((srt[:, cfg_.top_k - 1] - srt[:, cfg_.top_k]).min()))
        seen.update((layer, e) for e in np.argsort(-r, axis=-1, kind="stable")[:, :cfg_.top_k].reshape(-1))
        return orig(cfg_, W_, layer, h)
    tm_ref.dsv3_moe = spy
    try:
        for b in range(ids.shape[0]):
            tm_ref.logits(cfg, W, ids[b])
    finally:
        tm_ref.dsv3_moe = orig
    used = [len({e for (l, e) in seen if l == ly}) for ly in moe_layers]
    notes.append("MoE layers %s, experts used %s of %d, min top-k logit gap %.1e"
                 % (moe_layers, used, cfg.n_routed, min(gaps)))
    if min(gaps) < 1e-3 or min(used) < cfg.n_routed:
        raise SystemExit("%s: routing not exercised as intended (near-tie or unused expert)" % name)
    return notes


# ---------------------------------------------------------------- cross-check

def find_shared_ref():
    cands = []
    if os.environ.get("TM_SHARED_REF"):
        e = os.environ["TM_SHARED_REF"]
        cands += [e, os.path.join(e, "reference")]
    root = os.path.abspath(os.path.join(HERE, "..", ".."))   # repo root
    cands += [os.path.join(root, "..", "shared", "reference"),
              os.path.join(root, "shared", "reference")]
    for c in cands:
        if os.path.isfile(os.path.join(c, "refmodel.py")):
            return os.path.abspath(c)
    return None


def second_opinion(refdir):
    """Load the shared refmodel and extend it for features it lacks (checked
    below against its own source): llama mlp_bias, sliding windows, qwen3's
    per-head q_norm/k_norm and qwen3_moe's sparse blocks."""
    sys.path.insert(0, refdir)
    import refmodel as R

    class Extended(R.Model):
        def lin_(self, prefix, name, x):
            return R.lin(self.g(prefix + name + ".weight"), x, self.W.get(prefix + name + ".bias"))

        def attn_gqa(self, p, x, T):
            c = self.cfg
            if c.get("model_type") not in ("qwen3", "qwen3_moe"):
                return super().attn_gqa(p, x, T)
            H, KV = c["num_attention_heads"], c["num_key_value_heads"]
            hd = c.get("head_dim") or c["hidden_size"] // H
            eps = c.get("rms_norm_eps", 1e-6)
            a = p + "self_attn."
            heads = []
            for name, n in (("q", H), ("k", KV), ("v", KV)):
                y = self.lin_(a, name + "_proj", x).reshape(T, n, hd).transpose(1, 0, 2)
                if name != "v":   # Qwen3Attention: q_norm/k_norm over head_dim, then RoPE
                    y = R.rms(y, self.g(a + name + "_norm.weight"), eps)
                heads.append(y)
            q, k, v = heads
            cos, sin = R.rope_tables(T, hd, c.get("rope_theta", 10000.0), c.get("rope_scaling"))
            q, k = R.apply_rope(q, cos, sin), R.apply_rope(k, cos, sin)
            k, v = np.repeat(k, H // KV, axis=0), np.repeat(v, H // KV, axis=0)
            o = R.attend(q, k, v, hd ** -0.5).transpose(1, 0, 2).reshape(T, H * hd)
            return self.lin_(a, "o_proj", o)

        def mlp(self, p, x):
            c = self.cfg
            layer = int(p.split(".")[2])
            if c.get("model_type") == "qwen3_moe" and c.get("num_experts") and layer not in (
                    c.get("mlp_only_layers") or []) and (layer + 1) % c.get("decoder_sparse_step", 1) == 0:
                # Qwen3MoeSparseMoeBlock: softmax over all experts, top-k, optional renormalisation
                pr = self.lin_(p + "mlp.", "gate", x)
                pr = np.exp(pr - pr.max(-1, keepdims=True))
                pr /= pr.sum(-1, keepdims=True)
                out = np.zeros_like(x)
                for t in range(x.shape[0]):
                    idx = np.argsort(-pr[t], kind="stable")[:c["num_experts_per_tok"]]
                    w = pr[t, idx] / (pr[t, idx].sum() if c.get("norm_topk_prob") else 1.0)
                    for e, we in zip(idx, w):
                        q = p + "mlp.experts.%d." % e
                        act = R.silu(self.lin_(q, "gate_proj", x[t])) * self.lin_(q, "up_proj", x[t])
                        out[t] += we * self.lin_(q, "down_proj", act)
                return out
            if c.get("model_type") == "llama" and c.get("mlp_bias") and not c.get("num_local_experts"):
                return R.lin(self.g(p + "mlp.down_proj.weight"),
                             R.silu(R.lin(self.g(p + "mlp.gate_proj.weight"), x, self.g(p + "mlp.gate_proj.bias")))
                             * R.lin(self.g(p + "mlp.up_proj.weight"), x, self.g(p + "mlp.up_proj.bias")),
                             self.g(p + "mlp.down_proj.bias"))
            return super().mlp(p, x)

    def windowed_attend(window):
        def attend(q, k, v, scale):
            n = q.shape[1]
            s = np.einsum("htd,hsd->hts", q, k) * scale
            i, j = np.arange(n)[:, None], np.arange(n)[None, :]
            s = np.where((j <= i) & (i - j < window), s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            return np.einsum("hts,hsd->htd", s / s.sum(-1, keepdims=True), v)
        return attend

    return R, Extended, windowed_attend


def cross_check(outdir, names, refdir, routers):
    """routers: name -> deepseek_v3 router the golden logits used; "vllm" runs refmodel
    with its REF_SEMANTICS=vllm (read from its module global SEMANTICS at call time)."""
    R, Extended, windowed_attend = second_opinion(refdir)
    import st as S
    worst = 0.0
    failed = []
    for name in names:
        d = os.path.join(outdir, name)
        meta = json.load(open(os.path.join(d, "meta.json")))
        b_, t_, v_ = meta["batch"], meta["seqlen"], meta["vocab"]
        ids = np.fromfile(os.path.join(d, "tokens.u32"), dtype="<u4").astype(np.int64).reshape(b_, t_)
        ours = np.fromfile(os.path.join(d, "logits.f64"), dtype="<f8").reshape(b_, t_, v_)
        # weights as the shared reader sees them
        mine = tm_ref.read_model_weights(d)
        theirs = S.read_dir(d)
        wdiff = max(float(np.abs(mine[k] - theirs[k]).max()) for k in mine) if set(mine) == set(theirs) else np.inf
        m = Extended(d)
        cfg = m.cfg
        win = cfg.get("sliding_window") if cfg.get("model_type") in ("mistral", "mixtral") else None
        orig_attend, orig_sem = R.attend, R.SEMANTICS
        extra = ""
        if routers.get(name, "hf") == "vllm":
            R.SEMANTICS = "vllm"
            extra = "  REF_SEMANTICS=vllm"
        try:
            if win is not None and win < t_:
                # plain refmodel (no window) must agree on the rows the window cannot affect
                plain = np.stack([m.logits(ids[b]) for b in range(b_)])
                early = float(np.abs(plain[:, :win] - ours[:, :win]).max())
                extra = "  rows t<%d vs plain refmodel %.2e" % (win, early)
                if early > TOL:
                    failed.append(name)
                R.attend = windowed_attend(win)
            ref = np.stack([m.logits(ids[b]) for b in range(b_)])
        finally:
            R.attend, R.SEMANTICS = orig_attend, orig_sem
        diff = float(np.abs(ref - ours).max())
        worst = max(worst, diff, wdiff)
        ok = diff <= TOL and wdiff == 0.0
        if not ok:
            failed.append(name)
        if m.missing:
            failed.append(name)
            extra += "  refmodel used defaults for %s" % sorted(set(m.missing))
        print("  cross-check %-26s max|ours-refmodel| %.2e  weights %.1e%s  %s"
              % (name, diff, wdiff, extra, "ok" if ok else "FAIL"))
    return worst, sorted(set(failed))


def main():
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    specs = fixture_specs()
    routers = {}
    for name, spec in specs.items():
        raw, dtype, nshards, seed = spec[:4]
        routers[name] = spec[4] if len(spec) > 4 else "hf"
        cfg, W, ids, lg = build(outdir, name, raw, dtype, nshards, seed, routers[name])
        notes = sanity(name, cfg, W, ids, lg)
        if cfg.mla:
            feats = "%s H=%d R=%d dn=%d dr=%d dv=%d D=%d I=%d V=%d L=%d %s%s router=%s" % (
                cfg.model_type, cfg.H, cfg.kv_lora_rank, cfg.qk_nope, cfg.qk_rope, cfg.v_head, cfg.D, cfg.I,
                cfg.V, cfg.n_layers, dtype, " shards=%d" % nshards if nshards > 1 else "", cfg.router)
        else:
            feats = "%s H=%d G=%d d=%d D=%d I=%d V=%d L=%d %s%s" % (
                cfg.model_type, cfg.H, cfg.G, cfg.d, cfg.D, cfg.I, cfg.V, cfg.n_layers, dtype,
                " shards=%d" % nshards if nshards > 1 else "")
        print("%-26s %s  tokens %dx%d  logits %s  max|logit| %.3f  std %.3f%s"
              % (name, feats, B, T, "x".join(map(str, lg.shape)), np.abs(lg).max(), lg.std(),
                 ("  [" + "; ".join(notes) + "]") if notes else ""))
    with open(os.path.join(outdir, "fixtures.json"), "w") as f:
        json.dump(list(specs), f, indent=2)
        f.write("\n")

    refdir = find_shared_ref()
    if refdir is None:
        print("shared refmodel.py not found (set TM_SHARED_REF): cross-check skipped")
        return 0
    print("cross-checking against %s/refmodel.py (not phi3, gemma2 or gemma2_mla, which it lacks)" % refdir)
    lacks = ("phi3", "gemma2", "gemma2_mla")
    worst, failed = cross_check(outdir, [n for n in specs if specs[n][0]["model_type"] not in lacks],
                                refdir, routers)
    if failed:
        print("CROSS-CHECK FAILED for %s (tolerance %.0e, worst %.2e)" % (", ".join(failed), TOL, worst),
              file=sys.stderr)
        return 1
    print("cross-check passed: worst max abs difference %.2e (tolerance %.0e)" % (worst, TOL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
