#!/usr/bin/env bash
# `transmla inspect --json` on the bundled models against numbers computed
# here from the files themselves: parameters = sum of tensor sizes in the
# safetensors header (the tied head not counted twice), KV-cache bytes per
# token = 2 x kv_heads x head_dim x 4 (F32) per layer.
# usage: inspect_bundled.sh TRANSMLA PYTHON
set -u
bin=$1 py=$2
here=$(cd "$(dirname "$0")" && pwd)
fails=0
for name in stories260K bytelm-dev; do
    model=$here/../data/models/$name
    "$bin" inspect --model-path "$model" --json >/tmp/inspect.$$ || { echo "FAIL $name: inspect exited $?"; fails=$((fails+1)); continue; }
    if "$py" - "$model" /tmp/inspect.$$ <<'PY'
import json, struct, sys
model, out = sys.argv[1], json.load(open(sys.argv[2]))
cfg = json.load(open(model + "/config.json"))
with open(model + "/model.safetensors", "rb") as f:
    hdr = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
params = 0
for k, v in hdr.items():
    if k != "__metadata__":
        n = 1
        for s in v["shape"]:
            n *= s
        params += n
hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
kv_layer = 2 * cfg["num_key_value_heads"] * hd * 4
want = {"parameters": params, "kv_cache_bytes_per_token_per_layer": kv_layer,
        "kv_cache_bytes_per_token": kv_layer * cfg["num_hidden_layers"], "weight_bytes": 4 * params,
        "num_key_value_heads": cfg["num_key_value_heads"], "head_dim": hd, "dtype": "F32"}
bad = {k: (out.get(k), v) for k, v in want.items() if out.get(k) != v}
print(("FAIL " if bad else "ok   ") + model.split("/")[-1], bad or want)
sys.exit(1 if bad else 0)
PY
    then :; else fails=$((fails + 1)); fi
done
rm -f /tmp/inspect.$$
[ "$fails" -eq 0 ]
