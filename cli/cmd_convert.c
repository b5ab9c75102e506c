#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "convert/convert.h"
#include "io/error.h"

/* "auto" -> 0, else a positive int. */
static int parse_auto(const char *flag, const char *v, int *out) {
    if (strcmp(v, "auto") == 0) {
        *out = 0;
        return 0;
    }
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end || x <= 0 || x > 1 << 20) return tm_fail("--%s '%s': expected a positive integer or auto", flag, v);
    *out = (int)x;
    return 0;
}

static int parse_dtype(const char *v, TmDType *out) {
    if (!v) *out = TM_DTYPE_INVALID;
    else if (!strcmp(v, "float32") || !strcmp(v, "F32")) *out = TM_F32;
    else if (!strcmp(v, "bfloat16") || !strcmp(v, "BF16")) *out = TM_BF16;
    else if (!strcmp(v, "float16") || !strcmp(v, "F16")) *out = TM_F16;
    else return tm_fail("--dtype '%s': expected float32, bfloat16 or float16", v);
    return 0;
}

int cmd_convert(int argc, char **argv) {
    ConvertSettings s = {.model_path = TRANSMLA_DEFAULT_MODEL, .cal_seqlen = 256, .cal_nsamples = 128, .cal_batch = 8,
                         .ppl_seqlen = 2048, .eval_batch = 4, .qk_mqa_dim = 64, .kv_lora_rank = 512,
                         .balance_kv_ratio = 1.0, .rope_interleave = 1, .progress = 1};
    const char *kv_norm = "fit";
    const char *freqfold = "auto", *collapse = "auto", *balance = "1", *dtype = NULL, *token_dtype = "u16";
    int quiet = 0, split_interleave = 0, shard_mb = 4096;
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &s.model_path, "DIR", "GQA model folder (default: the bundled bytelm-dev)", 0},
        {"save-path", ARG_STR, &s.save_path, "DIR", "output folder for the DeepSeek-V3 model", 1},
        {"overwrite", ARG_FLAG, &s.overwrite, "", "replace --save-path if it exists", 0},
        {"cal-tokens", ARG_STR, &s.cal_tokens, "FILE", "calibration token ids (raw little-endian)", 1},
        {"cal-max-seqlen", ARG_INT, &s.cal_seqlen, "N", "calibration window length (default 256)", 0},
        {"cal-nsamples", ARG_INT, &s.cal_nsamples, "K",
         "calibration windows, consecutive from the start (default 128; 0 = all)", 0},
        {"cal-batch-size", ARG_INT, &s.cal_batch, "B", "calibration windows per micro-batch (default 8)", 0},
        {"eval-tokens", ARG_STR, &s.eval_tokens, "FILE", "evaluation token ids; omit to skip perplexities", 0},
        {"ppl-seqlen", ARG_INT, &s.ppl_seqlen, "N", "evaluation window length (default 2048)", 0},
        {"eval-nsamples", ARG_INT, &s.eval_nsamples, "K", "evaluation windows (default: all complete ones)", 0},
        {"eval-batch-size", ARG_INT, &s.eval_batch, "B", "evaluation windows per micro-batch (default 4)", 0},
        {"token-dtype", ARG_STR, &token_dtype, "u16|u32", "width of the ids in the token files (default u16)", 0},
        {"qk-mqa-dim", ARG_INT, &s.qk_mqa_dim, "r", "rope head width kept by RoRoPE (default 64)", 0},
        {"collapse", ARG_STR, &collapse, "N|auto", "frequency stride of the rope head (default auto = head_dim/r)", 0},
        {"freqfold", ARG_STR, &freqfold, "N|auto",
         "frequencies per RoRoPE bucket (default auto: best of c, 2c, 4c, ... by eval ppl)", 0},
        {"kv-lora-rank", ARG_INT, &s.kv_lora_rank, "R", "latent width after BKV-PCA (default 512)", 0},
        {"balance-kv-ratio", ARG_STR, &balance, "X", "key/value norm balance before the joint PCA (default 1)", 0},
        {"q-lora-rank", ARG_INT, &s.q_lora_rank, "Rq", "query low rank by PCA (default 0: plain q_proj)", 0},
        {"dtype", ARG_STR, &dtype, "T", "output dtype float32|bfloat16|float16 (default: as the input)", 0},
        {"rope-half-split", ARG_FLAG, &split_interleave, "",
         "export rope dims in rotate-half order (rope_interleave false); default interleaved as DeepSeek", 0},
        {"kv-norm", ARG_STR, &kv_norm, "fit|rms",
         "export's kv_a_layernorm: fit kv_b_proj to it by least squares (default), or weight = latent RMS", 0},
        {"max-shard-mb", ARG_INT, &shard_mb, "MB", "largest output safetensors shard (default 4096)", 0},
        {"quiet", ARG_FLAG, &quiet, "", "no progress lines on stderr", 0},
    };
    const char *usage =
        "usage: transmla convert --save-path DIR --cal-tokens FILE [--model-path DIR] [--eval-tokens FILE] [options]\n\n"
        "Convert a GQA model (llama, qwen2, mistral, mixtral) to DeepSeek-V3 multi-head latent attention:\n"
        "RoRoPE (partial RoPE by rotation), BKV-PCA (joint low-rank K/V), absorb, export. Prints the\n"
        "perplexity of each stage and writes DIR/transmla_report.json.";
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0], usage) || parse_auto("freqfold", freqfold, &s.freqfold) ||
        parse_auto("collapse", collapse, &s.collapse) || parse_dtype(dtype, &s.dtype) ||
        token_dtype_parse(token_dtype, &s.token_dtype))
        return cli_fail();
    char *end;
    s.balance_kv_ratio = strtod(balance, &end);
    if (*end || !(s.balance_kv_ratio > 0)) {
        tm_fail("--balance-kv-ratio '%s': expected a positive number", balance);
        return cli_fail();
    }
    if (shard_mb < 1) {
        tm_fail("--max-shard-mb must be positive");
        return cli_fail();
    }
    s.max_shard_bytes = (uint64_t)shard_mb << 20;
    s.rope_interleave = !split_interleave;
    if (strcmp(kv_norm, "fit") && strcmp(kv_norm, "rms")) {
        tm_fail("--kv-norm '%s': expected fit or rms", kv_norm);
        return cli_fail();
    }
    s.kv_norm_fit = !strcmp(kv_norm, "fit");
    s.progress = !quiet;
    if (s.eval_tokens && !*s.eval_tokens) s.eval_tokens = NULL; /* --eval-tokens "": none */
    if (s.cal_nsamples < 0 || s.eval_nsamples < 0) {
        tm_fail("--cal-nsamples and --eval-nsamples must not be negative");
        return cli_fail();
    }
    return convert_run(&s) ? cli_fail() : 0;
}
