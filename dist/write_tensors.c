#include "dist/write_tensors.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/finite.h"

/* Names and shard numbers of every writer's tensors, on world rank 0:
 * "name\0" strings and shard indices, concatenated in world-rank order. */
/* A writer's tensors (none on the other ranks). */
typedef struct {
    const StWriteTensor *t;
    int n;
} TensorList;

static void gather_names(const TensorList *e, const int *shard, int first_shard, char **names_out,
                         int **shard_out, int *n_out) {
    int size, me;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    int len = 0;
    for (int i = 0; i < e->n; i++) len += (int)strlen(e->t[i].name) + 1;
    char *mine = mallocCheck((size_t)len + 1);
    int *my_shard = mallocCheck((size_t)e->n * sizeof(int) + 1);
    for (int i = 0, o = 0; i < e->n; i++) {
        strcpy(mine + o, e->t[i].name);
        o += (int)strlen(e->t[i].name) + 1;
        my_shard[i] = first_shard + shard[i];
    }
    int *lens = mallocCheck((size_t)size * sizeof *lens), *counts = mallocCheck((size_t)size * sizeof *counts);
    MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Gather(&e->n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    int *loff = callocCheck((size_t)size, sizeof *loff), *coff = callocCheck((size_t)size, sizeof *coff);
    int ltot = 0, ctot = 0;
    if (me == 0)
        for (int r = 0; r < size; r++) {
            loff[r] = ltot, ltot += lens[r];
            coff[r] = ctot, ctot += counts[r];
        }
    char *names = mallocCheck((size_t)ltot + 1);
    int *shards = mallocCheck((size_t)ctot * sizeof *shards + 1);
    MPI_Gatherv(mine, len, MPI_CHAR, names, lens, loff, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Gatherv(my_shard, e->n, MPI_INT, shards, counts, coff, MPI_INT, 0, MPI_COMM_WORLD);
    free(mine);
    free(my_shard);
    free(lens);
    free(counts);
    free(loff);
    free(coff);
    *names_out = names;
    *shard_out = shards;
    *n_out = ctot;
}

/* Every tensor as it will be stored is finite (a float16 export overflows
 * where float32 did not): checked before anything is written. */
static int check_finite(const StWriteTensor *ts, int n) {
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < ts[i].ndim; d++) numel *= ts[i].shape[d];
        if (!tm_all_finite(ts[i].data, ts[i].dtype, (size_t)numel))
            return tm_fail("export: tensor '%s' holds NaN/Inf as %s (a NaN, or a value beyond the dtype's range); "
                           "nothing was written", ts[i].name, tm_dtype_name(ts[i].dtype));
    }
    return 0;
}

int dist_write_tensors(const Topology *t, const char *dir, const StWriteTensor *ts, int n, int writer,
                       uint64_t max_shard_bytes) {
    if (dist_agree(MPI_COMM_WORLD, writer ? check_finite(ts, n) : 0)) return -1;
    TensorList e = {.t = ts, .n = writer ? n : 0};
    int *shard = mallocCheck((size_t)e.n * sizeof *shard + 1);
    uint64_t bytes = 0;
    int k = writer ? st_shard_plan(e.t, e.n, max_shard_bytes, shard, &bytes) : 0;
    /* shard numbers: the writers' counts in world-rank order (stage order) */
    int *counts = mallocCheck((size_t)t->size * sizeof *counts);
    MPI_Allgather(&k, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD);
    int first = 0, total = 0;
    for (int r = 0; r < t->size; r++) {
        if (r < t->rank) first += counts[r];
        total += counts[r];
    }
    free(counts);
    int rc = writer ? st_write_shards(dir, e.t, e.n, shard, first, total) : 0;
    dist_inject_failure("boundary:export-shards"); /* tests: the shards written, no index yet */
    uint64_t all_bytes;
    MPI_Allreduce(&bytes, &all_bytes, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    char *names;
    int *shards, n_all;
    gather_names(&e, shard, first, &names, &shards, &n_all);
    rc = dist_agree(MPI_COMM_WORLD, rc);
    if (!rc && t->rank == 0) {
        const char **list = mallocCheck((size_t)n_all * sizeof *list + 1);
        for (int i = 0, o = 0; i < n_all; i++, o += (int)strlen(names + o) + 1) list[i] = names + o;
        rc = st_write_index(dir, list, shards, n_all, total, all_bytes);
        free(list);
    }
    free(names);
    free(shards);
    free(shard);
    return dist_agree(MPI_COMM_WORLD, rc);
}
