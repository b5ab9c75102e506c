#!/usr/bin/env python3
"""Writes the seed inputs of the JSON and text fuzz targets (config, preset,
tokenizer_load, tokenizer_roundtrip, chat) next to this script, from the
repository's configs and test data and the tokenizers in ../shared.
usage: make_text_seeds.py [SHARED_DIR]"""
import glob, json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo, "..", "shared")


def put(target, name, blob):
    os.makedirs(os.path.join(here, target), exist_ok=True)
    with open(os.path.join(here, target, name), "wb") as f:
        f.write(blob if isinstance(blob, bytes) else blob.encode())


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# config: the bundled and shared model configs, and the corner cases
for p in sorted(glob.glob(os.path.join(repo, "configs/models/*.json")) +
                glob.glob(os.path.join(shared, "models/*/config.json"))):
    put("config", os.path.basename(os.path.dirname(p)) + "_" + os.path.basename(p), compact(json.load(open(p))))
base = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
        "num_key_value_heads": 4, "intermediate_size": 172, "vocab_size": 512}
put("config", "real_3e84.json", compact(dict(base, hidden_size=3e84)))
put("config", "real_8.0.json", compact(dict(base, num_hidden_layers=8.0)))
put("config", "near_2e30.json", compact(dict(base, hidden_size=1 << 30, vocab_size=(1 << 30) - 2)))
put("config", "llama3_rope.json", compact(dict(base, rope_scaling={"rope_type": "llama3", "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})))
put("config", "mixtral.json", compact(dict(base, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2)))
put("config", "deepseek_v3.json", compact(dict(base, model_type="deepseek_v3", kv_lora_rank=32, q_lora_rank=None,
    qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2,
    first_k_dense_replace=1, n_shared_experts=0, n_group=1, topk_group=1, scoring_func="softmax",
    topk_method="greedy", routed_scaling_factor=1.0, moe_intermediate_size=16)))

# preset: the bundled presets
for p in sorted(glob.glob(os.path.join(repo, "configs/presets/*.json"))):
    put("preset", os.path.basename(p), open(p, "rb").read())


def shrink(tok, keep):
    """The tokenizer with the ids below keep (and its added tokens), and the
    merges among them: the same structure in a few kilobytes."""
    m = tok["model"]
    m["vocab"] = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in m["vocab"] and b in m["vocab"] and a + b in m["vocab"]:
            merges.append(mg)
    m["merges"] = merges[:200]
    tok["added_tokens"] = tok["added_tokens"][:8]
    return tok


# tokenizer_load: tokenizer.json, a NUL, then tokenizer_config.json
for name in ("llama3", "qwen3", "mistral"):
    d = os.path.join(shared, "tokenizers", name)
    tok = shrink(json.load(open(os.path.join(d, "tokenizer.json"))), 400)
    cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
    small = {k: cfg[k] for k in ("bos_token", "eos_token", "add_bos_token", "add_eos_token") if k in cfg}
    put("tokenizer_load", name + ".json", compact(tok))
    put("tokenizer_load", name + "_with_config.json", compact(tok) + b"\0" + compact(small))

# tokenizer_roundtrip and chat: a byte picking the tokenizer, then the text
hostile = open(os.path.join(repo, "tests/data/tokenizer/hostile.txt"), "rb").read().split(b"\n")
for i, line in enumerate(hostile[:30]):
    put("tokenizer_roundtrip", "hostile_%02d" % i, bytes([i % 3]) + line)
    # the top bit: made valid UTF-8 first; a stray byte shows the repair
    put("tokenizer_roundtrip", "repaired_%02d" % i, bytes([0x80 | (i + 1) % 3]) + line[:20] + b"\xff" + line[20:])
put("tokenizer_roundtrip", "specials", b"\x00<|begin_of_text|>a<|eot_id|> \x01<|im_start|>\x02<s>[INST]")
chat = open(os.path.join(repo, "tests/data/chat/smoltalk_tiny.jsonl"), "rb").read().split(b"\n")
for i, line in enumerate(chat[:12]):
    if line.strip():
        put("chat", "smoltalk_%02d" % i, bytes([i % 3]) + line + b"\n")
put("chat", "bad_role", b"\x02" + compact({"messages": [{"role": "user", "content": "a"},
                                                         {"role": "user", "content": "b"}]}) + b"\n")
