#!/usr/bin/env bash
# `transmla plan` and the presets (issue 6, items 1-2):
#  - the shipped Qwen2.5-72B and Mixtral-8x7B configs on 4, 8 and 16 nodes of
#    4 ranks and 256 GiB fit, and the weights column of each layout adds up to
#    the parameter bytes Python computes from config.json on its own (bf16);
#    likewise Phi-4, Qwen3-8B, Qwen3-30B-A3B and Gemma-2-9B-it on 1, 2 and 4
#    nodes, whose GFLOP per evaluated token (2048-token windows, the head
#    included) and calibration TFLOP (the layers only)
#    must also equal Python's count (MoE: active
#    experts only; gemma2: four norms per layer, a tied head counted with the
#    last stage);
#  - a layout that cannot fit is refused with one line and exit 1; a stage
#    count that does not divide the ranks likewise;
#  - every preset in configs/presets parses; the ones that name a config plan
#    their recommended layout and it fits; convert --preset applies the
#    preset's settings and a flag overrides them; a misspelt key is an error.
# usage: plan_presets.sh TRANSMLA PYTHON
set -u
bin=$1 py=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$here/..
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
ok() { echo "ok    $1"; }
fail() { echo "FAIL  $1"; fails=$((fails + 1)); }

param_gib() { # bf16 bytes of every tensor the config implies, in GiB
    "$py" - "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
D, L, H, G = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]
d = c.get("head_dim", D // H); I, V = c["intermediate_size"], c["vocab_size"]
mt = c["model_type"]
assert not c.get("attention_bias") and not c.get("mlp_only_layers") and c.get("decoder_sparse_step", 1) == 1
bias = mt == "qwen2"
qk_norm = 2 * d if mt in ("qwen3", "qwen3_moe") else 0  # q_norm and k_norm weights
norms = 4 * D if mt == "gemma2" else 2 * D  # gemma2: input, post_attention, pre/post_feedforward
attn = D * H * d + 2 * D * G * d + H * d * D + (H * d + 2 * G * d if bias else 0) + qk_norm
if "num_local_experts" in c: E, W = c["num_local_experts"], I          # mixtral: experts of intermediate_size
elif "num_experts" in c: E, W = c["num_experts"], c["moe_intermediate_size"]  # qwen3_moe
else: E, W = 0, I
mlp = 3 * D * W * E + D * E if E else 3 * D * I  # experts and the router, or one dense MLP
# a tied head is counted again with the last stage, which holds its own copy of the embedding
n = V * D * 2 + D + L * (attn + mlp + norms)
print(2 * n / 2**30)
PY
}

gflop_tok() { # forward GFLOP per evaluated token (2048-token windows, the head included): only
    # num_experts_per_tok experts run; then the calibration's TFLOP in all: 3 passes of 128 x 256
    # tokens through the layers (no head)
    "$py" - "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
D, L, H, G = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]
d = c.get("head_dim", D // H)
if "num_experts" in c: mlp = 2 * D * c["num_experts"] + c["num_experts_per_tok"] * 6 * D * c["moe_intermediate_size"]
else: mlp = 6 * D * c["intermediate_size"]
layer = lambda T: 2 * D * (H * d + 2 * G * d) + 2 * H * d * D + mlp + 2 * H * d * (T + 1)  # causal: (T+1)/2 keys
print((L * layer(2048) + 2 * D * c["vocab_size"]) / 1e9, 3 * 128 * 256 * L * layer(256) / 1e12)
PY
}

for model in qwen2.5-72b-instruct mixtral-8x7b-v0.1; do
    cfg=$repo/configs/models/$model.config.json
    want=$(param_gib "$cfg")
    for nodes in 4 8 16; do
        out=$("$bin" plan --model-path "$cfg" --nodes "$nodes" --ranks-per-node 4 --mem-per-node 256G 2>&1); rc=$?
        got=$(printf '%s\n' "$out" | awk '$1 ~ /^[0-9]+$/ && NF == 9 { s += $4 } END { print s }')
        if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q '^fits' && "$py" -c "import sys; g, w = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(g - w) < 0.01 else 1)" "$got" "$want"
        then ok "plan $model on $nodes nodes: fits; weights $got GiB = $want from config.json"
        else fail "plan $model on $nodes nodes: rc $rc, weights $got vs $want: $out"; fi
    done
done

# issue 21: Phi-4 (phi3, fused qkv/gate_up), Qwen3-8B (QK-norm), Qwen3-30B-A3B (128 experts of
# moe_intermediate_size 768, not intermediate_size 6144); issue 22: Gemma-2-9B-it (sandwich norms,
# tied head, GeGLU); on 1, 2 and 4 nodes of 4 ranks and 256 GiB
for model in phi-4 qwen3-8b qwen3-30b-a3b gemma-2-9b-it; do
    cfg=$repo/configs/models/$model.config.json
    want=$(param_gib "$cfg")
    read -r wantf wantc < <(gflop_tok "$cfg")
    for nodes in 1 2 4; do
        out=$("$bin" plan --model-path "$cfg" --nodes "$nodes" --ranks-per-node 4 --mem-per-node 256G 2>&1); rc=$?
        got=$(printf '%s\n' "$out" | awk '$1 ~ /^[0-9]+$/ && NF == 9 { s += $4 } END { print s }')
        gotf=$(printf '%s\n' "$out" | awk '/^evaluation:/ { print $2 }')
        gotc=$(printf '%s\n' "$out" | awk '/^calibration:/ { print $10 }')
        if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q '^fits' && "$py" -c "import sys; g, w, gf, wf, gc, wc = map(float, sys.argv[1:]); sys.exit(0 if abs(g - w) < 0.01 and abs(gf - wf) < 0.006 and abs(gc - wc) < 0.0005 * wc else 1)" "$got" "$want" "$gotf" "$wantf" "$gotc" "$wantc"
        then ok "plan $model on $nodes nodes: fits; weights $got GiB = $want, $gotf GFLOP/token = $wantf, calibration $gotc TFLOP = $wantc from config.json"
        else fail "plan $model on $nodes nodes: rc $rc, weights $got vs $want, GFLOP/token $gotf vs $wantf, calibration TFLOP $gotc vs $wantc: $out"; fi
    done
done

expect_error() { # name pattern command...
    local name=$1 pat=$2; shift 2
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] && printf '%s' "$err" | grep -q -- "$pat"; then
        ok "$name: $err"
    else fail "$name: rc $rc, wanted one line with '$pat', got: $err"; fi
}
expect_error too_small "no layout of 4 ranks fits" \
    "$bin" plan --model-path "$repo/configs/models/qwen2.5-72b-instruct.config.json" --nodes 1 --ranks-per-node 4 --mem-per-node 256G
expect_error stages_divide "must divide" \
    "$bin" plan --model-path "$repo/configs/models/mixtral-8x7b-v0.1.config.json" --nodes 4 --ranks-per-node 4 --stages 3

for preset in "$repo"/configs/presets/*.json; do
    name=$(basename "$preset" .json)
    if grep -q '"config"' "$preset"; then
        if "$bin" plan --preset "$preset" 2>&1 | grep -q '^fits'; then ok "preset $name: its layout fits"
        else fail "preset $name: plan --preset does not fit"; fi
    elif "$bin" plan --preset "$preset" --model-path "$repo/configs/models/llama-3.2-1b.config.json" >/dev/null; then
        ok "preset $name parses"
    else fail "preset $name: $("$bin" plan --preset "$preset" --model-path "$repo/configs/models/llama-3.2-1b.config.json" 2>&1 | tail -1)"; fi
done

# convert --preset: llama-3.2-1b's kv_lora_rank 512 is too wide for bytelm-dev (at most 2*2*64 - 64 = 192) ...
blm=$repo/data/models/bytelm-dev
expect_error preset_applies "kv-lora-rank 512" "$bin" convert --preset "$repo/configs/presets/llama-3.2-1b.json" \
    --model-path "$blm" --save-path "$work/p" --cal-dataset none
# ... and a flag overrides it
"$bin" convert --quiet --preset "$repo/configs/presets/llama-3.2-1b.json" --kv-lora-rank 64 --model-path "$blm" \
    --save-path "$work/p" --cal-dataset none >/dev/null 2>&1 || fail "convert --preset with --kv-lora-rank 64"
if "$py" -c "import json,sys; s=json.load(open(sys.argv[1]))['settings']; sys.exit(0 if (s['qk_mqa_dim'], s['kv_lora_rank'], s['freqfold_requested']) == (64, 64, 4) else 1)" "$work/p/transmla_report.json" 2>/dev/null
then ok "convert --preset: qk_mqa_dim 64 and freqfold 4 from the preset, kv_lora_rank 64 from the flag"
else fail "convert --preset settings in the report"; fi
printf '{"model": "x", "convert": {"kv_lora_rnak": 512}}\n' >"$work/typo.json"
expect_error preset_typo "unknown key convert.kv_lora_rnak" "$bin" plan --preset "$work/typo.json" --model-path "$blm"

echo "plan_presets: $fails failure(s)"
[ "$fails" -eq 0 ]
