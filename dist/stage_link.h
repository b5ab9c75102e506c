/* The one transport between neighbouring pipeline stages of a replica
 * (Topology.pipe_comm): calibration and evaluation streams
 * (pipeline/stream.c), the per-layer fits' stream (pipeline/fit_stream.c)
 * and fine-tuning's activations and gradients (train/step.c).
 *
 * Every message is a status word, then, only when the status is 0, the
 * floats. A stage that stops (status > 0) or fails (< 0) thus releases the
 * stage waiting on it instead of leaving it blocked in a receive. Blocking
 * messages may be longer than an MPI count (2^31 floats, dist/chunked.h);
 * non-blocking ones, which overlap a micro-batch's transfer with the
 * computation of another, are one message of at most 2^31 - 1 floats. */
#ifndef TM_DIST_STAGE_LINK_H
#define TM_DIST_STAGE_LINK_H

#include <mpi.h>
#include <stdint.h>

#include "dist/topology.h"

/* The neighbour a message goes to or comes from. */
typedef enum { LINK_NEXT = 1, LINK_PREV = -1 } LinkDir;

/* Tags of one kind of traffic: the status and the data go under tag and
 * tag + 1, so kinds must be at least 2 apart. */
enum {
    LINK_TAG_STREAM = 80,  /* + 2 * (micro-batch % 2): two in flight */
    LINK_TAG_FIT = 90,
    LINK_TAG_ACT = 100,
    LINK_TAG_GRAD = 102,
    LINK_TAG_TEACHER = 104,
};

void stage_send(const Topology *t, LinkDir to, int tag, const float *x, int64_t n, int status);
/* The sender's status; with 0, its n floats in x. */
int stage_recv(const Topology *t, LinkDir from, int tag, float *x, int64_t n);

/* A message in flight. The status word lives here, so the struct must stay
 * put until stage_wait. */
typedef struct {
    MPI_Request req[2];
    int status;
} StageMsg;

void stage_msg_init(StageMsg *m); /* nothing in flight */
void stage_isend(const Topology *t, LinkDir to, int tag, const float *x, int n, int status, StageMsg *m);
void stage_irecv(const Topology *t, LinkDir from, int tag, float *x, int n, StageMsg *m);
/* Completes m (nothing in flight: returns 0 at once). For a receive: the
 * sender's status, the floats having arrived when it is 0 (the data receive
 * is cancelled otherwise). */
int stage_wait(StageMsg *m);

#endif
