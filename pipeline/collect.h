/* Moving conversion state between the ranks of a stage: summing the
 * replicas' calibration statistics, and handing a converted layer from the
 * rank that computed it to the others. */
#ifndef TM_PIPELINE_COLLECT_H
#define TM_PIPELINE_COLLECT_H

#include <mpi.h>

#include "pipeline/calibrate.h"
#include "pipeline/mla_layer.h"

/* Sum every layer's covariance sums and the token count over comm (the
 * stage's replicas), in place. Open MPI's reduction order is fixed for a
 * given communicator size and message, so the same inputs and topology give
 * bit-identical sums. */
void dist_sum_stats(CalibStats *s, MPI_Comm comm);

/* Make a (an MlaAttn) on every rank of comm equal to root's; non-root ranks'
 * previous contents are freed. */
void mla_attn_bcast(MlaAttn *a, int root, MPI_Comm comm);

#endif
