/* Training checkpoints: one HDF5 file per checkpoint, SAVE/checkpoint-<step>.h5,
 * written collectively by every rank with parallel HDF5 (MPI-IO), under a
 * temporary name that is renamed once the file is closed, so a crash never
 * leaves a file with the final name that is incomplete. Readable with h5dump.
 *
 * Layout: /params/<name>, /adam_m/<name>, /adam_v/<name> (float32, the
 * tensor's shape); the run's scalars as attributes of the root group. */
#ifndef TM_TRAIN_CHECKPOINT_H
#define TM_TRAIN_CHECKPOINT_H

#include <mpi.h>
#include <stdint.h>

typedef struct {
    const char *name;     /* e.g. "model.layers.0.self_attn.q_proj.weight" */
    int64_t rows, cols;   /* cols == 0: a vector */
    float *w, *m, *v;     /* this rank's master weights and Adam moments */
} CkptParam;

typedef enum { CKPT_I64, CKPT_F64, CKPT_STR } CkptAttrKind;
typedef struct {
    const char *name;
    CkptAttrKind kind;
    int64_t i;
    double f;
    const char *s;
} CkptAttr;

/* Collective over comm (every rank of the run). Each rank passes the
 * parameters it holds; ranks with writer = 1 write theirs (exactly one
 * writer per parameter name across comm: the first replica of its stage);
 * every rank's list is gathered so all ranks create every dataset. attrs
 * are the same on every rank; rank 0's are written. Writes
 * save_dir/checkpoint-<step>.h5, then (rank 0) removes the oldest complete
 * checkpoints beyond keep (keep <= 0: keep all) and stale temporaries.
 * Returns 0 on every rank or -1 on every rank (tm_error says why). */
int ckpt_save(const char *save_dir, int64_t step, const CkptParam *params, int n_params, int writer,
              const CkptAttr *attrs, int n_attrs, int keep, MPI_Comm comm);

/* The newest complete checkpoint in save_dir: 1 and its path and step, 0
 * when there is none, -1 on error. Temporaries are never picked. */
int ckpt_find_latest(const char *save_dir, char *path, size_t cap, int64_t *step);

/* Read this rank's parameters (w, and m/v when not NULL) from path; every
 * name must exist with the given shape (errors name the file and dataset). */
int ckpt_load_params(const char *path, const CkptParam *params, int n_params);
/* Attributes of the root group. */
int ckpt_read_i64(const char *path, const char *name, int64_t *out);
int ckpt_read_f64(const char *path, const char *name, double *out);
int ckpt_read_str(const char *path, const char *name, char **out); /* malloc'd */

#endif
