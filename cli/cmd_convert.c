#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/preset.h"
#include "cli/token_flags.h"
#include "dist/topology.h"
#include "io/base/error.h"
#include "io/base/interrupt.h"
#include "io/base/output_path.h"
#include "pipeline/convert.h"
#include "pipeline/plan.h"
#include "pipeline/stage_device.h"

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

static int convert_args(int argc, char **argv, ConvertSettings *out);

/* Calibration: a text dataset, a token file, or none (data-free). Evaluation:
 * what is named, else the calibration dataset's test split, else nothing. */
static int resolve_sources(TokenFlags *cal, TokenFlags *eval, const char *text_field, TmTokenDType dt,
                           ConvertSettings *s) {
    int have_cal, have_eval;
    s->data_free = cal->dataset && !strcmp(cal->dataset, "none");
    if (s->data_free) {
        if (cal->tokens || cal->data_path)
            return tm_fail("--cal-dataset none is data-free and takes no --cal-tokens or --cal-data-path");
        cal->dataset = NULL;
    }
    if (token_flags_resolve("cal", cal, text_field, dt, &s->cal, &have_cal)) return -1;
    if (!have_cal && !s->data_free)
        return tm_fail("no calibration data: give --cal-dataset NAME --cal-data-path PATH, --cal-tokens FILE, "
                       "or --cal-dataset none for a data-free conversion");
    if (eval->dataset && !strcmp(eval->dataset, "none")) {
        if (eval->tokens) return tm_fail("--eval-dataset none and --eval-tokens contradict each other");
        return 0;
    }
    if (eval->tokens && !*eval->tokens) return 0; /* --eval-tokens "": none */
    if (!eval->tokens && !eval->dataset && s->cal.dataset) eval->dataset = s->cal.dataset;
    if (eval->dataset && !eval->data_path && s->cal.dataset && !strcmp(eval->dataset, s->cal.dataset))
        eval->data_path = s->cal.data_path;
    return token_flags_resolve("eval", eval, text_field, dt, &s->eval, &have_eval);
}

/* Exit status of a conversion stopped by SIGTERM/SIGUSR1 with its progress
 * saved (sysexits' EX_TEMPFAIL: try again). */
#define EXIT_STOPPED 75

/* Under MPI every rank reaches the same error; rank 0 prints it. */
int cmd_convert(int argc, char **argv) {
    dist_init(&argc, &argv);
    tm_interrupt_install(); /* after MPI_Init, which may install handlers of its own */
    ConvertSettings s;
    int rc = convert_args(argc, argv, &s);
    if (!rc) rc = convert_run(&s);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rc == -1 && rank == 0) cli_fail();
    dist_finalize();
    return rc == CONVERT_STOPPED ? EXIT_STOPPED : rc ? 1 : 0;
}

/* The raw flags; ConvertSettings is made from them once all are parsed. */
typedef struct {
    ConvertSettings s;
    TokenFlags cal, eval;
    const char *preset_path, *mem_per_rank, *text_field, *kv_norm, *resume, *fit_lr, *fit_schedule;
    const char *fit, *attn_fit_lr, *attn_fit_schedule, *attn_fit_o;
    const char *freqfold, *collapse, *balance, *dtype, *token_dtype, *device;
    int seed, quiet, split_interleave, shard_mb;
    char preset_freqfold[16];
} ConvertFlags;

/* Every flag: the spec's dest is an offset into ConvertFlags. */
#define F(field) (void *)offsetof(ConvertFlags, field)
static const ArgSpec convert_specs[] = {
        {"model-path", ARG_STR, F(s.model_path), "DIR", "GQA model folder (default: the bundled bytelm-dev)", 0},
        {"preset", ARG_STR, F(preset_path), "FILE",
         "configs/presets/NAME.json: the published qk_mqa_dim, kv_lora_rank and freqfold; flags override it", 0},
        {"save-path", ARG_STR, F(s.save_path), "DIR", "output folder for the DeepSeek-V3 model", 1},
        {"overwrite", ARG_FLAG, F(s.overwrite), "", "replace --save-path if it exists", 0},
        {"cal-dataset", ARG_STR, F(cal.dataset), "NAME",
         "calibration text: wikitext2|ptb|c4|alpaca|text|jsonl (with --cal-data-path, the model's tokenizer), "
         "tokens (--cal-tokens), or none: data-free, from the weights alone", 0},
        {"cal-data-path", ARG_STR, F(cal.data_path), "PATH", "folder or file of the --cal-dataset (see README: Datasets)",
         0},
        {"cal-split", ARG_STR, F(cal.split), "S", "split sampled for calibration: train|validation|test (default train)",
         0},
        {"cal-tokens", ARG_STR, F(cal.tokens), "FILE",
         "calibration token ids: an HDF5 token set (transmla tokenize) or raw little-endian ids", 0},
        {"seed", ARG_INT, F(seed), "N", "seed of the calibration sampler (default 42)", 0},
        {"text-field", ARG_STR, F(text_field), "NAME", "field holding the text in jsonl datasets (default text)", 0},
        {"cal-max-seqlen", ARG_SEQLEN, F(s.cal_seqlen), "N", "calibration window length (default 256)", 0},
        {"cal-nsamples", ARG_INT, F(s.cal_nsamples), "K",
         "calibration samples (default 128): drawn from a text dataset, or consecutive windows of a token file "
         "(0 = all)", 0},
        {"cal-batch-size", ARG_POS_INT, F(s.cal_batch), "B", "calibration windows per micro-batch (default 8)", 0},
        {"eval-dataset", ARG_STR, F(eval.dataset), "NAME",
         "evaluation text (default: the --cal-dataset's test split when it is a text dataset; none: skip)", 0},
        {"eval-data-path", ARG_STR, F(eval.data_path), "PATH", "folder or file of the --eval-dataset (default: "
         "--cal-data-path)", 0},
        {"eval-split", ARG_STR, F(eval.split), "S", "split evaluated (default test)", 0},
        {"eval-tokens", ARG_STR, F(eval.tokens), "FILE",
         "evaluation token ids (HDF5 token set or raw); without any evaluation source no perplexities", 0},
        {"ppl-seqlen", ARG_SEQLEN, F(s.ppl_seqlen), "N", "evaluation window length (default 2048)", 0},
        {"eval-nsamples", ARG_INT, F(s.eval_nsamples), "K", "evaluation windows (default: all complete ones)", 0},
        {"eval-batch-size", ARG_POS_INT, F(s.eval_batch), "B", "evaluation windows per micro-batch (default 4)", 0},
        {"token-dtype", ARG_STR, F(token_dtype), "u16|u32", "width of the ids in raw token files (default u16)", 0},
        {"qk-mqa-dim", ARG_POS_INT, F(s.qk_mqa_dim), "r", "rope head width kept by RoRoPE (default 64)", 0},
        {"collapse", ARG_STR, F(collapse), "N|auto", "frequency stride of the rope head (default auto = head_dim/r)", 0},
        {"freqfold", ARG_STR, F(freqfold), "N|auto",
         "frequencies per RoRoPE bucket (default auto: best of c, 2c, 4c, ... by eval ppl)", 0},
        {"rorope-fit-steps", ARG_INT, F(s.rorope_fit_steps), "N",
         "Adam steps fitting each layer's RoRoPE rotation to its attention output (default 60; 0: the published "
         "PCA rotation; data-free runs never fit)", 0},
        {"rorope-fit-lr", ARG_STR, F(fit_lr), "X", "learning rate of that fit (default 0.05)", 0},
        {"rorope-fit-nsamples", ARG_INT, F(s.rorope_fit_nsamples), "K",
         "the first K calibration windows are the fit's data (default 16; 0: all); each replica holds its share", 0},
        {"skip-published-mla", ARG_FLAG, F(s.skip_published_mla), "",
         "with the fit on, do not also build and evaluate the published rotation's MLA (ppl.mla_pca): saves a "
         "calibration pass, BKV-PCA and an evaluation", 0},
        {"rorope-fit-schedule", ARG_STR, F(fit_schedule), "parallel|sequential",
         "layer inputs of the fit: the original model's (default), or the fitted prefix's", 0},
        {"fit", ARG_STR, F(fit), "none|rotation|attention",
         "what is fitted to each layer's original attention output: nothing (the published method), the RoRoPE "
         "rotation, or the rotation and then every MLA attention weight as exported (default attention)", 0},
        {"attn-fit-steps", ARG_INT, F(s.attn_fit_steps), "N", "Adam steps of the attention fit per layer (default 150)",
         0},
        {"attn-fit-lr", ARG_STR, F(attn_fit_lr), "X", "learning rate of the attention fit (default 0.004)", 0},
        {"attn-fit-nsamples", ARG_INT, F(s.attn_fit_nsamples), "K",
         "the first K calibration windows are the attention fit's data; an eighth of their micro-batches of "
         "--cal-batch-size windows (at least one, when there are two or more) is held back to pick the step kept "
         "(default 0: all)", 0},
        {"attn-fit-windows-per-step", ARG_POS_INT, F(s.attn_fit_windows_per_step), "W",
         "calibration windows each Adam step of the attention fit trains on (default 16)", 0},
        {"attn-fit-o-proj", ARG_STR, F(attn_fit_o), "yes|no", "fit o_proj with the attention (default yes)", 0},
        {"attn-fit-schedule", ARG_STR, F(attn_fit_schedule), "parallel|sequential",
         "layer inputs of the attention fit: the original model's, or the fitted prefix's (default sequential)", 0},
        {"kv-lora-rank", ARG_POS_INT, F(s.kv_lora_rank), "R", "latent width after BKV-PCA (default 512)", 0},
        {"balance-kv-ratio", ARG_STR, F(balance), "X", "key/value norm balance before the joint PCA (default 1)", 0},
        {"q-lora-rank", ARG_INT, F(s.q_lora_rank), "Rq", "query low rank by PCA (default 0: plain q_proj)", 0},
        {"dtype", ARG_STR, F(dtype), "T", "output dtype float32|bfloat16|float16 (default: as the input)", 0},
        {"rope-half-split", ARG_FLAG, F(split_interleave), "",
         "export rope dims in rotate-half order (rope_interleave false); default interleaved as DeepSeek", 0},
        {"kv-norm", ARG_STR, F(kv_norm), "fit|rms",
         "export's kv_a_layernorm: fit kv_b_proj to it by least squares (default), or weight = latent RMS", 0},
        {"max-shard-mb", ARG_POS_INT, F(shard_mb), "MB", "largest output safetensors shard (default 4096)", 0},
        {"stages", ARG_POS_INT, F(s.stages), "S",
         "pipeline stages under MPI: the layers split over S stages, ranks/S data-parallel replicas (default 1)", 0},
        {"mem-per-rank", ARG_STR, F(mem_per_rank), "SIZE", "refuse a plan whose estimated peak per rank exceeds SIZE "
         "(e.g. 64G)", 0},
        {"scalapack-min-n", ARG_POS_INT, F(s.scalapack_min_n), "N",
         "eigenproblems and SVDs of N rows or more run on ScaLAPACK over the stage's ranks (default 4096; 1 forces it)",
         0},
        {"resume", ARG_STR, F(resume), "auto|never",
         "auto (default): continue from the progress saved in SAVE_PATH.work by an earlier run of the same "
         "conversion (killed, requeued, or stopped by SIGTERM/SIGUSR1, which save and exit with status 75); "
         "never: discard it and start afresh", 0},
        {"device", ARG_STR, F(device), "cpu|cuda",
         "where the streaming passes run (default cpu): cuda puts each rank's part on GPU local rank mod GPUs for "
         "the calibration statistics and the evaluations, and both fits' forward and backward passes (the rotation "
         "fit's always in fp32); Adam and the eigenproblems stay on the CPU", 0},
        {"gpu-fp32", ARG_FLAG, F(s.gpu_fp32), "", "with --device cuda: fp32 GEMMs and attention instead of bf16", 0},
        {"quiet", ARG_FLAG, F(quiet), "", "no progress lines on stderr", 0},
};
#undef F
#define N_SPECS (sizeof convert_specs / sizeof convert_specs[0])

static const char *convert_usage =
        "usage: [mpirun -np P] transmla convert --save-path DIR [--model-path DIR] [--stages S] [options]\n"
        "         (--cal-dataset NAME --cal-data-path PATH | --cal-tokens FILE | --cal-dataset none)\n"
        "         [--eval-dataset NAME --eval-data-path PATH | --eval-tokens FILE]\n\n"
        "Convert a GQA model (llama, qwen2, mistral, mixtral) to DeepSeek-V3 multi-head latent attention:\n"
        "RoRoPE (partial RoPE by rotation), BKV-PCA (joint low-rank K/V), absorb, export. Prints the\n"
        "perplexity of each step and writes DIR/transmla_report.json. Under mpirun/srun the P ranks form S\n"
        "pipeline stages x P/S replicas and produce the same model as one process.";

static void flags_defaults(ConvertFlags *f) {
    memset(f, 0, sizeof *f);
    convert_settings_defaults(&f->s); /* the fits' schedules and o_proj follow from the flags below */
    f->s.model_path = TRANSMLA_DEFAULT_MODEL;
    f->cal.split = "train";
    f->eval.split = "test";
    f->seed = 42;
    f->kv_norm = "fit", f->resume = "auto", f->fit_lr = "0.05", f->fit_schedule = "parallel";
    f->fit = "attention", f->attn_fit_lr = "0.004", f->attn_fit_schedule = "sequential", f->attn_fit_o = "yes";
    f->freqfold = "auto", f->collapse = "auto", f->balance = "1", f->token_dtype = "u16";
    f->shard_mb = 4096;
    f->device = "cpu";
}

/* The preset's settings first, so the flags parsed after override them. */
static int apply_preset(ConvertFlags *f, int argc, char **argv) {
    f->preset_path = preset_flag(argc, argv);
    if (!f->preset_path) return 0;
    Preset pre;
    if (preset_load(f->preset_path, &pre)) return -1;
    if (pre.qk_mqa_dim) f->s.qk_mqa_dim = pre.qk_mqa_dim;
    if (pre.kv_lora_rank) f->s.kv_lora_rank = pre.kv_lora_rank;
    if (pre.freqfold) {
        snprintf(f->preset_freqfold, sizeof f->preset_freqfold, "%d", pre.freqfold);
        f->freqfold = f->preset_freqfold;
    }
    return 0;
}

static int parse_flags(ConvertFlags *f, int argc, char **argv) {
    ArgSpec specs[N_SPECS];
    for (size_t i = 0; i < N_SPECS; i++) {
        specs[i] = convert_specs[i];
        specs[i].dest = (char *)f + (size_t)convert_specs[i].dest;
    }
    return args_parse(argc, argv, specs, (int)N_SPECS, convert_usage);
}

/* v is a or b, else one error line naming the flag */
/* --fit: none turns both fits off, rotation the attention fit. */
static int fit_choice(const char *v, ConvertSettings *s) {
    if (!strcmp(v, "none")) s->rorope_fit_steps = 0;
    else if (strcmp(v, "rotation") && strcmp(v, "attention"))
        return tm_fail("--fit '%s': expected none, rotation or attention", v);
    if (strcmp(v, "attention")) s->attn_fit_steps = 0;
    if (s->attn_fit_steps < 0 || s->rorope_fit_steps < 0)
        return tm_fail("--%s-fit-steps must be 0 or more", s->attn_fit_steps < 0 ? "attn" : "rorope");
    return 0;
}

static int settings_from_flags(ConvertFlags *f, ConvertSettings *out) {
    ConvertSettings *s = &f->s;
    TmTokenDType dtype_raw;
    if (parse_auto("freqfold", f->freqfold, &s->freqfold) || parse_auto("collapse", f->collapse, &s->collapse) ||
        parse_dtype(f->dtype, &s->dtype) || token_dtype_parse(f->token_dtype, &dtype_raw) ||
        args_number("balance-kv-ratio", f->balance, 0, &s->balance_kv_ratio) ||
        args_number("rorope-fit-lr", f->fit_lr, 0, &s->rorope_fit_lr) ||
        args_one_of("rorope-fit-schedule", f->fit_schedule, "parallel", "sequential") ||
        args_one_of("resume", f->resume, "auto", "never") || args_one_of("kv-norm", f->kv_norm, "fit", "rms") ||
        args_number("attn-fit-lr", f->attn_fit_lr, 0, &s->attn_fit_lr) ||
        args_one_of("attn-fit-schedule", f->attn_fit_schedule, "parallel", "sequential") ||
        args_one_of("attn-fit-o-proj", f->attn_fit_o, "yes", "no") || fit_choice(f->fit, s))
        return -1;
    s->attn_fit_sequential = !strcmp(f->attn_fit_schedule, "sequential");
    s->attn_fit_o = !strcmp(f->attn_fit_o, "yes");
    s->rorope_fit_sequential = !strcmp(f->fit_schedule, "sequential");
    s->max_shard_bytes = (uint64_t)f->shard_mb << 20;
    s->rope_interleave = !f->split_interleave;
    s->resume_never = !strcmp(f->resume, "never");
    s->kv_norm_fit = !strcmp(f->kv_norm, "fit");
    s->progress = !f->quiet;
    if ((s->device = device_parse(f->device)) < 0 || stage_device_check(s->device)) return -1;
    if (resolve_sources(&f->cal, &f->eval, f->text_field, dtype_raw, s)) return -1;
    s->seed = (uint64_t)(unsigned)f->seed;
    if (f->mem_per_rank && plan_parse_bytes(f->mem_per_rank, &s->mem_per_rank)) return tm_fail_context("--mem-per-rank");
    static char save_path[4096]; /* without trailing slashes, so SAVE.work sits beside it */
    if (output_path_normalize("--save-path", s->save_path, save_path, sizeof save_path)) return -1;
    s->save_path = save_path;
    *out = *s;
    return 0;
}

static int convert_args(int argc, char **argv, ConvertSettings *out) {
    static ConvertFlags f; /* the settings point into it (preset_freqfold) */
    flags_defaults(&f);
    if (apply_preset(&f, argc, argv) || parse_flags(&f, argc, argv)) return -1;
    return settings_from_flags(&f, out);
}
