#include "train/step.h"

#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "dist/stage_link.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/crossentropy.h"
#include "model/rmsnorm.h"
#include "train/step_gpu.h"

/* n floats from a neighbour sent by stage_isend: one message. The sender's
 * status is 0 in a fine-tuning step (a failing rank aborts the job). */
static void recv_from(const Topology *t, LinkDir from, int tag, float *x, int n) {
    StageMsg m;
    stage_msg_init(&m);
    stage_irecv(t, from, tag, x, n, &m);
    if (stage_wait(&m)) tm_die("fine-tuning: stage %d: its neighbour stopped mid-step", t->stage);
}

/* Whether kept[i] (slot i / n_local, layer i % n_local) has activations of
 * its own: the first slot's last layer uses acts' (the other sets borrow
 * only acts' gradient scratch, never its saved tensors). */
static int kept_own(const TrainStep *s, int i) { return i != s->n_local - 1; }

/* bytes counted into s->bytes and allocated, or with s->count_only counted only (NULL). */
static void *step_alloc(TrainStep *s, size_t bytes) {
    s->bytes += bytes;
    return s->count_only ? NULL : mallocCheck(bytes + 1);
}

/* What a step's schedule holds: its micro-batches in flight (slots). */
static void step_shape(TrainStep *s, const Topology *t, const Model *m, int B, int T, int K, int recompute) {
    s->topo = t;
    s->m = m;
    s->B = B;
    s->T = T;
    s->K = K;
    s->n_local = m->part.end - m->part.first;
    s->recompute = recompute;
    int ahead = t->stages - t->stage; /* 1F1B: the micro-batches a stage holds at most */
    s->slots = recompute || K < ahead ? K : ahead;
}

/* The activation buffers counted in s->bytes (the teacher's aside: step_teacher_buffers), allocated
 * or, with s->count_only, counted only: the one computation behind
 * train_step_init and train_step_bytes. */
static void step_buffers(TrainStep *s) {
    const ModelConfig *c = &s->m->cfg;
    int B = s->B, T = s->T, K = s->K, count = s->count_only;
    size_t N = (size_t)B * T, D = (size_t)c->hidden_size;
    if (!count) layer_acts_init(&s->acts, c, B, T, ACTS_BACKWARD);
    s->bytes += layer_acts_bytes(c, B, T, ACTS_BACKWARD);
    if (!s->recompute) {
        if (!count) s->kept = callocCheck((size_t)s->slots * s->n_local + 1, sizeof *s->kept);
        for (int i = 0; i < s->slots * s->n_local; i++) {
            if (!kept_own(s, i)) continue;
            if (!count) layer_acts_init_sharing(&s->kept[i], c, B, T, &s->acts);
            s->bytes += layer_acts_bytes(c, B, T, ACTS_SAVED);
        }
    }
    int n_saved = s->slots * (s->n_local + 1);
    if (!count) s->saved = callocCheck((size_t)n_saved, sizeof *s->saved);
    for (int i = 0; i < n_saved; i++) {
        float *x = step_alloc(s, N * D * sizeof(float));
        if (!count) s->saved[i] = x;
    }
    if (s->recompute) s->x_tmp = step_alloc(s, N * D * sizeof(float)); /* the recomputed layer's output */
    s->dx = step_alloc(s, N * D * sizeof(float));
    if (s->m->part.head) {
        s->xn = step_alloc(s, N * D * sizeof(float));
        s->dxn = step_alloc(s, N * D * sizeof(float));
        s->rstd = step_alloc(s, N * sizeof(float));
        s->chunk = model_head_vocab_chunk((int)N, c->vocab_size);
        s->logits = step_alloc(s, N * (size_t)s->chunk * sizeof(float));
    }
    s->tokens = step_alloc(s, (size_t)K * N * sizeof(int32_t));
    s->targets = step_alloc(s, (size_t)K * N * sizeof(int32_t));
    s->pos = step_alloc(s, (size_t)K * N * sizeof(int32_t));
    s->doc_start = step_alloc(s, (size_t)K * N * sizeof(int32_t));
}

/* A distillation's share of s->bytes: the teacher's buffers (allocated by
 * teacher_buffers before, or with s->count_only counted only) and, at the
 * head, its logits. */
static void step_teacher_buffers(TrainStep *s, const Teacher *teacher) {
    if (!teacher) return;
    s->bytes += s->count_only ? teacher_step_bytes(teacher, s->B, s->T, s->K) : teacher->bytes;
    if (s->m->part.head) s->teacher_logits = step_alloc(s, (size_t)s->B * s->T * s->chunk * sizeof(float));
}

uint64_t train_step_bytes(const Topology *t, const Model *m, const Teacher *teacher, int B, int T, int K,
                          int recompute) {
    TrainStep s = {.count_only = 1};
    step_shape(&s, t, m, B, T, K, recompute);
    step_buffers(&s);
    step_teacher_buffers(&s, teacher);
    return s.bytes;
}

void train_step_init(TrainStep *s, const Topology *t, const Model *m, ParamSet *ps, Sampler *sampler, int B, int T,
                     int K, int recompute, Teacher *teacher) {
    memset(s, 0, sizeof *s);
    const ModelConfig *c = &m->cfg;
    step_shape(s, t, m, B, T, K, recompute);
    s->ps = ps;
    s->sampler = sampler;
    size_t N = (size_t)B * T, D = (size_t)c->hidden_size;
    if (N * D > INT_MAX) /* a stage's message is one MPI count */
        tm_die("fine-tuning: a micro-batch of %zu tokens x hidden %zu is more than 2^31 floats: lower --batch-size", N,
               D);
    s->embed_scale = c->embed_scaled ? model_embed_normalizer(c, ps->embed_dtype) : 1.0f;
    rope_table_init(&s->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    step_buffers(s);
    s->sent = callocCheck((size_t)s->slots, sizeof *s->sent);
    for (int i = 0; i < s->slots; i++) stage_msg_init(&s->sent[i]);
    stage_msg_init(&s->sent_grad);
    s->row_idx = mallocCheck((size_t)B * sizeof *s->row_idx);
    if (!teacher) return;
    s->teacher = teacher;
    teacher_buffers(teacher, B, T, K);
    step_teacher_buffers(s, teacher);
}

void train_step_free(TrainStep *s) {
    step_gpu_free(s->gpu);
    rope_table_free(&s->rope);
    for (int i = 0; s->kept && i < s->slots * s->n_local; i++)
        if (kept_own(s, i)) layer_acts_free(&s->kept[i]);
    free(s->kept);
    layer_acts_free(&s->acts); /* after the kept ones: they borrow its gradient scratch */
    for (int i = 0; s->saved && i < s->slots * (s->n_local + 1); i++) free(s->saved[i]);
    free(s->saved);
    free(s->sent);
    free(s->x_tmp);
    free(s->dx);
    free(s->xn);
    free(s->dxn);
    free(s->rstd);
    free(s->logits);
    free(s->teacher_logits);
    free(s->tokens);
    free(s->targets);
    free(s->pos);
    free(s->doc_start);
    free(s->row_idx);
    memset(s, 0, sizeof *s);
}

/* free(*p), counted out of s->bytes. */
static void step_release(TrainStep *s, float **p, size_t bytes) {
    if (!*p) return;
    free(*p);
    *p = NULL;
    s->bytes -= bytes;
}

int train_step_use_gpu(TrainStep *s, int fp32) {
    if (step_gpu_init(&s->gpu, s, fp32)) return -1;
    /* the device keeps the layers' inputs and runs them and the head: the host stages one micro-batch's stream */
    size_t N = (size_t)s->B * s->T, ND = N * s->m->cfg.hidden_size * sizeof(float);
    for (int i = s->n_local + 1; i < s->slots * (s->n_local + 1); i++) step_release(s, &s->saved[i], ND);
    s->slots = 1;
    s->bytes -= s->acts.bytes;
    layer_acts_free(&s->acts);
    step_release(s, &s->x_tmp, ND);
    step_release(s, &s->xn, ND);
    step_release(s, &s->dxn, ND);
    step_release(s, &s->rstd, N * sizeof(float));
    step_release(s, &s->logits, N * (size_t)s->chunk * sizeof(float));
    return 0;
}

/* saved input of local layer li (li == n_local: the head's) of micro-batch k
 * (in its slot: with recompute, each micro-batch has one) */
static float *saved(const TrainStep *s, int k, int li) { return s->saved[(k % s->slots) * (s->n_local + 1) + li]; }

/* The activations local layer li's forward of micro-batch k keeps for its backward pass. */
static LayerActs *acts_of(TrainStep *s, int k, int li) {
    int i = (k % s->slots) * s->n_local + li;
    return s->recompute || !kept_own(s, i) ? &s->acts : &s->kept[i];
}

/* The allreduce of one gradient bucket across the stage's replicas, in
 * pieces of at most 2^30 floats (MPI counts are int). */
typedef struct {
    MPI_Request req[64];
    int n;
} Reductions;

static void reduce_bucket(const TrainStep *s, Reductions *r, int layer) {
    const GradBucket *b = params_bucket(s->ps, layer);
    if (!b || s->topo->replicas == 1) return;
    for (int64_t off = b->first; off < b->end; off += 1 << 30) {
        if (r->n == (int)(sizeof r->req / sizeof r->req[0])) {
            MPI_Waitall(r->n, r->req, MPI_STATUSES_IGNORE);
            r->n = 0;
        }
        int64_t count = b->end - off < (1 << 30) ? b->end - off : (1 << 30);
        MPI_Iallreduce(MPI_IN_PLACE, s->ps->g + off, (int)count, MPI_FLOAT, MPI_SUM, s->topo->stage_comm,
                       &r->req[r->n++]);
    }
}

/* Let MPI move the reductions in flight along while the backward pass runs. */
static void progress(Reductions *r) {
    int done;
    if (r->n) MPI_Testall(r->n, r->req, &done, MPI_STATUSES_IGNORE);
}

/* x[n] *= f (gemma2's embedding scale, forward and backward alike). */
static void scale_rows(float *x, int64_t n, float f) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= f;
}

/* out = the embedding rows of tok, as model_embed_rows makes them, with the
 * scale rounded to the embedding's stored dtype (the master is fp32). */
static void embed_forward(const TrainStep *s, const int32_t *tok, float *out) {
    int N = s->B * s->T;
    embedding_forward(out, tok, &s->m->w.embed, N);
    if (s->embed_scale != 1.0f) scale_rows(out, (int64_t)N * s->m->cfg.hidden_size, s->embed_scale);
}

/* Micro-batch k's rows: its positions and documents. */
static LayerRows rows_of(const TrainStep *s, int k) {
    size_t N = (size_t)s->B * s->T;
    return (LayerRows){.B = s->B, .T = s->T, .pos = s->pos + k * N, .doc_start = s->doc_start + k * N,
                       .rope = &s->rope};
}

/* The teacher's forward of micro-batch k through this stage, its stream
 * passed on like the student's. */
static void teacher_micro(TrainStep *s, int k) {
    Teacher *te = s->teacher;
    const Topology *t = s->topo;
    int N = s->B * s->T, Dt = te->m.cfg.hidden_size;
    if (!te->m.part.embed)
        stage_recv(t, LINK_PREV, LINK_TAG_TEACHER, te->x, (int64_t)N * Dt);
    LayerRows rows = rows_of(s, k);
    teacher_forward(te, k, s->tokens + (size_t)k * N, &rows);
    if (!te->m.part.head) stage_send(t, LINK_NEXT, LINK_TAG_TEACHER, te->x, (int64_t)N * Dt, 0);
}

static void forward_micro(TrainStep *s, int k) {
    const Model *m = s->m;
    const Topology *t = s->topo;
    int N = s->B * s->T, D = m->cfg.hidden_size;
    int32_t *tok = s->tokens + (size_t)k * N;
    stage_wait(&s->sent[k % s->slots]); /* the slot's last activations have left */
    if (m->part.embed) embed_forward(s, tok, saved(s, k, 0));
    else recv_from(t, LINK_PREV, LINK_TAG_ACT, saved(s, k, 0), N * D);
    LayerRows rows = rows_of(s, k);
    if (s->gpu && step_gpu_forward(s->gpu, s, k, saved(s, k, 0), m->part.head ? NULL : saved(s, k, s->n_local)))
        tm_die("fine-tuning on the GPU: %s", tm_error());
    for (int li = 0; !s->gpu && li < s->n_local; li++) {
        int l = m->part.first + li;
        layer_forward(&m->cfg, &m->w.layers[l], l, saved(s, k, li), saved(s, k, li + 1), &rows,
                      acts_of(s, k, li));
    }
    if (!m->part.head)
        stage_isend(t, LINK_NEXT, LINK_TAG_ACT, saved(s, k, s->n_local), N * D, 0, &s->sent[k % s->slots]);
    if (s->teacher) teacher_micro(s, k);
}

/* Final norm, LM head and loss of micro-batch k, forward and backward: s->dx
 * gets the gradient at the head's input. Returns the NLL sum; *kl += the
 * KL sum with a teacher. */
static double head_micro(TrainStep *s, int k, float weight, double *kl) {
    const Model *m = s->m;
    const ModelConfig *c = &m->cfg;
    int N = s->B * s->T, D = c->hidden_size;
    const float *x = saved(s, k, s->n_local);
    rmsnorm_forward_train(s->xn, s->rstd, x, m->w.final_norm, N, D, c->rms_norm_eps);
    memset(s->dxn, 0, (size_t)N * D * sizeof(float));
    int64_t counted;
    HeadTeacher ht, *teacher = NULL;
    if (s->teacher) {
        const Model *tm = &s->teacher->m;
        ht = (HeadTeacher){.hidden = s->teacher->head[k], .lm_head = &tm->w.lm_head,
                           .logit_cap = (float)tm->cfg.final_softcap, .alpha = s->teacher->alpha,
                           .logits = s->teacher_logits};
        teacher = &ht;
    }
    double nll = head_loss_forward_backward(s->dxn, (float *)s->ps->grads.lm_head.data, s->xn, &m->w.lm_head,
                                            s->targets + (size_t)k * N, N, weight, (float)c->final_softcap, s->logits,
                                            s->chunk, &counted, teacher);
    if (teacher) *kl += ht.kl;
    memset(s->dx, 0, (size_t)N * D * sizeof(float));
    rmsnorm_backward(s->dx, s->ps->grads.final_norm, s->dxn, x, m->w.final_norm, s->rstd, N, D);
    return nll;
}

static void backward_micro(TrainStep *s, int k, float weight, double *nll, double *kl, Reductions *red) {
    const Model *m = s->m;
    const Topology *t = s->topo;
    int N = s->B * s->T, D = m->cfg.hidden_size;
    int last = k == s->K - 1 && !s->gpu; /* on the GPU the buckets are reduced after the step (train_step_grads) */
    stage_wait(&s->sent_grad); /* dx is written below */
    if (s->gpu) { /* the head and the layers on the device; its gradients reach the host after the last */
        if (!m->part.head) recv_from(t, LINK_NEXT, LINK_TAG_GRAD, s->dx, N * D);
        if (step_gpu_backward(s->gpu, s, k, weight, s->dx, nll)) tm_die("fine-tuning on the GPU: %s", tm_error());
    } else if (m->part.head) {
        *nll += head_micro(s, k, weight, kl);
        if (last) reduce_bucket(s, red, WEIGHT_PART_HEAD);
    } else {
        recv_from(t, LINK_NEXT, LINK_TAG_GRAD, s->dx, N * D);
    }
    LayerRows rows = rows_of(s, k);
    for (int li = s->n_local - 1; !s->gpu && li >= 0; li--) {
        int l = m->part.first + li;
        const LayerWeights *L = &m->w.layers[l];
        LayerActs *a = acts_of(s, k, li);
        if (s->recompute) layer_forward(&m->cfg, L, l, saved(s, k, li), s->x_tmp, &rows, a); /* recompute */
        layer_backward(&m->cfg, L, &s->ps->grads.layers[l], l, saved(s, k, li), s->dx, s->dx, &rows, a);
        if (last) reduce_bucket(s, red, l);
        progress(red);
    }
    if (m->part.embed) {
        if (s->embed_scale != 1.0f) scale_rows(s->dx, (int64_t)N * D, s->embed_scale);
        if (s->ps->grads.embed.data)
            embedding_backward((float *)s->ps->grads.embed.data, s->dx, s->tokens + (size_t)k * N, N, D);
        if (last) reduce_bucket(s, red, WEIGHT_PART_EMBED);
    } else {
        stage_isend(t, LINK_PREV, LINK_TAG_GRAD, s->dx, N * D, 0, &s->sent_grad);
    }
}

/* This replica's K micro-batches through the stage. Without recompute
 * 1F1B: the forwards run `ahead` micro-batches before their backwards. */
static void micro_batches(TrainStep *s, double *nll, double *kl, float weight, Reductions *red) {
    int K = s->K, ahead = s->recompute ? K : s->slots - 1;
    for (int k = 0; k < ahead; k++) forward_micro(s, k);
    for (int k = ahead; k < K; k++) {
        forward_micro(s, k);
        backward_micro(s, k - ahead, weight, nll, kl, red);
    }
    for (int k = K - ahead; k < K; k++) backward_micro(s, k, weight, nll, kl, red);
    for (int i = 0; i < s->slots; i++) stage_wait(&s->sent[i]);
    stage_wait(&s->sent_grad);
}

void train_step_grads(TrainStep *s, int64_t step, StepResult *out) {
    const Topology *t = s->topo;
    int N = s->B * s->T;
    params_zero_grads(s->ps);
    int64_t targets = sampler_step_targets(s->sampler, step);
    float weight = targets > 0 ? (float)(1.0 / (double)targets) : 0.0f;
    for (int k = 0; k < s->K; k++) {
        sampler_rows(s->sampler, step, t->replica, k, s->row_idx);
        train_rows_batch(s->sampler->rows, s->row_idx, s->B, s->tokens + (size_t)k * N, s->targets + (size_t)k * N,
                         s->pos + (size_t)k * N, s->doc_start + (size_t)k * N);
    }
    if (s->gpu && step_gpu_rows(s->gpu, s)) tm_die("fine-tuning on the GPU: %s", tm_error());
    double sums[2] = {0.0, 0.0}, all[2]; /* NLL, KL */
    Reductions red = {.n = 0};
    micro_batches(s, &sums[0], &sums[1], weight, &red);
    if (s->gpu) { /* the device's gradients (the tied head's added to the embedding's), then every bucket */
        if (step_gpu_add_grads(s->gpu, s)) tm_die("fine-tuning on the GPU: %s", tm_error());
        reduce_bucket(s, &red, WEIGHT_PART_HEAD);
        for (int l = s->m->part.end - 1; l >= s->m->part.first; l--) reduce_bucket(s, &red, l);
        reduce_bucket(s, &red, WEIGHT_PART_EMBED);
    }
    if (red.n) MPI_Waitall(red.n, red.req, MPI_STATUSES_IGNORE);
    /* the global norm: this stage's squares (equal on its replicas), summed over stages */
    double sq = params_grad_sq(s->ps), sq_all;
    MPI_Allreduce(&sq, &sq_all, 1, MPI_DOUBLE, MPI_SUM, t->pipe_comm);
    MPI_Allreduce(sums, all, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    out->targets = targets;
    out->loss = targets > 0 ? all[0] / (double)targets : 0.0;
    out->kl = targets > 0 ? all[1] / (double)targets : 0.0;
    out->grad_norm = sqrt(sq_all);
}
