#!/usr/bin/python3
"""A tiny random deepseek_v3 model that speaks a real tokenizer's vocabulary,
for chat fine-tuning tests: the layers of a fixture model (FIXTURE_DIR) with a
new random embedding and head sized to TOKENIZER_DIR's vocabulary, whose
tokenizer files are copied in.

usage: make_chat_model.py FIXTURE_DIR TOKENIZER_DIR OUT_DIR
"""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tm_ref  # noqa: E402


def vocab_size(tok_dir):
    with open(os.path.join(tok_dir, "tokenizer.json")) as f:
        t = json.load(f)
    ids = list(t["model"]["vocab"].values()) + [a["id"] for a in t.get("added_tokens", [])]
    return max(ids) + 1


def main():
    fixture, tok_dir, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(fixture, "config.json")) as f:
        cfg = json.load(f)
    V, D = vocab_size(tok_dir), cfg["hidden_size"]
    W = tm_ref.read_safetensors(os.path.join(fixture, "model.safetensors"))
    rng = np.random.default_rng(3)
    W["model.embed_tokens.weight"] = (rng.standard_normal((V, D)) * 0.5).astype(np.float32)
    W["lm_head.weight"] = (rng.standard_normal((V, D)) / np.sqrt(D)).astype(np.float32)
    cfg["vocab_size"] = V
    cfg.pop("bos_token_id", None)
    cfg.pop("eos_token_id", None)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tm_ref.write_safetensors(os.path.join(out, "model.safetensors"), {k: np.asarray(v, np.float32) for k, v in W.items()})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(out, name))


main()
