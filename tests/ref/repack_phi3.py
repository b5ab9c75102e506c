#!/usr/bin/python3
"""Repack a Llama-layout model as model_type phi3 (what Phi-3 checkpoints store).

Usage:  /usr/bin/python3 tests/ref/repack_phi3.py SRC_DIR DST_DIR

q/k/v_proj become self_attn.qkv_proj (rows [q; k; v]), gate/up_proj become
mlp.gate_up_proj (rows [gate; up]); everything else is copied.  config.json
gets model_type phi3, partial_rotary_factor 1.0 and no attention/mlp bias
fields (Phi-3 has none; a source with biases is refused).  Weights go
through tm_ref's reader and writer in the source dtype, so the numbers are
the same bits.  numpy and tm_ref only.  Not part of the product.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tm_ref  # noqa: E402


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    src, dst = sys.argv[1:]
    cfg = json.load(open(os.path.join(src, "config.json")))
    if cfg.get("model_type") != "llama" or cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise SystemExit("%s: a llama model without biases is needed" % src)
    W = tm_ref.read_model_weights(src)
    out = {}
    for name, w in W.items():
        if name.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight", "mlp.up_proj.weight")):
            continue
        if name.endswith("self_attn.q_proj.weight"):
            p = name[:-len("q_proj.weight")]
            out[p + "qkv_proj.weight"] = np.concatenate([w, W[p + "k_proj.weight"], W[p + "v_proj.weight"]])
        elif name.endswith("mlp.gate_proj.weight"):
            p = name[:-len("gate_proj.weight")]
            out[p + "gate_up_proj.weight"] = np.concatenate([w, W[p + "up_proj.weight"]])
        else:
            out[name] = w
    dtype = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[cfg.get("torch_dtype", "float32")]
    cfg.update(model_type="phi3", architectures=["Phi3ForCausalLM"], partial_rotary_factor=1.0)
    for k in ("attention_bias", "mlp_bias"):
        cfg.pop(k, None)
    os.makedirs(dst, exist_ok=True)
    tm_ref.write_safetensors(os.path.join(dst, "model.safetensors"), out, dtype)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    print("repacked %d tensors of %s into %d (%s) in %s" % (len(W), src, len(out), dtype, dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
