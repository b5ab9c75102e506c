#!/usr/bin/env bash
# Encode speed of our tokenizer against Hugging Face's JavaScript tokenizer
# (@huggingface/tokenizers 0.2.0, the reference of tests/test_tokenizer.c)
# on wikitext-2 test.txt, one core each, best of 3 runs.
#   bash bench/bench_tokenizer.sh [BUILD_DIR] [SHARED_DIR]
# Needs node and npm (the package is installed into a temporary folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${1:-$repo/build}
shared=${2:-$repo/../shared}
text=$shared/data/wikitext-2/test.txt
reps=3
[ -x "$build/bench_tokenizer" ] || { echo "no $build/bench_tokenizer: build the bench_tokenizer target" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent @huggingface/tokenizers@0.2.0 >/dev/null)
cat > "$work/bench.mjs" <<'JS'
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "fs";
const [, , dir, input, reps] = process.argv;
const read = (f) => JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8"));
const text = fs.readFileSync(input, "utf8");
const bytes = Buffer.byteLength(text);
let best = Infinity;
for (let r = 0; r < Number(reps); r++) {
  const tok = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json")); // cold cache, like ours
  const t0 = process.hrtime.bigint();
  tok.encode(text, { add_special_tokens: false });
  best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
}
console.log((bytes / best / 1e6).toFixed(2));
JS
printf "%-10s %12s %16s %8s\n" tokenizer "ours MB/s" "reference MB/s" ratio
for tok in mistral llama3 qwen3; do
    ours=$(taskset -c 0 "$build/bench_tokenizer" "$shared/tokenizers/$tok" "$text" $reps | sed -E 's/.*= ([0-9.]+) MB\/s.*/\1/')
    ref=$(cd "$work" && taskset -c 0 node bench.mjs "$shared/tokenizers/$tok" "$text" $reps)
    printf "%-10s %12s %16s %8s\n" "$tok" "$ours" "$ref" "$(awk -v a="$ours" -v b="$ref" 'BEGIN { printf "%.1fx", a / b }')"
done
