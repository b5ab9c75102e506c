#!/usr/bin/env bash
# A chat fine-tune on the SmolTalk-format fixture (tests/data/chat) with the
# real Qwen3 tokenizer (ChatML picked from tokenizer_config.json): it runs,
# only assistant tokens carry loss (with all 5 packed rows in every step,
# each step's target count equals the rows' label count, which test_chat
# and chat_ref_* check token by token against an independent reference;
# and it is below the token count), the loss goes down, and the
# JSONL.gz form of the same data gives the same run.
# usage: finetune_chat.sh TRANSMLA PYTHON FIXTURES SHARED
set -euo pipefail
BIN=$1 PY=$2 FIX=$3 SHARED=$4
SRC=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "finetune_chat: FAIL: $*" >&2; exit 1; }

"$PY" "$SRC/tests/ref/make_chat_model.py" "$FIX/dsv3_noqlora_dense" "$SHARED/tokenizers/qwen3" "$work/model"
data=$SRC/tests/data/chat/smoltalk_tiny.jsonl
args=(--model-path "$work/model" --seq-len 128 --batch-size 5 --max-steps 6 --learning-rate 3e-3 --warmup-ratio 0)
"$BIN" finetune "${args[@]}" --data "$data" --save-path "$work/ft" 2>"$work/ft.log" || { cat "$work/ft.log"; fail "finetune failed"; }
cat "$work/ft.log"
grep -q "(chatml template)" "$work/ft.log" || fail "the ChatML template was not picked from tokenizer_config.json"
# rows and labels: the log's counts against the reference's
rows=$(sed -n 's/.* in \([0-9]*\) rows of 128 tokens, \([0-9]*\) labels.*/\1 \2/p' "$work/ft.log")
[ -n "$rows" ] || fail "no data line in the log"
read -r n_rows n_labels <<<"$rows"
"$PY" - "$work/ft/metrics.jsonl" "$n_rows" "$n_labels" <<'PYEOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
n_rows, n_labels = int(sys.argv[2]), int(sys.argv[3])
# all rows in every step: each step's targets are exactly the labelled tokens
assert n_rows == 5, f"expected the fixture to pack into 5 rows, got {n_rows}"
for r in recs:
    assert r["target_tokens"] == n_labels, f"step {r['step']}: {r['target_tokens']} target tokens != {n_labels} labels"
    assert r["target_tokens"] < r["tokens"], "every token carries loss: the mask is not applied"
total = n_labels
first, last = recs[0]["loss"], recs[-1]["loss"]
assert last < first, f"loss did not go down: {first} -> {last}"
print(f"finetune_chat: {len(recs)} steps, loss {first:.3f} -> {last:.3f}, {total} target tokens of {recs[0]['tokens']} per step")
PYEOF
gzip -c "$data" >"$work/data.jsonl.gz"
"$BIN" finetune "${args[@]}" --quiet --data "$work/data.jsonl.gz" --save-path "$work/ft_gz"
"$PY" "$SRC/tests/ref/compare_curves.py" "$work/ft/metrics.jsonl" "$work/ft_gz/metrics.jsonl" --exact
echo "finetune_chat: ok"
