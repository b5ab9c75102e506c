#include "pipeline/stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/base/interrupt.h"

void pipeline_slice(int nseq, int replica, int replicas, int *first, int *count) {
    int64_t a = (int64_t)nseq * replica / replicas, b = (int64_t)nseq * (replica + 1) / replicas;
    *first = (int)a;
    *count = (int)(b - a);
}

/* Two buffers each way: one in flight while the other is filled/drained. */
typedef struct {
    float *recv[2], *send[2];
    MPI_Request rreq, sreq[2];
} Buffers;

/* done: tokens through this replica so far, of which `before` came from an earlier run */
static void progress_line(const PipeJob *j, const Topology *t, int mb, int n_mb, int64_t done, int64_t before,
                          int64_t total, double t0) {
    double el = tm_now_s() - t0, rate = (done - before) / (el > 0 ? el : 1e-9);
    fprintf(stderr, "%s: batch %d/%d  %lld tokens  %.0f tokens/s  ETA %.1f s\n", j->label, mb + 1, n_mb,
            (long long)done * t->replicas, rate * t->replicas, (total - done) / rate);
}

/* The first stage asks the ones after it to stop: an empty micro-batch. */
static void send_stop(const Topology *t, Buffers *b, int mb) {
    MPI_Wait(&b->sreq[mb % 2], MPI_STATUS_IGNORE);
    MPI_Isend(b->send[mb % 2], 0, MPI_FLOAT, t->stage + 1, mb, t->pipe_comm, &b->sreq[mb % 2]);
}

int pipeline_run(const Topology *t, const Model *m, const PipeJob *j, PipeResult *out) {
    memset(out, 0, sizeof *out);
    const ModelConfig *c = &m->cfg;
    int first_w, count;
    pipeline_slice(j->nseq, t->replica, t->replicas, &first_w, &count);
    int batch = j->batch < 1 ? 1 : j->batch;
    if (batch > count) batch = count > 0 ? count : 1;
    int n_mb = (count + batch - 1) / batch, D = c->hidden_size, T = j->seqlen;
    int first_stage = t->stage == 0, last_stage = t->stage == t->stages - 1;
    size_t max_n = (size_t)batch * T * D;

    Workspace ws;
    workspace_init(&ws, c, batch, T);
    ws.hook = j->hook;
    ws.hook_ctx = j->hook_ctx;
    Buffers b = {.rreq = MPI_REQUEST_NULL, .sreq = {MPI_REQUEST_NULL, MPI_REQUEST_NULL}};
    for (int i = 0; i < 2; i++) {
        if (!first_stage) b.recv[i] = mallocCheck(max_n * sizeof(float));
        if (!last_stage) b.send[i] = mallocCheck(max_n * sizeof(float));
    }
    out->activation_bytes = ws.bytes + (uint64_t)((!first_stage) + (!last_stage)) * 2 * max_n * sizeof(float);

    /* micro-batch i holds windows first_w + i*batch .. (the last may be short) */
#define MB_WINDOWS(i) ((i) == n_mb - 1 ? count - (i) * batch : batch)
    int start = j->start_mb < n_mb ? j->start_mb : n_mb, mb, stopped = 0;
    if (!first_stage && start < n_mb)
        MPI_Irecv(b.recv[start % 2], MB_WINDOWS(start) * T * D, MPI_FLOAT, t->stage - 1, start, t->pipe_comm, &b.rreq);
    double t0 = tm_now_s(), nll = j->nll0;
    int64_t predicted = j->predicted0, total = (int64_t)count * T, before = (int64_t)start * batch * T;
    int reporter = j->label && t->replica == 0 && last_stage;
    for (mb = start; mb < n_mb; mb++) {
        ws.B = MB_WINDOWS(mb);
        int N = ws.B * T;
        const int32_t *tokens = j->ids + ((size_t)first_w + (size_t)mb * batch) * T;
        if (first_stage) {
            stopped = tm_interrupt_signal() != 0;
        } else {
            MPI_Status st;
            int got;
            MPI_Wait(&b.rreq, &st);
            MPI_Get_count(&st, MPI_FLOAT, &got);
            stopped = got == 0;
        }
        if (stopped) {
            if (!last_stage) send_stop(t, &b, mb);
            break;
        }
        if (first_stage) {
            model_embed(m, tokens, &ws);
        } else {
            memcpy(ws.x, b.recv[mb % 2], (size_t)N * D * sizeof(float));
            if (mb + 1 < n_mb)
                MPI_Irecv(b.recv[(mb + 1) % 2], MB_WINDOWS(mb + 1) * T * D, MPI_FLOAT, t->stage - 1, mb + 1,
                          t->pipe_comm, &b.rreq);
        }
        model_layers(m, &ws, m->part.first, m->part.end);
        if (!last_stage) {
            MPI_Wait(&b.sreq[mb % 2], MPI_STATUS_IGNORE); /* the send of micro-batch mb-2 */
            memcpy(b.send[mb % 2], ws.x, (size_t)N * D * sizeof(float));
            MPI_Isend(b.send[mb % 2], N * D, MPI_FLOAT, t->stage + 1, mb, t->pipe_comm, &b.sreq[mb % 2]);
        } else if (j->score) {
            int64_t n;
            model_final_norm(m, &ws);
            nll += model_head_nll(m, tokens, &ws, &n);
            predicted += n;
        }
        if (reporter) progress_line(j, t, mb, n_mb, ((int64_t)mb * batch + ws.B) * T, before, total, t0);
    }
#undef MB_WINDOWS
    MPI_Waitall(2, b.sreq, MPI_STATUSES_IGNORE);
    for (int i = 0; i < 2; i++) {
        free(b.recv[i]);
        free(b.send[i]);
    }
    workspace_free(&ws);

    out->next_mb = mb;
    out->n_mb = n_mb;
    out->nll_local = last_stage ? nll : 0;
    out->predicted_local = last_stage ? predicted : 0;
    /* only last stages hold scores; everyone learns the total */
    double local[3] = {out->nll_local, (double)out->predicted_local, stopped}, sum[3];
    MPI_Allreduce(local, sum, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    out->stopped = sum[2] > 0;
    double seconds = tm_now_s() - t0, slowest;
    MPI_Allreduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    out->predicted = (int64_t)sum[1];
    out->tokens = (int64_t)j->nseq * T;
    out->seconds = slowest;
    out->tokens_per_s = out->tokens / (slowest > 0 ? slowest : 1e-9);
    out->nll = out->predicted ? sum[0] / sum[1] : NAN;
    out->ppl = exp(out->nll);
    return 0;
}
