#!/usr/bin/env bash
# Bad input must give exactly one error line on stderr naming the file and
# the field, nothing on stdout, and exit status 1. Run under the ASan build
# too, where any memory error aborts the run instead.
# usage: cli_errors.sh TRANSMLA PYTHON
set -u
bin=$1 py=$2
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../data/models/stories260K
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" "$here/make_bad_models.py" "$model" "$work" || exit 1
toks=$model/eval.u16
fails=0 passes=0

# expect_error NAME "needle1|needle2|..." COMMAND...
expect_error() {
    local name=$1 needles=$2
    shift 2
    "$@" >"$work/out" 2>"$work/err"
    local rc=$? lines
    lines=$(wc -l <"$work/err")
    local ok=1 why=""
    [ "$rc" -eq 1 ] || { ok=0; why="exit status $rc"; }
    [ "$lines" -eq 1 ] || { ok=0; why="$why; $lines stderr lines"; }
    [ ! -s "$work/out" ] || { ok=0; why="$why; stdout not empty"; }
    grep -q '^transmla: error: ' "$work/err" || { ok=0; why="$why; no 'transmla: error:' prefix"; }
    IFS='|' read -ra parts <<<"$needles"
    for n in "${parts[@]}"; do
        grep -qF -- "$n" "$work/err" || { ok=0; why="$why; missing '$n'"; }
    done
    if [ $ok -eq 1 ]; then
        passes=$((passes + 1))
        echo "ok    $name: $(cat "$work/err")"
    else
        fails=$((fails + 1))
        echo "FAIL  $name: $why"
        sed 's/^/      /' "$work/err"
    fi
}

b=$work
expect_error truncated "$b/truncated/model.safetensors|truncated" \
    "$bin" eval --model-path "$b/truncated" --tokens "$toks" --seqlen 64
expect_error offsets_lie "$b/offsets_lie/model.safetensors|model.norm.weight|data_offsets" \
    "$bin" eval --model-path "$b/offsets_lie" --tokens "$toks" --seqlen 64
expect_error shape_lies "$b/shape_lies/model.safetensors|model.norm.weight|shape [65]" \
    "$bin" eval --model-path "$b/shape_lies" --tokens "$toks" --seqlen 64
expect_error unknown_dtype "$b/unknown_dtype/model.safetensors|model.norm.weight|unknown dtype 'F99'" \
    "$bin" inspect --model-path "$b/unknown_dtype"
expect_error int_dtype "$b/int_dtype/model.safetensors|model.norm.weight|dtype I32" \
    "$bin" inspect --model-path "$b/int_dtype"
expect_error missing_tensor "missing tensor 'model.layers.2.mlp.up_proj.weight'|config.json" \
    "$bin" eval --model-path "$b/missing_tensor" --tokens "$toks" --seqlen 64
expect_error config_mismatch "model.layers.0.self_attn.k_proj.weight|shape [32, 64]|config.json|num_key_value_heads=2|[16, 64]" \
    "$bin" eval --model-path "$b/config_mismatch" --tokens "$toks" --seqlen 64
expect_error extra_layer "model.layers.4.|config.json|num_hidden_layers=4" \
    "$bin" inspect --model-path "$b/extra_layer"
expect_error bad_json "$b/bad_json/config.json|not valid JSON" \
    "$bin" inspect --model-path "$b/bad_json"
expect_error no_weights "$b/no_weights|no model.safetensors" \
    "$bin" inspect --model-path "$b/no_weights"
expect_error no_model_dir "$b/absent/config.json|cannot open|config.json" \
    "$bin" inspect --model-path "$b/absent"

# Config sizes: a real beyond the integer range is an error (casting it was
# undefined behaviour), and absurd sizes are refused before anything is
# allocated. The address space is capped so an attempt fails fast instead of
# swapping (not under ASan, whose shadow memory needs terabytes of it).
small_mem() { (if [ -z "${TM_SANITIZED:-}" ]; then ulimit -v 4000000; fi; exec timeout 60 "$@"); }
mkdir -p "$b/cfg_real" "$b/cfg_2e30" "$b/cfg_params"
echo '{"model_type":"llama","hidden_size":3e84,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":8,"vocab_size":16}' \
    >"$b/cfg_real/config.json"
echo '{"model_type":"llama","hidden_size":1073741824,"num_hidden_layers":1073741824,"num_attention_heads":8,"intermediate_size":1073741824,"vocab_size":1073741824}' \
    >"$b/cfg_2e30/config.json"
echo '{"model_type":"llama","hidden_size":1048576,"num_hidden_layers":2,"num_attention_heads":8,"intermediate_size":4194304,"vocab_size":67108864}' \
    >"$b/cfg_params/config.json"
expect_error config_real_out_of_range "$b/cfg_real/config.json|'hidden_size'|3e+84|out of range" \
    "$bin" plan --model-path "$b/cfg_real"
expect_error plan_fields_near_2e30 "$b/cfg_2e30/config.json|'hidden_size'|1073741824|above the limit" \
    small_mem "$bin" plan --model-path "$b/cfg_2e30"
expect_error plan_too_many_params "$b/cfg_params/config.json|'vocab_size'|parameters|above the limit" \
    small_mem "$bin" plan --model-path "$b/cfg_params"

# qwen3 layouts the engine cannot run: a sliding window on some layers only,
# MoE layers that are not the last run of layers.
mkdir -p "$b/qwen3_window" "$b/qwen3_moe_pattern"
echo '{"model_type":"qwen3","hidden_size":64,"num_hidden_layers":4,"num_attention_heads":4,"intermediate_size":8,"vocab_size":16,"use_sliding_window":true,"sliding_window":32,"max_window_layers":2}' \
    >"$b/qwen3_window/config.json"
echo '{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":4,"num_attention_heads":4,"intermediate_size":8,"vocab_size":16,"num_experts":4,"num_experts_per_tok":2,"mlp_only_layers":[2]}' \
    >"$b/qwen3_moe_pattern/config.json"
expect_error qwen3_partial_window "$b/qwen3_window/config.json|'max_window_layers'|2 of 4 layers" \
    "$bin" plan --model-path "$b/qwen3_window"
expect_error qwen3_moe_dense_between "$b/qwen3_moe_pattern/config.json|'mlp_only_layers'|'decoder_sparse_step'" \
    "$bin" plan --model-path "$b/qwen3_moe_pattern"

# A preset number beyond int wrapped (4294967297 read as 1 node).
echo '{"layout": {"nodes": 4294967297}}' >"$b/wrap_preset.json"
expect_error preset_int_wraps "$b/wrap_preset.json|layout.nodes|at most 2147483647" \
    "$bin" plan --preset "$b/wrap_preset.json"

# An added token's id sized the id table: 2^30 - 1 allocated 10 GiB.
mkdir -p "$b/tok_big_id"
echo '{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"added_tokens":[{"id":1073741823,"content":"<x>"}]}' \
    >"$b/tok_big_id/tokenizer.json"
echo a >"$b/a.txt"
expect_error tokenizer_added_id_huge "$b/tok_big_id/tokenizer.json|added_tokens|not an integer id" \
    small_mem "$bin" tokenize --tokenizer "$b/tok_big_id" --input "$b/a.txt" --ids

expect_error token_out_of_vocab "$b/oov.u16|token 2 has id 600|vocab_size 512" \
    "$bin" eval --model-path "$model" --tokens "$b/oov.u16" --seqlen 2
expect_error token_odd_size "$b/odd.u16|not a multiple of 2" \
    "$bin" eval --model-path "$model" --tokens "$b/odd.u16" --seqlen 2
expect_error tokens_missing "$b/none.u16|cannot open" \
    "$bin" eval --model-path "$model" --tokens "$b/none.u16"
expect_error too_many_windows "--nseq 17|8192" \
    "$bin" eval --model-path "$model" --tokens "$toks" --seqlen 512 --nseq 17
expect_error bad_device "--device gpu|cpu or cuda" \
    "$bin" eval --model-path "$model" --tokens "$toks" --device gpu
if ! "$bin" version | grep -q "GPU(s):"; then # built without CUDA, or no GPU here
    expect_error no_gpu "--device cuda" "$bin" eval --model-path "$model" --tokens "$toks" --device cuda
    expect_error no_gpu_finetune "--device cuda" "$bin" finetune --model-path "$model" --tokens "$toks" \
        --save-path "$b/ft_gpu" --device cuda
fi
expect_error unknown_flag "unknown option '--seqlne'" \
    "$bin" eval --model-path "$model" --tokens "$toks" --seqlne 5
expect_error bad_integer "--seqlen 'abc'" \
    "$bin" eval --model-path "$model" --tokens "$toks" --seqlen abc
expect_error missing_required "--tokens" \
    "$bin" eval --model-path "$model"
expect_error bad_token_dtype "--token-dtype 'u8'" \
    "$bin" eval --model-path "$model" --tokens "$toks" --token-dtype u8


# Numbers: every numeric flag finite and in range, refused before any work.
# Commands that start MPI run without LSan's leak check (tests/CMakeLists.txt
# says why); address checking stays on.
mpi="env ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
cal=(--cal-tokens "$model/calib.u16")
expect_error balance_inf "--balance-kv-ratio '1e400'|finite positive" \
    $mpi "$bin" convert --model-path "$model" --save-path "$b/out" "${cal[@]}" --balance-kv-ratio 1e400
expect_error cal_batch_zero "--cal-batch-size 0 must be at least 1" \
    $mpi "$bin" convert --model-path "$model" --save-path "$b/out" "${cal[@]}" --cal-batch-size 0
expect_error fit_lr_inf "--rorope-fit-lr 'inf'|finite positive" \
    $mpi "$bin" convert --model-path "$model" --save-path "$b/out" "${cal[@]}" --rorope-fit-lr inf
expect_error ppl_seqlen_negative "--ppl-seqlen -1 must be at least 2" \
    $mpi "$bin" convert --model-path "$model" --save-path "$b/out" "${cal[@]}" --ppl-seqlen -1
expect_error cal_nsamples_negative "--cal-nsamples -5 must not be negative" \
    $mpi "$bin" convert --model-path "$model" --save-path "$b/out" "${cal[@]}" --cal-nsamples -5
expect_error mem_per_rank_inf "--mem-per-rank|'inf'" \
    $mpi "$bin" convert --model-path "$model" --save-path "$b/out" "${cal[@]}" --mem-per-rank inf
expect_error learning_rate_nan "--learning-rate 'nan'|finite positive" \
    $mpi "$bin" finetune --model-path "$model" --save-path "$b/ft" --tokens "$toks" --learning-rate nan
expect_error warmup_inf "--warmup-ratio 'inf'|finite non-negative" \
    $mpi "$bin" finetune --model-path "$model" --save-path "$b/ft" --tokens "$toks" --warmup-ratio inf
expect_error grad_accum_zero "--gradient-accumulation-steps 0 must be at least 1" \
    $mpi "$bin" finetune --model-path "$model" --save-path "$b/ft" --tokens "$toks" --gradient-accumulation-steps 0
expect_error recompute_bad "--recompute 'sometimes'|expected auto, on or off" \
    $mpi "$bin" finetune --model-path "$model" --save-path "$b/ft" --tokens "$toks" --recompute sometimes
expect_error eval_seqlen_one "--seqlen 1 must be at least 2" \
    "$bin" eval --model-path "$model" --tokens "$toks" --seqlen 1
expect_error eval_batch_zero "--batch-size 0 must be at least 1" \
    "$bin" eval --model-path "$model" --tokens "$toks" --batch-size 0
expect_error int_overflow "--nseq '4294967297'|expected an integer" \
    "$bin" eval --model-path "$model" --tokens "$toks" --nseq 4294967297
expect_error generate_negative "--max-new-tokens -1 must not be negative" \
    "$bin" generate --model-path "$model" --prompt-ids 1,2 --max-new-tokens -1
expect_error plan_nodes_zero "--nodes 0 must be at least 1" \
    "$bin" plan --model-path "$model" --nodes 0
expect_error plan_stages_wraps "--stages '4294967297'" \
    "$bin" plan --model-path "$model" --stages 4294967297
expect_error tokenize_seqlen_one "--seqlen 1 must be at least 2" \
    "$bin" tokenize --tokenizer "$model" --input "$toks" --ids --seqlen 1

# NaN/Inf in weights, statistics, results, exports and perplexities: an
# error naming what, and no output folder (complete or temporary) left.
expect_error nan_weight "$b/nan_weight/model.safetensors|model.layers.1.self_attn.q_proj.weight|NaN/Inf" \
    "$bin" eval --model-path "$b/nan_weight" --tokens "$toks" --seqlen 64
expect_error ppl_nan "$b/huge_key_weight|perplexity is NaN" \
    "$bin" eval --model-path "$b/huge_key_weight" --tokens "$toks" --seqlen 64 --quiet
# no output of any kind at SAVE: neither the folder nor SAVE.tmp-PID
expect_no_output() {
    local save=$1 left
    left=$(ls -d "$save" "$save".tmp-* 2>/dev/null)
    if [ -z "$left" ]; then
        passes=$((passes + 1))
        echo "ok    $(basename "$save"): no output folder left"
    else
        fails=$((fails + 1))
        echo "FAIL  $(basename "$save"): left $left"
    fi
}
small=(--cal-tokens "$model/calib.u16" --cal-nsamples 4 --cal-max-seqlen 64 --qk-mqa-dim 4 --freqfold 2
       --kv-lora-rank 16 --rorope-fit-steps 0 --quiet)
expect_error convert_ppl_nan "eval[original]|perplexity is NaN" \
    $mpi "$bin" convert --model-path "$b/huge_key_weight" --save-path "$b/c_ppl" "${small[@]}" \
    --eval-tokens "$toks" --ppl-seqlen 64 --eval-nsamples 4
expect_no_output "$b/c_ppl"
expect_error convert_stats_nan "calibrate[keys]|layer 0|key covariance|NaN/Inf" \
    $mpi "$bin" convert --model-path "$b/huge_key_weight" --save-path "$b/c_stats" "${small[@]}"
expect_no_output "$b/c_stats"
expect_error convert_bkv_overflow "bkv-pca|layer 0|overflows|--balance-kv-ratio 1e+300" \
    $mpi "$bin" convert --model-path "$model" --save-path "$b/c_bkv" "${small[@]}" --balance-kv-ratio 1e300
expect_no_output "$b/c_bkv"
expect_error export_f16_overflow "export|model.layers.0.mlp.up_proj.weight|NaN/Inf as F16" \
    $mpi "$bin" convert --model-path "$b/f16_overflow" --save-path "$b/c_f16" "${small[@]}" --dtype float16
expect_no_output "$b/c_f16"

# gemma2 (shared gemma2-dev; fine-tuning runs it: finetune_gemma2): a missing sandwich norm is
# named with its field; gemma2's own tensors under a gemma2_mla config: the first MLA tensor whose
# shape disagrees is named; convert refuses an MLA input before any work.
g2=$here/../../shared/models/gemma2-dev
if [ -f "$g2/config.json" ]; then
    mkdir -p "$b/g2_as_mla"
    ln -s "$g2/model.safetensors" "$b/g2_as_mla/model.safetensors"
    "$py" -c "import json; c = json.load(open('$g2/config.json')); c.pop('head_dim')
c.update(model_type='gemma2_mla', kv_lora_rank=64, q_lora_rank=None, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64)
json.dump(c, open('$b/g2_as_mla/config.json', 'w'))" || exit 1
    expect_error gemma2_mla_shapes "model.layers.0.self_attn.q_proj.weight" \
        "$bin" eval --model-path "$b/g2_as_mla" --tokens "$g2/eval.u16" --seqlen 64 --nseq 1
    expect_error gemma2_mla_convert "model_type gemma2_mla is already MLA" \
        $mpi "$bin" convert --model-path "$b/g2_as_mla" --save-path "$b/g2_out" --cal-tokens "$g2/calib.u16"
    expect_no_output "$b/g2_out"
    mkdir -p "$b/g2_missing"
    cp "$g2/config.json" "$b/g2_missing/"
    "$py" -c "import sys; sys.path.insert(0, '$here/ref'); import tm_ref
W = tm_ref.read_safetensors('$g2/model.safetensors'); del W['model.layers.1.post_feedforward_layernorm.weight']
tm_ref.write_safetensors('$b/g2_missing/model.safetensors', W, 'F32')" || exit 1
    expect_error gemma2_missing_norm "model.layers.1.post_feedforward_layernorm.weight|hidden_size" \
        "$bin" eval --model-path "$b/g2_missing" --tokens "$g2/eval.u16" --seqlen 64 --nseq 1
else
    echo "skip  gemma2: $g2 not found"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
