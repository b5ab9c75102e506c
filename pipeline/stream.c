#include "pipeline/stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/stage_link.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/base/interrupt.h"
#include "pipeline/stage_device.h"

void pipeline_slice(int nseq, int replica, int replicas, int *first, int *count) {
    int64_t a = (int64_t)nseq * replica / replicas, b = (int64_t)nseq * (replica + 1) / replicas;
    *first = (int)a;
    *count = (int)(b - a);
}

/* Two buffers each way: one in flight while the other is filled/drained. */
typedef struct {
    float *recv[2], *send[2];
    StageMsg rmsg, smsg[2];
} Buffers;

/* Micro-batch mb's tag: two may be in flight, under different tags. */
static int mb_tag(int mb) { return LINK_TAG_STREAM + 2 * (mb % 2); }

/* done: tokens through this replica so far, of which `before` came from an earlier run */
static void progress_line(const PipeJob *j, const Topology *t, int mb, int n_mb, int64_t done, int64_t before,
                          int64_t total, double t0) {
    double el = tm_now_s() - t0, rate = (done - before) / (el > 0 ? el : 1e-9);
    fprintf(stderr, "%s: batch %d/%d  %lld tokens  %.0f tokens/s  ETA %.1f s\n", j->label, mb + 1, n_mb,
            (long long)done * t->replicas, rate * t->replicas, (total - done) / rate);
}

/* The first stage asks the ones after it to stop: micro-batch mb's status. */
static void send_stop(const Topology *t, Buffers *b, int mb) {
    stage_wait(&b->smsg[mb % 2]);
    stage_isend(t, LINK_NEXT, mb_tag(mb), NULL, 0, 1, &b->smsg[mb % 2]);
}

/* One replica's share of a job on this stage: its windows in micro-batches. */
typedef struct {
    const Topology *t;
    const Model *m;
    const PipeJob *j;
    int first_w, count, batch, n_mb, T, D;
    int first_stage, last_stage;
    Workspace ws;
    StageDevice *dev; /* NULL: the CPU */
    Buffers b;
} Stream;

/* micro-batch i holds windows first_w + i*batch .. (the last may be short) */
static int mb_windows(const Stream *p, int i) { return i == p->n_mb - 1 ? p->count - i * p->batch : p->batch; }

static void post_recv(Stream *p, int mb) {
    stage_irecv(p->t, LINK_PREV, mb_tag(mb), p->b.recv[mb % 2], mb_windows(p, mb) * p->T * p->D, &p->b.rmsg);
}

/* Micro-batch mb into ws.x: embedded on the first stage, received on the
 * others (the next receive posted). 1: the run stops before it (a stop
 * request on the first stage, a non-zero status on the others). */
static int mb_input(Stream *p, int mb, const int32_t *tokens) {
    int N = p->ws.B * p->T;
    if (p->first_stage) {
        if (tm_interrupt_signal()) return 1;
        model_embed(p->m, tokens, &p->ws);
        return 0;
    }
    if (stage_wait(&p->b.rmsg)) return 1;
    memcpy(p->ws.x, p->b.recv[mb % 2], (size_t)N * p->D * sizeof(float));
    if (mb + 1 < p->n_mb) post_recv(p, mb + 1);
    return 0;
}

/* After the stage's layers: send micro-batch mb on, or score it on the last
 * stage (NLL sum and predicted count added). */
static void mb_output(Stream *p, int mb, const int32_t *tokens, double *nll, int64_t *predicted) {
    int N = p->ws.B * p->T;
    if (!p->last_stage) {
        stage_wait(&p->b.smsg[mb % 2]); /* the send of micro-batch mb-2 */
        memcpy(p->b.send[mb % 2], p->ws.x, (size_t)N * p->D * sizeof(float));
        stage_isend(p->t, LINK_NEXT, mb_tag(mb), p->b.send[mb % 2], N * p->D, 0, &p->b.smsg[mb % 2]);
    } else if (p->j->score) {
        int64_t n;
        *nll += stage_device_head_nll(p->dev, p->m, tokens, &p->ws, &n);
        *predicted += n;
    }
}

static void stream_init(Stream *p, const Topology *t, const Model *m, const PipeJob *j) {
    *p = (Stream){.t = t, .m = m, .j = j, .T = j->seqlen, .D = m->cfg.hidden_size, .first_stage = t->stage == 0,
                  .last_stage = t->stage == t->stages - 1};
    pipeline_slice(j->nseq, t->replica, t->replicas, &p->first_w, &p->count);
    p->batch = j->batch < 1 ? 1 : j->batch;
    if (p->batch > p->count) p->batch = p->count > 0 ? p->count : 1;
    p->n_mb = (p->count + p->batch - 1) / p->batch;
    size_t max_n = (size_t)p->batch * p->T * p->D;
    workspace_init(&p->ws, &m->cfg, p->batch, p->T);
    p->ws.hook = j->hook;
    p->ws.hook_ctx = j->hook_ctx;
    stage_msg_init(&p->b.rmsg);
    for (int i = 0; i < 2; i++) {
        stage_msg_init(&p->b.smsg[i]);
        p->b.recv[i] = p->b.send[i] = NULL;
        if (!p->first_stage) p->b.recv[i] = mallocCheck(max_n * sizeof(float));
        if (!p->last_stage) p->b.send[i] = mallocCheck(max_n * sizeof(float));
    }
}

static void stream_free(Stream *p) {
    for (int i = 0; i < 2; i++) {
        stage_wait(&p->b.smsg[i]);
        free(p->b.recv[i]);
        free(p->b.send[i]);
    }
    stage_device_finish(p->dev);
    stage_device_free(p->dev);
    workspace_free(&p->ws);
}

/* Every rank learns the totals: only last stages hold scores. */
static void stream_result(const Stream *p, int mb, int stopped, double nll, int64_t predicted, double t0,
                          PipeResult *out) {
    out->next_mb = mb;
    out->n_mb = p->n_mb;
    out->nll_local = p->last_stage ? nll : 0;
    out->predicted_local = p->last_stage ? predicted : 0;
    double local[3] = {out->nll_local, (double)out->predicted_local, stopped}, sum[3];
    MPI_Allreduce(local, sum, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    out->stopped = sum[2] > 0;
    double seconds = tm_now_s() - t0, slowest;
    MPI_Allreduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    out->predicted = (int64_t)sum[1];
    out->tokens = (int64_t)p->j->nseq * p->T;
    out->seconds = slowest;
    out->tokens_per_s = out->tokens / (slowest > 0 ? slowest : 1e-9);
    out->nll = out->predicted ? sum[0] / sum[1] : NAN;
    out->ppl = exp(out->nll);
}

int pipeline_run(const Topology *t, const Model *m, const PipeJob *j, PipeResult *out) {
    memset(out, 0, sizeof *out);
    Stream p;
    stream_init(&p, t, m, j);
    if (dist_agree(MPI_COMM_WORLD, stage_device_init(&p.dev, t, m, j, &p.ws))) {
        stream_free(&p);
        return -1;
    }
    out->activation_bytes = p.ws.bytes + (uint64_t)((!p.first_stage) + (!p.last_stage)) * 2 * p.batch * p.T * p.D *
                                             sizeof(float);
    int start = j->start_mb < p.n_mb ? j->start_mb : p.n_mb, mb, stopped = 0;
    if (!p.first_stage && start < p.n_mb) post_recv(&p, start);
    double t0 = tm_now_s(), nll = j->nll0;
    int64_t predicted = j->predicted0, total = (int64_t)p.count * p.T, before = (int64_t)start * p.batch * p.T;
    int reporter = j->label && t->replica == 0 && p.last_stage;
    for (mb = start; mb < p.n_mb; mb++) {
        p.ws.B = mb_windows(&p, mb);
        const int32_t *tokens = j->ids + ((size_t)p.first_w + (size_t)mb * p.batch) * p.T;
        if ((stopped = mb_input(&p, mb, tokens))) {
            if (!p.last_stage) send_stop(t, &p.b, mb);
            break;
        }
        stage_device_layers(p.dev, m, &p.ws);
        mb_output(&p, mb, tokens, &nll, &predicted);
        if (reporter) progress_line(j, t, mb, p.n_mb, ((int64_t)mb * p.batch + p.ws.B) * p.T, before, total, t0);
    }
    stream_free(&p);
    stream_result(&p, mb, stopped, nll, predicted, t0, out);
    return 0;
}
