/* The sum of K float vectors (items k = 0..K-1: a fit's per-micro-batch
 * gradients) held by the ranks of a communicator, each rank a contiguous
 * range of items, added in item order whatever the layout: any number of
 * replicas gives one process's sum bit for bit. The rank holding item 0
 * adds its items as they come (one running sum); every other rank keeps
 * its own items until the running sum, passed along the ranks in item
 * order, reaches it; the last one broadcasts the total. So a rank holds
 * its share of the items, not all K of them. */
#ifndef TM_DIST_ORDERED_SUM_H
#define TM_DIST_ORDERED_SUM_H

#include <mpi.h>
#include <stdint.h>

typedef struct {
    MPI_Comm comm;
    int64_t n;      /* elements of an item */
    int k0, count;  /* this rank's items: [k0, k0 + count) */
    float *sum;     /* [n] the running sum, the total after ordered_sum_finish */
    float *held;    /* [count, n] this rank's items until the running sum arrives (not on item 0's rank) */
} OrderedSum;

/* Collective over comm: none yet. */
void ordered_sum_init(OrderedSum *s, MPI_Comm comm, int64_t n, int k0, int count);
void ordered_sum_free(OrderedSum *s);
/* Elements [off, off + len) of this rank's item k are v. Items come in
 * order, an item's pieces together. */
void ordered_sum_add(OrderedSum *s, int k, int64_t off, const float *v, int64_t len);
/* Collective: s->sum = item 0 + item 1 + ... in that order, on every rank. */
void ordered_sum_finish(OrderedSum *s);
/* Bytes a rank holding count items keeps (with or without item 0). */
uint64_t ordered_sum_bytes(int64_t n, int count, int holds_first);

#endif
