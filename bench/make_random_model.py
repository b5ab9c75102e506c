#!/usr/bin/env python3
"""Write a llama/qwen2-shaped model of random bf16 weights for benchmarks.

usage: make_random_model.py OUT_DIR --layers 2 [--preset qwen2.5-72b] [--vocab 1024] [--mla R]

The preset fixes the real layer shapes (Qwen2.5-72B: hidden 8192, 64 heads,
8 kv heads, head_dim 128, intermediate 29568, q/k/v biases); the vocabulary
is cut (default 1024; the real one for memory measurements) because the embedding and head are not part of the
per-layer conversion being measured. Tensors are streamed to disk one at a
time, so memory stays at one tensor. --mla R writes the converted shape
instead: a DeepSeek-V3 (MLA) model with the preset's hidden size, heads and
MLP, kv_lora_rank R, qk_rope_head_dim 64 and qk_nope/v head dims = the
preset's head_dim (what `transmla convert --qk-mqa-dim 64` makes).
"""
import argparse
import json
import os
import struct

import numpy as np

PRESETS = {
    "qwen2.5-72b": dict(model_type="qwen2", hidden_size=8192, num_attention_heads=64, num_key_value_heads=8,
                        intermediate_size=29568, rope_theta=1000000.0, rms_norm_eps=1e-6, bias=True),
    "llama-2-7b": dict(model_type="llama", hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
                       intermediate_size=11008, rope_theta=10000.0, rms_norm_eps=1e-5, bias=False),
    "qwen2.5-7b": dict(model_type="qwen2", hidden_size=3584, num_attention_heads=28, num_key_value_heads=4,
                       intermediate_size=18944, rope_theta=1000000.0, rms_norm_eps=1e-6, bias=True),
    "llama-3.2-1b": dict(model_type="llama", hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
                         intermediate_size=8192, rope_theta=500000.0, rms_norm_eps=1e-5, bias=False),
    # Mixtral-8x7B's attention (hidden 4096, 32 heads, 8 kv heads, head_dim
    # 128) with one expert's MLP as a dense one: for what costs only the
    # attention (the attention fit), not for the routed experts' passes
    "mixtral-8x7b-attn": dict(model_type="llama", hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                              intermediate_size=14336, rope_theta=1000000.0, rms_norm_eps=1e-5, bias=False),
}


MLA_ROPE = 64


def shapes(p, layers, vocab, mla=0):
    D, H, G = p["hidden_size"], p["num_attention_heads"], p["num_key_value_heads"]
    d, I = D // H, p["intermediate_size"]
    yield "model.embed_tokens.weight", (vocab, D)
    for i in range(layers):
        pre = "model.layers.%d." % i
        yield pre + "input_layernorm.weight", (D,)
        if mla:
            yield pre + "self_attn.q_proj.weight", (H * (d + MLA_ROPE), D)
            yield pre + "self_attn.kv_a_proj_with_mqa.weight", (mla + MLA_ROPE, D)
            yield pre + "self_attn.kv_a_layernorm.weight", (mla,)
            yield pre + "self_attn.kv_b_proj.weight", (H * 2 * d, mla)
            yield from mlp_and_o(pre, D, H, d, I)
            continue
        yield pre + "self_attn.q_proj.weight", (H * d, D)
        yield pre + "self_attn.k_proj.weight", (G * d, D)
        yield pre + "self_attn.v_proj.weight", (G * d, D)
        if p["bias"]:
            yield pre + "self_attn.q_proj.bias", (H * d,)
            yield pre + "self_attn.k_proj.bias", (G * d,)
            yield pre + "self_attn.v_proj.bias", (G * d,)
        yield from mlp_and_o(pre, D, H, d, I)
    yield "model.norm.weight", (D,)
    yield "lm_head.weight", (vocab, D)


def mlp_and_o(pre, D, H, d, I):
    yield pre + "self_attn.o_proj.weight", (D, H * d)
    yield pre + "post_attention_layernorm.weight", (D,)
    yield pre + "mlp.gate_proj.weight", (I, D)
    yield pre + "mlp.up_proj.weight", (I, D)
    yield pre + "mlp.down_proj.weight", (D, I)


def bf16_bytes(a32):
    bits = a32.view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--preset", default="qwen2.5-72b", choices=sorted(PRESETS))
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F32"])
    ap.add_argument("--mla", type=int, default=0, help="kv_lora_rank: write the MLA (deepseek_v3) shape")
    a = ap.parse_args()
    p = PRESETS[a.preset]
    os.makedirs(a.out, exist_ok=True)
    items = list(shapes(p, a.layers, a.vocab, a.mla))
    header, off = {}, 0
    for name, shp in items:
        n = int(np.prod(shp)) * (2 if a.dtype == "BF16" else 4)
        header[name] = {"dtype": a.dtype, "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    hdr = json.dumps(header).encode()
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    rng = np.random.default_rng(a.seed)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr)
        for name, shp in items:
            if len(shp) == 1:
                t = np.ones(shp, np.float32) if "norm" in name else rng.standard_normal(shp, np.float32) * 0.02
            else:  # rows of unit-ish gain: std 1/sqrt(fan_in)
                t = rng.standard_normal(shp, np.float32) * np.float32(1.0 / np.sqrt(shp[1]))
            f.write(bf16_bytes(t) if a.dtype == "BF16" else t.astype("<f4").tobytes())
    D, H = p["hidden_size"], p["num_attention_heads"]
    cfg = {"architectures": ["Qwen2ForCausalLM" if p["model_type"] == "qwen2" else "LlamaForCausalLM"],
           "model_type": p["model_type"], "hidden_size": D, "num_hidden_layers": a.layers,
           "num_attention_heads": H, "num_key_value_heads": p["num_key_value_heads"], "head_dim": D // H,
           "intermediate_size": p["intermediate_size"], "vocab_size": a.vocab, "rope_theta": p["rope_theta"],
           "rms_norm_eps": p["rms_norm_eps"], "max_position_embeddings": 32768, "tie_word_embeddings": False,
           "hidden_act": "silu", "torch_dtype": "bfloat16" if a.dtype == "BF16" else "float32"}
    if p["model_type"] == "llama":
        cfg["attention_bias"] = False
    if a.mla:
        d = D // H
        cfg.update(architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", num_key_value_heads=H,
                   q_lora_rank=None, kv_lora_rank=a.mla, qk_nope_head_dim=d, qk_rope_head_dim=MLA_ROPE,
                   v_head_dim=d, head_dim=MLA_ROPE, rope_interleave=True, attention_bias=False,
                   first_k_dense_replace=a.layers, n_routed_experts=None, moe_intermediate_size=p["intermediate_size"],
                   num_experts_per_tok=None, n_shared_experts=None, rope_scaling=None)
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    rng2 = np.random.default_rng(a.seed + 1)
    # calibration ids: calib.u16, or calib.u32 when the vocabulary needs 32 bits (--token-dtype u32)
    wide = a.vocab > 1 << 16
    ids = rng2.integers(0, a.vocab, 1 << 16, dtype=np.uint32 if wide else np.uint16)
    ids.astype("<u4" if wide else "<u2").tofile(os.path.join(a.out, "calib.u32" if wide else "calib.u16"))


if __name__ == "__main__":
    main()
