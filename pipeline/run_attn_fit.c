/* Step 4b of `transmla convert` (run.h): fit every layer's whole MLA
 * attention, as the export computes it, to the original layer's attention
 * output (pipeline/attn_fit.h).
 *
 * Each replica holds the residual stream of its calibration windows through
 * the original model (pipeline/fit_stream.h), and one layer's fit data: the
 * layer's normed input and the original attention block's output. With the
 * "sequential" schedule it also holds the stream through the fitted prefix,
 * which then gives the layer's input, while the target stays the original
 * model's: later layers learn to undo what earlier ones got wrong. Layer by
 * layer the replicas of a stage fit together (attn_fit_layer sums their
 * gradients) and the streams move on; the next stage receives them at its
 * first layer (the original stream at once for "parallel", both after this
 * stage's last fit for "sequential"). Each fitted layer is saved in the
 * state as it is made, so a stopped or killed run resumes at the next layer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/rmsnorm.h"
#include "pipeline/attn_fit.h"
#include "pipeline/build.h"
#include "pipeline/fit_stream.h"
#include "pipeline/run.h"

/* this rank's streams in the state (pipeline/resume.h) */
#define ATTN_STREAMS "attn-fit-stream"

/* per layer in the state and the report */
enum { INFO_TRAIN_BEFORE, INFO_TRAIN_AFTER, INFO_HELD_BEFORE, INFO_HELD_AFTER, INFO_BEST_STEP, INFO_SECONDS, N_INFO };

typedef struct {
    FitStream st;      /* the original model's stream */
    float *xc;         /* [N, D] the fitted prefix's stream (sequential), else NULL */
    AttnFitData fd;    /* the current layer's input and target */
    float *y_fit;      /* [N, D] the fitted block's output (sequential) */
    ModelConfig mla;   /* the converted layers' config, as a loader sees it */
    double *info;      /* [n_layers * N_INFO] */
    uint64_t held;     /* bytes of the streams and the layer's data */
    int upstream;      /* the stage before's status */
} AttnRun;

int run_attn_fit_enabled(const Run *r) { return r->s->attn_fit_steps > 0 && !run_data_free(r); }

static int attn_run_init(AttnRun *a, Run *r) {
    const ConvertSettings *s = r->s;
    const ModelConfig *c = &r->cfg;
    const Topology *t = &r->t;
    memset(a, 0, sizeof *a);
    int total = s->attn_fit_nsamples && s->attn_fit_nsamples < r->cal_nseq ? s->attn_fit_nsamples : r->cal_nseq;
    FitStream *st = &a->st;
    fit_stream_init(st, c, t, total, s->cal_seqlen, s->cal_batch);
    int D = c->hidden_size;
    a->fd = (AttnFitData){.nseq = st->nseq, .T = st->T, .batch = st->batch, .xn = fit_rows_alloc(st->N, D),
                          .y = fit_rows_alloc(st->N, D)};
    if (s->attn_fit_sequential) {
        a->xc = fit_rows_alloc(st->N, D);
        a->y_fit = fit_rows_alloc(st->N, D);
    }
    mla_config_from(&a->mla, c, &r->layers[r->first], BUILD_NATIVE, 0);
    a->info = callocCheck((size_t)c->n_layers * N_INFO, sizeof *a->info);
    int cols = attn_fit_stream_cols(c, s->attn_fit_sequential, t->stage == t->stages - 1);
    a->held = fit_stream_held_bytes(c, st->N, cols, st->batch, st->T);
    run_note_max(&r->rep.mem_act, a->held);
    a->upstream = fit_stream_start(st, st->x, t, r->cal_ids, &r->orig);
    if (!a->upstream && a->xc) {
        if (t->stage == 0) memcpy(a->xc, st->x, (size_t)st->N * D * sizeof(float));
        else a->upstream = fit_stream_recv(a->xc, st->N * D, t);
    }
    return total;
}

static void attn_run_free(AttnRun *a) {
    fit_stream_free(&a->st);
    free(a->xc);
    free(a->fd.xn);
    free(a->fd.y);
    free(a->y_fit);
    free(a->info);
}

/* Layer l's data: its input (normed; from the fitted prefix's stream when
 * there is one) and the original attention block's output on the original
 * stream, before gemma2's sandwich norm (the fit's target is o_proj's
 * output; advance applies the norm). */
static void layer_data(AttnRun *a, const ModelConfig *c, const LayerWeights *L, int l) {
    FitStream *st = &a->st;
    int D = c->hidden_size;
    for (int m = 0; m < fit_stream_mb_count(st); m++) {
        int64_t row0;
        int B = fit_stream_mb(st, m, &row0), n = B * st->T;
        st->ws.B = B;
        rmsnorm_forward(st->ws.xn, st->x + row0 * D, L->input_norm, n, D, c->rms_norm_eps);
        if (a->xc) rmsnorm_forward(a->fd.xn + row0 * D, a->xc + row0 * D, L->input_norm, n, D, c->rms_norm_eps);
        else memcpy(a->fd.xn + row0 * D, st->ws.xn, (size_t)n * D * sizeof(float));
        memset(st->ws.x, 0, (size_t)n * D * sizeof(float));
        LayerWeights pre_norm = *L;
        pre_norm.attn_out_norm = NULL;
        LayerRows rows = workspace_rows(&st->ws);
        layer_attention(c, &pre_norm, l, st->ws.xn, st->ws.x, &rows, &st->ws.acts);
        memcpy(a->fd.y + row0 * D, st->ws.x, (size_t)n * D * sizeof(float));
    }
    st->ws.B = st->batch;
}

/* x += the attention block's output y (through gemma2's sandwich norm),
 * then the layer's MLP. y is scratch. */
static void advance(AttnRun *a, float *x, float *y, const ModelConfig *c, const LayerWeights *L, int l) {
    int64_t n = a->st.N * c->hidden_size;
    if (L->attn_out_norm) rmsnorm_forward(y, y, L->attn_out_norm, (int)a->st.N, c->hidden_size, c->rms_norm_eps);
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
    fit_stream_mlp(&a->st, x, c, L, l);
}

/* Parallel schedule: the next stage's input is the original model's, so it
 * gets it before this stage fits anything. */
static void send_original_stream(AttnRun *a, Run *r) {
    const ModelConfig *c = &r->cfg;
    int64_t n = a->st.N * c->hidden_size;
    float *keep = fit_rows_alloc(a->st.N, c->hidden_size);
    memcpy(keep, a->st.x, (size_t)n * sizeof *keep);
    for (int l = r->first; l < r->end; l++) {
        layer_data(a, c, &r->orig.w.layers[l], l);
        advance(a, a->st.x, a->fd.y, c, &r->orig.w.layers[l], l);
    }
    fit_stream_send(a->st.x, n, 0, &r->t);
    memcpy(a->st.x, keep, (size_t)n * sizeof *keep);
    free(keep);
}

static AttnFitProblem problem(const AttnRun *a, const Run *r, int l) {
    const ConvertSettings *s = r->s;
    /* an eighth of the windows, in whole micro-batches, at least one unless that is all of them */
    int held = a->st.mb_total < 2 ? 0 : a->st.mb_total / 8 > 0 ? a->st.mb_total / 8 : 1;
    int per_step = (s->attn_fit_windows_per_step + a->st.batch - 1) / a->st.batch;
    /* the window is the export's (none: DeepSeek attention has no window; gemma2_mla keeps the
     * original's), the target the original's */
    return (AttnFitProblem){.c = &a->mla, .layer = l, .steps = s->attn_fit_steps,
                            .lr = s->attn_fit_lr, .fit_o = s->attn_fit_o, .per_step = per_step,
                            .held = held, .comm = r->t.stage_comm, .mb_first = a->st.mb_first,
                            .mb_total = a->st.mb_total, .device = s->device, .local_rank = r->t.local_rank,
                            .gpu_fp32 = s->gpu_fp32};
}

/* A layer done by an earlier run: its weights and row from the state, and
 * with the sequential schedule and the layer's data (moved, not loaded,
 * streams) its output on the fitted prefix's stream. */
static int load_layer(AttnRun *a, Run *r, int l, const AttnFitProblem *p, int moved) {
    double *info = a->info + (int64_t)l * N_INFO;
    int rc = resume_load_attn(&r->resume, "attn-fit", l, &r->layers[l], &r->kv_ratio[l]);
    if (!rc) rc = resume_load_array(&r->resume, "attn-fit-info", l, info, N_INFO);
    if (!rc && a->y_fit && moved) {
        const LayerWeights *L = &r->orig.w.layers[l];
        AttnParams P;
        attn_params_init(&P, p, &r->layers[l], &L->o, L->o_bias);
        attn_fit_local(p, &a->fd, &P, 0, p->mb_total, 1.0, 0, a->y_fit);
        attn_params_free(&P);
    }
    return rc;
}

/* Layer l: fit (or load) its attention into r->layers[l]; moved: the
 * streams stand at its input (not when loaded past it). */
static int fit_layer(AttnRun *a, Run *r, int l, int moved) {
    const ModelConfig *c = &r->cfg;
    const ConvertSettings *s = r->s;
    const LayerWeights *L = &r->orig.w.layers[l];
    double *info = a->info + (int64_t)l * N_INFO;
    AttnFitProblem p = problem(a, r, l);
    int saved = resume_has_layer(&r->resume, "attn-fit", l) && resume_has_layer(&r->resume, "attn-fit-info", l), rc;
    if (s->progress && r->t.replica == 0)
        fprintf(stderr, "attn-fit: layer %d/%d (rank %d, %d replicas)%s\n", l + 1, c->n_layers, r->t.rank,
                r->t.replicas, saved ? ": done before, loaded from the state" : "");
    if (saved) {
        rc = load_layer(a, r, l, &p, moved);
    } else {
        AttnFitResult res;
        rc = attn_fit_layer(&p, &a->fd, &r->layers[l], &L->o, L->o_bias, &res, a->y_fit);
        if (rc == ATTN_FIT_STOPPED) return RUN_STOPPED; /* a layer's fit does not resume part-way */
        run_note_max(&r->rep.mem_act, a->held + res.bytes);
        double row[N_INFO] = {res.train_before, res.train_after, res.held_before, res.held_after, res.best_step,
                              res.seconds};
        memcpy(info, row, sizeof row);
        if (!rc) rc = mla_attn_check_finite(&r->layers[l], l, "attn-fit");
        if (!rc && r->t.replica == 0) rc = resume_save_attn(&r->resume, "attn-fit", l, &r->layers[l], r->kv_ratio[l]);
        if (!rc && r->t.replica == 0) rc = resume_save_array(&r->resume, "attn-fit-info", l, info, N_INFO);
    }
    if (!rc && s->progress && r->t.replica == 0)
        fprintf(stderr, "attn-fit: layer %d/%d: attention-output mse train %.4g -> %.4g, held back %.4g -> %.4g "
                        "(step %d of %d), %.1f s\n", l + 1, c->n_layers, info[INFO_TRAIN_BEFORE],
                info[INFO_TRAIN_AFTER], info[INFO_HELD_BEFORE], info[INFO_HELD_AFTER], (int)info[INFO_BEST_STEP],
                s->attn_fit_steps, info[INFO_SECONDS]);
    char where[64];
    snprintf(where, sizeof where, "attn-fit:layer%d", l);
    dist_inject_failure(where);
    return rc;
}

/* The report's attn_fit: settings and every layer's row (rank 0 gathers each
 * stage's rows from its replica 0). */
static json_t *fit_report(Run *r, const AttnRun *a, int windows) {
    int n = r->cfg.n_layers;
    double *all = run_layer_rows(r, a->info, N_INFO);
    const ConvertSettings *s = r->s;
    json_t *layers = json_array();
    double seconds = 0;
    for (int l = 0; l < n; l++) {
        const double *v = all + (int64_t)l * N_INFO;
        json_t *row = json_pack("{sisfsfsisf}", "layer", l, "train_mse_before", v[INFO_TRAIN_BEFORE],
                                "train_mse_after", v[INFO_TRAIN_AFTER], "best_step", (int)v[INFO_BEST_STEP], "seconds",
                                v[INFO_SECONDS]);
        if (isfinite(v[INFO_HELD_BEFORE])) { /* none when the fit's windows are one micro-batch */
            json_object_set_new(row, "held_mse_before", json_real(v[INFO_HELD_BEFORE]));
            json_object_set_new(row, "held_mse_after", json_real(v[INFO_HELD_AFTER]));
        }
        json_array_append_new(layers, row);
        seconds += v[INFO_SECONDS];
    }
    free(all);
    AttnFitProblem p = problem(a, r, 0); /* the layout is every layer's */
    return json_pack("{sisfsbsssisisisisfso}", "steps", s->attn_fit_steps, "lr", s->attn_fit_lr, "o_proj",
                     s->attn_fit_o, "schedule", s->attn_fit_sequential ? "sequential" : "parallel", "windows",
                     windows, "held_back_windows", p.held * a->st.batch, "windows_per_step", p.per_step * a->st.batch,
                     "seqlen", s->cal_seqlen, "seconds_per_layer", seconds / n, "layers", layers);
}

/* Fit the stage's layers in order; the streams move on after each and are
 * saved, so that a resumed run loads the layers before them instead of
 * moving the streams through those layers again. */
static int fit_stage_layers(AttnRun *a, Run *r) {
    const ModelConfig *c = &r->cfg;
    const Topology *t = &r->t;
    int last = t->stage == t->stages - 1, sequential = a->xc != NULL, rc = a->upstream;
    if (!sequential && !last) {
        if (!rc) send_original_stream(a, r);
        else fit_stream_send(NULL, 0, rc, t);
    }
    float *xs[2] = {a->st.x, a->xc};
    int64_t n = a->st.N * c->hidden_size;
    int from = rc ? r->first
             : fit_stream_resume(xs, 1 + sequential, n, &r->resume, ATTN_STREAMS, "attn-fit-info", r->first, r->end,
                                 t->stage_comm, "attn-fit", r->s->progress && t->replica == 0);
    if (from < 0) rc = -1;
    for (int l = r->first; l < r->end && !rc; l++) {
        if ((rc = dist_stop_signal(t->stage_comm) ? RUN_STOPPED : 0)) break;
        const LayerWeights *L = &r->orig.w.layers[l];
        if (l >= from) layer_data(a, c, L, l);
        rc = fit_agree_status(fit_layer(a, r, l, l >= from), t->stage_comm);
        if (rc || l < from || (l + 1 == r->end && !(sequential && !last))) continue;
        advance(a, a->st.x, a->fd.y, c, L, l);
        if (sequential) advance(a, a->xc, a->y_fit, c, L, l);
        rc = fit_stream_save(xs, 1 + sequential, n, &r->resume, ATTN_STREAMS, l + 1, t->stage_comm, "attn-fit",
                             r->s->progress && t->replica == 0);
    }
    if (sequential && !last) { /* both streams, the original first */
        fit_stream_send(a->st.x, n, rc, t);
        if (!rc) fit_stream_send(a->xc, n, 0, t);
    }
    return rc;
}

/* As exported before the attention fit, for the table (with evaluation data). */
static int eval_before(Run *r, double *ppl) {
    *ppl = NAN;
    if (!r->eval_ids) return 0;
    BuiltModel bm;
    if (dist_agree(MPI_COMM_WORLD, built_model_init(&bm, &r->orig, r->layers, BUILD_NATIVE, 0))) return -1;
    int rc = run_eval_ppl(r, &bm.model, "mla as exported, rotation fit only", "eval-mla-native-rotation-fit", ppl);
    built_model_free(&bm);
    return rc;
}

int stage_attn_fit(Run *r) {
    if (r->done > PHASE_ATTN_FIT || !run_attn_fit_enabled(r)) return 0;
    double before;
    int rc = eval_before(r, &before);
    if (rc) return rc;
    AttnRun a;
    int windows = attn_run_init(&a, r);
    AttnFitProblem p = problem(&a, r, 0);
    run_say(r, "attn-fit: %d windows of %d tokens (%d held back), %d Adam steps per layer on %d windows each "
               "(lr %g), o_proj %s, %s schedule\n", windows, a.st.T, p.held * a.st.batch, r->s->attn_fit_steps,
            p.per_step * a.st.batch, r->s->attn_fit_lr, r->s->attn_fit_o ? "fitted" : "kept",
            a.xc ? "sequential" : "parallel");
    rc = fit_stage_layers(&a, r);
    if ((rc = run_fit_outcome(r, rc, "attn-fit"))) {
        attn_run_free(&a);
        return rc;
    }
    json_t *done = json_pack("{so}", "attn_fit", fit_report(r, &a, windows));
    attn_run_free(&a);
    if (isfinite(before)) json_object_set_new(done, "mla_native_rotation_fit", json_real(before));
    rc = resume_mark_done(&r->resume, "attn-fit", done);
    resume_remove(&r->resume, "kv-norm.layer"); /* superseded by attn-fit.layer* (the markers stay) */
    resume_remove(&r->resume, "bkv-pca.layer");
    resume_remove(&r->resume, ATTN_STREAMS ".");
    run_apply_attn_fit(r, done);
    json_decref(done);
    run_stage_done(r, "attn_fit");
    return rc;
}

void run_apply_attn_fit(Run *r, json_t *done) {
    json_t *rep = json_object_get(done, "attn_fit"), *p = json_object_get(done, "mla_native_rotation_fit");
    if (rep) json_object_set(r->rep.report, "attn_fit", rep);
    if (p) json_object_set(r->rep.ppl, "mla_native_rotation_fit", p);
    if (!run_is_root(r) || !rep || !r->s->progress) return;
    double per = json_real_value(json_object_get(rep, "seconds_per_layer"));
    fprintf(stderr, "attn-fit: %.2f s per layer\n", per);
}
