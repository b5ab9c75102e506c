#include "model/threads.h"

#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

/* A rank's cores serve OpenMP's workers (element-wise kernels, attention,
 * the optimizer) and OpenBLAS's pthreads (every GEMM). Idle, both spin by
 * default: libgomp's workers after each parallel region, OpenBLAS's for
 * 2^28 cycles after each GEMM, calling sched_yield (perf on a bytelm-dev
 * training step: 16% of the samples in sched_yield). With a thread per
 * core the two pools preempt each other. Passive OpenMP workers and a
 * 2^4-cycle OpenBLAS timeout make both sleep at once (bench_train,
 * bytelm-dev: 0.44-0.47 -> 0.53-0.59 of sgemm for the timeout alone).
 * Both libraries read their settings before main runs, hence the re-exec;
 * the pid, arguments and environment stay, so mpirun and Slurm see one
 * process. A setting the user made is kept. */
void threads_wait_passive(char **argv) {
    if (omp_get_max_threads() <= 1) return;
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY")) changed |= !setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    if (!getenv("OPENBLAS_THREAD_TIMEOUT")) changed |= !setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    if (!changed) return;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY"); /* no /proc: run on with the defaults */
    unsetenv("OPENBLAS_THREAD_TIMEOUT");
}
