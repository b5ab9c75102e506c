/* P MPI ranks as S pipeline stages x Dp data-parallel replicas (DESIGN.md
 * section 3). World rank = replica * S + stage, so the stages of one replica
 * are neighbours (one node, when ranks fill nodes in order). */
#ifndef TM_DIST_TOPOLOGY_H
#define TM_DIST_TOPOLOGY_H

#include <mpi.h>

typedef struct {
    int rank, size;        /* in MPI_COMM_WORLD */
    int stages, replicas;  /* S, Dp = size / S */
    int stage, replica;
    int local_rank;        /* among the ranks on this node (a GPU rank uses GPU local_rank mod count) */
    MPI_Comm node_comm;    /* the ranks on this node; rank there = local_rank */
    MPI_Comm stage_comm;   /* the Dp replicas of this rank's stage; rank there = replica */
    MPI_Comm pipe_comm;    /* the S stages of this rank's replica; rank there = stage */
} Topology;

/* MPI_Init (a singleton when not launched by mpirun/srun), and fatal errors
 * (tm_die) end every rank with MPI_Abort after printing "rank R: cause". */
void dist_init(int *argc, char ***argv);
void dist_finalize(void);

/* Split the world into `stages` stages. Refuses P not divisible by S. */
int topology_init(Topology *t, int stages);
void topology_free(Topology *t);

/* Collective over comm: 0 when every rank passes rc == 0; otherwise -1 on
 * every rank, with tm_error() = "rank R: <its message>" of the lowest failing
 * world rank. Call it after each step that can fail on one rank only. */
int dist_agree(MPI_Comm comm, int rc);

/* Collective over comm: the stop signal (SIGTERM/SIGUSR1, io/base/interrupt.h)
 * any rank of comm has received, or 0 — every rank acts on the same answer.
 * The one stop check of convert and finetune. */
int dist_stop_signal(MPI_Comm comm);

/* Test hook: TRANSMLA_INJECT_FAILURE=WHERE:RANK makes world rank RANK die at
 * the named point (e.g. calibrate:1), as a crash there would; with
 * TRANSMLA_INJECT_SIGKILL set it kills itself with SIGKILL instead, with
 * TRANSMLA_INJECT_SIGTERM it sends itself SIGTERM and goes on. */
void dist_inject_failure(const char *where);

#endif
