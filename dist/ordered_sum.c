#include "dist/ordered_sum.h"

#include <stdlib.h>
#include <string.h>

#include "dist/chunked.h"
#include "io/base/checked.h"

enum { ORDERED_SUM_TAG = 7301 };

void ordered_sum_init(OrderedSum *s, MPI_Comm comm, int64_t n, int k0, int count) {
    *s = (OrderedSum){.comm = comm, .n = n, .k0 = k0, .count = count};
    s->sum = callocCheck((size_t)(n ? n : 1), sizeof *s->sum);
    if (count > 0 && k0 > 0) s->held = mallocCheck((size_t)count * (size_t)n * sizeof *s->held);
}

void ordered_sum_free(OrderedSum *s) {
    free(s->sum);
    free(s->held);
    memset(s, 0, sizeof *s);
}

uint64_t ordered_sum_bytes(int64_t n, int count, int holds_first) {
    return (uint64_t)n * sizeof(float) * (1 + (holds_first ? 0 : (uint64_t)count));
}

void ordered_sum_add(OrderedSum *s, int k, int64_t off, const float *v, int64_t len) {
    if (s->held) {
        memcpy(s->held + (int64_t)(k - s->k0) * s->n + off, v, (size_t)len * sizeof *v);
        return;
    }
    float *y = s->sum + off;
    if (k == 0)
        memcpy(y, v, (size_t)len * sizeof *v);
    else
        for (int64_t j = 0; j < len; j++) y[j] += v[j];
}

void ordered_sum_finish(OrderedSum *s) {
    int size;
    MPI_Comm_size(s->comm, &size);
    if (size == 1) return;
    int mine[2] = {s->count > 0 ? s->k0 : -1, s->count}, *all = mallocCheck((size_t)2 * size * sizeof *all);
    MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, s->comm);
    /* the ranks that hold items, in item order: prev and next of this one, and the last */
    int prev = -1, next = -1, last = -1;
    for (int r = 0; r < size; r++) {
        int k = all[2 * r];
        if (k < 0) continue;
        if (k < s->k0 && (prev < 0 || k > all[2 * prev])) prev = r;
        if (k > s->k0 && (next < 0 || k < all[2 * next])) next = r;
        if (last < 0 || k > all[2 * last]) last = r;
    }
    free(all);
    if (s->count > 0 && prev >= 0) {
        chunked_recv_f32(s->sum, s->n, prev, ORDERED_SUM_TAG, s->comm);
        for (int i = 0; i < s->count; i++) {
            const float *v = s->held + (int64_t)i * s->n;
            for (int64_t j = 0; j < s->n; j++) s->sum[j] += v[j];
        }
    }
    if (s->count > 0 && next >= 0) chunked_send_f32(s->sum, s->n, next, ORDERED_SUM_TAG, s->comm);
    if (last >= 0) chunked_bcast_f32(s->sum, s->n, last, s->comm);
}
