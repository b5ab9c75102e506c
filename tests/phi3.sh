#!/usr/bin/env bash
# phi3 (Phi-3 / Phi-4 layout: fused qkv_proj and gate_up_proj, partial
# rotary) through convert, each number against an independent one.
#  fixtures: on the random phi3 fixtures (tests/ref/make_fixtures.py)
#   - one kv head, qk_mqa_dim = the rotary dims, freqfold 1 (phi3_bf16,
#     partial_rotary_factor 0.5, its window removed since DeepSeek attention
#     has none): RoRoPE ppl == original, and at kv_lora_rank 2*d - r
#     MLA == RoRoPE (1e-5: fp32 through rotated weights, measured ~1e-7);
#   - the same with phi3 (0.75) cut to its first kv head, r = 12;
#   - phi3 (0.75, two kv heads) at kv_lora_rank 2*G*d - r: MLA == RoRoPE,
#     and the exported DeepSeek-V3 folder read by tests/ref/tm_ref.py gives
#     the engine's perplexity and the report's ppl.mla_native (1e-5);
#   - a qk_mqa_dim that does not divide the rotary dims: one error line.
#  repack: ../shared/models/bytelm-dev repacked as phi3 by
#   tests/ref/repack_phi3.py (partial_rotary_factor 1.0) evaluates and
#   converts to exactly bytelm-dev's numbers, exported files byte-identical
#   (same bits in, same arithmetic: equality, no tolerance). Skipped (77)
#   without ../shared.
# usage: phi3.sh fixtures|repack TRANSMLA PYTHON FIXTURES_DIR
set -u
mode=$1 bin=$2 py=$3 fixtures=$4
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
jget() { "$py" -c "import json, sys; d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d = d[k]
print(d)" "$1" "$2"; }
close() { # what a b rel_tol
    if "$py" -c "import sys; a, b, t = map(float, sys.argv[1:4]); sys.exit(0 if abs(a - b) <= t * abs(b) else 1)" "$2" "$3" "$4"
    then ok "$1: $2 vs $3 (rel tol $4)"; else bad "$1: $2 vs $3 (rel tol $4)"; fi
}
same() { if [ "$2" = "$3" ]; then ok "$1: $2"; else bad "$1: $2 vs $3"; fi; }

if [ "$mode" = fixtures ]; then
    "$py" -c "
import numpy as np, sys
rng = np.random.default_rng(7)
for name, n in (('calib', 8 * 64), ('eval', 4 * 64)):
    rng.integers(0, 64, n).astype('<u2').tofile(sys.argv[1] + '/' + name + '.u16')" "$work"
    conv() { # model out flags...
        local m=$1 out=$2
        shift 2
        "$bin" convert --quiet --model-path "$m" --save-path "$out" --cal-tokens "$work/calib.u16" --cal-max-seqlen 64 \
            --cal-nsamples 0 --eval-tokens "$work/eval.u16" --ppl-seqlen 64 "$@" >"$work/log" 2>&1 ||
            { bad "convert $m $*"; show "$work/log"; }
    }
    cp -r "$fixtures/phi3_bf16" "$work/g1"
    "$py" -c "
import json, sys
p = sys.argv[1] + '/config.json'; c = json.load(open(p)); c['sliding_window'] = None
json.dump(c, open(p, 'w'))" "$work/g1"
    conv "$work/g1" "$work/g1_out" --qk-mqa-dim 4 --freqfold 1 --kv-lora-rank 12 --fit rotation
    rep=$work/g1_out/transmla_report.json
    close "phi3_bf16 (rotary 4 of 8), one kv head, r = 4: RoRoPE == original" "$(jget "$rep" ppl.rorope)" \
        "$(jget "$rep" ppl.original)" 1e-5
    close "phi3_bf16 kv_lora_rank 2*d-r: MLA == RoRoPE" "$(jget "$rep" ppl.mla)" "$(jget "$rep" ppl.rorope)" 1e-5

    # the 0.75 fixture cut to its first kv head: r = the 12 rotary dims, freqfold 1
    "$py" -c "
import json, os, sys
sys.path.insert(0, sys.argv[3])
import tm_ref
src, dst = sys.argv[1], sys.argv[2]
c = json.load(open(src + '/config.json'))
H, G, d = c['num_attention_heads'], c['num_key_value_heads'], c['head_dim']
W = tm_ref.read_model_weights(src)
for k in [k for k in W if k.endswith('qkv_proj.weight')]:
    W[k] = W[k][list(range(H * d)) + list(range(H * d, H * d + d)) + list(range((H + G) * d, (H + G) * d + d))]
c['num_key_value_heads'] = 1
os.makedirs(dst)
tm_ref.write_safetensors(dst + '/model.safetensors', W, 'F32')
json.dump(c, open(dst + '/config.json', 'w'))" "$fixtures/phi3" "$work/g1_075" "$here/ref"
    conv "$work/g1_075" "$work/g1_075_out" --qk-mqa-dim 12 --freqfold 1 --kv-lora-rank 20 --fit rotation
    rep=$work/g1_075_out/transmla_report.json
    close "phi3 cut to one kv head (rotary 12 of 16), r = 12: RoRoPE == original" "$(jget "$rep" ppl.rorope)" \
        "$(jget "$rep" ppl.original)" 1e-5
    close "phi3 one kv head, kv_lora_rank 2*d-r: MLA == RoRoPE" "$(jget "$rep" ppl.mla)" "$(jget "$rep" ppl.rorope)" 1e-5

    conv "$fixtures/phi3" "$work/p_out" --qk-mqa-dim 4 --freqfold auto --kv-lora-rank 60 --attn-fit-steps 20
    rep=$work/p_out/transmla_report.json
    close "phi3 (rotary 12 of 16, 2 kv heads) kv_lora_rank 2*G*d-r: MLA == RoRoPE" "$(jget "$rep" ppl.mla)" \
        "$(jget "$rep" ppl.rorope)" 1e-5
    ours=$("$bin" eval --quiet --json --model-path "$work/p_out" --tokens "$work/eval.u16" --seqlen 64 | "$py" -c "import json, sys; print(json.load(sys.stdin)['ppl'])")
    theirs=$("$py" "$here/ref/tm_ref.py" ppl "$work/p_out" "$work/eval.u16" --seqlen 64 --nseq 4 | "$py" -c "import json, sys; print(json.load(sys.stdin)['ppl'])")
    close "phi3 export, engine vs numpy DeepSeek-V3" "$ours" "$theirs" 1e-5
    close "phi3 report mla_native vs numpy" "$(jget "$rep" ppl.mla_native)" "$theirs" 1e-5
    same "phi3 export is stock deepseek_v3" "$(jget "$work/p_out/config.json" model_type)" deepseek_v3

    err=$("$bin" convert --model-path "$fixtures/phi3" --save-path "$work/bad" --cal-tokens "$work/calib.u16" \
        --cal-max-seqlen 64 --eval-tokens "$work/eval.u16" --ppl-seqlen 64 --qk-mqa-dim 8 2>&1 >/dev/null)
    if [ $? -ne 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && [[ $err == *"rotary dims"* ]] && [ ! -e "$work/bad" ]
    then ok "qk_mqa_dim 8 with 12 rotary dims refused: $err"; else bad "qk_mqa_dim 8 with 12 rotary dims: '$err'"; fi
else
    blm=$here/../../shared/models/bytelm-dev
    [ -f "$blm/model.safetensors" ] || { echo "SKIP  $blm not found (../shared must sit beside the checkout)"; exit 77; }
    "$py" "$here/ref/repack_phi3.py" "$blm" "$work/phi3" >/dev/null || bad "repack_phi3.py"
    ev() { "$bin" eval --quiet --json --model-path "$1" --tokens "$blm/eval.u16" --seqlen 512 --nseq 4 |
        "$py" -c "import json, sys; print(json.load(sys.stdin)['ppl'])"; }
    same "eval (4 x 512): phi3 repack == bytelm-dev" "$(ev "$work/phi3")" "$(ev "$blm")"
    for m in "$blm" "$work/phi3"; do
        "$bin" convert --quiet --model-path "$m" --save-path "$work/out_$(basename "$m")" --cal-tokens "$blm/calib.u16" \
            --cal-max-seqlen 256 --cal-nsamples 8 --eval-tokens "$blm/eval.u16" --ppl-seqlen 512 --eval-nsamples 4 \
            --qk-mqa-dim 32 --freqfold 4 --kv-lora-rank 64 --fit none >"$work/log" 2>&1 || { bad "convert $m"; show "$work/log"; }
    done
    for k in original rorope mla mla_native; do
        same "convert ppl.$k: phi3 repack == bytelm-dev" "$(jget "$work/out_phi3/transmla_report.json" ppl.$k)" \
            "$(jget "$work/out_bytelm-dev/transmla_report.json" ppl.$k)"
    done
    for f in model.safetensors config.json; do
        if cmp -s "$work/out_phi3/$f" "$work/out_bytelm-dev/$f"; then ok "exported $f byte-identical"; else bad "exported $f differs"; fi
    done
fi
echo "phi3 $mode: $fails failure(s)"
[ "$fails" -eq 0 ]
