#!/usr/bin/env python3
"""Write a llama/qwen2-shaped model of random bf16 weights for benchmarks.

usage: make_random_model.py OUT_DIR --layers 2 [--preset qwen2.5-72b] [--vocab 1024]

The preset fixes the real layer shapes (Qwen2.5-72B: hidden 8192, 64 heads,
8 kv heads, head_dim 128, intermediate 29568, q/k/v biases); the vocabulary
is cut (default 1024) because the embedding and head are not part of the
per-layer conversion being measured. Tensors are streamed to disk one at a
time, so memory stays at one tensor.
"""
import argparse
import json
import os
import struct

import numpy as np

PRESETS = {
    "qwen2.5-72b": dict(model_type="qwen2", hidden_size=8192, num_attention_heads=64, num_key_value_heads=8,
                        intermediate_size=29568, rope_theta=1000000.0, rms_norm_eps=1e-6, bias=True),
    "llama-3.2-1b": dict(model_type="llama", hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
                         intermediate_size=8192, rope_theta=500000.0, rms_norm_eps=1e-5, bias=False),
}


def shapes(p, layers, vocab):
    D, H, G = p["hidden_size"], p["num_attention_heads"], p["num_key_value_heads"]
    d, I = D // H, p["intermediate_size"]
    yield "model.embed_tokens.weight", (vocab, D)
    for i in range(layers):
        pre = "model.layers.%d." % i
        yield pre + "input_layernorm.weight", (D,)
        yield pre + "self_attn.q_proj.weight", (H * d, D)
        yield pre + "self_attn.k_proj.weight", (G * d, D)
        yield pre + "self_attn.v_proj.weight", (G * d, D)
        if p["bias"]:
            yield pre + "self_attn.q_proj.bias", (H * d,)
            yield pre + "self_attn.k_proj.bias", (G * d,)
            yield pre + "self_attn.v_proj.bias", (G * d,)
        yield pre + "self_attn.o_proj.weight", (D, H * d)
        yield pre + "post_attention_layernorm.weight", (D,)
        yield pre + "mlp.gate_proj.weight", (I, D)
        yield pre + "mlp.up_proj.weight", (I, D)
        yield pre + "mlp.down_proj.weight", (D, I)
    yield "model.norm.weight", (D,)
    yield "lm_head.weight", (vocab, D)


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
    a = ap.parse_args()
    p = PRESETS[a.preset]
    os.makedirs(a.out, exist_ok=True)
    items = list(shapes(p, a.layers, a.vocab))
    header, off = {}, 0
    for name, shp in items:
        n = int(np.prod(shp)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + n]}
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
            f.write(bf16_bytes(t))
    D, H = p["hidden_size"], p["num_attention_heads"]
    cfg = {"architectures": ["Qwen2ForCausalLM" if p["model_type"] == "qwen2" else "LlamaForCausalLM"],
           "model_type": p["model_type"], "hidden_size": D, "num_hidden_layers": a.layers,
           "num_attention_heads": H, "num_key_value_heads": p["num_key_value_heads"], "head_dim": D // H,
           "intermediate_size": p["intermediate_size"], "vocab_size": a.vocab, "rope_theta": p["rope_theta"],
           "rms_norm_eps": p["rms_norm_eps"], "max_position_embeddings": 32768, "tie_word_embeddings": False,
           "hidden_act": "silu", "torch_dtype": "bfloat16"}
    if p["model_type"] == "llama":
        cfg["attention_bias"] = False
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    rng2 = np.random.default_rng(a.seed + 1)
    rng2.integers(0, a.vocab, 1 << 16, dtype=np.uint16).tofile(os.path.join(a.out, "calib.u16"))


if __name__ == "__main__":
    main()
