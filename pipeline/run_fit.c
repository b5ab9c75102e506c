/* Step 1b of `transmla convert` (run.h): fit every layer's RoRoPE rotation
 * to its attention output (pipeline/rorope_fit.h).
 *
 * Each replica holds the residual stream of its calibration windows at the
 * current layer (tokens x hidden floats) and one layer's fit data (q, k, v
 * and the original attention output); that is the whole memory cost. Layer
 * by layer, every replica of the stage computes the fit data of its windows,
 * the replicas fit the rotation together (rorope_fit_layer sums their
 * micro-batches' gradients), and the stream moves on through the original
 * layer ("parallel": every layer sees the original model's inputs) or the
 * converted one ("sequential": the inputs the converted prefix gives). The
 * next stage receives the stream at its first layer: at once for parallel,
 * after this stage's last fit for sequential. Each fitted rotation is saved
 * in the state as it is made. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "model/attention.h"
#include "model/matmul.h"
#include "model/rmsnorm.h"
#include "model/rope.h"
#include "pipeline/build.h"
#include "pipeline/fit_stream.h"
#include "pipeline/rorope_fit.h"
#include "pipeline/run.h"

/* this rank's stream in the state (pipeline/resume.h) */
#define FIT_STREAM "rorope-fit-stream"

/* per layer in the state and the report */
enum { INFO_MSE_BEFORE, INFO_MSE_AFTER, INFO_BEST_STEP, INFO_SECONDS, INFO_FREQFOLD, INFO_HELD, FIT_INFO };

typedef struct {
    FitStream st;          /* the stream at the current layer */
    FitData fd;            /* the current layer's, for the stream's windows */
    int train_mbs;         /* micro-batches the fit trains on; those after them are held back */
    float *o_fit;          /* [N, H*d] converted attention output (sequential) */
    float *q_rot, *k_rot;  /* one micro-batch's q and k after RoPE */
    double *info;          /* [n_layers * FIT_INFO] */
    int upstream;          /* the stage before's status: 0, RUN_STOPPED or -1 */
} FitRun;

int run_fit_enabled(const Run *r) { return r->s->rorope_fit_steps > 0 && !run_data_free(r); }

int run_choosing_freqfold(const Run *r) { return fit_chooses_freqfold(r->s, !run_data_free(r)); }

/* x of micro-batch rows through layer l after its attention output o:
 * x += o_proj(o); x += MLP(post_norm(x)). */
static void advance(FitRun *f, const ModelConfig *c, const LayerWeights *L, int l, const float *o) {
    FitStream *st = &f->st;
    int Hd = c->n_heads * c->head_dim;
    for (int m = 0; m < fit_stream_mb_count(st); m++) {
        int64_t row0;
        int n = fit_stream_mb(st, m, &row0) * st->T;
        matmul_forward(st->x + row0 * st->D, o + row0 * Hd, &L->o, L->o_bias, n, 1);
    }
    fit_stream_mlp(st, st->x, c, L, l);
}

/* Layer l's fit data from the held stream: projections and the original
 * attention (full RoPE) output. */
static void fit_data(FitRun *f, const ModelConfig *c, const LayerWeights *L, int l) {
    int D = c->hidden_size, H = c->n_heads, G = c->n_kv_heads, d = c->head_dim;
    FitStream *st = &f->st;
    FitData *fd = &f->fd;
    for (int m = 0; m < fit_stream_mb_count(st); m++) {
        int64_t row0;
        int B = fit_stream_mb(st, m, &row0), n = B * st->T;
        float *q = fd->q + row0 * H * d, *k = fd->k + row0 * G * d, *v = fd->v + row0 * G * d;
        rmsnorm_forward(st->ws.xn, st->x + row0 * D, L->input_norm, n, D, c->rms_norm_eps);
        matmul_forward(q, st->ws.xn, &L->q, L->q_bias, n, 0);
        matmul_forward(k, st->ws.xn, &L->k, L->k_bias, n, 0);
        matmul_forward(v, st->ws.xn, &L->v, L->v_bias, n, 0);
        memcpy(f->q_rot, q, (size_t)n * H * d * sizeof(float));
        memcpy(f->k_rot, k, (size_t)n * G * d * sizeof(float));
        RopeLayout ql = {.n_heads = H, .head_stride = d}, kl = {.n_heads = G, .head_stride = d};
        rope_forward(f->q_rot, (int64_t)H * d, &st->ws.rope, B, st->T, 0, &ql);
        rope_forward(f->k_rot, (int64_t)G * d, &st->ws.rope, B, st->T, 0, &kl);
        attention_forward(fd->o + row0 * H * d, NULL, f->q_rot, f->k_rot, v, B, st->T, H, G, d, d, NULL,
                          hf_config_layer_window(c, l), (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    }
}

static int fit_run_init(FitRun *f, Run *r) {
    const ConvertSettings *s = r->s;
    const ModelConfig *c = &r->cfg;
    const Topology *t = &r->t;
    memset(f, 0, sizeof *f);
    int total = s->rorope_fit_nsamples && s->rorope_fit_nsamples < r->cal_nseq ? s->rorope_fit_nsamples : r->cal_nseq;
    int batch = s->cal_batch < 1 ? 1 : s->cal_batch;
    f->train_mbs = (total + batch - 1) / batch;
    if (run_choosing_freqfold(r)) /* one more micro-batch of windows, held back to choose freqfold by */
        total = (f->train_mbs + 1) * batch < r->cal_nseq ? (f->train_mbs + 1) * batch : r->cal_nseq;
    FitStream *st = &f->st;
    fit_stream_init(st, c, t, total, s->cal_seqlen, batch);
    int Hd = c->n_heads * c->head_dim, L = c->n_kv_heads * c->head_dim;
    f->fd = (FitData){.nseq = st->nseq, .T = st->T, .batch = st->batch, .q = fit_rows_alloc(st->N, Hd),
                      .k = fit_rows_alloc(st->N, L), .v = fit_rows_alloc(st->N, L), .o = fit_rows_alloc(st->N, Hd)};
    if (s->rorope_fit_sequential) f->o_fit = fit_rows_alloc(st->N, Hd);
    f->q_rot = fit_rows_alloc((int64_t)st->batch * st->T, Hd);
    f->k_rot = fit_rows_alloc((int64_t)st->batch * st->T, L);
    f->info = callocCheck((size_t)c->n_layers * FIT_INFO, sizeof *f->info);
    int cols = rorope_fit_stream_cols(c, s->rorope_fit_sequential, t->stage == t->stages - 1);
    run_note_max(&r->rep.mem_act, fit_stream_held_bytes(c, st->N, cols, st->batch, st->T));
    f->upstream = fit_stream_start(st, st->x, t, r->cal_ids, &r->orig);
    return total;
}

static void fit_run_free(FitRun *f) {
    fit_stream_free(&f->st);
    free(f->fd.q);
    free(f->fd.k);
    free(f->fd.v);
    free(f->fd.o);
    free(f->o_fit);
    free(f->q_rot);
    free(f->k_rot);
    free(f->info);
}

/* Parallel schedule: the next stage's input is the original model's, so it
 * gets it before this stage fits anything. */
static void send_original_stream(FitRun *f, Run *r) {
    const ModelConfig *c = &r->cfg;
    int64_t n = f->st.N * c->hidden_size;
    float *keep = fit_rows_alloc(f->st.N, c->hidden_size);
    memcpy(keep, f->st.x, (size_t)n * sizeof *keep);
    for (int l = r->first; l < r->end; l++) {
        fit_data(f, c, &r->orig.w.layers[l], l);
        advance(f, c, &r->orig.w.layers[l], l, f->fd.o);
    }
    fit_stream_send(f->st.x, n, 0, &r->t);
    memcpy(f->st.x, keep, (size_t)n * sizeof *keep);
    free(keep);
}

/* The rows of this rank's micro-batches [m0, m1) (global indices) as a
 * FitData, and the FitProblem over them: the training or held-back view. */
static void view(const FitRun *f, int m0, int m1, FitData *v, FitProblem *p) {
    const FitStream *st = &f->st;
    int lo = st->mb_first > m0 ? st->mb_first : m0, hi = st->mb_first + fit_stream_mb_count(st);
    if (hi > m1) hi = m1;
    int64_t row0 = 0;
    int nseq = 0;
    for (int m = lo; m < hi; m++) {
        int64_t r0;
        int B = fit_stream_mb(st, m - st->mb_first, &r0);
        if (m == lo) row0 = r0;
        nseq += B;
    }
    int H = p->H, d = p->s.d, L = p->s.G * d;
    *v = (FitData){.nseq = nseq, .T = st->T, .batch = st->batch, .q = f->fd.q + row0 * H * d,
                   .k = f->fd.k + row0 * L, .v = f->fd.v + row0 * L, .o = f->fd.o + row0 * H * d};
    p->mb_first = lo < hi ? lo - m0 : 0;
    p->mb_total = m1 - m0;
}

/* The objective of rotation P (its freqfold in p) on data x; o_fit
 * (optional): its attention output there. Collective over p->comm. */
static double rotation_error(const FitProblem *p, const FitData *x, const double *P, float *o_fit) {
    int nn = rorope_buckets(&p->s) * rorope_bucket_size(&p->s) * rorope_bucket_size(&p->s);
    double *V = mallocCheck((size_t)nn * sizeof *V), *S = callocCheck((size_t)nn, sizeof *S);
    rorope_extract(P, &p->s, V);
    double e = rorope_fit_objective(p, x, V, S, NULL, o_fit);
    free(V);
    free(S);
    return e;
}

/* Steps of each candidate's short fit when choosing freqfold. With the
 * attention fit after it, none: the candidates' PCA rotations are judged as
 * they are, because a short-fitted rotation's error ranks them for the
 * rotation fit alone (bytelm-dev: 16 wins, partial RoPE 8.37 -> 6.69) but
 * not for what the attention fit then reaches (16: 5.92 against 4: 5.53);
 * README, "Choosing freqfold per layer". */
static int short_fit_steps(const Run *r) { return run_attn_fit_enabled(r) ? 0 : r->s->rorope_fit_steps / 4; }

/* Candidates whose held-back errors lie within this factor of the lowest
 * count as tied (one micro-batch of windows estimates the error to a few
 * percent), and the smallest freqfold among them wins: it mixes fewer
 * neighbouring frequencies into each rope component. On bytelm-dev the
 * lowest error after the whole pipeline did not give the best perplexity
 * (README, "Choosing freqfold per layer"): this tie-break was set after
 * seeing those numbers. */
#define FREQFOLD_TIE 1.02

/* freqfold auto: each candidate's PCA rotation fitted for short_fit_steps,
 * judged on the held-back windows; the winner's rotation (so far) in P, its
 * freqfold returned (0: stopped, -1: failed). */
static int choose_freqfold(FitRun *f, Run *r, int l, const FitProblem *base, double *P, double *held_err) {
    int cands[32], nc = run_freqfold_candidates(&r->rs, 0, cands), L = r->cfg.n_kv_heads * r->cfg.head_dim;
    int best = -1, rc = 0;
    double *Pc = mallocCheck((size_t)nc * L * L * sizeof *Pc), err[32], lowest = INFINITY;
    for (int i = 0; i < nc && !rc; i++) {
        char name[32];
        snprintf(name, sizeof name, "rorope-f%d", cands[i]);
        FitProblem p = *base, ph = *base;
        p.s.freqfold = ph.s.freqfold = cands[i];
        p.steps = short_fit_steps(r);
        FitData train, held;
        view(f, 0, f->train_mbs, &train, &p);
        view(f, f->train_mbs, f->st.mb_total, &held, &ph);
        FitResult res;
        double *Pi = Pc + (int64_t)i * L * L;
        rc = resume_load_array(&r->resume, name, l, Pi, (int64_t)L * L);
        if (!rc && p.steps) rc = rorope_fit_layer(&p, &train, Pi, &res, NULL);
        if (rc) break;
        if (!p.steps) res.mse_after = rotation_error(&p, &train, Pi, NULL);
        err[i] = ph.mb_total > 0 ? rotation_error(&ph, &held, Pi, NULL) : res.mse_after;
        if (err[i] < lowest) lowest = err[i];
        if (r->s->progress && r->t.replica == 0)
            fprintf(stderr, "rorope-fit: layer %d: freqfold %d: %s mse %.4g after %d steps\n", l + 1, cands[i],
                    ph.mb_total > 0 ? "held-back" : "training", err[i], p.steps);
    }
    for (int i = 0; i < nc && !rc && best < 0; i++) /* candidates ascend: the first tied one is the smallest */
        if (err[i] <= lowest * FREQFOLD_TIE) {
            best = cands[i];
            *held_err = err[i];
            memcpy(P, Pc + (int64_t)i * L * L, (size_t)L * L * sizeof *P);
        }
    free(Pc);
    return rc == FIT_STOPPED ? 0 : rc ? -1 : best;
}

/* Layer l done by an earlier run: its rotation and row from the state, and
 * with the sequential schedule and the layer's data (a moved, not loaded,
 * stream) its output on the stream. */
static int load_layer(FitRun *f, Run *r, int l, FitProblem *prob, double *P, int moved) {
    int L = r->cfg.n_kv_heads * r->cfg.head_dim;
    double *info = f->info + (int64_t)l * FIT_INFO;
    int rc = resume_load_array(&r->resume, "rorope-fit", l, P, (int64_t)L * L);
    if (!rc) rc = resume_load_array(&r->resume, "rorope-fit-info", l, info, FIT_INFO);
    prob->s.freqfold = (int)info[INFO_FREQFOLD];
    if (!rc && f->o_fit && moved) rotation_error(prob, &f->fd, P, f->o_fit); /* the converted output moves it on */
    return rc;
}

/* Layer l: choose its freqfold (auto), fit the rotation; P in/out. */
static int fit_new_layer(FitRun *f, Run *r, int l, FitProblem *prob, double *P) {
    int L = r->cfg.n_kv_heads * r->cfg.head_dim, rc = 0, freqfold = r->rs.freqfold, steps = prob->steps;
    double held_err = NAN;
    if (run_choosing_freqfold(r)) {
        if ((freqfold = choose_freqfold(f, r, l, prob, P, &held_err)) <= 0) return freqfold ? -1 : RUN_STOPPED;
        prob->steps -= short_fit_steps(r); /* the winner carries on from its short fit */
    } else {
        char pca_step[32];
        snprintf(pca_step, sizeof pca_step, "rorope-f%d", freqfold);
        rc = resume_load_array(&r->resume, pca_step, l, P, (int64_t)L * L);
    }
    prob->s.freqfold = freqfold;
    FitData train;
    FitProblem pt = *prob;
    view(f, 0, f->train_mbs, &train, &pt);
    FitResult res;
    if (!rc) rc = rorope_fit_layer(&pt, &train, P, &res, NULL);
    prob->steps = steps;
    if (rc == FIT_STOPPED) return RUN_STOPPED; /* a layer's fit does not resume part-way: it is done again */
    if (rc) return -1;
    if (f->o_fit) rotation_error(prob, &f->fd, P, f->o_fit); /* every row of the stream, held-back ones too */
    double row[FIT_INFO] = {res.mse_before, res.mse_after, res.best_step, res.seconds, freqfold, held_err};
    memcpy(f->info + (int64_t)l * FIT_INFO, row, sizeof row);
    if (r->t.replica == 0) rc = resume_save_array(&r->resume, "rorope-fit", l, P, (int64_t)L * L);
    if (!rc && r->t.replica == 0) rc = resume_save_array(&r->resume, "rorope-fit-info", l, row, FIT_INFO);
    return rc;
}

/* Layer l: fit (or load) its rotation, rebuild r->layers[l] from it;
 * moved: the stream stands at its input (not when loaded past it). */
static int fit_layer(FitRun *f, Run *r, int l, const double *inv_freq, int moved) {
    const ModelConfig *c = &r->cfg;
    const ConvertSettings *s = r->s;
    int L = c->n_kv_heads * c->head_dim, rc;
    double *P = mallocCheck((size_t)L * L * sizeof *P), *info = f->info + (int64_t)l * FIT_INFO;
    int saved = resume_has_layer(&r->resume, "rorope-fit", l) && resume_has_layer(&r->resume, "rorope-fit-info", l);
    if (s->progress && r->t.replica == 0)
        fprintf(stderr, "rorope-fit: layer %d/%d (rank %d, %d replicas)%s\n", l + 1, c->n_layers, r->t.rank,
                r->t.replicas, saved ? ": done before, loaded from the state" : "");
    FitProblem prob = {.s = r->rs, .H = c->n_heads, .inv_freq = inv_freq, .window = hf_config_layer_window(c, l),
                       .score_dim = hf_config_score_dim(c), .softcap = c->attn_softcap,
                       .o_proj = &r->orig.w.layers[l].o, .steps = s->rorope_fit_steps, .lr = s->rorope_fit_lr,
                       .comm = r->t.stage_comm, .mb_first = f->st.mb_first, .mb_total = f->st.mb_total,
                       .device = s->device, .local_rank = r->t.local_rank};
    rc = saved ? load_layer(f, r, l, &prob, P, moved) : fit_new_layer(f, r, l, &prob, P);
    if (rc) {
        free(P);
        return rc;
    }
    if (s->progress && r->t.replica == 0)
        fprintf(stderr, "rorope-fit: layer %d/%d: freqfold %d, attention-output mse %.4g -> %.4g (%.1f%% lower, "
                        "step %d of %d), %.1f s\n", l + 1, c->n_layers, (int)info[INFO_FREQFOLD],
                info[INFO_MSE_BEFORE], info[INFO_MSE_AFTER],
                info[INFO_MSE_BEFORE] > 0 ? 100 * (1 - info[INFO_MSE_AFTER] / info[INFO_MSE_BEFORE]) : 0.0,
                (int)info[INFO_BEST_STEP], s->rorope_fit_steps, info[INFO_SECONDS]);
    GqaAttn g;
    if (run_gqa_attn_load(r, l, &g)) {
        free(P);
        return -1;
    }
    mla_attn_free(&r->layers[l]);
    mla_from_rorope(&r->layers[l], &g, P, r->rs.r);
    gqa_attn_free(&g);
    rc = mla_attn_check_finite(&r->layers[l], l, "rorope-fit");
    free(P);
    char where[64];
    snprintf(where, sizeof where, "rorope-fit:layer%d", l);
    dist_inject_failure(where);
    return rc;
}

/* The report's rorope_fit: settings and every layer's row (rank 0 gathers
 * each stage's rows from its replica 0). */
static json_t *fit_report(Run *r, const FitRun *f, int windows) {
    int n = r->cfg.n_layers;
    double *all = run_layer_rows(r, f->info, FIT_INFO);
    const ConvertSettings *s = r->s;
    json_t *layers = json_array();
    double seconds = 0;
    for (int l = 0; l < n; l++) {
        const double *row = all + (int64_t)l * FIT_INFO;
        json_t *one = json_pack("{sisfsfsisfsi}", "layer", l, "mse_before", row[INFO_MSE_BEFORE], "mse_after",
                                row[INFO_MSE_AFTER], "best_step", (int)row[INFO_BEST_STEP], "seconds", row[INFO_SECONDS],
                                "freqfold", (int)row[INFO_FREQFOLD]);
        if (isfinite(row[INFO_HELD])) json_object_set_new(one, "held_mse_chosen", json_real(row[INFO_HELD]));
        json_array_append_new(layers, one);
        seconds += row[INFO_SECONDS];
    }
    free(all);
    return json_pack("{sisfsssisisfso}", "steps", s->rorope_fit_steps, "lr", s->rorope_fit_lr, "schedule",
                     s->rorope_fit_sequential ? "sequential" : "parallel", "windows", windows, "seqlen", s->cal_seqlen,
                     "seconds_per_layer", seconds / n, "layers", layers);
}

int stage_rorope_fit(Run *r) {
    if (r->done > PHASE_ROROPE_FIT || !run_fit_enabled(r)) return 0;
    const ModelConfig *c = &r->cfg;
    const Topology *t = &r->t;
    FitRun f;
    int windows = fit_run_init(&f, r), rc = 0;
    run_say(r, "rorope-fit: %d windows of %d tokens, %d Adam steps per layer (lr %g), %s schedule\n", windows, f.fd.T,
            r->s->rorope_fit_steps, r->s->rorope_fit_lr, r->s->rorope_fit_sequential ? "sequential" : "parallel");
    double *inv_freq = mallocCheck((size_t)(c->rotary_dim / 2) * sizeof *inv_freq);
    rope_inv_freq(&c->rope_scaling, c->rope_theta, c->rotary_dim, inv_freq);
    int last = t->stage == t->stages - 1, sequential = r->s->rorope_fit_sequential;
    rc = f.upstream;
    if (!sequential && !last) {
        if (!rc) send_original_stream(&f, r);
        else fit_stream_send(NULL, 0, rc, t);
    }
    /* the stream is saved after each layer: a resumed run loads the layers before it */
    int64_t n = f.st.N * c->hidden_size;
    int from = rc ? r->first
             : fit_stream_resume(&f.st.x, 1, n, &r->resume, FIT_STREAM, "rorope-fit-info", r->first, r->end,
                                 t->stage_comm, "rorope-fit", r->s->progress && t->replica == 0);
    if (from < 0) rc = -1;
    for (int l = r->first; l < r->end && !rc; l++) {
        rc = dist_stop_signal(t->stage_comm) ? RUN_STOPPED : 0;
        if (rc) break;
        if (l >= from) fit_data(&f, c, &r->orig.w.layers[l], l);
        rc = fit_agree_status(fit_layer(&f, r, l, inv_freq, l >= from), t->stage_comm);
        if (rc || l < from || !(l + 1 < r->end || (sequential && !last))) continue;
        advance(&f, c, &r->orig.w.layers[l], l, f.o_fit ? f.o_fit : f.fd.o);
        rc = fit_stream_save(&f.st.x, 1, n, &r->resume, FIT_STREAM, l + 1, t->stage_comm, "rorope-fit",
                             r->s->progress && t->replica == 0);
    }
    if (sequential && !last) fit_stream_send(f.st.x, n, rc, t);
    free(inv_freq);
    if ((rc = run_fit_outcome(r, rc, "rorope-fit"))) {
        fit_run_free(&f);
        return rc;
    }
    run_stage_done(r, "rorope_fit");
    json_t *rep = fit_report(r, &f, windows);
    fit_run_free(&f);

    BuiltModel bm;
    if (dist_agree(MPI_COMM_WORLD, built_model_init(&bm, &r->orig, r->layers, BUILD_EXACT, 0))) {
        json_decref(rep);
        return -1;
    }
    double p;
    rc = run_eval_ppl(r, &bm.model, "rorope fitted", "eval-rorope-fit", &p);
    built_model_free(&bm);
    if (rc) {
        json_decref(rep);
        return rc;
    }
    json_t *done = json_pack("{sO}", "rorope_fit", rep), *mla_pca = json_object_get(r->rep.ppl, "mla_pca");
    if (isfinite(p)) json_object_set_new(done, "rorope", json_real(p));
    if (mla_pca) json_object_set(done, "mla_pca", mla_pca);
    rc = resume_mark_done(&r->resume, "rorope-fit", done);
    /* what the published rotation's MLA left (its layers are as big as the real ones) */
    resume_remove(&r->resume, "bkv-pca-published.");
    resume_remove(&r->resume, "calib-latent-published.");
    resume_remove(&r->resume, FIT_STREAM ".");
    run_apply_fit(r, done);
    json_decref(done);
    json_decref(rep);
    run_stage_done(r, "eval_rorope_fit");
    return rc;
}

void run_apply_fit(Run *r, json_t *done) {
    json_t *rep = json_object_get(done, "rorope_fit"), *p = json_object_get(done, "rorope");
    json_t *mla_pca = json_object_get(done, "mla_pca");
    if (rep) json_object_set(r->rep.report, "rorope_fit", rep);
    if (p) json_object_set(r->rep.ppl, "rorope", p);
    if (mla_pca) json_object_set(r->rep.ppl, "mla_pca", mla_pca);
    if (!run_is_root(r) || !rep || !r->s->progress) return;
    double per = json_real_value(json_object_get(rep, "seconds_per_layer"));
    double cal = json_real_value(json_object_get(r->rep.seconds, "calibrate_keys"));
    fprintf(stderr, "rorope-fit: %.2f s per layer (the key calibration took %.2f s in all); freqfold per layer:", per,
            cal);
    size_t i;
    json_t *layer;
    json_array_foreach(json_object_get(rep, "layers"), i, layer)
        fprintf(stderr, " %d", (int)json_integer_value(json_object_get(layer, "freqfold")));
    fprintf(stderr, "%s\n", run_choosing_freqfold(r) ? " (auto: by held-back error)" : "");
}
