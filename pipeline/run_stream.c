/* Streaming passes and per-layer steps for `transmla convert` (run.h):
 * every pass resumes from and saves to the rank's state file, every layer
 * result is saved as it is made, and a stop request ends both cleanly. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/base/interrupt.h"
#include "model/ppl.h"
#include "pipeline/collect.h"
#include "pipeline/output.h"
#include "pipeline/run.h"
#include "pipeline/stream.h"

int run_is_root(const Run *r) { return r->t.rank == 0; }

/* A progress line from rank 0 (stage lines are the same on every rank). */
void run_say(const Run *r, const char *fmt, ...) {
    if (!r->s->progress || !run_is_root(r)) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* Added to what earlier runs of a resumed conversion spent in the stage.
 * The first stage the earlier runs did not finish is the one they stopped
 * in: it also gets their seconds in it (a stage they finished and this run
 * does again, the original's evaluation, gets only its own). The peak
 * after a stage is the first run's to finish it: a stage run again would
 * otherwise show the peak the later stages of the earlier runs reached. */
void run_stage_done(Run *r, const char *stage) {
    double t = tm_now_s();
    if (run_is_root(r)) {
        json_t *before = json_object_get(r->rep.seconds, stage);
        double spent = t - r->rep.t_stage;
        if (!before) {
            spent += r->rep.carried;
            r->rep.carried = 0;
        }
        json_object_set_new(r->rep.seconds, stage, json_real(json_real_value(before) + spent));
        if (!json_object_get(r->rep.peak_rss, stage))
            json_object_set_new(r->rep.peak_rss, stage, json_integer((json_int_t)run_peak_rss(r)));
    }
    r->rep.t_stage = t;
}

uint64_t run_peak_rss(const Run *r) {
    uint64_t now = output_peak_rss();
    return now > r->rep.prior_peak ? now : r->rep.prior_peak;
}

void run_note_max(uint64_t *slot, uint64_t v) {
    if (v > *slot) *slot = v;
}

/* ---- streaming through the pipeline ---- */

int run_stop_requested(void) { return dist_stop_signal(MPI_COMM_WORLD) ? RUN_STOPPED : 0; }

/* Run job as resumable pass `pass`: continue from this rank's saved cursor
 * (and sums, when st is given), save where it got to. */
static int resumable_pass(Run *r, const Model *m, PipeJob *job, const char *pass, CalibStats *st, PipeResult *res) {
    PassCursor cur;
    int found = resume_load_pass(&r->resume, pass, &cur, st);
    if (dist_agree(MPI_COMM_WORLD, found < 0)) return -1;
    if (found && job->label && run_is_root(r)) {
        if (cur.next_mb == cur.n_mb) run_say(r, "%s: done before (state)\n", job->label);
        else run_say(r, "%s: resuming at batch %d/%d (state)\n", job->label, cur.next_mb + 1, cur.n_mb);
    }
    job->start_mb = cur.next_mb;
    job->nll0 = cur.nll;
    job->predicted0 = cur.predicted;
    if (pipeline_run(&r->t, m, job, res)) return -1;
    int rc = 0;
    if (!found || res->next_mb != cur.next_mb) {
        PassCursor now = {.next_mb = res->next_mb, .n_mb = res->n_mb, .nll = res->nll_local,
                          .predicted = res->predicted_local};
        rc = resume_save_pass(&r->resume, pass, &now, st);
    }
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    if (res->stopped) run_say(r, "%s: stopped; its sums so far are saved\n", job->label ? job->label : pass);
    return res->stopped ? RUN_STOPPED : 0;
}

/* Perplexity of m on the evaluation windows (NAN without them). */
int run_eval_ppl(Run *r, const Model *m, const char *label, const char *pass, double *ppl) {
    *ppl = NAN;
    if (!r->eval_ids) return 0;
    char tag[96];
    snprintf(tag, sizeof tag, "eval[%s]", label);
    run_say(r, "%s: %d windows of %d tokens\n", tag, r->eval_nseq, r->s->ppl_seqlen);
    PipeJob job = {.ids = r->eval_ids, .seqlen = r->s->ppl_seqlen, .nseq = r->eval_nseq, .batch = r->s->eval_batch,
                   .score = 1, .label = r->s->progress ? tag : NULL, .device = r->s->device,
                   .gpu_fp32 = r->s->gpu_fp32};
    PipeResult res;
    int rc = resumable_pass(r, m, &job, pass, NULL, &res);
    if (rc) return rc;
    run_note_max(&r->rep.mem_act, res.activation_bytes);
    if (ppl_check_finite(res.ppl, res.nll, res.predicted)) return tm_fail_context("%s", tag); /* same on every rank */
    run_say(r, "%s: ppl %.6f (%.0f tokens/s)\n", tag, res.ppl, res.tokens_per_s);
    *ppl = res.ppl;
    return 0;
}

/* ppl[key] = perplexity of m. */
int run_eval_into(Run *r, const Model *m, const char *label, const char *pass, const char *key) {
    double p;
    int rc = run_eval_ppl(r, m, label, pass, &p);
    if (!rc) json_object_set_new(r->rep.ppl, key, json_real(p));
    return rc;
}

/* The statistics of `target` on m, summed over the stage's replicas. */
int run_gather_stats(Run *r, const Model *m, CalibStats *st, CalTarget target, int dim, int qdim, const char *label,
                     const char *pass) {
    const ConvertSettings *s = r->s;
    calib_stats_init(st, target, r->cfg.n_layers, r->first, r->end, dim, qdim);
    if (target == CAL_KEYS && m->cfg.qk_norm) calib_stats_want_rinv(st, m->cfg.n_heads + m->cfg.n_kv_heads);
    CalibGather g;
    int batch = s->cal_batch < r->cal_nseq ? s->cal_batch : r->cal_nseq;
    calib_gather_init(&g, st, &m->cfg, (batch < 1 ? 1 : batch) * s->cal_seqlen);
    PipeJob job = {.ids = r->cal_ids, .seqlen = s->cal_seqlen, .nseq = r->cal_nseq, .batch = s->cal_batch,
                   .hook = calib_gather_hook, .hook_ctx = &g, .stats = st, .label = s->progress ? label : NULL,
                   .device = s->device, .gpu_fp32 = s->gpu_fp32};
    PipeResult res;
    int rc = resumable_pass(r, m, &job, pass, st, &res);
    run_note_max(&r->rep.mem_act, res.activation_bytes + g.bytes);
    calib_gather_free(&g);
    if (rc) return rc;
    dist_sum_stats(st, r->t.stage_comm);
    calib_finish(st);
    if (dist_agree(MPI_COMM_WORLD, calib_check_finite(st, label))) return -1;
    run_note_max(&r->rep.mem_stats, calib_stats_bytes(st));
    return 0;
}

/* ---- per-layer steps, spread over the stage's replicas ---- */

/* Run step for every layer of the stage. Layer i of the stage goes to
 * replica i mod Dp, which solves its eigenproblems with LAPACK and then
 * broadcasts the result; when the step's largest problem (eigen_n rows)
 * reaches --scalapack-min-n and the stage has several ranks, all of them
 * run each layer together on ScaLAPACK instead. Finished layers are saved
 * as they finish; a stop request ends the loop before the next layer. */
int run_each_stage_layer(Run *r, LayerStep step, const StepArgs *a, int eigen_n, const char *label) {
    const Topology *t = &r->t;
    int together = t->replicas > 1 && eigen_n >= r->s->scalapack_min_n, rc = 0, stopped = 0;
    int sc0 = r->stage_ctx.scalapack_calls + r->local_ctx.scalapack_calls;
    int la0 = r->stage_ctx.lapack_calls + r->local_ctx.lapack_calls;
    for (int l = r->first; l < r->end && !rc; l++) {
        int owner = (l - r->first) % t->replicas;
        if (!together && owner != t->replica) continue;
        stopped = together ? dist_stop_signal(t->stage_comm) != 0 : tm_interrupt_signal() != 0;
        if (stopped) break;
        int saved = resume_has_layer(&r->resume, a->name, l), speaker = t->replica == 0 || !together;
        if (r->s->progress && speaker)
            fprintf(stderr, "%s: layer %d/%d (rank %d%s)%s\n", label, l + 1, r->cfg.n_layers, t->rank,
                    together ? ", ScaLAPACK over the stage" : "", saved ? ": done before, loaded from the state" : "");
        rc = step(r, a, l, together ? &r->stage : &r->local, saved, !saved && speaker);
        if (rc) tm_fail_context("%s: layer %d", label, l);
        else rc = mla_attn_check_finite(&a->layers[l], l, label); /* nothing NaN goes on to the next step */
        char where[64];
        snprintf(where, sizeof where, "%s:layer%d", a->name, l);
        dist_inject_failure(where);
    }
    /* count each problem once: a shared one on replica 0 only */
    if (!together || t->replica == 0) {
        r->rep.scalapack_calls += r->stage_ctx.scalapack_calls + r->local_ctx.scalapack_calls - sc0;
        r->rep.lapack_calls += r->stage_ctx.lapack_calls + r->local_ctx.lapack_calls - la0;
    }
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (stopped) {
        run_say(r, "%s: stopped; the layers done are saved\n", label);
        return RUN_STOPPED;
    }
    if (!together)
        for (int l = r->first; l < r->end; l++) {
            int owner = (l - r->first) % t->replicas;
            mla_attn_bcast(&a->layers[l], owner, t->stage_comm);
            MPI_Bcast(&r->kv_ratio[l], 1, MPI_DOUBLE, owner, t->stage_comm);
        }
    return 0;
}

int run_fit_outcome(Run *r, int rc, const char *phase) {
    if (dist_agree(MPI_COMM_WORLD, rc < 0 ? -1 : 0)) return -1;
    int stopped = rc == RUN_STOPPED;
    MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!stopped) return 0;
    run_say(r, "%s: stopped; the layers fitted so far are saved\n", phase);
    return RUN_STOPPED;
}

double *run_layer_rows(Run *r, double *mine, int width) {
    int n = r->cfg.n_layers;
    double *all = callocCheck((size_t)n * width, sizeof *all);
    if (r->t.replica != 0) memset(mine, 0, (size_t)n * width * sizeof *mine);
    MPI_Reduce(mine, all, n * width, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    return all;
}
