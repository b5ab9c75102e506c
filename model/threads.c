#include "model/threads.h"

#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

/* By default libgomp's workers spin for a while after each parallel region,
 * and the GEMM that usually follows runs on OpenBLAS's own pthreads: with a
 * thread per core the two pools preempt each other. Passive workers sleep at
 * once (bench_train at Llama-3.2-1B shapes: 0.61-0.66 -> 0.70-0.78 of sgemm).
 * libgomp reads the policy before main runs, hence the re-exec; the pid,
 * arguments and environment stay, so mpirun and Slurm see one process. */
void threads_wait_passive(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || omp_get_max_threads() <= 1) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY"); /* no /proc: run on with the default policy */
}
