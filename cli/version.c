#include <hdf5.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include "cli/commands.h"
#ifdef TRANSMLA_HAVE_CUDA
#include "model/cuda/gpu.h"
#endif

char *openblas_get_config(void);

int cmd_version(int argc, char **argv) {
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(mpi, &len); /* allowed before MPI_Init */
    for (int i = 0; i < len; i++)
        if (mpi[i] == '\n' || mpi[i] == ',') {
            mpi[i] = '\0';
            break;
        }
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    printf("transmla 0.1.0\n");
    printf("  MPI:      %s\n", mpi);
    const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
    printf("  OpenBLAS: %s; idle threads sleep after 2^%s cycles\n", openblas_get_config(),
           timeout ? timeout : "28 (default)");
    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("  OpenMP:   %d threads, wait policy %s\n", omp_get_max_threads(), wait ? wait : "default (spin, then sleep)");
    printf("  HDF5:     %u.%u.%u (parallel: %s)\n", maj, min, rel,
#ifdef H5_HAVE_PARALLEL
           "yes"
#else
           "no"
#endif
    );
#ifdef TRANSMLA_HAVE_CUDA
    char gpus[1024];
    gpu_describe(gpus, sizeof gpus);
    printf("  CUDA:     %s\n", gpus);
#else
    printf("  CUDA:     not compiled in\n");
#endif
    return 0;
}
