#include "pipeline/collect.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist/chunked.h"
#include "io/base/checked.h"

void dist_sum_stats(CalibStats *s, MPI_Comm comm) {
    int size;
    MPI_Comm_size(comm, &size);
    if (size == 1) return;
    for (int l = s->first; l < s->end; l++) {
        chunked_sum_f64(s->sum[l], (int64_t)s->dim * s->dim, comm);
        if (s->want_q) chunked_sum_f64(s->qsum[l], (int64_t)s->qdim * s->qdim, comm);
        if (s->nrinv) chunked_sum_f64(s->rinv[l], s->nrinv, comm);
    }
    int64_t count = s->count;
    MPI_Allreduce(&count, &s->count, 1, MPI_INT64_T, MPI_SUM, comm);
}

void mla_attn_bcast(MlaAttn *a, int root, MPI_Comm comm) {
    int me;
    MPI_Comm_rank(comm, &me);
    MlaField f[MLA_MAX_FIELDS];
    /* shape, then which arrays exist, then the arrays */
    int head[24] = {a->H, a->D, a->dn, a->dr, a->dv, a->R, a->nk, a->Rq};
    int n = mla_attn_fields(a, f);
    for (int i = 0; i < n; i++) head[8 + i] = *f[i].p != NULL;
    double norms[2] = {a->kv_norm, a->q_norm};
    MPI_Bcast(head, 24, MPI_INT, root, comm);
    MPI_Bcast(norms, 2, MPI_DOUBLE, root, comm);
    if (me != root) {
        mla_attn_free(a);
        memset(a, 0, sizeof *a);
        a->H = head[0], a->D = head[1], a->dn = head[2], a->dr = head[3], a->dv = head[4];
        a->R = head[5], a->nk = head[6], a->Rq = head[7];
        a->kv_norm = norms[0], a->q_norm = norms[1];
        mla_attn_fields(a, f);
        for (int i = 0; i < n; i++)
            if (head[8 + i]) *f[i].p = mallocCheck((size_t)f[i].n * sizeof(double));
    }
    for (int i = 0; i < n; i++)
        if (head[8 + i]) chunked_bcast_f64(*f[i].p, f[i].n, root, comm);
}
