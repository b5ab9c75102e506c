#include "train/trainer.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/partition.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/base/path.h"
#include "io/tokenizer/tokenizer.h"
#include "model/cost.h"
#include "train/chat.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/recompute_auto.h"
#include "train/sampler.h"
#include "train/save_model.h"
#include "train/step.h"
#include "train/step_gpu.h"
#include "train/teacher.h"

typedef struct {
    const TrainConfig *cfg;
    Topology t;
    Model m;
    ParamSet ps;
    TrainRows rows;
    Sampler sampler;
    TrainStep step;
    Teacher teacher;
    OptimConfig opt;
    int64_t total_steps, start_step;
    Metrics metrics;
    double sgemm_gflops;
    int root;
} Trainer;

/* Layers [first, end) of stage s of S: the split convert and plan make
 * (model/cost.h), so a converted model's stages line up with fine-tuning's. */
static ModelPart stage_part(const ModelConfig *c, int s, int S) {
    int n = c->n_layers, *cut = mallocCheck((size_t)(S + 1) * sizeof *cut);
    double *cost = mallocCheck((size_t)n * sizeof *cost);
    model_layer_costs(c, cost);
    partition_min_max(cost, n, S, cut);
    ModelPart p = {.first = cut[s], .end = cut[s + 1], .embed = s == 0, .head = s == S - 1};
    free(cost);
    free(cut);
    return p;
}

static int load_rows(Trainer *r) {
    const TrainConfig *cfg = r->cfg;
    train_rows_init(&r->rows, cfg->seq_len);
    if (cfg->data) {
        Tokenizer *tok;
        ChatTemplate tmpl;
        if (tokenizer_load(&tok, cfg->model_path)) return -1;
        int rc = chat_template_resolve(cfg->chat_template, cfg->model_path, &tmpl);
        if (!rc) rc = chat_load_rows(cfg->data, tok, tmpl, &r->rows);
        if (!rc && r->root && !cfg->quiet)
            fprintf(stderr, "finetune: %s (%s template): %lld conversations in %lld rows of %d tokens, %lld labels, %lld cut to fit\n",
                    cfg->data, chat_template_name(tmpl), (long long)r->rows.n_docs, (long long)r->rows.n_rows,
                    cfg->seq_len, (long long)r->rows.n_labels, (long long)r->rows.n_truncated);
        tokenizer_free(tok);
        return rc;
    }
    int32_t *ids;
    size_t n;
    if (token_source_stream(&cfg->tokens, cfg->model_path, r->m.cfg.vocab_size, &ids, &n)) return -1;
    train_rows_from_stream(&r->rows, ids, n, cfg->seq_len);
    free(ids);
    if (r->root && !cfg->quiet)
        fprintf(stderr, "finetune: %s: %zu tokens in %lld windows of %d\n", token_source_describe(&cfg->tokens), n,
                (long long)r->rows.n_rows, cfg->seq_len);
    return 0;
}

/* Parameters trained, summed over the stages (collective). */
static int64_t trained_elements(const Trainer *r) {
    int64_t mine = r->t.replica == 0 ? r->ps.total : 0, all;
    MPI_Allreduce(&mine, &all, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return all;
}

/* What must match for a checkpoint to continue this run. */
typedef struct {
    const char *name;
    int64_t value;
} RunField;

/* Fills f; collective (trained_elements sums over the stages). */
static int run_fields(const Trainer *r, RunField *f) {
    const TrainConfig *c = r->cfg;
    int n = 0;
    f[n++] = (RunField){"seq_len", c->seq_len};
    f[n++] = (RunField){"global_batch", r->sampler.global_batch};
    f[n++] = (RunField){"total_steps", r->total_steps};
    f[n++] = (RunField){"warmup_steps", r->opt.warmup_steps};
    f[n++] = (RunField){"seed", (int64_t)c->seed};
    f[n++] = (RunField){"train_rows", r->rows.n_rows};
    f[n++] = (RunField){"train_labels", r->rows.n_labels};
    f[n++] = (RunField){"trained_elements", trained_elements(r)};
    return n;
}

/* This rank's parameters as the checkpoint sees them (malloc'd, pointing into ps). */
static CkptParam *ckpt_params_of(const ParamSet *ps) {
    CkptParam *p = callocCheck((size_t)ps->n + 1, sizeof *p);
    for (int i = 0; i < ps->n; i++) {
        const Param *q = &ps->p[i];
        p[i] = (CkptParam){q->name, q->rows, q->cols, q->w, q->m, q->v};
    }
    return p;
}

static int save_checkpoint(Trainer *r, int64_t step, double loss) {
    RunField f[16];
    int nf = run_fields(r, f);
    CkptAttr a[32];
    int na = 0;
    for (int i = 0; i < nf; i++) a[na++] = (CkptAttr){.name = f[i].name, .kind = CKPT_I64, .i = f[i].value};
    a[na++] = (CkptAttr){.name = "learning_rate", .kind = CKPT_F64, .f = r->opt.lr};
    a[na++] = (CkptAttr){.name = "weight_decay", .kind = CKPT_F64, .f = r->opt.weight_decay};
    a[na++] = (CkptAttr){.name = "lr_scheduler_type", .kind = CKPT_STR, .s = lr_schedule_name(r->opt.schedule)};
    a[na++] = (CkptAttr){.name = "train", .kind = CKPT_STR, .s = train_what_name(r->cfg->what)};
    if (r->cfg->distill_from) {
        a[na++] = (CkptAttr){.name = "distill_from", .kind = CKPT_STR, .s = r->cfg->distill_from};
        a[na++] = (CkptAttr){.name = "distill_weight", .kind = CKPT_F64, .f = r->cfg->distill_weight};
    }
    a[na++] = (CkptAttr){.name = "model_type", .kind = CKPT_STR, .s = r->m.cfg.model_type};
    a[na++] = (CkptAttr){.name = "stages", .kind = CKPT_I64, .i = r->t.stages};
    a[na++] = (CkptAttr){.name = "replicas", .kind = CKPT_I64, .i = r->t.replicas};
    a[na++] = (CkptAttr){.name = "epoch", .kind = CKPT_I64, .i = step / r->sampler.steps_per_epoch};
    a[na++] = (CkptAttr){.name = "data_cursor", .kind = CKPT_I64, .i = step % r->sampler.steps_per_epoch};
    a[na++] = (CkptAttr){.name = "loss", .kind = CKPT_F64, .f = loss};
    CkptParam *p = ckpt_params_of(&r->ps);
    double t0 = tm_now_s();
    int rc = ckpt_save(r->cfg->save_path, step, p, r->ps.n, r->t.replica == 0, a, na, r->cfg->save_total_limit,
                       MPI_COMM_WORLD);
    free(p);
    if (!rc && r->root && !r->cfg->quiet)
        fprintf(stderr, "finetune: checkpoint %s/checkpoint-%lld.h5 written (%.1f s)\n", r->cfg->save_path,
                (long long)step, tm_now_s() - t0);
    char where[64];
    snprintf(where, sizeof where, "checkpoint-saved-%lld", (long long)step);
    dist_inject_failure(where); /* tests: die right after this checkpoint */
    return rc;
}

/* Continue from the newest checkpoint: refuse one of another run (naming
 * the first field that differs), then load this rank's parameters. */
static int resume(Trainer *r) {
    char path[4096] = "";
    int64_t step = 0;
    int found = 0;
    if (r->root) found = ckpt_find_latest(r->cfg->save_path, path, sizeof path, &step);
    MPI_Bcast(&found, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (found < 0) return dist_agree(MPI_COMM_WORLD, -1);
    if (found == 0) return dist_agree(MPI_COMM_WORLD, 0);
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(&step, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    RunField f[16];
    int nf = run_fields(r, f), rc = 0;
    for (int i = 0; i < nf && !rc; i++) {
        int64_t have;
        rc = ckpt_read_i64(path, f[i].name, &have);
        if (!rc && have != f[i].value)
            rc = tm_fail("%s: attribute %s is %lld but this run has %lld: it belongs to another run (use another "
                         "--save-path, or --resume never to start over)",
                         path, f[i].name, (long long)have, (long long)f[i].value);
    }
    if (!rc) {
        CkptParam *p = ckpt_params_of(&r->ps);
        rc = ckpt_load_params(path, p, r->ps.n);
        free(p);
    }
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    r->start_step = step;
    if (r->root && !r->cfg->quiet)
        fprintf(stderr, "finetune: resuming from %s (step %lld of %lld)\n", path, (long long)step,
                (long long)r->total_steps);
    return 0;
}

static int setup(Trainer *r) {
    const TrainConfig *cfg = r->cfg;
    if (dist_agree(MPI_COMM_WORLD, topology_init(&r->t, cfg->stages))) return -1;
    r->root = r->t.rank == 0;
    char config_path[4096];
    snprintf(config_path, sizeof config_path, "%s/config.json", cfg->model_path);
    ModelConfig mc;
    if (dist_agree(MPI_COMM_WORLD, hf_config_load(&mc, config_path))) return -1;
    if (cfg->stages > mc.n_layers)
        return dist_agree(MPI_COMM_WORLD, tm_fail("--stages %d: the model has only %d layers", cfg->stages, mc.n_layers));
    if (cfg->stages > 1 && mc.tie_word_embeddings)
        return dist_agree(MPI_COMM_WORLD, tm_fail("%s: tie_word_embeddings with --stages %d: a tied embedding split "
                                                  "across stages is not supported; use --stages 1",
                                                  config_path, cfg->stages));
    ModelPart part = stage_part(&mc, r->t.stage, r->t.stages);
    if (dist_agree(MPI_COMM_WORLD, model_load_part(&r->m, cfg->model_path, &part))) return -1;
    if (cfg->distill_from &&
        dist_agree(MPI_COMM_WORLD, teacher_load(&r->teacher, cfg->distill_from, &part, &mc, (float)cfg->distill_weight)))
        return -1;
    if (dist_agree(MPI_COMM_WORLD, params_init(&r->ps, &r->m, cfg->what))) return -1;
    if (dist_agree(MPI_COMM_WORLD, load_rows(r))) return -1;
    if (dist_agree(MPI_COMM_WORLD, sampler_init(&r->sampler, &r->rows, cfg->seed, cfg->batch, cfg->grad_accum,
                                                r->t.replicas)))
        return -1;
    r->total_steps = cfg->max_steps > 0 ? cfg->max_steps
                                        : (int64_t)ceil(cfg->epochs * (double)r->sampler.steps_per_epoch);
    if (r->total_steps < 1) r->total_steps = 1;
    r->opt = cfg->opt;
    r->opt.total_steps = r->total_steps;
    r->opt.warmup_steps = warmup_steps_of(cfg->warmup_ratio, r->total_steps);
    /* rank 0 makes it; the agreement is also the barrier before anyone uses it */
    if (dist_agree(MPI_COMM_WORLD, r->root ? path_make_dirs(cfg->save_path, "the --save-path folder") : 0)) return -1;
    if (cfg->resume && resume(r)) return -1;
    char recompute_note[640];
    Teacher *teacher = cfg->distill_from ? &r->teacher : NULL;
    int recompute = recompute_resolve(cfg->recompute, cfg->gpu, &r->t, &r->m, &r->ps, teacher, cfg->batch,
                                      cfg->seq_len, cfg->grad_accum, recompute_note, sizeof recompute_note);
    train_step_init(&r->step, &r->t, &r->m, &r->ps, &r->sampler, cfg->batch, cfg->seq_len, cfg->grad_accum,
                    recompute, teacher);
    /* the choice counted what the step holds: the count and the allocation are one computation */
    if (r->step.bytes != train_step_bytes(&r->t, &r->m, teacher, cfg->batch, cfg->seq_len, cfg->grad_accum, recompute))
        tm_die("fine-tuning: the step's activation count differs from its allocation");
    if (cfg->gpu && dist_agree(MPI_COMM_WORLD, train_step_use_gpu(&r->step, cfg->gpu_fp32)))
        return -1;
    if (r->root) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->save_path);
        if (metrics_open(&r->metrics, path, r->start_step)) return dist_agree(MPI_COMM_WORLD, -1);
        if (!cfg->quiet) r->sgemm_gflops = measure_sgemm_gflops(1024, 0.3);
    }
    if (dist_agree(MPI_COMM_WORLD, 0)) return -1;
    int64_t trained = trained_elements(r);
    if (r->root && !cfg->quiet) {
        char gpu_note[64] = "";
        if (r->step.gpu)
            snprintf(gpu_note, sizeof gpu_note, " on the host and %.1f MiB on its GPU",
                     (double)step_gpu_activation_bytes(r->step.gpu) / (1 << 20));
        fprintf(stderr,
                "finetune: %s (%s, %d layers) on %d rank(s): %d stage(s) x %d replica(s); training %s: %lld parameters\n",
                cfg->model_path, r->m.cfg.model_type, r->m.cfg.n_layers, r->t.size, r->t.stages, r->t.replicas,
                train_what_name(cfg->what), (long long)trained);
        fprintf(stderr,
                "finetune: %lld steps of %lld rows x %d tokens (batch %d x accumulation %d x %d replica(s)), %lld "
                "steps per epoch; lr %.3g (%s, warmup %lld), weight decay %.3g; rank 0 holds %.1f MiB of "
                "activations%s\n",
                (long long)r->total_steps, (long long)r->sampler.global_batch, cfg->seq_len, cfg->batch,
                cfg->grad_accum, r->t.replicas, (long long)r->sampler.steps_per_epoch, r->opt.lr,
                lr_schedule_name(r->opt.schedule), (long long)r->opt.warmup_steps, r->opt.weight_decay,
                (double)r->step.bytes / (1 << 20), gpu_note);
        fprintf(stderr, "finetune: %s\n", recompute_note);
        if (cfg->distill_from)
            fprintf(stderr, "finetune: distilling from %s (%s): loss %.3g KL(teacher || student) + %.3g NLL\n",
                    cfg->distill_from, r->teacher.m.cfg.model_type, cfg->distill_weight, 1.0 - cfg->distill_weight);
    }
    return 0;
}

static void teardown(Trainer *r) {
    train_step_free(&r->step);
    teacher_free(&r->teacher);
    sampler_free(&r->sampler);
    train_rows_free(&r->rows);
    model_free(&r->m);
    params_free(&r->ps, &r->m.cfg);
    metrics_close(&r->metrics);
    topology_free(&r->t);
}

static void log_step(Trainer *r, int64_t step, const StepResult *res, double lr, double step_s, double t_start,
                     int64_t steps_done) {
    const TrainConfig *cfg = r->cfg;
    StepLog s = {.step = step + 1, .total_steps = r->total_steps, .loss = res->loss, .kl = res->kl,
                 .distill = cfg->distill_from != NULL, .lr = lr,
                 .grad_norm = res->grad_norm, .step_s = step_s, .targets = res->targets};
    s.epoch = (double)(step + 1) / (double)r->sampler.steps_per_epoch;
    s.tokens = r->sampler.global_batch * cfg->seq_len;
    s.tokens_per_s = (double)s.tokens / step_s;
    s.gflops = train_flops_per_token(&r->m.cfg, cfg->seq_len, cfg->what) * (double)s.tokens / step_s / 1e9;
    if (r->sgemm_gflops > 0) s.mfu = s.gflops / (r->sgemm_gflops * r->t.size);
    s.elapsed_s = tm_now_s() - t_start;
    s.eta_s = s.elapsed_s / (double)steps_done * (double)(r->total_steps - step - 1);
    metrics_write(&r->metrics, &s);
    if (!cfg->quiet && ((step + 1) % cfg->log_every == 0 || step + 1 == r->total_steps || steps_done == 1))
        metrics_print(stderr, &s);
}

int trainer_run(const TrainConfig *cfg) {
    Trainer r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    int rc = setup(&r);
    double t_start = tm_now_s(), loss = NAN;
    int64_t step = r.start_step, saved_at = rc ? -1 : r.start_step;
    int stopped = 0;
    for (; !rc && step < r.total_steps; step++) {
        double t0 = tm_now_s();
        StepResult res;
        train_step_grads(&r.step, step, &res);
        double lr = lr_at(&r.opt, step);
        adamw_step(&r.ps, &r.opt, step, lr, clip_scale(res.grad_norm, r.opt.max_grad_norm));
        if (r.step.gpu && step_gpu_weights(r.step.gpu, &r.step)) tm_die("fine-tuning on the GPU: %s", tm_error());
        loss = res.loss;
        if (r.root) log_step(&r, step, &res, lr, tm_now_s() - t0, t_start, step + 1 - r.start_step);
        if (!isfinite(res.loss)) rc = tm_fail("finetune: the loss at step %lld is %g", (long long)step + 1, res.loss);
        int64_t done = step + 1;
        if (!rc && cfg->save_steps > 0 && done % cfg->save_steps == 0 && done < r.total_steps) {
            rc = save_checkpoint(&r, done, loss);
            saved_at = done;
        }
        if (!rc && done < r.total_steps && (stopped = dist_stop_signal(MPI_COMM_WORLD))) {
            step++;
            break;
        }
    }
    if (!rc && saved_at != step) rc = save_checkpoint(&r, step, loss);
    if (!rc && stopped) {
        if (r.root)
            fprintf(stderr, "finetune: stopped (signal %d) after step %lld of %lld; checkpoint saved, run the same "
                    "command to continue\n", stopped, (long long)step, (long long)r.total_steps);
    } else if (!rc) {
        double t0 = tm_now_s();
        rc = train_export(&r.t, &r.m, cfg->save_path, cfg->model_path);
        if (!rc && r.root && !cfg->quiet)
            fprintf(stderr, "finetune: model written to %s (%.1f s)\n", cfg->save_path, tm_now_s() - t0);
    }
    if (r.t.size) teardown(&r);
    return rc ? 1 : 0;
}
