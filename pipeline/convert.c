#include "pipeline/convert.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/base/interrupt.h"
#include "io/base/output_path.h"
#include "io/base/sha256.h"
#include "model/ppl.h"
#include "pipeline/build.h"
#include "pipeline/collect.h"
#include "pipeline/export.h"
#include "pipeline/output.h"
#include "pipeline/run.h"

/* Float64 bytes of the stage's converted attention; a model built from it holds half that again (fp32). */
static uint64_t layers_bytes(const Run *r, const MlaAttn *layers) {
    uint64_t b = 0;
    for (int l = r->first; l < r->end; l++) b += mla_attn_bytes(&layers[l]);
    return b;
}

static void free_layers(MlaAttn *layers, int n) {
    if (!layers) return;
    for (int l = 0; l < n; l++) mla_attn_free(&layers[l]);
    free(layers);
}


/* ---- checks before any heavy work (every rank reaches the same verdict) ---- */

static int check_settings(Run *r) {
    const ConvertSettings *s = r->s;
    const ModelConfig *c = &r->cfg;
    if (hf_config_is_mla(c))
        return tm_fail("%s: model_type %s is already MLA; convert takes the GQA types", s->model_path, c->model_type);
    if (c->qk_norm && run_data_free(r))
        return tm_fail("%s/config.json: model_type %s normalises each q/k head (QK-norm); folding that into the "
                       "projections needs calibration data, so --cal-dataset none cannot convert it", s->model_path,
                       c->model_type);
    if (c->mlp_bias)
        return tm_fail("%s/config.json: mlp_bias=true, but DeepSeek-V3's MLP has no bias; such models cannot be exported",
                       s->model_path);
    int d = c->head_dim, rd = c->rotary_dim, L = c->n_kv_heads * d, qr = s->qk_mqa_dim;
    if (qr <= 0 || qr % 2 || qr > rd || rd % qr)
        return tm_fail("--qk-mqa-dim %d must be even, positive and divide %s %d (%s/config.json)", qr,
                       rd == d ? "head_dim" : "the rotary dims (head_dim x partial_rotary_factor)", rd, s->model_path);
    r->rs = (RoropeShape){.G = c->n_kv_heads, .d = d, .rd = rd, .r = qr, .collapse = s->collapse ? s->collapse : rd / qr};
    r->rs.freqfold = s->freqfold ? s->freqfold : r->rs.collapse;
    if (rorope_check(&r->rs)) return -1;
    if (s->kv_lora_rank < 1 || s->kv_lora_rank > 2 * L - qr)
        return tm_fail("--kv-lora-rank %d must be in [1, %d]: the latent [k_nope ; v] is 2 * kv_heads * head_dim - "
                       "qk_mqa_dim = 2*%d*%d - %d wide", s->kv_lora_rank, 2 * L - qr, c->n_kv_heads, d, qr);
    int qwidth = c->n_heads * (d + qr);
    if (s->q_lora_rank < 0 || s->q_lora_rank > qwidth)
        return tm_fail("--q-lora-rank %d must be in [0, %d] (num_attention_heads * (head_dim + qk_mqa_dim))",
                       s->q_lora_rank, qwidth);
    if (!(s->balance_kv_ratio > 0)) return tm_fail("--balance-kv-ratio must be positive");
    if (!s->freqfold && !run_has_eval(s) && !run_fit_enabled(r))
        return tm_fail("--freqfold auto without the RoRoPE fit picks by evaluation perplexity and needs --eval-tokens "
                       "or --eval-dataset");
    if (s->dtype != TM_DTYPE_INVALID && !tm_dtype_is_weight_float(s->dtype))
        return tm_fail("--dtype must be float32, bfloat16 or float16");
    if (s->scalapack_min_n < 1) return tm_fail("--scalapack-min-n %d must be at least 1", s->scalapack_min_n);
    return 0;
}

/* Rank 0 looks at the output location (a shared file system is assumed)
 * before any work: never the input, never a device or a mount point; an
 * existing output needs --overwrite, unless its work folder says an earlier
 * run of this conversion may have put it there (decided in prepare_output). */
static int check_output(const Run *r) {
    if (!run_is_root(r)) return 0;
    const ConvertSettings *s = r->s;
    const char *inputs[] = {s->model_path, s->cal.tokens, s->cal.data_path, s->eval.tokens, s->eval.data_path};
    if (output_path_check("--save-path", s->save_path, OUT_FOLDER_RENAMED, inputs, 5)) return -1;
    char state[4200];
    snprintf(state, sizeof state, "%s.work/state.h5", s->save_path);
    struct stat st;
    if (stat(s->save_path, &st) == 0 && !s->overwrite && stat(state, &st) != 0)
        return tm_fail("%s: output folder exists; pass --overwrite to replace it", s->save_path);
    return output_make_parents(s->save_path);
}

/* Ids from a source, then whole windows of seqlen (nseq 0: all that fit). */
static int read_windows(Run *r, const TokenSource *src, int calibration, int seqlen, int *nseq, int32_t **ids,
                        size_t *n) {
    const ConvertSettings *s = r->s;
    TokenSource warned = *src;
    warned.warn = run_is_root(r);
    int rc = calibration ? token_source_calibration(&warned, s->model_path, r->cfg.vocab_size, s->cal_nsamples, seqlen,
                                                    s->seed, ids, n)
                         : token_source_stream(&warned, s->model_path, r->cfg.vocab_size, ids, n);
    if (rc) return -1;
    if (src->dataset && calibration) *nseq = (int)(*n / (size_t)seqlen); /* the sampler may find fewer */
    if (ppl_check_windows(*n, seqlen, nseq)) {
        char why[512];
        snprintf(why, sizeof why, "%s", tm_error());
        return tm_fail("%s (%s): %s", token_source_describe(src), src->flag, why);
    }
    return 0;
}

void convert_settings_defaults(ConvertSettings *s) {
    *s = (ConvertSettings){.cal_seqlen = 256, .cal_nsamples = 128,
                           .cal_batch = 8, .ppl_seqlen = 2048, .eval_batch = 4, .qk_mqa_dim = 64,
                           .kv_lora_rank = 512, .balance_kv_ratio = 1.0, .rope_interleave = 1, .progress = 1,
                           .stages = 1, .scalapack_min_n = 4096, .rorope_fit_steps = 60, .rorope_fit_nsamples = 16,
                           .attn_fit_steps = 150, .attn_fit_windows_per_step = 16, .attn_fit_o = 1,
                           .attn_fit_sequential = 1};
}

PlanFits plan_fits_of(const ConvertSettings *s) {
    int rotation = s->rorope_fit_steps > 0, attention = s->attn_fit_steps > 0;
    return (PlanFits){.rotation_windows = rotation ? (s->rorope_fit_nsamples ? s->rorope_fit_nsamples : INT_MAX) : 0,
                      .rotation_choose = rotation && !s->freqfold, .rotation_sequential = s->rorope_fit_sequential,
                      .attention_windows = s->attn_fit_nsamples,
                      .attention_per_step = attention ? s->attn_fit_windows_per_step : 0,
                      .attention_sequential = s->attn_fit_sequential, .attention_o = s->attn_fit_o};
}

int fit_chooses_freqfold(const ConvertSettings *s, int has_data) {
    return !s->freqfold && s->rorope_fit_steps > 0 && has_data;
}

/* RoRoPE's search builds and evaluates each candidate unless the rotation
 * fit chooses freqfold later and nothing is evaluated (stage_rorope; plan). */
static int rorope_judges_candidates(const ConvertSettings *s, int has_eval, int has_data) {
    return !fit_chooses_freqfold(s, has_data) || (has_eval && !s->skip_published_mla);
}

/* Two copies while the freqfold search keeps the best candidate beside the
 * next, or the published rotation's MLA is built beside the fitted one; the
 * fp32 build of a candidate only when it is judged. */
void plan_rorope_search(PlanInputs *in, const ConvertSettings *s, int has_eval, int has_data) {
    int published = s->rorope_fit_steps > 0 && has_eval && !s->skip_published_mla;
    in->attention_copies = !s->freqfold || published ? 2 : 1;
    in->rorope_builds = rorope_judges_candidates(s, has_eval, has_data);
}

static int make_plan(Run *r) {
    const ConvertSettings *s = r->s;
    PlanInputs in = {.stages = s->stages, .replicas = r->t.replicas, .dtype = r->cfg.torch_dtype,
                     .cal_batch = run_data_free(r) ? 0 : s->cal_batch, .cal_seqlen = s->cal_seqlen,
                     .eval_batch = run_has_eval(s) ? s->eval_batch : 0, .ppl_seqlen = s->ppl_seqlen,
                     .qk_mqa_dim = s->qk_mqa_dim, .q_lora_rank = s->q_lora_rank, .mem_per_rank = s->mem_per_rank,
                     .cal_nsamples = s->cal_nsamples ? s->cal_nsamples : 128, .kv_lora_rank = s->kv_lora_rank,
                     .fits = run_data_free(r) ? (PlanFits){0} : plan_fits_of(s)};
    plan_rorope_search(&in, s, run_has_eval(s), !run_data_free(r));
    if (plan_make(&r->plan, &r->cfg, &in)) return -1;
    r->first = r->plan.stage[r->t.stage].first;
    r->end = r->plan.stage[r->t.stage].end;
    if (run_is_root(r) && s->progress) plan_print(&r->plan, &r->cfg, stderr);
    return 0;
}

/* Each rank maps only its stage's tensors; rank 0 lists what each read. */
static int load_part(Run *r) {
    ModelPart part = {.first = r->first, .end = r->end, .embed = r->t.stage == 0, .head = r->t.stage == r->t.stages - 1};
    int rc = dist_agree(MPI_COMM_WORLD, model_load_part(&r->orig, r->s->model_path, &part));
    if (rc) return -1;
    uint64_t mine = r->orig.w.n_bytes, *all = mallocCheck((size_t)r->t.size * sizeof *all);
    MPI_Gather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (run_is_root(r)) {
        json_t *per = json_array();
        for (int i = 0; i < r->t.size; i++) {
            run_say(r, "load: rank %d (stage %d) maps %.1f MiB of weights\n", i, i % r->t.stages, all[i] / 1048576.0);
            json_array_append_new(per, json_integer((json_int_t)all[i]));
        }
        json_object_set_new(r->rep.report, "weight_bytes_read_per_rank", per);
    }
    free(all);
    return 0;
}

/* A layer's MLA attention after a step: from the state, or computed and saved. */
static int attn_result(Run *r, const StepArgs *a, int l, int saved, int save, int computed_rc) {
    if (saved) return resume_load_attn(&r->resume, a->name, l, &a->layers[l], &r->kv_ratio[l]);
    if (computed_rc || !save) return computed_rc;
    return resume_save_attn(&r->resume, a->name, l, &a->layers[l], r->kv_ratio[l]);
}

/* The state keeps RoRoPE's rotation P (small); the layer is rebuilt from it. */
static int step_rorope(Run *r, const StepArgs *a, int l, const EigenSolver *e, int saved, int save) {
    (void)e; /* RoRoPE's problems are per frequency bucket: always small */
    const ModelConfig *c = &r->cfg;
    RoropeShape rs = r->rs;
    rs.freqfold = a->freqfold;
    int L = c->n_kv_heads * c->head_dim, rc;
    GqaAttn g;
    if (run_gqa_attn_load(r, l, &g)) return -1;
    double *P = mallocCheck((size_t)L * L * sizeof *P), *K = NULL;
    if (saved) {
        rc = resume_load_array(&r->resume, a->name, l, P, (int64_t)L * L);
    } else {
        const double *keys = a->stats ? a->stats->sum[l] : NULL;
        if (!keys) { /* data-free: the keys' second moment from the weights */
            K = mallocCheck((size_t)L * L * sizeof *K);
            gqa_key_moment(&g, r->orig.w.layers[l].input_norm, K);
            keys = K;
        }
        rc = rorope_rotation(keys, &rs, P);
        if (!rc && save) rc = resume_save_array(&r->resume, a->name, l, P, (int64_t)L * L);
    }
    if (!rc) mla_from_rorope(&a->layers[l], &g, P, rs.r);
    gqa_attn_free(&g);
    free(P);
    free(K);
    return rc;
}

static int step_bkv_pca(Run *r, const StepArgs *a, int l, const EigenSolver *e, int saved, int save) {
    if (saved) return attn_result(r, a, l, 1, 0, 0);
    const ConvertSettings *s = r->s;
    const CalibStats *st = a->stats;
    MlaAttn *m = &a->layers[l];
    const float *g = r->orig.w.layers[l].input_norm;
    int rc;
    if (st) {
        rc = mla_bkv_pca(m, st->sum[l], st->count, s->kv_lora_rank, s->balance_kv_ratio, e, &r->kv_ratio[l]);
        if (!rc && s->q_lora_rank) rc = mla_q_pca(m, st->qsum[l], st->count, s->q_lora_rank, e);
    } else {
        rc = mla_bkv_pca_weights(m, g, s->kv_lora_rank, s->balance_kv_ratio, e, &r->kv_ratio[l]);
        if (!rc && s->q_lora_rank) rc = mla_q_pca_weights(m, g, s->q_lora_rank, e);
    }
    return attn_result(r, a, l, 0, save, rc);
}

static int step_kv_norm_fit(Run *r, const StepArgs *a, int l, const EigenSolver *e, int saved, int save) {
    (void)e;
    return attn_result(r, a, l, saved, save, saved ? 0 : mla_fit_kv_norm(&a->layers[l], a->stats->sum[l]));
}

/* ---- conversion steps ---- */

int run_freqfold_candidates(const RoropeShape *rs, int fixed, int *out) {
    if (fixed) {
        out[0] = fixed;
        return 1;
    }
    int n = 0;
    for (int f = rs->collapse; f <= rs->rd / 2; f *= 2)
        if ((rs->rd / 2) % f == 0) out[n++] = f;
    return n;
}

static void apply_rorope_choice(Run *r, json_t *done);

/* Step 1: key statistics on the original model (or the weights' moments),
 * RoRoPE at each candidate freqfold, keep the best by evaluation perplexity:
 * the published method. With the fit choosing freqfold per layer
 * (run_fit.c), every candidate's rotations stay in the state for it, and
 * the evaluations only report (they pick the published column's freqfold),
 * so they run only when that column is wanted. */
/* The key statistics, and for a QK-norm model the fold made from them (evaluated). */
static int calibrate_keys(Run *r, CalibStats *keys) {
    const ModelConfig *c = &r->cfg;
    int rc = run_gather_stats(r, &r->orig, keys, CAL_KEYS, c->n_kv_heads * c->head_dim, 0, "calibrate[keys]",
                              "calib-keys");
    if (rc) return rc;
    run_stage_done(r, "calibrate_keys");
    rc = dist_agree(MPI_COMM_WORLD, run_qk_fold_set(r, keys));
    return rc ? rc : run_qk_fold_eval(r);
}

/* *p = the perplexity of freqfold ff's exact RoRoPE model (its MLA at full rank). */
static int eval_rorope_candidate(Run *r, MlaAttn *layers, int ff, double *p) {
    BuiltModel bm;
    int rc = dist_agree(MPI_COMM_WORLD, built_model_init(&bm, &r->orig, layers, BUILD_EXACT, 0));
    if (rc) return rc;
    char label[64], pass[64];
    snprintf(label, sizeof label, "rorope freqfold %d", ff);
    snprintf(pass, sizeof pass, "eval-rorope-f%d", ff);
    rc = run_eval_ppl(r, &bm.model, label, pass, p);
    built_model_free(&bm);
    return rc;
}

/* Record the chosen freqfold (state, report) and drop the others' saved layers. */
static int finish_rorope(Run *r, json_t *search, double best, const int *cands, int nc) {
    json_t *done = json_pack("{sisO}", "freqfold", r->rs.freqfold, "rorope_by_freqfold", search);
    if (isfinite(best)) json_object_set_new(done, "rorope", json_real(best));
    json_t *folded = json_object_get(r->rep.ppl, "qk_norm_folded");
    if (folded) json_object_set(done, "qk_norm_folded", folded);
    json_object_set_new(r->rep.ppl, "rorope_by_freqfold", search);
    int rc = resume_mark_done(&r->resume, "rorope", done);
    apply_rorope_choice(r, done);
    json_decref(done);
    resume_remove(&r->resume, "calib-keys.");
    for (int i = 0; i < nc && !run_choosing_freqfold(r); i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "rorope-f%d.", cands[i]);
        if (cands[i] != r->rs.freqfold) resume_remove(&r->resume, prefix);
    }
    run_stage_done(r, "rorope");
    return rc;
}

static int stage_rorope(Run *r) {
    if (r->done > PHASE_ROROPE) return 0;
    int n = r->cfg.n_layers, rc = 0;
    CalibStats keys = {0};
    if (!run_data_free(r) && (rc = calibrate_keys(r, &keys))) {
        calib_stats_free(&keys);
        return rc;
    }
    int cands[32], nc = run_freqfold_candidates(&r->rs, r->s->freqfold, cands);
    int judge = rorope_judges_candidates(r->s, r->eval_ids != NULL, !run_data_free(r));
    double best = INFINITY;
    json_t *search = json_object();
    for (int i = 0; i < nc && !rc; i++) {
        char label[64];
        snprintf(label, sizeof label, "rorope[freqfold %d]", cands[i]);
        StepArgs a = {.stats = run_data_free(r) ? NULL : &keys, .freqfold = cands[i]};
        snprintf(a.name, sizeof a.name, "rorope-f%d", cands[i]);
        MlaAttn *layers = a.layers = callocCheck((size_t)n, sizeof *a.layers);
        if ((rc = run_each_stage_layer(r, step_rorope, &a, 0, label))) {
            free_layers(layers, n);
            break;
        }
        uint64_t one = layers_bytes(r, layers); /* best so far + this one, + its build when judged */
        run_note_max(&r->rep.mem_attn, one * (r->layers ? 2 : 1) + (judge ? one / 2 : 0));
        if (!judge) { /* the first candidate's layers stand in until the fit rebuilds them */
            if (!r->layers) r->layers = layers, r->rs.freqfold = cands[i];
            else free_layers(layers, n);
            continue;
        }
        double p;
        if ((rc = eval_rorope_candidate(r, layers, cands[i], &p))) {
            free_layers(layers, n);
            break;
        }
        char key[16];
        snprintf(key, sizeof key, "%d", cands[i]);
        json_object_set_new(search, key, json_real(p));
        if (nc == 1 || p < best) { /* every rank sees the same p */
            best = p;
            free_layers(r->layers, n);
            r->layers = layers;
            r->rs.freqfold = cands[i];
        } else {
            free_layers(layers, n);
        }
    }
    if (!run_data_free(r)) calib_stats_free(&keys);
    if (rc) {
        json_decref(search);
        return rc;
    }
    return finish_rorope(r, search, best, cands, nc);
}

/* Phase `name` is finished, with nothing to record beyond that. */
static int mark_phase(Run *r, const char *name) {
    json_t *info = json_object();
    int rc = resume_mark_done(&r->resume, name, info);
    json_decref(info);
    return rc;
}

/* A phase is finished: mark it, and drop the files it made redundant (its
 * pass's sums, the previous step's layers). */
static int phase_done(Run *r, const char *phase, const char *pass_prefix, const char *superseded_prefix) {
    int rc = mark_phase(r, phase);
    resume_remove(&r->resume, pass_prefix);
    if (superseded_prefix) resume_remove(&r->resume, superseded_prefix);
    return rc;
}

/* Latent (and query) statistics on the exact model of `layers` (none when
 * data-free) as pass `pass`, then BKV-PCA on each of them, saved as step
 * `name`. calib_stage (or NULL) times the statistics apart. */
static int bkv_pca_on(Run *r, MlaAttn *layers, const char *pass, const char *calib_label, const char *calib_stage,
                      const char *name, const char *label) {
    const ModelConfig *c = &r->cfg;
    int qdim = r->s->q_lora_rank ? c->n_heads * (c->head_dim + r->s->qk_mqa_dim) : 0;
    int R0 = layers[r->first].R, rc = 0;
    CalibStats lat = {0};
    if (!run_data_free(r)) {
        BuiltModel bm;
        if (dist_agree(MPI_COMM_WORLD, built_model_init(&bm, &r->orig, layers, BUILD_EXACT, 0))) return -1;
        rc = run_gather_stats(r, &bm.model, &lat, CAL_LATENT, R0, qdim, calib_label, pass);
        built_model_free(&bm);
        if (calib_stage && !rc) run_stage_done(r, calib_stage); /* a stopped pass: its seconds stay in progress */
    }
    StepArgs a = {.stats = run_data_free(r) ? NULL : &lat, .layers = layers};
    snprintf(a.name, sizeof a.name, "%s", name);
    if (!rc) rc = run_each_stage_layer(r, step_bkv_pca, &a, R0 > qdim ? R0 : qdim, label);
    calib_stats_free(&lat);
    return rc;
}

/* Steps 2-3: latent (and query) statistics on the RoRoPE model, BKV-PCA. */
static int stage_bkv_pca(Run *r) {
    if (r->done > PHASE_BKV_PCA) return 0;
    int rc = bkv_pca_on(r, r->layers, "calib-latent", "calibrate[latent]", "calibrate_latent", "bkv-pca",
                        run_data_free(r) ? "bkv-svd" : "bkv-pca");
    if (rc) return rc;
    rc = phase_done(r, "bkv-pca", "calib-latent.", NULL);
    int cands[32], nc = run_freqfold_candidates(&r->rs, r->s->freqfold, cands);
    for (int i = 0; i < nc; i++) { /* RoRoPE's layer files (not the phases' .done markers) */
        char rotations[48];
        snprintf(rotations, sizeof rotations, "rorope-f%d.layer", cands[i]);
        resume_remove(&r->resume, rotations);
    }
    resume_remove(&r->resume, "rorope-fit.layer");
    resume_remove(&r->resume, "rorope-fit-info.layer");
    run_stage_done(r, "bkv_pca");
    return rc;
}

/* With the fit on: the MLA the published rotation gives (BKV-PCA on the
 * PCA layers, as stage_bkv_pca), evaluated as ppl.mla_pca so the report
 * compares both. Its passes and layers resume like the others'. */
static int stage_published_mla(Run *r) {
    if (r->done > PHASE_ROROPE_FIT || !run_fit_enabled(r) || !r->eval_ids || r->s->skip_published_mla) return 0;
    int n = r->cfg.n_layers, rc = 0;
    MlaAttn *layers = callocCheck((size_t)n, sizeof *layers);
    StepArgs a = {.layers = layers, .freqfold = r->rs.freqfold};
    snprintf(a.name, sizeof a.name, "rorope-f%d", r->rs.freqfold);
    for (int l = r->first; l < r->end && !rc; l++) rc = step_rorope(r, &a, l, NULL, 1, 0);
    if (dist_agree(MPI_COMM_WORLD, rc)) rc = -1;
    else rc = bkv_pca_on(r, layers, "calib-latent-published", "calibrate[latent, published]", NULL,
                         "bkv-pca-published", "bkv-pca[published]");
    BuiltModel bm;
    if (!rc && dist_agree(MPI_COMM_WORLD, built_model_init(&bm, &r->orig, layers, BUILD_EXACT, 0))) rc = -1;
    else if (!rc) {
        rc = run_eval_into(r, &bm.model, "mla, published rotation", "eval-mla-published", "mla_pca");
        built_model_free(&bm);
    }
    run_note_max(&r->rep.mem_attn, layers_bytes(r, layers) * 3 / 2 + layers_bytes(r, r->layers)); /* + its build */
    free_layers(layers, n);
    if (!rc) run_stage_done(r, "mla_published");
    return rc;
}

static int kv_norm_enabled(const Run *r) { return r->s->kv_norm_fit && !run_data_free(r); }

/* Step 4: fit the export's kv_b_proj to the kv_a_layernorm DeepSeek loaders
 * apply, on the latents of the exact model of r->layers (which the fit only
 * adds kv_b_native to). */
static int stage_kv_norm_fit(Run *r) {
    if (r->done > PHASE_KV_NORM || !kv_norm_enabled(r)) return 0;
    BuiltModel exact;
    if (dist_agree(MPI_COMM_WORLD, built_model_init(&exact, &r->orig, r->layers, BUILD_EXACT, 0))) return -1;
    CalibStats st;
    int rc = run_gather_stats(r, &exact.model, &st, CAL_LATENT_NORMED, 2 * r->s->kv_lora_rank, 0,
                              "calibrate[kv-norm]", "calib-kv-norm");
    built_model_free(&exact);
    StepArgs a = {.stats = &st, .layers = r->layers, .name = "kv-norm"};
    if (!rc) rc = run_each_stage_layer(r, step_kv_norm_fit, &a, 0, "kv-norm-fit");
    calib_stats_free(&st);
    if (rc) return rc;
    rc = phase_done(r, "kv-norm", "calib-kv-norm.", "bkv-pca.layer"); /* not bkv-pca.done: the marker stays */
    run_stage_done(r, "kv_norm_fit");
    return rc;
}

/* ---- continuing from the state ---- */

/* The phases a previous run finished, in order; each one's layer files hold
 * everything the earlier ones produced. */
static const char *const phases[N_PHASES] = {"rorope", "rorope-fit", "bkv-pca", "kv-norm", "attn-fit"};

/* Whether phase i runs at all with these settings (one that does not is
 * never marked, and the phases after it still count). */
static int phase_runs(const Run *r, int i) {
    if (i == PHASE_ROROPE_FIT) return run_fit_enabled(r);
    if (i == PHASE_KV_NORM) return kv_norm_enabled(r);
    if (i == PHASE_ATTN_FIT) return run_attn_fit_enabled(r);
    return 1;
}

/* freqfold and the RoRoPE perplexities from what the phase decided. */
static void apply_rorope_choice(Run *r, json_t *done) {
    r->rs.freqfold = (int)json_integer_value(json_object_get(done, "freqfold"));
    json_t *best = json_object_get(done, "rorope"), *search = json_object_get(done, "rorope_by_freqfold");
    if (best) json_object_set(r->rep.ppl, "rorope_pca", best); /* the published rotation */
    if (best) json_object_set(r->rep.ppl, "rorope", best);     /* the model carried on, until a fit replaces it */
    if (search && !json_object_get(r->rep.ppl, "rorope_by_freqfold")) json_object_set(r->rep.ppl, "rorope_by_freqfold", search);
    json_t *folded = json_object_get(done, "qk_norm_folded");
    if (folded) json_object_set(r->rep.ppl, "qk_norm_folded", folded);
    if (!run_choosing_freqfold(r)) {
        json_object_set_new(r->rep.settings, "freqfold", json_integer(r->rs.freqfold));
        return;
    }
    json_object_set_new(r->rep.settings, "freqfold", json_string("per layer: rorope_fit.layers[].freqfold"));
    if (json_object_size(search)) json_object_set_new(r->rep.settings, "freqfold_published", json_integer(r->rs.freqfold));
}

/* How many phases are done; their layers are loaded into r->layers. */
static int continue_phases(Run *r) {
    int done = 0, last = -1;
    for (int i = 0; i < N_PHASES; i++) {
        if (!phase_runs(r, i)) continue;
        json_t *info = resume_phase_done(&r->resume, phases[i]);
        if (!info) break;
        if (i == PHASE_ROROPE) apply_rorope_choice(r, info);
        if (i == PHASE_ROROPE_FIT) run_apply_fit(r, info);
        if (i == PHASE_ATTN_FIT) run_apply_attn_fit(r, info);
        json_decref(info);
        done = i + 1;
        last = i;
    }
    if (!done) return 0;
    int n = r->cfg.n_layers, rc = 0;
    r->layers = callocCheck((size_t)n, sizeof *r->layers);
    StepArgs a = {.layers = r->layers, .freqfold = r->rs.freqfold};
    if (last == PHASE_ROROPE) snprintf(a.name, sizeof a.name, "rorope-f%d", r->rs.freqfold);
    else snprintf(a.name, sizeof a.name, "%s", phases[last]);
    run_say(r, "resume: %s done before: its calibration and per-layer steps are skipped; the layers come from "
           "%s/%s.layer*.h5\n", phases[last], r->resume.dir, a.name);
    for (int l = r->first; l < r->end && !rc; l++) /* RoRoPE's phases keep rotations, the later ones layers */
        rc = last <= PHASE_ROROPE_FIT ? step_rorope(r, &a, l, NULL, 1, 0) : attn_result(r, &a, l, 1, 0, 0);
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    return done;
}

/* ---- output ---- */

/* A phase boundary: where tests inject a crash or a stop
 * (TRANSMLA_INJECT_FAILURE=boundary:NAME:RANK, dist/topology.h). */
static void boundary(const char *name) {
    char where[64];
    snprintf(where, sizeof where, "boundary:%s", name);
    dist_inject_failure(where);
}

static int is_folder(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The export is written into SAVE.work/export and renamed to SAVE when
 * complete (same folder, so the rename cannot cross file systems). It is
 * made now, so a location that cannot take it fails in the first second; an
 * export an earlier run of this conversion finished is kept, a partial one
 * is started afresh. Collective. */
static int prepare_output(Run *r) {
    snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s/export", r->resume.dir);
    json_t *exported = resume_phase_done(&r->resume, "export"), *finished = resume_phase_done(&r->resume, "finished");
    int state[2] = {0, 0}, rc = 0; /* the export folder exists, the output exists */
    if (run_is_root(r)) {
        state[0] = is_folder(r->tmp_dir);
        state[1] = is_folder(r->s->save_path);
    }
    MPI_Bcast(state, 2, MPI_INT, 0, MPI_COMM_WORLD);
    r->exported = exported && state[0];
    r->complete = finished && !state[0] && state[1]; /* renamed into place, stopped before the cleanup */
    json_decref(exported);
    json_decref(finished);
    if (run_is_root(r) && !r->complete && state[1] && !r->s->overwrite)
        rc = tm_fail("%s: output folder exists; pass --overwrite to replace it", r->s->save_path);
    else if (run_is_root(r) && !r->exported && !r->complete)
        rc = output_make_temp(r->tmp_dir);
    if (!rc && r->exported) run_say(r, "resume: the export was written before: %s is kept\n", r->tmp_dir);
    return dist_agree(MPI_COMM_WORLD, rc);
}

/* Step 5: write the DeepSeek-V3 folder into r->tmp_dir (once). */
static TmDType export_dtype(const Run *r) {
    return r->s->dtype != TM_DTYPE_INVALID ? r->s->dtype : r->orig.w.dtype;
}

static int write_export(Run *r) {
    const ConvertSettings *s = r->s;
    TmDType dtype = export_dtype(r);
    if (r->exported) return 0;
    BuiltModel native;
    if (dist_agree(MPI_COMM_WORLD, built_model_init(&native, &r->orig, r->layers, BUILD_NATIVE, s->rope_interleave)))
        return -1;
    run_say(r, "export: %s (%s)\n", s->save_path, tm_dtype_name(dtype));
    dist_inject_failure("export");
    int rc = export_model(&r->t, r->tmp_dir, &native, s->model_path, dtype, s->max_shard_bytes);
    built_model_free(&native);
    if (rc) return -1;
    if (mark_phase(r, "export")) return -1;
    r->exported = 1;
    run_stage_done(r, "export");
    return 0;
}

/* Step 6: the export read back as a DeepSeek loader would, evaluated. */
static int evaluate_export(Run *r) {
    const ConvertSettings *s = r->s;
    int rc;
    if (build_drops_q_bias(&r->layers[r->first]) && r->eval_ids) {
        BuiltModel with_bias;
        if (dist_agree(MPI_COMM_WORLD,
                       built_model_init(&with_bias, &r->orig, r->layers, BUILD_NATIVE_Q_BIAS, s->rope_interleave)))
            return -1;
        rc = run_eval_into(r, &with_bias.model, "mla_native + q bias", "eval-mla-native-q-bias", "mla_native_with_q_bias");
        built_model_free(&with_bias);
        if (rc) return rc;
    }
    if (r->eval_ids) {
        Model back;
        if (dist_agree(MPI_COMM_WORLD, model_load_part(&back, r->tmp_dir, &r->orig.part))) return -1;
        rc = run_eval_into(r, &back, "mla_native", "eval-mla-native", "mla_native");
        model_free(&back);
        if (rc) return rc;
        run_stage_done(r, "eval_mla_native");
    }
    return 0;
}

/* The report into the export, which is then renamed into place. A stop
 * from here on is not taken: what is left takes a moment. */
static int finish_output(Run *r) {
    run_report_tail(r, export_dtype(r));
    run_memory_report(r);
    int rc = 0;
    if (run_is_root(r)) {
        char path[4300];
        snprintf(path, sizeof path, "%s/transmla_report.json", r->tmp_dir);
        if (json_dump_file(r->rep.report, path, JSON_INDENT(2))) rc = tm_fail("%s: cannot write", path);
    }
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    if (mark_phase(r, "finished")) return -1; /* from here a rerun only renames or cleans up */
    boundary("finished");
    if (dist_agree(MPI_COMM_WORLD, run_is_root(r) ? output_finish(r->tmp_dir, r->s->save_path) : 0)) return -1;
    boundary("renamed");
    if (run_is_root(r)) {
        output_print_ppl(r->rep.ppl, r->rs.freqfold);
        json_t *kv = json_object_get(r->rep.report, "kv_bytes_per_token");
        double before = json_integer_value(json_object_get(kv, "before")), after = json_integer_value(json_object_get(kv, "after"));
        printf("KV cache: %.0f -> %.0f bytes per token (%.2fx smaller)\n", before, after, before / after);
        run_print_memory(r);
        printf("wrote %s\n", r->s->save_path);
    }
    return 0;
}

/* ---- the conversion, in order ---- */

static int stage_eval_original(Run *r) {
    int rc = run_eval_into(r, &r->orig, "original", "eval-original", "original");
    if (!rc) run_stage_done(r, "eval_original");
    dist_inject_failure("calibrate");
    return rc;
}

static int stage_eval_mla(Run *r) {
    BuiltModel exact;
    if (dist_agree(MPI_COMM_WORLD, built_model_init(&exact, &r->orig, r->layers, BUILD_EXACT, 0))) return -1;
    int rc = run_eval_into(r, &exact.model, "mla", "eval-mla", "mla");
    built_model_free(&exact);
    if (!rc) run_stage_done(r, "eval_mla");
    return rc;
}

/* Each phase, in the order it runs: a stop request is taken before it, and
 * it ends at a boundary of its name (where tests crash or stop a run). A
 * phase that leaves a marker in the state (continue_phases) skips itself
 * when an earlier run finished it. */
typedef struct {
    const char *name;
    int (*run)(Run *r);
} Phase;

static const Phase conversion[] = {
    {"eval-original", stage_eval_original},  /* the original model's perplexity */
    {"rorope", stage_rorope},                /* key statistics, RoRoPE per freqfold (marker rorope) */
    {"published-mla", stage_published_mla},  /* with the fit: the published rotation's MLA, for the table */
    {"rorope-fit", stage_rorope_fit},        /* the rotation fitted per layer (marker rorope-fit) */
    {"bkv-pca", stage_bkv_pca},              /* latent statistics, BKV-PCA (marker bkv-pca) */
    {"eval-mla", stage_eval_mla},            /* the exact MLA's perplexity */
    {"kv-norm", stage_kv_norm_fit},          /* kv_b_proj fitted to the exported norm (marker kv-norm) */
    {"attn-fit", stage_attn_fit},            /* every layer's attention fitted as exported (marker attn-fit) */
    {"export", write_export},                /* the DeepSeek-V3 folder in SAVE.work/export (marker export) */
    {"eval-mla-native", evaluate_export},    /* read back as a loader would (marker finished, then renamed) */
    {"finish", finish_output},               /* report, rename into place */
};

static int run_stages(Run *r) {
    if (r->complete) {
        run_say(r, "resume: %s is complete (an earlier run put it in place and stopped before removing %s)\n",
                r->s->save_path, r->resume.dir);
        return 0;
    }
    if ((r->done = continue_phases(r)) < 0) return -1;
    for (size_t i = 0; i < sizeof conversion / sizeof conversion[0]; i++) {
        int rc = run_stop_requested();
        if (!rc) rc = conversion[i].run(r);
        if (rc) return rc;
        boundary(conversion[i].name);
    }
    return 0;
}

/* The work folder: continue from it when it holds this conversion's state. */
static int open_state(Run *r) {
    const ConvertSettings *s = r->s;
    json_t *fp = json_deep_copy(r->rep.settings);
    char path[4200], hex[65] = "";
    snprintf(path, sizeof path, "%s/config.json", s->model_path);
    int rc = sha256_file(path, hex);
    json_object_set_new(fp, "config_sha256", json_string(hex));
    sha256_bytes(r->cal_ids, r->n_cal * sizeof *r->cal_ids, hex);
    json_object_set_new(fp, "cal_ids_sha256", json_string(hex));
    sha256_bytes(r->eval_ids, r->n_eval * sizeof *r->eval_ids, hex);
    json_object_set_new(fp, "eval_ids_sha256", json_string(hex));
    if (!dist_agree(MPI_COMM_WORLD, rc))
        rc = resume_open(&r->resume, s->save_path, fp, s->resume_never ? RESUME_NEVER : RESUME_AUTO, r->t.rank);
    json_decref(fp);
    if (rc) return -1;
    json_object_set_new(r->rep.report, "resume", json_pack("{sssb}", "work_dir", r->resume.dir, "continued",
                                                       r->resume.continued));
    run_say(r, "state: %s (%s)\n", r->resume.dir,
        r->resume.continued ? "continuing from the saved progress of this same conversion" : "new");
    return 0;
}

/* Config, settings, plan, weights and tokens: everything that can be wrong
 * with the input, checked before the heavy work. */
static int prepare(Run *r) {
    const ConvertSettings *s = r->s;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", s->model_path);
    if (dist_agree(MPI_COMM_WORLD, topology_init(&r->t, s->stages))) return -1;
    int rc = hf_config_load(&r->cfg, path);
    if (!rc) rc = check_settings(r);
    if (!rc) rc = check_output(r);
    if (!rc) rc = make_plan(r);
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    r->cal_nseq = s->cal_nsamples;
    r->eval_nseq = s->eval_nsamples;
    if (!run_data_free(r)) rc = read_windows(r, &s->cal, 1, s->cal_seqlen, &r->cal_nseq, &r->cal_ids, &r->n_cal);
    if (!rc && run_has_eval(s)) rc = read_windows(r, &s->eval, 0, s->ppl_seqlen, &r->eval_nseq, &r->eval_ids, &r->n_eval);
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    r->rep.report = json_object();
    r->rep.settings = run_settings_json(r);
    r->rep.ppl = json_object();
    r->rep.seconds = json_object();
    r->rep.peak_rss = json_object();
    json_object_set(r->rep.report, "settings", r->rep.settings);
    json_object_set(r->rep.report, "ppl", r->rep.ppl);
    json_object_set(r->rep.report, "seconds", r->rep.seconds);
    json_object_set(r->rep.report, "peak_rss_after", r->rep.peak_rss); /* which stage raised the peak */
    if (open_state(r) || prepare_output(r)) return -1;
    run_times_load(r);
    dist_inject_failure("load");
    if (load_part(r)) return -1;
    r->kv_ratio = callocCheck((size_t)r->cfg.n_layers, sizeof *r->kv_ratio);
    dist_solver_init(&r->local, &r->local_ctx, MPI_COMM_SELF, s->scalapack_min_n);
    dist_solver_init(&r->stage, &r->stage_ctx, r->t.stage_comm, s->scalapack_min_n);
    const ModelConfig *c = &r->cfg;
    if (run_data_free(r))
        run_say(r, "convert: %s (%s, %d layers, %d heads / %d kv heads, head_dim %d) -> MLA kv_lora_rank %d, qk_mqa_dim %d; "
               "data-free (weights only)\n", s->model_path, c->model_type, c->n_layers, c->n_heads, c->n_kv_heads,
            c->head_dim, s->kv_lora_rank, s->qk_mqa_dim);
    else
        run_say(r, "convert: %s (%s, %d layers, %d heads / %d kv heads, head_dim %d) -> MLA kv_lora_rank %d, qk_mqa_dim %d; "
               "calibration %d x %d tokens\n", s->model_path, c->model_type, c->n_layers, c->n_heads, c->n_kv_heads,
            c->head_dim, s->kv_lora_rank, s->qk_mqa_dim, r->cal_nseq, s->cal_seqlen);
    return 0;
}

int convert_run(const ConvertSettings *s) {
    Run r;
    memset(&r, 0, sizeof r);
    r.s = s;
    r.rep.t_stage = tm_now_s();
    int rc = prepare(&r);
    if (!rc) rc = run_stages(&r);
    if (rc == -1 && !r.exported && r.tmp_dir[0] && run_is_root(&r)) /* a partial export is not kept */
        output_remove_tree(r.tmp_dir);
    if (!rc) resume_finish(&r.resume);                                       /* the output is in place */
    if (rc == RUN_STOPPED) {
        run_times_save(&r);
        if (run_is_root(&r))
            fprintf(stderr, "stopped (signal %d): the progress is saved in %s; run the same command again to "
                            "continue\n", tm_interrupt_signal(), r.resume.dir);
        rc = CONVERT_STOPPED;
    }
    free_layers(r.layers, r.cfg.n_layers);
    free(r.kv_ratio);
    free(r.qk_fold);
    free(r.cal_ids);
    free(r.eval_ids);
    json_decref(r.rep.settings);
    json_decref(r.rep.ppl);
    json_decref(r.rep.seconds);
    json_decref(r.rep.peak_rss);
    json_decref(r.rep.report);
    if (r.orig.w.layers) model_free(&r.orig);
    plan_free(&r.plan);
    dist_solver_free(&r.local_ctx);
    dist_solver_free(&r.stage_ctx);
    topology_free(&r.t);
    return rc;
}
