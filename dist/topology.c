#include "dist/topology.h"

#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/interrupt.h"
#include "io/base/test_hooks.h"

static int world_rank(void) {
    int r = 0, up = 0;
    MPI_Initialized(&up);
    if (up) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

/* A rank that cannot go on takes the whole job down at once: its peers may
 * be blocked in a receive from it and would otherwise wait forever. */
static void die_everywhere(const char *msg) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) fprintf(stderr, "transmla: error: rank %d: %s\n", world_rank(), msg);
    else fprintf(stderr, "transmla: error: %s\n", msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

void dist_init(int *argc, char ***argv) {
    int up = 0, provided;
    MPI_Initialized(&up);
    if (!up) MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    tm_set_die_handler(die_everywhere);
}

void dist_finalize(void) {
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Finalize();
}

int topology_init(Topology *t, int stages) {
    memset(t, 0, sizeof *t);
    MPI_Comm_rank(MPI_COMM_WORLD, &t->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t->size);
    if (stages < 1 || t->size % stages)
        return tm_fail("--stages %d needs a multiple of %d MPI ranks; this run has %d (launch with mpirun -np N or srun)",
                       stages, stages, t->size);
    t->stages = stages;
    t->replicas = t->size / stages;
    t->stage = t->rank % stages;
    t->replica = t->rank / stages;
    MPI_Comm_split(MPI_COMM_WORLD, t->stage, t->replica, &t->stage_comm);
    MPI_Comm_split(MPI_COMM_WORLD, t->replica, t->stage, &t->pipe_comm);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, t->rank, MPI_INFO_NULL, &t->node_comm);
    MPI_Comm_rank(t->node_comm, &t->local_rank);
    return 0;
}

void topology_free(Topology *t) {
    if (t->stage_comm) MPI_Comm_free(&t->stage_comm);
    if (t->pipe_comm) MPI_Comm_free(&t->pipe_comm);
    if (t->node_comm) MPI_Comm_free(&t->node_comm);
    memset(t, 0, sizeof *t);
}

int dist_agree(MPI_Comm comm, int rc) {
    int me = world_rank(), size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int mine = rc ? me : size, first, failed = rc != 0, n_failed, n;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return 0;
    MPI_Allreduce(&failed, &n_failed, 1, MPI_INT, MPI_SUM, comm);
    MPI_Comm_size(comm, &n);
    /* the failing rank's position in comm, to broadcast its message from */
    int crank, root;
    MPI_Comm_rank(comm, &crank);
    int is_first = me == first ? crank : -1;
    MPI_Allreduce(&is_first, &root, 1, MPI_INT, MPI_MAX, comm);
    char msg[1024] = {0};
    if (me == first) snprintf(msg, sizeof msg, "%s", tm_error());
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, root, comm);
    /* name the rank only when it is not everyone's problem */
    if (n_failed < n) return tm_fail("rank %d: %s", first, msg);
    return tm_fail("%s", msg);
}

int dist_stop_signal(MPI_Comm comm) {
    int sig = tm_interrupt_signal();
    MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, comm);
    return sig;
}

void dist_inject_failure(const char *where) {
    const char *spec = tm_test_hook("TRANSMLA_INJECT_FAILURE");
    if (!spec) return;
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) != strlen(where) || strncmp(spec, where, strlen(where))) return;
    if (atoi(colon + 1) != world_rank()) return;
    if (tm_test_hook("TRANSMLA_INJECT_SIGKILL")) raise(SIGKILL); /* as the OOM killer or a node failure would */
    if (tm_test_hook("TRANSMLA_INJECT_SIGTERM")) { /* as scancel would: the run goes on to its next stop check */
        raise(SIGTERM);
        return;
    }
    tm_die("injected failure at %s (TRANSMLA_INJECT_FAILURE=%s)", where, spec);
}
