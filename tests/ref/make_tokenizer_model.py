#!/usr/bin/env python3
"""A tiny random Llama model that uses a real tokenizer's vocabulary, for
end-to-end tests of text datasets through the command line.

usage: make_tokenizer_model.py TOKENIZER_DIR OUT_DIR [--model-type llama|mistral]

The vocabulary size is the tokenizer's largest id + 1; tokenizer.json and
tokenizer_config.json are copied next to config.json and model.safetensors.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tm_ref import write_safetensors  # noqa: E402


def vocab_size(tok_dir):
    t = json.load(open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8"))
    ids = list(t["model"]["vocab"].values()) + [a["id"] for a in t.get("added_tokens", [])]
    return max(ids) + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--model-type", default="llama")
    a = ap.parse_args()
    V, D, L, H, G, d, I = vocab_size(a.tokenizer_dir), 32, 2, 4, 2, 16, 64
    os.makedirs(a.out_dir, exist_ok=True)
    cfg = {"architectures": ["MistralForCausalLM" if a.model_type == "mistral" else "LlamaForCausalLM"],
           "model_type": a.model_type, "hidden_size": D, "num_hidden_layers": L, "num_attention_heads": H,
           "num_key_value_heads": G, "head_dim": d, "intermediate_size": I, "vocab_size": V,
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
           "tie_word_embeddings": False, "torch_dtype": "float32"}
    json.dump(cfg, open(os.path.join(a.out_dir, "config.json"), "w"), indent=2)
    rng = np.random.default_rng(5)
    W = {"model.embed_tokens.weight": rng.standard_normal((V, D)), "model.norm.weight": np.ones(D),
         "lm_head.weight": rng.standard_normal((V, D)) / np.sqrt(D)}
    for l in range(L):
        p = "model.layers.%d." % l
        for name, shape in [("self_attn.q_proj", (H * d, D)), ("self_attn.k_proj", (G * d, D)),
                            ("self_attn.v_proj", (G * d, D)), ("self_attn.o_proj", (D, H * d)),
                            ("mlp.gate_proj", (I, D)), ("mlp.up_proj", (I, D)), ("mlp.down_proj", (D, I))]:
            W[p + name + ".weight"] = rng.standard_normal(shape) / np.sqrt(shape[1])
        W[p + "input_layernorm.weight"] = np.ones(D)
        W[p + "post_attention_layernorm.weight"] = np.ones(D)
    write_safetensors(os.path.join(a.out_dir, "model.safetensors"), W, "F32")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(a.tokenizer_dir, f), os.path.join(a.out_dir, f))


if __name__ == "__main__":
    main()
