#include "dist/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"
#include "io/clock.h"
#include "io/error.h"

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

static void progress_line(const PipeJob *j, const Topology *t, int mb, int n_mb, int64_t done, int64_t total,
                          double t0) {
    double el = tm_now_s() - t0, rate = done / (el > 0 ? el : 1e-9);
    fprintf(stderr, "%s: batch %d/%d  %lld tokens  %.0f tokens/s  ETA %.1f s\n", j->label, mb + 1, n_mb,
            (long long)done * t->replicas, rate * t->replicas, (total - done) / rate);
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
    if (!first_stage && n_mb > 0)
        MPI_Irecv(b.recv[0], MB_WINDOWS(0) * T * D, MPI_FLOAT, t->stage - 1, 0, t->pipe_comm, &b.rreq);
    double t0 = tm_now_s(), nll = 0;
    int64_t predicted = 0, total = (int64_t)count * T;
    int reporter = j->label && t->replica == 0 && last_stage;
    for (int mb = 0; mb < n_mb; mb++) {
        ws.B = MB_WINDOWS(mb);
        int N = ws.B * T;
        const int32_t *tokens = j->ids + ((size_t)first_w + (size_t)mb * batch) * T;
        if (first_stage) {
            model_embed(m, tokens, &ws);
        } else {
            MPI_Wait(&b.rreq, MPI_STATUS_IGNORE);
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
        if (reporter) progress_line(j, t, mb, n_mb, ((int64_t)mb * batch + ws.B) * T, total, t0);
    }
#undef MB_WINDOWS
    MPI_Waitall(2, b.sreq, MPI_STATUSES_IGNORE);
    for (int i = 0; i < 2; i++) {
        free(b.recv[i]);
        free(b.send[i]);
    }
    workspace_free(&ws);

    /* only last stages hold scores; everyone learns the total */
    double local[2] = {last_stage ? nll : 0, last_stage ? (double)predicted : 0}, sum[2];
    MPI_Allreduce(local, sum, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
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
