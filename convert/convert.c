#include "convert/convert.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/build.h"
#include "convert/calibrate.h"
#include "convert/output.h"
#include "convert/resume.h"
#include "convert/rorope.h"
#include "dist/collect.h"
#include "dist/export.h"
#include "dist/pipeline.h"
#include "dist/plan.h"
#include "dist/solver.h"
#include "io/checked.h"
#include "io/clock.h"
#include "io/error.h"
#include "io/interrupt.h"
#include "io/sha256.h"
#include "model/model.h"
#include "model/ppl.h"

/* Everything one rank holds, so that cleanup is one function. A rank holds
 * its stage's layers [first, end) only; arrays indexed by layer are sized
 * for the whole model and empty elsewhere. */
typedef struct {
    const ConvertSettings *s;
    Topology t;
    Plan plan;
    int first, end;
    ModelConfig cfg;
    Model orig;
    int32_t *cal_ids, *eval_ids;
    size_t n_cal, n_eval;
    int cal_nseq, eval_nseq;
    RoropeShape rs;
    MlaAttn *layers;        /* the chosen conversion */
    double *kv_ratio;       /* BKV-PCA balance per layer */
    EigenSolver local, stage; /* LAPACK/ScaLAPACK alone, or ScaLAPACK over the stage's ranks */
    DistSolverCtx local_ctx, stage_ctx;
    int scalapack_calls, lapack_calls;
    /* what the current per-layer step reads and writes */
    const CalibStats *step_stats;
    MlaAttn *step_layers;
    int step_freqfold;
    const char *step_name;  /* its state files' prefix */
    char step_buf[32];
    Resume resume;
    char tmp_dir[4096];
    json_t *report, *ppl, *seconds, *settings;
    double t_stage;
    uint64_t mem_stats, mem_act, mem_attn; /* largest statistics, activations, converted attention held */
} Run;

static int is_root(const Run *r) { return r->t.rank == 0; }

/* A progress line from rank 0 (stage lines are the same on every rank). */
static void say(const Run *r, const char *fmt, ...) {
    if (!r->s->progress || !is_root(r)) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static void stage_done(Run *r, const char *stage) {
    double t = tm_now_s();
    if (is_root(r)) json_object_set_new(r->seconds, stage, json_real(t - r->t_stage));
    r->t_stage = t;
}

static void note_max(uint64_t *slot, uint64_t v) {
    if (v > *slot) *slot = v;
}

static uint64_t layers_bytes(const Run *r, const MlaAttn *layers) {
    uint64_t b = 0;
    for (int l = r->first; l < r->end; l++) b += mla_attn_bytes(&layers[l]);
    return b + b / 2; /* plus the fp32 copy a built model holds */
}

static void free_layers(MlaAttn *layers, int n) {
    if (!layers) return;
    for (int l = 0; l < n; l++) mla_attn_free(&layers[l]);
    free(layers);
}

static int data_free(const Run *r) { return r->s->data_free; }
static int has_eval(const ConvertSettings *s) { return s->eval.tokens || s->eval.dataset; }

/* ---- checks before any heavy work (every rank reaches the same verdict) ---- */

static int check_settings(Run *r) {
    const ConvertSettings *s = r->s;
    const ModelConfig *c = &r->cfg;
    if (c->arch == TM_ARCH_DEEPSEEK_V3)
        return tm_fail("%s: model_type deepseek_v3 is already MLA; convert takes llama, qwen2, mistral or mixtral",
                       s->model_path);
    if (c->mlp_bias)
        return tm_fail("%s/config.json: mlp_bias=true, but DeepSeek-V3's MLP has no bias; such models cannot be exported",
                       s->model_path);
    int d = c->head_dim, L = c->n_kv_heads * d, qr = s->qk_mqa_dim;
    if (qr <= 0 || qr % 2 || qr > d || d % qr)
        return tm_fail("--qk-mqa-dim %d must be even, positive and divide head_dim %d (%s/config.json)", qr, d,
                       s->model_path);
    r->rs = (RoropeShape){.G = c->n_kv_heads, .d = d, .r = qr, .collapse = s->collapse ? s->collapse : d / qr};
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
    if (!s->freqfold && !has_eval(s))
        return tm_fail("--freqfold auto picks by evaluation perplexity and needs --eval-tokens or --eval-dataset");
    if (s->dtype != TM_DTYPE_INVALID && !tm_dtype_is_weight_float(s->dtype))
        return tm_fail("--dtype must be float32, bfloat16 or float16");
    if (s->scalapack_min_n < 1) return tm_fail("--scalapack-min-n %d must be at least 1", s->scalapack_min_n);
    return 0;
}

/* Rank 0 looks at the output location (a shared file system is assumed). */
static int check_output(const Run *r) {
    if (!is_root(r)) return 0;
    struct stat st;
    if (stat(r->s->save_path, &st) == 0 && !r->s->overwrite)
        return tm_fail("%s: output folder exists; pass --overwrite to replace it", r->s->save_path);
    return output_make_parents(r->s->save_path);
}

/* Ids from a source, then whole windows of seqlen (nseq 0: all that fit). */
static int read_windows(Run *r, const TokenSource *src, int calibration, int seqlen, int *nseq, int32_t **ids,
                        size_t *n) {
    const ConvertSettings *s = r->s;
    TokenSource warned = *src;
    warned.warn = is_root(r);
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

static int make_plan(Run *r) {
    const ConvertSettings *s = r->s;
    PlanInputs in = {.stages = s->stages, .replicas = r->t.replicas, .dtype = r->cfg.torch_dtype,
                     .cal_batch = data_free(r) ? 0 : s->cal_batch, .cal_seqlen = s->cal_seqlen,
                     .eval_batch = has_eval(s) ? s->eval_batch : 0, .ppl_seqlen = s->ppl_seqlen,
                     .qk_mqa_dim = s->qk_mqa_dim, .q_lora_rank = s->q_lora_rank, .mem_per_rank = s->mem_per_rank};
    if (plan_make(&r->plan, &r->cfg, &in)) return -1;
    r->first = r->plan.stage[r->t.stage].first;
    r->end = r->plan.stage[r->t.stage].end;
    if (is_root(r) && s->progress) plan_print(&r->plan, &r->cfg, stderr);
    return 0;
}

/* Each rank maps only its stage's tensors; rank 0 lists what each read. */
static int load_part(Run *r) {
    ModelPart part = {.first = r->first, .end = r->end, .embed = r->t.stage == 0, .head = r->t.stage == r->t.stages - 1};
    int rc = dist_agree(MPI_COMM_WORLD, model_load_part(&r->orig, r->s->model_path, &part));
    if (rc) return -1;
    uint64_t mine = r->orig.w.n_bytes, *all = mallocCheck((size_t)r->t.size * sizeof *all);
    MPI_Gather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (is_root(r)) {
        json_t *per = json_array();
        for (int i = 0; i < r->t.size; i++) {
            say(r, "load: rank %d (stage %d) maps %.1f MiB of weights\n", i, i % r->t.stages, all[i] / 1048576.0);
            json_array_append_new(per, json_integer((json_int_t)all[i]));
        }
        json_object_set_new(r->report, "weight_bytes_read_per_rank", per);
    }
    free(all);
    return 0;
}

/* ---- streaming through the pipeline ---- */

/* Step results: 0 done, -1 failed (on every rank), STOPPED: a stop was
 * requested and the progress is saved. */
#define STOPPED 1

/* A stop requested on any rank, seen by all. */
static int stop_requested(void) {
    int mine = tm_interrupt_signal() != 0, any;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any ? STOPPED : 0;
}

/* Run job as resumable pass `pass`: continue from this rank's saved cursor
 * (and sums, when st is given), save where it got to. */
static int resumable_pass(Run *r, const Model *m, PipeJob *job, const char *pass, CalibStats *st, PipeResult *res) {
    PassCursor cur;
    int found = resume_load_pass(&r->resume, pass, &cur, st);
    if (dist_agree(MPI_COMM_WORLD, found < 0)) return -1;
    if (found && job->label && is_root(r)) {
        if (cur.next_mb == cur.n_mb) say(r, "%s: done before (state)\n", job->label);
        else say(r, "%s: resuming at batch %d/%d (state)\n", job->label, cur.next_mb + 1, cur.n_mb);
    }
    job->start_mb = cur.next_mb;
    job->nll0 = cur.nll;
    job->predicted0 = cur.predicted;
    pipeline_run(&r->t, m, job, res);
    int rc = 0;
    if (!found || res->next_mb != cur.next_mb) {
        PassCursor now = {.next_mb = res->next_mb, .n_mb = res->n_mb, .nll = res->nll_local,
                          .predicted = res->predicted_local};
        rc = resume_save_pass(&r->resume, pass, &now, st);
    }
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    if (res->stopped) say(r, "%s: stopped; its sums so far are saved\n", job->label ? job->label : pass);
    return res->stopped ? STOPPED : 0;
}

/* Perplexity of m on the evaluation windows (NAN without them). */
static int eval_ppl(Run *r, const Model *m, const char *label, const char *pass, double *ppl) {
    *ppl = NAN;
    if (!r->eval_ids) return 0;
    char tag[96];
    snprintf(tag, sizeof tag, "eval[%s]", label);
    say(r, "%s: %d windows of %d tokens\n", tag, r->eval_nseq, r->s->ppl_seqlen);
    PipeJob job = {.ids = r->eval_ids, .seqlen = r->s->ppl_seqlen, .nseq = r->eval_nseq, .batch = r->s->eval_batch,
                   .score = 1, .label = r->s->progress ? tag : NULL};
    PipeResult res;
    int rc = resumable_pass(r, m, &job, pass, NULL, &res);
    if (rc) return rc;
    note_max(&r->mem_act, res.activation_bytes);
    say(r, "%s: ppl %.6f (%.0f tokens/s)\n", tag, res.ppl, res.tokens_per_s);
    *ppl = res.ppl;
    return 0;
}

/* ppl[key] = perplexity of m. */
static int eval_into(Run *r, const Model *m, const char *label, const char *pass, const char *key) {
    double p;
    int rc = eval_ppl(r, m, label, pass, &p);
    if (!rc) json_object_set_new(r->ppl, key, json_real(p));
    return rc;
}

/* The statistics of `target` on m, summed over the stage's replicas. */
static int gather_stats(Run *r, const Model *m, CalibStats *st, CalTarget target, int dim, int qdim, const char *label,
                        const char *pass) {
    const ConvertSettings *s = r->s;
    calib_stats_init(st, target, r->cfg.n_layers, r->first, r->end, dim, qdim);
    CalibGather g;
    int batch = s->cal_batch < r->cal_nseq ? s->cal_batch : r->cal_nseq;
    calib_gather_init(&g, st, &m->cfg, (batch < 1 ? 1 : batch) * s->cal_seqlen);
    PipeJob job = {.ids = r->cal_ids, .seqlen = s->cal_seqlen, .nseq = r->cal_nseq, .batch = s->cal_batch,
                   .hook = calib_gather_hook, .hook_ctx = &g, .label = s->progress ? label : NULL};
    PipeResult res;
    int rc = resumable_pass(r, m, &job, pass, st, &res);
    note_max(&r->mem_act, res.activation_bytes + g.bytes);
    calib_gather_free(&g);
    if (rc) return rc;
    dist_sum_stats(st, r->t.stage_comm);
    calib_finish(st);
    note_max(&r->mem_stats, calib_stats_bytes(st));
    return 0;
}

/* ---- per-layer steps, spread over the stage's replicas ---- */

/* One layer's step; saved: its result is in the state (load it, do not
 * compute it), else compute it and save it when `save` is set. */
typedef int (*LayerStep)(Run *r, int l, const EigenSolver *e, int saved, int save);

/* Run step for every layer of the stage. Layer i of the stage goes to
 * replica i mod Dp, which solves its eigenproblems with LAPACK and then
 * broadcasts the result; when the step's largest problem (eigen_n rows)
 * reaches --scalapack-min-n and the stage has several ranks, all of them
 * run each layer together on ScaLAPACK instead. Finished layers are saved
 * as they finish; a stop request ends the loop before the next layer. */
static int each_stage_layer(Run *r, LayerStep step, int eigen_n, const char *label) {
    const Topology *t = &r->t;
    int together = t->replicas > 1 && eigen_n >= r->s->scalapack_min_n, rc = 0, stopped = 0;
    int sc0 = r->stage_ctx.scalapack_calls + r->local_ctx.scalapack_calls;
    int la0 = r->stage_ctx.lapack_calls + r->local_ctx.lapack_calls;
    for (int l = r->first; l < r->end && !rc; l++) {
        int owner = (l - r->first) % t->replicas;
        if (!together && owner != t->replica) continue;
        stopped = tm_interrupt_signal() != 0;
        if (together) MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, t->stage_comm);
        if (stopped) break;
        int saved = resume_has_layer(&r->resume, r->step_name, l), speaker = t->replica == 0 || !together;
        if (r->s->progress && speaker)
            fprintf(stderr, "%s: layer %d/%d (rank %d%s)%s\n", label, l + 1, r->cfg.n_layers, t->rank,
                    together ? ", ScaLAPACK over the stage" : "", saved ? ": done before, loaded from the state" : "");
        rc = step(r, l, together ? &r->stage : &r->local, saved, !saved && speaker);
        char where[64];
        snprintf(where, sizeof where, "%s:layer%d", r->step_name, l);
        dist_inject_failure(where);
    }
    /* count each problem once: a shared one on replica 0 only */
    if (!together || t->replica == 0) {
        r->scalapack_calls += r->stage_ctx.scalapack_calls + r->local_ctx.scalapack_calls - sc0;
        r->lapack_calls += r->stage_ctx.lapack_calls + r->local_ctx.lapack_calls - la0;
    }
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (stopped) {
        say(r, "%s: stopped; the layers done are saved\n", label);
        return STOPPED;
    }
    if (!together)
        for (int l = r->first; l < r->end; l++) {
            int owner = (l - r->first) % t->replicas;
            mla_attn_bcast(&r->step_layers[l], owner, t->stage_comm);
            MPI_Bcast(&r->kv_ratio[l], 1, MPI_DOUBLE, owner, t->stage_comm);
        }
    return 0;
}

/* A layer's MLA attention after a step: from the state, or computed and saved. */
static int attn_result(Run *r, int l, int saved, int save, int computed_rc) {
    if (saved) return resume_load_attn(&r->resume, r->step_name, l, &r->step_layers[l], &r->kv_ratio[l]);
    if (computed_rc || !save) return computed_rc;
    return resume_save_attn(&r->resume, r->step_name, l, &r->step_layers[l], r->kv_ratio[l]);
}

/* The state keeps RoRoPE's rotation P (small); the layer is rebuilt from it. */
static int step_rorope(Run *r, int l, const EigenSolver *e, int saved, int save) {
    (void)e; /* RoRoPE's problems are per frequency bucket: always small */
    const ModelConfig *c = &r->cfg;
    RoropeShape rs = r->rs;
    rs.freqfold = r->step_freqfold;
    int L = c->n_kv_heads * c->head_dim, rc;
    GqaAttn g;
    gqa_attn_load(&g, c, &r->orig.w.layers[l]);
    double *P = mallocCheck((size_t)L * L * sizeof *P), *K = NULL;
    if (saved) {
        rc = resume_load_rotation(&r->resume, r->step_name, l, P, (int64_t)L * L);
    } else {
        const double *keys = r->step_stats ? r->step_stats->sum[l] : NULL;
        if (!keys) { /* data-free: the keys' second moment from the weights */
            K = mallocCheck((size_t)L * L * sizeof *K);
            gqa_key_moment(&g, r->orig.w.layers[l].input_norm, K);
            keys = K;
        }
        rc = rorope_rotation(keys, &rs, P);
        if (!rc && save) rc = resume_save_rotation(&r->resume, r->step_name, l, P, (int64_t)L * L);
    }
    if (!rc) mla_from_rorope(&r->step_layers[l], &g, P, rs.r);
    gqa_attn_free(&g);
    free(P);
    free(K);
    return rc;
}

static int step_bkv_pca(Run *r, int l, const EigenSolver *e, int saved, int save) {
    const ConvertSettings *s = r->s;
    MlaAttn *a = &r->step_layers[l];
    const float *g = r->orig.w.layers[l].input_norm;
    int rc = 0;
    if (saved) {
    } else if (r->step_stats) {
        rc = mla_bkv_pca(a, r->step_stats->sum[l], r->step_stats->count, s->kv_lora_rank, s->balance_kv_ratio, e,
                         &r->kv_ratio[l]);
        if (!rc && s->q_lora_rank) rc = mla_q_pca(a, r->step_stats->qsum[l], r->step_stats->count, s->q_lora_rank, e);
    } else {
        rc = mla_bkv_pca_weights(a, g, s->kv_lora_rank, s->balance_kv_ratio, e, &r->kv_ratio[l]);
        if (!rc && s->q_lora_rank) rc = mla_q_pca_weights(a, g, s->q_lora_rank, e);
    }
    return attn_result(r, l, saved, save, rc);
}

static int step_kv_norm_fit(Run *r, int l, const EigenSolver *e, int saved, int save) {
    (void)e;
    return attn_result(r, l, saved, save, saved ? 0 : mla_fit_kv_norm(&r->step_layers[l], r->step_stats->sum[l]));
}

/* ---- conversion steps ---- */

static int freqfold_candidates(const RoropeShape *rs, int fixed, int *out) {
    if (fixed) {
        out[0] = fixed;
        return 1;
    }
    int n = 0;
    for (int f = rs->collapse; f <= rs->d / 2; f *= 2)
        if ((rs->d / 2) % f == 0) out[n++] = f;
    return n;
}

static void apply_rorope_choice(Run *r, json_t *done);

/* Step 1: key statistics on the original model (or the weights' moments),
 * RoRoPE at each candidate freqfold, keep the best by evaluation perplexity. */
static int stage_rorope(Run *r) {
    const ModelConfig *c = &r->cfg;
    int n = c->n_layers, rc = 0;
    CalibStats keys = {0};
    if (!data_free(r)) {
        rc = gather_stats(r, &r->orig, &keys, CAL_KEYS, c->n_kv_heads * c->head_dim, 0, "calibrate[keys]", "calib-keys");
        if (rc) {
            calib_stats_free(&keys);
            return rc;
        }
        stage_done(r, "calibrate_keys");
    }
    r->step_stats = data_free(r) ? NULL : &keys;
    int cands[32], nc = freqfold_candidates(&r->rs, r->s->freqfold, cands);
    double best = INFINITY;
    json_t *search = json_object();
    for (int i = 0; i < nc && !rc; i++) {
        char label[64], pass[64];
        snprintf(label, sizeof label, "rorope[freqfold %d]", cands[i]);
        snprintf(r->step_buf, sizeof r->step_buf, "rorope-f%d", cands[i]);
        r->step_name = r->step_buf;
        r->step_layers = callocCheck((size_t)n, sizeof *r->step_layers);
        r->step_freqfold = cands[i];
        MlaAttn *layers = r->step_layers;
        if ((rc = each_stage_layer(r, step_rorope, 0, label))) {
            free_layers(layers, n);
            break;
        }
        note_max(&r->mem_attn, layers_bytes(r, layers) * (r->layers ? 2 : 1)); /* best so far + this one */
        BuiltModel bm;
        if ((rc = dist_agree(MPI_COMM_WORLD, built_model_init(&bm, &r->orig, layers, BUILD_EXACT, 0)))) {
            free_layers(layers, n);
            break;
        }
        snprintf(label, sizeof label, "rorope freqfold %d", cands[i]);
        snprintf(pass, sizeof pass, "eval-rorope-f%d", cands[i]);
        double p;
        rc = eval_ppl(r, &bm.model, label, pass, &p);
        built_model_free(&bm);
        if (rc) {
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
    r->step_layers = NULL;
    if (!data_free(r)) calib_stats_free(&keys);
    if (rc) {
        json_decref(search);
        return rc;
    }
    json_t *done = json_pack("{sisO}", "freqfold", r->rs.freqfold, "rorope_by_freqfold", search);
    if (isfinite(best)) json_object_set_new(done, "rorope", json_real(best));
    json_object_set_new(r->ppl, "rorope_by_freqfold", search);
    rc = resume_mark_done(&r->resume, "rorope", done);
    apply_rorope_choice(r, done);
    json_decref(done);
    resume_remove(&r->resume, "calib-keys.");
    for (int i = 0; i < nc; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "rorope-f%d.", cands[i]);
        if (cands[i] != r->rs.freqfold) resume_remove(&r->resume, prefix);
    }
    stage_done(r, "rorope");
    return rc;
}

/* Steps 2-3: latent (and query) statistics on the RoRoPE model, BKV-PCA. */
static int stage_bkv_pca(Run *r) {
    const ModelConfig *c = &r->cfg;
    const ConvertSettings *s = r->s;
    int qdim = s->q_lora_rank ? c->n_heads * (c->head_dim + s->qk_mqa_dim) : 0;
    int R0 = r->layers[r->first].R, rc = 0;
    CalibStats lat = {0};
    if (!data_free(r)) {
        BuiltModel bm;
        if (dist_agree(MPI_COMM_WORLD, built_model_init(&bm, &r->orig, r->layers, BUILD_EXACT, 0))) return -1;
        rc = gather_stats(r, &bm.model, &lat, CAL_LATENT, R0, qdim, "calibrate[latent]", "calib-latent");
        built_model_free(&bm);
        stage_done(r, "calibrate_latent");
    }
    r->step_stats = data_free(r) ? NULL : &lat;
    r->step_layers = r->layers;
    r->step_name = "bkv-pca";
    if (!rc) rc = each_stage_layer(r, step_bkv_pca, R0 > qdim ? R0 : qdim, data_free(r) ? "bkv-svd" : "bkv-pca");
    calib_stats_free(&lat);
    if (rc) return rc;
    json_t *done = json_object();
    rc = resume_mark_done(&r->resume, "bkv-pca", done);
    json_decref(done);
    resume_remove(&r->resume, "calib-latent.");
    resume_remove(&r->resume, "rorope-f");
    stage_done(r, "bkv_pca");
    return rc;
}

/* Step 4: fit the export's kv_b_proj to the kv_a_layernorm DeepSeek loaders
 * apply, on the latents of `exact` (the BUILD_EXACT model of r->layers). */
static int stage_kv_norm_fit(Run *r, const Model *exact) {
    CalibStats st;
    int rc = gather_stats(r, exact, &st, CAL_LATENT_NORMED, 2 * r->s->kv_lora_rank, 0, "calibrate[kv-norm]",
                          "calib-kv-norm");
    r->step_stats = &st;
    r->step_layers = r->layers;
    r->step_name = "kv-norm";
    if (!rc) rc = each_stage_layer(r, step_kv_norm_fit, 0, "kv-norm-fit");
    calib_stats_free(&st);
    if (rc) return rc;
    json_t *done = json_object();
    rc = resume_mark_done(&r->resume, "kv-norm", done);
    json_decref(done);
    resume_remove(&r->resume, "calib-kv-norm.");
    resume_remove(&r->resume, "bkv-pca.");
    stage_done(r, "kv_norm_fit");
    return rc;
}

/* ---- continuing from the state ---- */

/* The phases a previous run finished, in order; each one's layer files hold
 * everything the earlier ones produced. */
static const char *const phases[] = {"rorope", "bkv-pca", "kv-norm"};
#define N_PHASES 3

/* freqfold and the RoRoPE perplexities from what the phase decided. */
static void apply_rorope_choice(Run *r, json_t *done) {
    r->rs.freqfold = (int)json_integer_value(json_object_get(done, "freqfold"));
    json_t *best = json_object_get(done, "rorope"), *search = json_object_get(done, "rorope_by_freqfold");
    if (best) json_object_set(r->ppl, "rorope", best);
    if (search && !json_object_get(r->ppl, "rorope_by_freqfold")) json_object_set(r->ppl, "rorope_by_freqfold", search);
    json_object_set_new(r->settings, "freqfold", json_integer(r->rs.freqfold));
}

/* How many phases are done; their layers are loaded into r->layers. */
static int continue_phases(Run *r) {
    int done = 0;
    for (int i = 0; i < N_PHASES; i++) {
        json_t *info = resume_phase_done(&r->resume, phases[i]);
        if (!info) break;
        if (i == 0) apply_rorope_choice(r, info);
        json_decref(info);
        done = i + 1;
    }
    if (!done) return 0;
    int n = r->cfg.n_layers, rc = 0;
    r->layers = r->step_layers = callocCheck((size_t)n, sizeof *r->layers);
    r->step_freqfold = r->rs.freqfold;
    if (done == 1) snprintf(r->step_buf, sizeof r->step_buf, "rorope-f%d", r->rs.freqfold);
    else snprintf(r->step_buf, sizeof r->step_buf, "%s", phases[done - 1]);
    r->step_name = r->step_buf;
    say(r, "resume: %s done before: its calibration and per-layer steps are skipped; the layers come from "
           "%s/%s.layer*.h5\n", phases[done - 1], r->resume.dir, r->step_name);
    for (int l = r->first; l < r->end && !rc; l++)
        rc = done == 1 ? step_rorope(r, l, NULL, 1, 0) : attn_result(r, l, 1, 0, 0);
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    return done;
}

/* ---- output ---- */

static json_t *settings_json(const Run *r) {
    const ConvertSettings *s = r->s;
    json_t *o = json_object();
    json_object_set_new(o, "model_path", json_string(s->model_path));
    json_object_set_new(o, "cal_dataset", json_string(data_free(r) ? "none" : s->cal.dataset ? s->cal.dataset : "tokens"));
    json_object_set_new(o, "cal_source", data_free(r) ? json_null() : json_string(token_source_describe(&s->cal)));
    json_object_set_new(o, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(o, "cal_max_seqlen", json_integer(s->cal_seqlen));
    json_object_set_new(o, "cal_nsamples", json_integer(r->cal_nseq));
    json_object_set_new(o, "eval_source", has_eval(s) ? json_string(token_source_describe(&s->eval)) : json_null());
    json_object_set_new(o, "ppl_seqlen", json_integer(s->ppl_seqlen));
    json_object_set_new(o, "qk_mqa_dim", json_integer(r->rs.r));
    json_object_set_new(o, "collapse", json_integer(r->rs.collapse));
    json_object_set_new(o, "freqfold_requested", s->freqfold ? json_integer(s->freqfold) : json_string("auto"));
    json_object_set_new(o, "kv_lora_rank", json_integer(s->kv_lora_rank));
    json_object_set_new(o, "q_lora_rank", s->q_lora_rank ? json_integer(s->q_lora_rank) : json_null());
    json_object_set_new(o, "balance_kv_ratio", json_real(s->balance_kv_ratio));
    json_object_set_new(o, "rope_interleave", json_boolean(s->rope_interleave));
    json_object_set_new(o, "calibration", json_string(data_free(r) ? "none (weights only)" : "parallel"));
    json_object_set_new(o, "kv_norm", json_string(s->kv_norm_fit && !data_free(r) ? "fit" : "rms"));
    json_object_set_new(o, "ranks", json_integer(r->t.size));
    json_object_set_new(o, "stages", json_integer(r->t.stages));
    json_object_set_new(o, "replicas", json_integer(r->t.replicas));
    json_object_set_new(o, "scalapack_min_n", json_integer(s->scalapack_min_n));
    return o;
}

/* Per-rank memory, summed pieces on rank 0: peak RSS, weights, statistics,
 * activations, converted attention. */
static void memory_report(Run *r) {
    uint64_t mine[5] = {output_peak_rss(), r->orig.w.n_bytes, r->mem_stats, r->mem_act, r->mem_attn};
    uint64_t *all = mallocCheck((size_t)r->t.size * 5 * sizeof *all);
    MPI_Gather(mine, 5, MPI_UINT64_T, all, 5, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (is_root(r)) {
        json_t *per = json_array();
        for (int i = 0; i < r->t.size; i++) {
            uint64_t *m = all + 5 * i;
            json_array_append_new(per, json_pack("{sisisIsIsIsIsI}", "rank", i, "stage", i % r->t.stages,
                                                 "peak_rss_bytes", (json_int_t)m[0], "weights_bytes", (json_int_t)m[1],
                                                 "statistics_bytes", (json_int_t)m[2], "activation_bytes",
                                                 (json_int_t)m[3], "converted_attention_bytes", (json_int_t)m[4]));
        }
        /* rank 0's figures at the top level, as a one-process run reports them */
        json_t *mem = json_pack("{sIsIsIsIsI}", "peak_rss_bytes", (json_int_t)all[0], "weights_bytes",
                                (json_int_t)all[1], "statistics_bytes", (json_int_t)all[2], "activation_bytes",
                                (json_int_t)all[3], "converted_attention_bytes", (json_int_t)all[4]);
        json_object_set_new(mem, "per_rank", per);
        json_object_set_new(r->report, "memory", mem);
    }
    free(all);
}

static void print_memory(const Run *r) {
    json_t *per = json_object_get(json_object_get(r->report, "memory"), "per_rank");
    size_t i;
    json_t *m;
    printf("%-6s %-6s %12s %12s %12s %12s %12s\n", "rank", "stage", "peak MiB", "weights", "converted", "statistics",
           "micro-batch");
    json_array_foreach(per, i, m) {
#define MIB(k) (json_integer_value(json_object_get(m, k)) / 1048576.0)
        printf("%-6zu %-6lld %12.1f %12.1f %12.1f %12.1f %12.1f\n", i,
               (long long)json_integer_value(json_object_get(m, "stage")), MIB("peak_rss_bytes"), MIB("weights_bytes"),
               MIB("converted_attention_bytes"), MIB("statistics_bytes"), MIB("activation_bytes"));
#undef MIB
    }
}

/* Rank 0 names the temporary folder (its pid) and creates it. */
static int make_temp_dir(Run *r) {
    if (is_root(r)) snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s.tmp-%ld", r->s->save_path, (long)getpid());
    MPI_Bcast(r->tmp_dir, sizeof r->tmp_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    return dist_agree(MPI_COMM_WORLD, is_root(r) ? output_make_temp(r->tmp_dir) : 0);
}

static void report_tail(Run *r, TmDType dtype) {
    const ModelConfig *c = &r->cfg;
    const ConvertSettings *s = r->s;
    double *ratios = callocCheck((size_t)c->n_layers, sizeof *ratios), *sum = callocCheck((size_t)c->n_layers, sizeof *sum);
    if (r->t.replica == 0)
        for (int l = r->first; l < r->end; l++) ratios[l] = r->kv_ratio[l];
    MPI_Reduce(ratios, sum, c->n_layers, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    int calls[2] = {r->scalapack_calls, r->lapack_calls}, total[2];
    MPI_Reduce(calls, total, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (is_root(r)) {
        json_t *a = json_array();
        for (int l = 0; l < c->n_layers; l++) json_array_append_new(a, json_real(sum[l]));
        json_object_set_new(r->report, "kv_balance_ratio", a);
        json_object_set_new(r->report, "eigen_solver",
                            json_pack("{sisi}", "scalapack_problems", total[0], "lapack_problems", total[1]));
        int L = c->n_kv_heads * c->head_dim;
        uint64_t before = 2ull * L * c->n_layers * tm_dtype_size(r->orig.w.dtype);
        uint64_t after = (uint64_t)(s->kv_lora_rank + s->qk_mqa_dim) * c->n_layers * tm_dtype_size(dtype);
        json_object_set_new(r->report, "kv_bytes_per_token",
                            json_pack("{sIsI}", "before", (json_int_t)before, "after", (json_int_t)after));
        json_t *notes = json_array();
        if (build_drops_q_bias(&r->layers[r->first]))
            json_array_append_new(notes, json_string("q_proj bias: DeepSeek's q_proj has no bias slot, so the export drops "
                                                     "it; ppl.mla_native_with_q_bias is the export with it kept, so "
                                                     "ppl.mla_native - ppl.mla_native_with_q_bias is its cost; "
                                                     "--q-lora-rank keeps it in q_a_proj.bias"));
        if (c->sliding_window)
            json_array_append_new(notes, json_string("sliding_window: DeepSeek attention has none; the export attends to "
                                                     "the whole context"));
        if (data_free(r))
            json_array_append_new(notes, json_string("--cal-dataset none: principal directions from the weights alone "
                                                     "(inputs taken as the input norm's weight times white noise); "
                                                     "kv_a_layernorm weight = the latent RMS under that assumption"));
        json_object_set_new(r->report, "notes", notes);
    }
    free(ratios);
    free(sum);
}

/* Steps 5-6: export to the temp folder, read it back as a DeepSeek loader
 * would, report, rename into place. */
static int stage_export(Run *r) {
    const ConvertSettings *s = r->s;
    TmDType dtype = s->dtype != TM_DTYPE_INVALID ? s->dtype : r->orig.w.dtype;
    if (make_temp_dir(r)) return -1;
    BuiltModel native;
    if (dist_agree(MPI_COMM_WORLD, built_model_init(&native, &r->orig, r->layers, BUILD_NATIVE, s->rope_interleave)))
        return -1;
    say(r, "export: %s (%s)\n", s->save_path, tm_dtype_name(dtype));
    dist_inject_failure("export");
    int rc = dist_export(&r->t, r->tmp_dir, &native, s->model_path, dtype, s->max_shard_bytes);
    built_model_free(&native);
    if (rc) return -1;
    stage_done(r, "export");
    if (build_drops_q_bias(&r->layers[r->first]) && r->eval_ids) {
        BuiltModel with_bias;
        if (dist_agree(MPI_COMM_WORLD,
                       built_model_init(&with_bias, &r->orig, r->layers, BUILD_NATIVE_Q_BIAS, s->rope_interleave)))
            return -1;
        rc = eval_into(r, &with_bias.model, "mla_native + q bias", "eval-mla-native-q-bias", "mla_native_with_q_bias");
        built_model_free(&with_bias);
        if (rc) return rc;
    }
    if (r->eval_ids) {
        Model back;
        if (dist_agree(MPI_COMM_WORLD, model_load_part(&back, r->tmp_dir, &r->orig.part))) return -1;
        rc = eval_into(r, &back, "mla_native", "eval-mla-native", "mla_native");
        model_free(&back);
        if (rc) return rc;
        stage_done(r, "eval_mla_native");
    }
    report_tail(r, dtype);
    memory_report(r);
    rc = 0;
    if (is_root(r)) {
        char path[4200];
        snprintf(path, sizeof path, "%s/transmla_report.json", r->tmp_dir);
        if (json_dump_file(r->report, path, JSON_INDENT(2))) rc = tm_fail("%s: cannot write", path);
        if (!rc) rc = output_finish(r->tmp_dir, s->save_path);
    }
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    r->tmp_dir[0] = 0;
    if (is_root(r)) {
        output_print_ppl(r->ppl, r->rs.freqfold);
        json_t *kv = json_object_get(r->report, "kv_bytes_per_token");
        double before = json_integer_value(json_object_get(kv, "before")), after = json_integer_value(json_object_get(kv, "after"));
        printf("KV cache: %.0f -> %.0f bytes per token (%.2fx smaller)\n", before, after, before / after);
        print_memory(r);
        printf("wrote %s\n", s->save_path);
    }
    return 0;
}

static int run_stages(Run *r) {
    int rc = eval_into(r, &r->orig, "original", "eval-original", "original");
    if (rc) return rc;
    stage_done(r, "eval_original");
    dist_inject_failure("calibrate");
    int done = continue_phases(r);
    if (done < 0) return -1;
    if (!rc && done < 1) rc = stop_requested() ? STOPPED : stage_rorope(r);
    if (!rc && done < 2) rc = stop_requested() ? STOPPED : stage_bkv_pca(r);
    if (rc) return rc;

    BuiltModel exact;
    if (dist_agree(MPI_COMM_WORLD, built_model_init(&exact, &r->orig, r->layers, BUILD_EXACT, 0))) return -1;
    rc = eval_into(r, &exact.model, "mla", "eval-mla", "mla");
    if (!rc) stage_done(r, "eval_mla");
    /* the fit only adds kv_b_native to r->layers; the exact model keeps its own fp32 copies */
    if (!rc && done < 3 && r->s->kv_norm_fit && !data_free(r))
        rc = stop_requested() ? STOPPED : stage_kv_norm_fit(r, &exact.model);
    built_model_free(&exact);
    if (!rc) rc = stop_requested();
    return rc ? rc : stage_export(r);
}

/* The work folder: continue from it when it holds this conversion's state. */
static int open_state(Run *r) {
    const ConvertSettings *s = r->s;
    json_t *fp = json_deep_copy(r->settings);
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
    json_object_set_new(r->report, "resume", json_pack("{sssb}", "work_dir", r->resume.dir, "continued",
                                                       r->resume.continued));
    say(r, "state: %s (%s)\n", r->resume.dir,
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
    if (!data_free(r)) rc = read_windows(r, &s->cal, 1, s->cal_seqlen, &r->cal_nseq, &r->cal_ids, &r->n_cal);
    if (!rc && has_eval(s)) rc = read_windows(r, &s->eval, 0, s->ppl_seqlen, &r->eval_nseq, &r->eval_ids, &r->n_eval);
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    r->report = json_object();
    r->settings = settings_json(r);
    r->ppl = json_object();
    r->seconds = json_object();
    json_object_set(r->report, "settings", r->settings);
    json_object_set(r->report, "ppl", r->ppl);
    json_object_set(r->report, "seconds", r->seconds);
    if (open_state(r)) return -1;
    dist_inject_failure("load");
    if (load_part(r)) return -1;
    r->kv_ratio = callocCheck((size_t)r->cfg.n_layers, sizeof *r->kv_ratio);
    dist_solver_init(&r->local, &r->local_ctx, MPI_COMM_SELF, s->scalapack_min_n);
    dist_solver_init(&r->stage, &r->stage_ctx, r->t.stage_comm, s->scalapack_min_n);
    const ModelConfig *c = &r->cfg;
    if (data_free(r))
        say(r, "convert: %s (%s, %d layers, %d heads / %d kv heads, head_dim %d) -> MLA kv_lora_rank %d, qk_mqa_dim %d; "
               "data-free (weights only)\n", s->model_path, c->model_type, c->n_layers, c->n_heads, c->n_kv_heads,
            c->head_dim, s->kv_lora_rank, s->qk_mqa_dim);
    else
        say(r, "convert: %s (%s, %d layers, %d heads / %d kv heads, head_dim %d) -> MLA kv_lora_rank %d, qk_mqa_dim %d; "
               "calibration %d x %d tokens\n", s->model_path, c->model_type, c->n_layers, c->n_heads, c->n_kv_heads,
            c->head_dim, s->kv_lora_rank, s->qk_mqa_dim, r->cal_nseq, s->cal_seqlen);
    return 0;
}

int convert_run(const ConvertSettings *s) {
    Run r;
    memset(&r, 0, sizeof r);
    r.s = s;
    r.t_stage = tm_now_s();
    int rc = prepare(&r);
    if (!rc) rc = run_stages(&r);
    if (rc && r.tmp_dir[0] && is_root(&r)) output_remove_tree(r.tmp_dir); /* never leave a half-written folder */
    if (!rc) resume_finish(&r.resume);                                       /* the output is in place */
    if (rc == STOPPED) {
        if (is_root(&r))
            fprintf(stderr, "stopped (signal %d): the progress is saved in %s; run the same command again to "
                            "continue\n", tm_interrupt_signal(), r.resume.dir);
        rc = CONVERT_STOPPED;
    }
    free_layers(r.layers, r.cfg.n_layers);
    free(r.kv_ratio);
    free(r.cal_ids);
    free(r.eval_ids);
    json_decref(r.settings);
    json_decref(r.ppl);
    json_decref(r.seconds);
    json_decref(r.report);
    if (r.orig.w.layers) model_free(&r.orig);
    plan_free(&r.plan);
    topology_free(&r.t);
    return rc;
}
