#include "pipeline/plan.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/partition.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cost.h"
#include "model/model.h"
#include "pipeline/attn_fit.h"
#include "pipeline/build.h"
#include "pipeline/fit_stream.h"
#include "pipeline/rorope_fit.h"

/* The process before any model-sized work: the libraries' code and buffers (OpenBLAS, Open MPI, HDF5);
 * bytelm-dev's RSS after its first evaluation less its weights, 47.2 - 18.8 MiB, measured at 1 rank.
 * Negligible at real shapes, 16% of a bytelm-dev conversion. */
#define PLAN_PROCESS_BYTES (28ull << 20)

/* Float64 bytes of one layer's largest statistics and its converted attention (a built fp32 copy: half). */
static void layer_convert_bytes(const ModelConfig *c, const PlanInputs *in, uint64_t *stats, uint64_t *attn) {
    uint64_t d = c->head_dim, H = c->n_heads, L = (uint64_t)c->n_kv_heads * d, D = c->hidden_size;
    uint64_t r = in->qk_mqa_dim, R0 = 2 * L - r, qw = H * (d + r);
    uint64_t keys = L * L, latent = R0 * R0 + (in->q_lora_rank ? qw * qw : 0);
    *stats = 8 * (keys > latent ? keys : latent);
    /* q [qw, D], kv_a [2L, D], kv_b [2Hd, R0] */
    *attn = 8 * (qw * D + 2 * L * D + 2 * H * d * R0);
}

static uint64_t activation_bytes(const ModelConfig *c, int B, int T) {
    if (B < 1 || T < 1) return 0;
    return workspace_bytes(c, B, T) + 4ull * 4 * B * T * c->hidden_size; /* two receive and two send buffers */
}

/* The most windows of `total` any of the replicas holds in a fit. */
static int64_t fit_rows(int total, const PlanInputs *in) {
    int most = 0;
    for (int r = 0; r < in->replicas; r++) {
        int n = fit_stream_windows(total, in->cal_batch, r, in->replicas);
        most = n > most ? n : most;
    }
    return (int64_t)most * in->cal_seqlen;
}

/* The converted model's config (what the export's config.json says). */
static void converted_config(const ModelConfig *c, const PlanInputs *in, ModelConfig *mla) {
    MlaAttn dims = {.H = c->n_heads, .D = c->hidden_size, .R = in->kv_lora_rank, .Rq = in->q_lora_rank,
                    .dn = c->head_dim, .dr = in->qk_mqa_dim, .dv = c->head_dim};
    mla_config_from(mla, c, &dims, BUILD_NATIVE, 0);
}

/* What a rank of a (last_stage or not) stage holds during each per-layer fit,
 * as the runs count it (pipeline/run_fit.c, pipeline/run_attn_fit.c). */
static uint64_t fits_bytes(const ModelConfig *c, const PlanInputs *in, int last_stage) {
    const PlanFits *f = &in->fits;
    int B = in->cal_batch < 1 ? 1 : in->cal_batch, T = in->cal_seqlen, pool = in->cal_nsamples;
    uint64_t most = 0;
    if (f->rotation_windows > 0 && B > 0 && T > 0) {
        int total = f->rotation_windows < pool ? f->rotation_windows : pool;
        if (f->rotation_choose) total = ((total + B - 1) / B + 1) * B < pool ? ((total + B - 1) / B + 1) * B : pool;
        int cols = rorope_fit_stream_cols(c, f->rotation_sequential, last_stage);
        most = fit_stream_held_bytes(c, fit_rows(total, in), cols, B, T);
    }
    if (f->attention_per_step > 0 && T > 0) {
        int total = f->attention_windows && f->attention_windows < pool ? f->attention_windows : pool;
        ModelConfig mla;
        converted_config(c, in, &mla);
        int cols = attn_fit_stream_cols(c, f->attention_sequential, last_stage);
        uint64_t b = fit_stream_held_bytes(c, fit_rows(total, in), cols, B, T) +
                     attn_fit_state_bytes(&mla, f->attention_o, B, T, (f->attention_per_step + B - 1) / B,
                                          in->replicas);
        most = b > most ? b : most;
    }
    return most;
}

int plan_make(Plan *p, const ModelConfig *c, const PlanInputs *in) {
    memset(p, 0, sizeof *p);
    int n = c->n_layers, S = in->stages;
    if (S < 1 || S > n)
        return tm_fail("--stages %d: the model has %d layers (num_hidden_layers); a stage needs at least one", S, n);
    /* a micro-batch's token count is an int everywhere downstream */
    if ((int64_t)in->cal_batch * in->cal_seqlen > INT_MAX || (int64_t)in->eval_batch * in->ppl_seqlen > INT_MAX)
        return tm_fail("--cal-batch-size x --cal-max-seqlen and --eval-batch-size x --ppl-seqlen must stay below 2^31 "
                       "tokens");
    TmDType dt = in->dtype != TM_DTYPE_INVALID ? in->dtype : TM_BF16;
    uint64_t *lb = callocCheck((size_t)n, sizeof *lb), eb, hb;
    model_part_bytes(c, dt, lb, &eb, &hb);
    /* evaluating the export reads it back: its tensors are mapped next to the original's (file-backed) */
    uint64_t *xb = callocCheck((size_t)n, sizeof *xb), xeb = 0, xhb = 0;
    if (in->eval_batch > 0 && in->kv_lora_rank > 0) {
        ModelConfig mla;
        converted_config(c, in, &mla);
        model_part_bytes(&mla, dt, xb, &xeb, &xhb);
    }
    int lT = in->cal_seqlen > 0 ? in->cal_seqlen : 256, eT = in->ppl_seqlen > 0 ? in->ppl_seqlen : 2048;
    double hf = 2.0 * c->hidden_size * c->vocab_size;
    double *cost = mallocCheck((size_t)n * sizeof *cost);
    model_layer_costs(c, cost);
    int *cut = mallocCheck((size_t)(S + 1) * sizeof *cut);
    partition_min_max(cost, n, S, cut);

    p->in = *in;
    p->n_stages = S;
    p->stage = callocCheck((size_t)S, sizeof *p->stage);
    uint64_t stats1, attn1;
    layer_convert_bytes(c, in, &stats1, &attn1);
    uint64_t built1 = attn1 / 2; /* a model built from it: fp32 */
    uint64_t act = activation_bytes(c, in->cal_batch, in->cal_seqlen), act_e = activation_bytes(c, in->eval_batch, in->ppl_seqlen);
    if (act_e > act) act = act_e;
    for (int s = 0; s < S; s++) {
        StagePlan *sp = &p->stage[s];
        sp->first = cut[s];
        sp->end = cut[s + 1];
        int nl = sp->end - sp->first;
        for (int l = sp->first; l < sp->end; l++) {
            sp->weight_bytes += lb[l];
            sp->readback_bytes += xb[l];
            sp->flops_per_token += model_layer_flops_per_token(c, l, lT);
            sp->eval_flops_per_token += model_layer_flops_per_token(c, l, eT);
        }
        if (s == 0) sp->weight_bytes += eb, sp->readback_bytes += xeb;
        if (s == S - 1) {
            sp->weight_bytes += hb, sp->readback_bytes += xhb;
            sp->flops_per_token += hf;
            sp->head_flops_per_token = hf;
            sp->eval_flops_per_token += hf;
        }
        sp->stats_bytes = nl * stats1;
        sp->convert_bytes = ((in->attention_copies ? in->attention_copies : 2) * attn1 + in->rorope_builds * built1) * nl;
        uint64_t fits = in->cal_batch > 0 ? fits_bytes(c, in, s == S - 1) : 0;
        sp->activation_bytes = fits > act ? fits : act;
        /* The second copy lives only while RoRoPE's candidates (or the published rotation's MLA) are built
         * and evaluated, before the fits; a fit holds one copy beside its rows and state. Adding both at
         * once overestimated a 9-layer stage with both fits by 36% (bench_depth.sh, README). The fits run the
         * built model of the kept copy. */
        uint64_t rorope_moment = sp->convert_bytes + act, fit_moment = nl * (attn1 + built1) + fits;
        sp->peak_bytes = PLAN_PROCESS_BYTES + sp->weight_bytes + sp->stats_bytes +
                         (rorope_moment > fit_moment ? rorope_moment : fit_moment);
    }
    free(lb);
    free(xb);
    free(cost);
    free(cut);
    if (in->mem_per_rank)
        for (int s = 0; s < S; s++)
            if (p->stage[s].peak_bytes > in->mem_per_rank) {
                int rc = tm_fail("stage %d (layers %d-%d) needs an estimated %.2f GiB per rank, more than --mem-per-rank "
                                 "%.2f GiB; use more stages", s, p->stage[s].first, p->stage[s].end - 1,
                                 p->stage[s].peak_bytes / 1073741824.0, in->mem_per_rank / 1073741824.0);
                plan_free(p);
                return rc;
            }
    return 0;
}

void plan_free(Plan *p) {
    free(p->stage);
    memset(p, 0, sizeof *p);
}

static double gib(uint64_t b) { return b / 1073741824.0; }

void plan_print(const Plan *p, const ModelConfig *c, FILE *to) {
    int S = p->n_stages, Dp = p->in.replicas;
    fprintf(to, "plan: %d ranks = %d stage%s x %d replica%s; %d layers; estimated GiB per rank:\n", S * Dp, S,
            S == 1 ? "" : "s", Dp, Dp == 1 ? "" : "s", c->n_layers);
    fprintf(to, "  %-5s %-14s %-9s %9s %9s %9s %9s %9s %10s\n", "stage", "ranks", "layers", "weights", "stats",
            "convert", "activ.", "peak", "GFLOP/tok");
    for (int s = 0; s < S; s++) {
        const StagePlan *sp = &p->stage[s];
        char ranks[64] = "", layers[32];
        if (Dp <= 3) {
            int len = 0;
            for (int r = 0; r < Dp; r++) len += snprintf(ranks + len, sizeof ranks - len, "%s%d", r ? "," : "", r * S + s);
        } else {
            snprintf(ranks, sizeof ranks, "%d,%d,..,%d", s, S + s, (Dp - 1) * S + s);
        }
        snprintf(layers, sizeof layers, "%d-%d%s%s", sp->first, sp->end - 1, s == 0 ? "+E" : "", s == S - 1 ? "+H" : "");
        fprintf(to, "  %-5d %-14s %-9s %9.3f %9.3f %9.3f %9.3f %9.3f %10.3f\n", s, ranks, layers, gib(sp->weight_bytes),
                gib(sp->stats_bytes), gib(sp->convert_bytes), gib(sp->activation_bytes), gib(sp->peak_bytes),
                sp->flops_per_token / 1e9);
    }
    fprintf(to, "  (+E: embedding, +H: final norm and head; rank = replica * %d + stage; peak = %.0f MiB for the process\n"
                "   + weights + stats + the larger of convert + a micro-batch (RoRoPE) and one converted copy, built,\n"
                "   + the fits' data (after it))\n", S, PLAN_PROCESS_BYTES / 1048576.0);
    uint64_t rb = 0;
    for (int s = 0; s < S; s++) rb = p->stage[s].readback_bytes > rb ? p->stage[s].readback_bytes : rb;
    if (rb)
        fprintf(to, "  evaluating the export maps it next to the original: up to %.3f GiB more per rank of "
                "file-backed pages (page cache the kernel can reclaim; not in the peak)\n", gib(rb));
}

int plan_parse_bytes(const char *s, uint64_t *out) {
    char *end;
    double v = strtod(s, &end);
    double unit = 1;
    switch (*end) {
    case 'T': case 't': unit = 1024.0 * 1024 * 1024 * 1024; end++; break;
    case 'G': case 'g': unit = 1024.0 * 1024 * 1024; end++; break;
    case 'M': case 'm': unit = 1024.0 * 1024; end++; break;
    case 'K': case 'k': unit = 1024.0; end++; break;
    default: break;
    }
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (end == s || *end || !(v > 0) || !(v * unit < 18446744073709551616.0)) { /* inf, nan and 2^64 bytes fail */
        *out = 0;
        return tm_fail("'%s': expected a size such as 64G, 512M or 1.5T", s);
    }
    *out = (uint64_t)(v * unit);
    return 0;
}
