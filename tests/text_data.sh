#!/usr/bin/env bash
# Text in, tokens out, end to end through the command line (issue 5):
#  - `transmla tokenize --ids` prints the ids Hugging Face's tokenizer gives
#    (the expected ids in tests/data/tokenizer/expected, made by
#    @huggingface/tokenizers; see tests/ref/make_tokenizer_expected.sh);
#  - an HDF5 token set of the wikitext-2 test split is readable by h5dump and
#    evaluates to exactly the perplexity of the same split read as text, and of
#    raw ids made independently in Python (bytelm-dev's tokenizer is the UTF-8
#    bytes, so Python can tokenize it: rows as Hugging Face's wikitext loader
#    gives them, joined with "\n\n");
#  - conversion calibrated on a text dataset gives bit-identical weights to the
#    same conversion calibrated on the token set of the same samples, and to
#    the same conversion on 2 MPI ranks (2 stages, each rank tokenizing);
#  - a token set made by another tokenizer, malformed tokenizer files, invalid
#    UTF-8 and empty datasets fail with one clear line, leaving nothing behind.
# usage: text_data.sh TRANSMLA PYTHON [MPIEXEC]
set -u
bin=$1 py=$2 mpiexec=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
shared=$here/../../shared
blm=$here/../data/models/bytelm-dev
wiki=$shared/data/wikitext-2
[ -f "$wiki/test.txt" ] || { echo "FAIL  $wiki/test.txt not found (../shared must sit beside the checkout)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
ok() { echo "ok    $1"; }
fail() { echo "FAIL  $1"; fails=$((fails + 1)); }

# --- tokenize --ids against Hugging Face's ids -------------------------------
for tok in mistral llama3 qwen3; do
    "$bin" tokenize --quiet --tokenizer "$shared/tokenizers/$tok" --input "$here/data/tokenizer/hostile.txt" --ids \
        >"$work/ids.json" || { fail "tokenize --ids $tok"; continue; }
    if "$py" -c "
import gzip, json, sys
exp = json.load(gzip.open(sys.argv[1]))['ids']; got = json.load(open(sys.argv[2]))
sys.exit(0 if got == exp else 1)" "$here/data/tokenizer/expected/$tok-hostile.json.gz" "$work/ids.json"; then
        ok "tokenize --ids $tok == Hugging Face on hostile.txt"
    else fail "tokenize --ids $tok differs from Hugging Face on hostile.txt"; fi
done

# --- token set: h5dump, and the same perplexity three ways ---------------------
"$bin" tokenize --quiet --tokenizer "$blm" --dataset wikitext2 --data-path "$wiki" --split test --output "$work/test.h5" \
    || fail "tokenize --output"
if h5dump -H "$work/test.h5" >"$work/h5.txt" 2>&1 && grep -q '"tokens"' "$work/h5.txt" && grep -q 'tokenizer_sha256' "$work/h5.txt"
then ok "h5dump reads the token set"; else fail "h5dump on the token set: $(head -3 "$work/h5.txt")"; fi
"$py" - "$wiki/test.txt" "$work/test.u16" <<'PY'
import sys
import array
# Hugging Face's wikitext rows: one per line with its "\n" (universal newlines);
# whitespace-only lines are empty rows, dropped.
rows = [l for l in open(sys.argv[1], encoding="utf-8").readlines() if l.strip()]
data = "\n\n".join(rows).encode("utf-8")
with open(sys.argv[2], "wb") as f:
    array.array("H", list(data)).tofile(f)
PY
ev() { "$bin" eval --model-path "$blm" --seqlen 512 --nseq 6 --json --quiet "$@" | "$py" -c "import json,sys; print(json.load(sys.stdin)['ppl'])"; }
p_set=$(ev --tokens "$work/test.h5") p_text=$(ev --dataset wikitext2 --data-path "$wiki") p_raw=$(ev --tokens "$work/test.u16")
if [ -n "$p_set" ] && [ "$p_set" = "$p_text" ] && [ "$p_set" = "$p_raw" ]; then
    ok "eval: token set, text and Python-made raw ids give ppl $p_set"
else fail "eval: token set $p_set, text $p_text, raw $p_raw differ"; fi

# --- calibration from text == calibration from the token set of its samples ---
# Under the sanitizers (TM_SANITIZED) the RoRoPE fit runs short: the same
# code in a fraction of the time; the release pass checks what it achieves.
fitq=(--attn-fit-steps 10)
if [ -n "${TM_SANITIZED:-}" ]; then fitq=(--rorope-fit-nsamples 4 --rorope-fit-steps 8 --fit rotation); fi
conv=(convert "${fitq[@]}" --quiet --model-path "$blm" --cal-max-seqlen 256 --cal-nsamples 8 --cal-batch-size 4 --qk-mqa-dim 32
      --freqfold 4 --kv-lora-rank 64 --eval-dataset none --overwrite)
# one thread, as each of the 2 ranks below: the comparison is about the topology
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$bin" "${conv[@]}" --save-path "$work/from_text" --cal-dataset wikitext2 \
    --cal-data-path "$wiki" --cal-split validation >/dev/null || fail "convert --cal-dataset wikitext2"
"$bin" tokenize --quiet --tokenizer "$blm" --dataset wikitext2 --data-path "$wiki" --split validation --samples 8 \
    --seqlen 256 --output "$work/cal.h5" || fail "tokenize --samples"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$bin" "${conv[@]}" --save-path "$work/from_set" --cal-tokens "$work/cal.h5" \
    >/dev/null || fail "convert --cal-tokens SET.h5"
if "$py" "$here/ref/compare_models.py" "$work/from_text" "$work/from_set" --exact >/dev/null; then
    ok "convert: --cal-dataset wikitext2 == --cal-tokens of its sampled token set (bitwise)"
else fail "convert from text and from its token set differ"; fi
if [ -n "$mpiexec" ]; then
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$mpiexec" --oversubscribe --allow-run-as-root -np 2 "$bin" "${conv[@]}" \
        --stages 2 --save-path "$work/from_text_np2" --cal-dataset wikitext2 --cal-data-path "$wiki" --cal-split validation \
        >/dev/null || fail "convert --cal-dataset wikitext2 on 2 ranks"
    if "$py" "$here/ref/compare_models.py" "$work/from_text" "$work/from_text_np2" --exact >/dev/null; then
        ok "convert on text: 2 ranks x 2 stages == one process (bitwise)"
    else fail "convert on text: 2 ranks differ from one process"; fi
fi
if [ "$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['settings']['cal_dataset'])" "$work/from_text/transmla_report.json")" = wikitext2 ]
then ok "report names the calibration dataset"; else fail "report's settings.cal_dataset"; fi

# --- real tokenizers end to end: tiny random models with their vocabularies ---
for spec in mistral:mistral llama3:llama; do
    tok=${spec%%:*} mt=${spec##*:} m=$work/model-$tok
    "$py" "$here/ref/make_tokenizer_model.py" "$shared/tokenizers/$tok" "$m" --model-type "$mt" || fail "make $tok model"
    "$bin" tokenize --quiet --tokenizer "$m" --dataset wikitext2 --data-path "$wiki" --split test --output "$work/$tok.h5" \
        || fail "tokenize wikitext2 with $tok"
    evm() { "$bin" eval --model-path "$m" --seqlen 128 --nseq 4 --json --quiet "$@" | "$py" -c "import json,sys; print(json.load(sys.stdin)['ppl'])"; }
    a=$(evm --dataset wikitext2 --data-path "$wiki") b=$(evm --tokens "$work/$tok.h5")
    if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "$tok model: eval on text == eval on its token set ($a)"
    else fail "$tok model: eval on text $a, on the token set $b"; fi
    # the stream starts with BOS exactly when Hugging Face adds one (Mistral's template; not this Llama-3 file)
    first=$("$bin" tokenize --quiet --tokenizer "$m" --dataset wikitext2 --data-path "$wiki" --split test --ids |
            "$py" -c "import json,sys; print(json.load(sys.stdin)[0])")
    bos=$([ "$tok" = mistral ] && echo 1 || echo 128000)
    if { [ "$tok" = mistral ] && [ "$first" = "$bos" ]; } || { [ "$tok" != mistral ] && [ "$first" != "$bos" ]; }; then
        ok "$tok: the joined stream starts with id $first (BOS $bos added only by Mistral's template)"
    else fail "$tok: the joined stream starts with id $first"; fi
    "$bin" convert "${fitq[@]}" --quiet --model-path "$m" --save-path "$work/$tok-mla" --cal-dataset wikitext2 --cal-data-path "$wiki" \
        --cal-split validation --cal-nsamples 4 --cal-max-seqlen 64 --ppl-seqlen 128 --eval-nsamples 2 --qk-mqa-dim 8 \
        --freqfold 2 --kv-lora-rank 16 >/dev/null || fail "convert the $tok model on wikitext2"
    if "$py" -c "import json,sys; r=json.load(open(sys.argv[1])); p=r['ppl']; sys.exit(0 if all(k in p for k in ('original','mla')) else 1)" \
        "$work/$tok-mla/transmla_report.json" 2>/dev/null && cmp -s "$m/tokenizer.json" "$work/$tok-mla/tokenizer.json"
    then ok "$tok model: converted on wikitext2, perplexities reported, tokenizer copied"
    else fail "$tok model: conversion report or tokenizer copy"; fi
done
# generate encodes --prompt with the model's tokenizer: Hugging Face gives Mistral [1, 22557, 1526] for it
np=$("$bin" generate --model-path "$work/model-mistral" --prompt "Hello world" --max-new-tokens 2 --json 2>/dev/null |
     "$py" -c "import json,sys; print(json.load(sys.stdin)['prompt_tokens'])")
[ "$np" = 3 ] && ok "generate: the prompt is encoded by the model's tokenizer (BOS + 2 ids)" || fail "generate prompt tokens: $np"
grep -q 'H5T_STD_U32LE' <(h5dump -H "$work/llama3.h5") && grep -q 'H5T_STD_U16LE' <(h5dump -H "$work/mistral.h5") \
    && ok "token sets: uint32 ids for a 128k vocabulary, uint16 for 32k" || fail "token set id widths"

# --- refusals: one line naming the file, non-zero exit, nothing written --------
expect_error() { # name pattern command...
    local name=$1 pat=$2; shift 2
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] && printf '%s' "$err" | grep -q -- "$pat"; then
        ok "$name: $err"
    else fail "$name: rc $rc, wanted one line with '$pat', got: $err"; fi
}
"$bin" tokenize --quiet --tokenizer "$shared/tokenizers/mistral" --input "$here/data/tokenizer/hostile.txt" \
    --output "$work/mistral-hostile.h5" || fail "tokenize with mistral"
expect_error mismatched_tokenizer "re-tokenize" "$bin" eval --model-path "$blm" --tokens "$work/mistral-hostile.h5" --seqlen 64
expect_error samples_seqlen "samples of 256 tokens" \
    "$bin" "${conv[@]}" --save-path "$work/never" --cal-tokens "$work/cal.h5" --cal-max-seqlen 128
[ -e "$work/never" ] && fail "a refused conversion left $work/never"
mkdir -p "$work/badtok" "$work/nomerges"
printf '{"model": {"type": "BPE", "vocab": {' >"$work/badtok/tokenizer.json"
expect_error malformed_tokenizer "badtok/tokenizer.json" "$bin" tokenize --tokenizer "$work/badtok" --input "$here/data/tokenizer/hostile.txt" --ids
"$py" -c "import json,sys; d=json.load(open(sys.argv[1])); del d['model']['merges']; json.dump(d, open(sys.argv[2],'w'))" \
    "$blm/tokenizer.json" "$work/nomerges/tokenizer.json"
expect_error missing_merges "merges" "$bin" tokenize --tokenizer "$work/nomerges" --input "$here/data/tokenizer/hostile.txt" --ids
printf 'good text\n\xff\xfe bad bytes\n' >"$work/bad_utf8.txt"
expect_error invalid_utf8 "bad_utf8.txt.*invalid UTF-8" "$bin" tokenize --tokenizer "$blm" --input "$work/bad_utf8.txt" --ids
printf '\n\n   \n\n' >"$work/empty.txt"
expect_error empty_dataset "empty.txt" "$bin" eval --model-path "$blm" --dataset text --data-path "$work/empty.txt"
expect_error unknown_dataset "expected wikitext2" "$bin" eval --model-path "$blm" --dataset wikitext3 --data-path "$wiki"
expect_error no_train_split "train" \
    "$bin" "${conv[@]}" --save-path "$work/never" --cal-dataset wikitext2 --cal-data-path "$wiki"
[ -e "$work/never" ] && fail "a refused conversion left $work/never"
"$bin" tokenize --quiet --tokenizer "$blm" --input "$here/data/tokenizer/hostile.txt" --output "$work/nope/x.h5" 2>/dev/null \
    && fail "writing into a missing folder succeeded"
ls "$work/nope" >/dev/null 2>&1 && fail "a failed token-set write left $work/nope"

echo "text_data: $fails failure(s)"
[ "$fails" -eq 0 ]
