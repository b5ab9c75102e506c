/* `transmla plan`: the stage layout and per-rank memory of a conversion on N
 * nodes x K ranks, from config.json alone (no weights), before a job is
 * submitted. Picks the fewest stages that fit (more replicas calibrate
 * faster), or checks the layout asked for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/preset.h"
#include "io/base/error.h"
#include "io/hf_config.h"
#include "pipeline/convert.h"
#include "pipeline/plan.h"

typedef struct {
    const char *model_path, *preset_path, *mem_per_node, *stages, *dtype, *fit, *eval_dataset;
    int nodes, ranks_per_node, qk_mqa_dim, q_lora_rank, kv_lora_rank, freqfold, cal_seqlen, cal_batch, cal_nsamples,
        ppl_seqlen, eval_batch;
} PlanArgs;

static double gib(uint64_t b) { return b / 1073741824.0; }

/* DIR/config.json, or the file itself. */
static int load_config(const char *path, ModelConfig *c) {
    struct stat st;
    if (!(stat(path, &st) == 0 && S_ISDIR(st.st_mode))) return hf_config_load(c, path);
    char file[4200];
    if (snprintf(file, sizeof file, "%s/config.json", path) >= (int)sizeof file) return tm_fail("%s: path too long", path);
    return hf_config_load(c, file);
}

/* The largest estimated peak of any stage. */
static uint64_t plan_peak(const Plan *p) {
    uint64_t m = 0;
    for (int s = 0; s < p->n_stages; s++)
        if (p->stage[s].peak_bytes > m) m = p->stage[s].peak_bytes;
    return m;
}

/* stages 0: the fewest stages dividing the ranks whose every stage fits;
 * failing that, the plan with the most stages is returned with rc -1. */
static int choose_plan(const ModelConfig *c, PlanInputs in, int ranks, int stages, uint64_t mem_per_rank, Plan *out) {
    int last = 0;
    for (int s = 1; s <= ranks && s <= c->n_layers; s++) {
        if (ranks % s || (stages && s != stages)) continue;
        if (last) plan_free(out);
        in.stages = s;
        in.replicas = ranks / s;
        in.mem_per_rank = 0; /* judged here, so the table can still be shown */
        if (plan_make(out, c, &in)) return -1;
        last = s;
        if (!mem_per_rank || plan_peak(out) <= mem_per_rank) return 0;
    }
    if (!last)
        return tm_fail(stages ? "--stages %d must divide the %d ranks and be at most the %d layers"
                              : "no stage count fits %d ranks and %d layers",
                       stages ? stages : ranks, ranks, c->n_layers);
    return tm_fail("no layout of %d ranks fits %.1f GiB per rank: %s %d stages, whose largest stage needs an "
                   "estimated %.1f GiB; use more nodes, fewer ranks per node or more memory",
                   ranks, gib(mem_per_rank), stages ? "asked for" : "the most is", last, gib(plan_peak(out)));
}

static void print_flops(const Plan *p, const PlanArgs *a) {
    double per_token = 0, layers = 0, slowest = 0; /* layers: without the head, which calibration does not run */
    for (int s = 0; s < p->n_stages; s++) {
        const StagePlan *sp = &p->stage[s];
        per_token += sp->eval_flops_per_token;
        layers += sp->flops_per_token - sp->head_flops_per_token;
        if (sp->flops_per_token - sp->head_flops_per_token > slowest) slowest = sp->flops_per_token - sp->head_flops_per_token;
    }
    double tokens = (double)a->cal_nsamples * a->cal_seqlen;
    /* three calibration passes: the original model (RoRoPE), the RoRoPE model
     * (BKV-PCA), the exact MLA model (kv-norm fit) */
    printf("calibration: %d samples x %d tokens, 3 forward passes: %.2f TFLOP in all, %.2f TFLOP per replica; "
           "%.2f TFLOP on each rank of the busiest stage\n", a->cal_nsamples, a->cal_seqlen,
           3 * tokens * layers / 1e12, 3 * tokens * layers / 1e12 / p->in.replicas,
           3 * tokens * slowest / 1e12 / p->in.replicas);
    printf("evaluation: %.2f GFLOP per token per evaluated model (windows of %d; original, RoRoPE per freqfold, MLA, "
           "export)\n", per_token / 1e9, a->ppl_seqlen);
}

static int plan_run(PlanArgs *a) {
    Preset pre = {0};
    if (a->preset_path && preset_load(a->preset_path, &pre)) return -1;
    const char *config = a->model_path ? a->model_path : pre.config[0] ? pre.config : NULL;
    if (!config) return tm_fail("give --model-path DIR (config.json is enough) or a --preset that names a config");
    ModelConfig c;
    if (load_config(config, &c)) return -1;
    int from_preset = !a->nodes && !a->ranks_per_node;
    if (!a->nodes) a->nodes = pre.nodes ? pre.nodes : 1;
    if (!a->ranks_per_node) a->ranks_per_node = pre.ranks_per_node ? pre.ranks_per_node : 1;
    if (!a->qk_mqa_dim) a->qk_mqa_dim = pre.qk_mqa_dim ? pre.qk_mqa_dim : 64;
    if (!a->mem_per_node && pre.mem_per_node[0]) a->mem_per_node = pre.mem_per_node;
    if (a->nodes < 1 || a->ranks_per_node < 1) return tm_fail("--nodes and --ranks-per-node must be positive");
    if ((long long)a->nodes * a->ranks_per_node > 1 << 24)
        return tm_fail("--nodes %d x --ranks-per-node %d: more than %d ranks", a->nodes, a->ranks_per_node, 1 << 24);
    int stages = 0;
    if (a->stages && strcmp(a->stages, "auto")) {
        char *end;
        long v = strtol(a->stages, &end, 10);
        if (*end || end == a->stages || v < 1 || v > 1 << 20)
            return tm_fail("--stages '%s': expected a positive integer or auto", a->stages);
        stages = (int)v;
    } else if (!a->stages && from_preset) {
        stages = pre.stages;
    }
    uint64_t mem_node = 0;
    if (a->mem_per_node && plan_parse_bytes(a->mem_per_node, &mem_node)) return tm_fail_context("--mem-per-node");
    int ranks = a->nodes * a->ranks_per_node;
    uint64_t mem_rank = mem_node / (uint64_t)a->ranks_per_node;
    TmDType dt = c.torch_dtype;
    if (a->dtype) {
        dt = tm_dtype_parse(a->dtype);
        if (!tm_dtype_is_weight_float(dt)) return tm_fail("--dtype '%s': expected F32, BF16 or F16", a->dtype);
    }
    if (!a->kv_lora_rank) a->kv_lora_rank = pre.kv_lora_rank ? pre.kv_lora_rank : 512;
    /* convert's fit settings at their defaults, the fits chosen by --fit */
    ConvertSettings cs;
    convert_settings_defaults(&cs);
    if (strcmp(a->fit, "none") && strcmp(a->fit, "rotation") && strcmp(a->fit, "attention"))
        return tm_fail("--fit '%s': expected none, rotation or attention", a->fit);
    if (!strcmp(a->fit, "none")) cs.rorope_fit_steps = 0;
    if (strcmp(a->fit, "attention")) cs.attn_fit_steps = 0;
    cs.freqfold = a->freqfold ? a->freqfold : pre.freqfold;
    /* convert --eval-dataset none: no evaluation activations and no read-back of the export */
    int eval_batch = a->eval_dataset && !strcmp(a->eval_dataset, "none") ? 0 : a->eval_batch;
    PlanInputs in = {.dtype = dt, .cal_batch = a->cal_batch, .cal_seqlen = a->cal_seqlen, .eval_batch = eval_batch,
                     .ppl_seqlen = a->ppl_seqlen, .qk_mqa_dim = a->qk_mqa_dim, .q_lora_rank = a->q_lora_rank,
                     .cal_nsamples = a->cal_nsamples > 0 ? a->cal_nsamples : 128, .kv_lora_rank = a->kv_lora_rank,
                     .fits = plan_fits_of(&cs)};
    plan_rorope_search(&in, &cs, eval_batch > 0, 1);
    printf("plan: %s (%s, %d layers, %s weights) on %d node%s x %d ranks = %d ranks", config, c.model_type, c.n_layers,
           tm_dtype_name(dt == TM_DTYPE_INVALID ? TM_BF16 : dt), a->nodes, a->nodes == 1 ? "" : "s", a->ranks_per_node,
           ranks);
    if (mem_node) printf(", %.0f GiB per node = %.1f GiB per rank", gib(mem_node), gib(mem_rank));
    printf("\n");
    Plan p = {0};
    int rc = choose_plan(&c, in, ranks, stages, mem_rank, &p);
    if (p.stage) {
        fflush(stdout);
        plan_print(&p, &c, stdout);
        if (!rc) {
            print_flops(&p, a);
            printf("launch: srun --nodes=%d --ntasks-per-node=%d transmla convert --model-path MODEL --stages %d",
                   a->nodes, a->ranks_per_node, p.n_stages);
            if (mem_rank && mem_rank % (1ull << 30) == 0) printf(" --mem-per-rank %lluG", (unsigned long long)(mem_rank >> 30));
            else if (mem_rank) printf(" --mem-per-rank %lluM", (unsigned long long)(mem_rank >> 20));
            printf(" ...\n");
        }
        plan_free(&p);
    }
    if (!rc && mem_rank) printf("fits: largest estimated peak per rank is within %.1f GiB\n", gib(mem_rank));
    return rc;
}

int cmd_plan(int argc, char **argv) {
    PlanArgs a = {.cal_seqlen = 256, .cal_batch = 8, .cal_nsamples = 128, .ppl_seqlen = 2048, .eval_batch = 4,
                  .fit = "attention"};
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &a.model_path, "DIR", "model folder or its config.json (weights not needed)", 0},
        {"preset", ARG_STR, &a.preset_path, "FILE", "configs/presets/*.json: its config, settings and layout", 0},
        {"nodes", ARG_POS_INT, &a.nodes, "N", "nodes (default: the preset's, else 1)", 0},
        {"ranks-per-node", ARG_POS_INT, &a.ranks_per_node, "K", "MPI ranks per node (default: the preset's, else 1)", 0},
        {"mem-per-node", ARG_STR, &a.mem_per_node, "SIZE", "memory per node for the ranks, e.g. 256G; layouts "
         "that do not fit are refused", 0},
        {"stages", ARG_STR, &a.stages, "S|auto", "pipeline stages (default auto: the fewest that fit; a preset's own "
         "layout keeps its stages)", 0},
        {"qk-mqa-dim", ARG_POS_INT, &a.qk_mqa_dim, "r", "rope head width (default: the preset's, else 64)", 0},
        {"q-lora-rank", ARG_INT, &a.q_lora_rank, "Rq", "query low rank (default 0)", 0},
        {"kv-lora-rank", ARG_POS_INT, &a.kv_lora_rank, "R", "latent width (default: the preset's, else 512)", 0},
        {"freqfold", ARG_POS_INT, &a.freqfold, "N", "frequencies per RoRoPE bucket, as given to convert (default: the "
         "preset's, else auto: the rotation fit holds one more micro-batch to choose it)", 0},
        {"fit", ARG_STR, &a.fit, "WHAT", "none|rotation|attention: the per-layer fits the conversion runs, at "
         "convert's defaults (default attention)", 0},
        {"dtype", ARG_STR, &a.dtype, "T", "stored weight dtype F32|BF16|F16 (default: config.json's torch_dtype)", 0},
        {"cal-max-seqlen", ARG_SEQLEN, &a.cal_seqlen, "N", "calibration sample length (default 256)", 0},
        {"cal-batch-size", ARG_POS_INT, &a.cal_batch, "B", "calibration micro-batch (default 8)", 0},
        {"cal-nsamples", ARG_INT, &a.cal_nsamples, "K", "calibration samples (default 128)", 0},
        {"ppl-seqlen", ARG_SEQLEN, &a.ppl_seqlen, "N", "evaluation window (default 2048)", 0},
        {"eval-batch-size", ARG_POS_INT, &a.eval_batch, "B", "evaluation micro-batch (default 4)", 0},
        {"eval-dataset", ARG_STR, &a.eval_dataset, "NAME", "as given to convert; none: the conversion evaluates "
         "nothing (no evaluation activations, no read-back of the export)", 0},
    };
    const char *usage =
        "usage: transmla plan (--model-path DIR | --preset FILE) [--nodes N] [--ranks-per-node K] [--mem-per-node SIZE]\n"
        "                     [--stages S|auto]\n\n"
        "Stage layout, estimated memory per rank (weights, float64 statistics, converted attention, activations)\n"
        "and calibration FLOPs of a conversion, from config.json alone. Refuses layouts that do not fit.";
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0], usage) || plan_run(&a)) return cli_fail();
    return 0;
}
