/* The one layer partitioner: contiguous blocks of items (layers) for the
 * pipeline stages, the largest block as small as possible. */
#ifndef TM_DIST_PARTITION_H
#define TM_DIST_PARTITION_H

/* Split cost[0..n) into k contiguous blocks minimising the largest block's
 * sum (dynamic programme; n and k are at most a few hundred). cut[s] = first
 * item of block s, cut[k] = n. Ties go to the earliest cut, so every rank
 * computes the same split. */
void partition_min_max(const double *cost, int n, int k, int *cut);

#endif
