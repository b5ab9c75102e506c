#!/usr/bin/env bash
# Regenerate tests/data/tokenizer/expected/*.json.gz from Hugging Face's
# JavaScript tokenizer (needs node and the npm registry). Run from anywhere:
#   bash tests/ref/make_tokenizer_expected.sh [SHARED_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${1:-$repo/../shared}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent @huggingface/tokenizers@0.2.0 >/dev/null)
cp "$here/hf_tokenize.mjs" "$work/"
out=$repo/tests/data/tokenizer/expected
mkdir -p "$out"
cd "$work"
for tok in mistral llama3 qwen3; do
    node "$work/hf_tokenize.mjs" "$shared/tokenizers/$tok" "$repo/tests/data/tokenizer/hostile.txt" "$out/$tok-hostile.json.gz"
    node "$work/hf_tokenize.mjs" "$shared/tokenizers/$tok" "$shared/data/wikitext-2/test.txt" "$out/$tok-wikitext2-test.json.gz"
done
