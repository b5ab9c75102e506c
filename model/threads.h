/* How the process's two thread pools, OpenMP's and OpenBLAS's, share the cores. */
#ifndef TRANSMLA_MODEL_THREADS_H
#define TRANSMLA_MODEL_THREADS_H

/* Called first thing in main: re-executes the process once with
 * OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4 (idle threads of
 * both pools sleep at once), each unless the user set it, and not at all
 * when OpenMP runs one thread; returns when there is nothing to do or exec
 * fails. */
void threads_wait_passive(char **argv);

#endif
