#include "dist/stage_link.h"

#include "dist/chunked.h"
#include "io/base/checked.h"

static int peer(const Topology *t, LinkDir d) { return t->stage + (int)d; }

void stage_send(const Topology *t, LinkDir to, int tag, const float *x, int64_t n, int status) {
    MPI_Send(&status, 1, MPI_INT, peer(t, to), tag, t->pipe_comm);
    if (!status) chunked_send_f32(x, n, peer(t, to), tag + 1, t->pipe_comm);
}

int stage_recv(const Topology *t, LinkDir from, int tag, float *x, int64_t n) {
    int status;
    MPI_Recv(&status, 1, MPI_INT, peer(t, from), tag, t->pipe_comm, MPI_STATUS_IGNORE);
    if (!status) chunked_recv_f32(x, n, peer(t, from), tag + 1, t->pipe_comm);
    return status;
}

void stage_msg_init(StageMsg *m) { *m = (StageMsg){.req = {MPI_REQUEST_NULL, MPI_REQUEST_NULL}}; }

void stage_isend(const Topology *t, LinkDir to, int tag, const float *x, int n, int status, StageMsg *m) {
    if (n < 0) tm_die("stage_isend: %d floats", n);
    m->status = status;
    MPI_Isend(&m->status, 1, MPI_INT, peer(t, to), tag, t->pipe_comm, &m->req[0]);
    m->req[1] = MPI_REQUEST_NULL;
    if (!status) MPI_Isend(x, n, MPI_FLOAT, peer(t, to), tag + 1, t->pipe_comm, &m->req[1]);
}

void stage_irecv(const Topology *t, LinkDir from, int tag, float *x, int n, StageMsg *m) {
    if (n < 0) tm_die("stage_irecv: %d floats", n);
    MPI_Irecv(&m->status, 1, MPI_INT, peer(t, from), tag, t->pipe_comm, &m->req[0]);
    MPI_Irecv(x, n, MPI_FLOAT, peer(t, from), tag + 1, t->pipe_comm, &m->req[1]);
}

int stage_wait(StageMsg *m) {
    if (m->req[0] == MPI_REQUEST_NULL && m->req[1] == MPI_REQUEST_NULL) return 0;
    MPI_Wait(&m->req[0], MPI_STATUS_IGNORE);
    if (m->status && m->req[1] != MPI_REQUEST_NULL) MPI_Cancel(&m->req[1]); /* no data follows a non-zero status */
    MPI_Wait(&m->req[1], MPI_STATUS_IGNORE);
    return m->status;
}
