/* Training checkpoints (see checkpoint.h and DESIGN.md section 3).
 *
 * Saving, collectively over comm:
 *   1. rank 0 makes save_dir and picks the temporary name
 *      save_dir/.checkpoint-STEP.h5.tmp-PID; everyone learns it;
 *   2. every rank's parameter descriptors (name, shape, which moments) are
 *      gathered to every rank and sorted by name; rank 0 creates the file
 *      with the disk space it will need reserved, so that a full disk or
 *      quota stops the save there, before HDF5 writes (a write failing
 *      inside parallel HDF5 leaves ranks waiting for each other, and a file
 *      whose close failed crashes MPI_Finalize); every rank opens it and
 *      makes the same metadata calls in the same order: the groups, every
 *      dataset, the attributes (rank 0's, broadcast);
 *   3. each parameter's one writer writes its own buffers (independent MPI-IO
 *      transfers, in blocks of at most 256 MiB), straight from the caller's
 *      arrays: no parameter data moves between ranks;
 *   4. the file is flushed (MPI_File_sync) and closed collectively; after
 *      everyone has closed it rank 0 fsyncs it, renames it to
 *      checkpoint-STEP.h5, fsyncs the folder and prunes old checkpoints and
 *      stale temporaries.
 * A crash at any point leaves at most a temporary, which no reader picks and
 * the next save removes; the previous checkpoints are untouched.
 *
 * Why independent transfers: each dataset has exactly one writer, so
 * collective buffering has nothing to aggregate inside a dataset, while a
 * collective H5Dwrite would make every rank take part in one call per
 * dataset and block (empty selections on the others), i.e. thousands of
 * synchronisations; independent writes of contiguous, pre-allocated datasets
 * are plain MPI_File_write_at calls on disjoint byte ranges, which Open MPI's
 * ompio (and ROMIO) handle on local and parallel file systems alike. Dataset
 * space is allocated at creation (parallel HDF5 requires it) and never
 * filled: the fill would write the whole file a second time. */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "dist/topology.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/path.h"
#include "io/base/str_buf.h"
#include "io/base/test_hooks.h"
#include "io/h5_util.h"

#define FORMAT_NAME "transmla-checkpoint"
#define WRITE_BLOCK_BYTES ((int64_t)256 << 20) /* one H5Dwrite (MPI-IO request) at most */

/* Test hooks (io/base/test_hooks.h): TRANSMLA_CKPT_BLOCK_BYTES=N makes the blocks small enough that
 * a test's small tensors take several; TRANSMLA_CKPT_NO_RESERVE=1 saves as
 * on a file system without fallocate (no disk space reserved). */
static int64_t write_block_bytes(void) {
    const char *e = tm_test_hook("TRANSMLA_CKPT_BLOCK_BYTES");
    long long v = e ? atoll(e) : 0;
    return v > 0 ? (int64_t)v : WRITE_BLOCK_BYTES;
}

static const char *const GROUPS[3] = {"/params", "/adam_m", "/adam_v"};

/* ---- descriptors and attributes packed into a byte buffer ---- */

static void buf_put_str(StrBuf *b, const char *s) {
    uint64_t n = s ? strlen(s) : 0;
    sb_add(b, &n, sizeof n);
    sb_add(b, s ? s : "", n);
}

typedef struct {
    const char *p, *end;
} Reader;

static void rd_get(Reader *r, void *out, size_t n) {
    if ((size_t)(r->end - r->p) < n) tm_die("checkpoint: corrupt descriptor buffer");
    memcpy(out, r->p, n);
    r->p += n;
}

static char *rd_str(Reader *r) {
    uint64_t n;
    rd_get(r, &n, sizeof n);
    if ((uint64_t)(r->end - r->p) < n) tm_die("checkpoint: corrupt descriptor buffer");
    char *s = mallocCheck(n + 1);
    memcpy(s, r->p, n);
    s[n] = 0;
    r->p += n;
    return s;
}

/* ---- names and folders ---- */

/* 1 when name is checkpoint-<step>.h5 exactly (decimal, no sign, no leading
 * zeros), with *step set. */
static int parse_name(const char *name, int64_t *step) {
    static const char prefix[] = "checkpoint-", suffix[] = ".h5";
    size_t n = strlen(name), np = sizeof prefix - 1, ns = sizeof suffix - 1;
    if (n <= np + ns || strncmp(name, prefix, np) || strcmp(name + n - ns, suffix)) return 0;
    const char *d = name + np, *e = name + n - ns;
    if (e - d > 18 || (*d == '0' && e - d > 1)) return 0;
    int64_t v = 0;
    for (const char *c = d; c < e; c++) {
        if (*c < '0' || *c > '9') return 0;
        v = v * 10 + (*c - '0');
    }
    *step = v;
    return 1;
}

static int is_temporary(const char *name) { return strncmp(name, ".checkpoint-", 12) == 0 && strstr(name, ".tmp-"); }

/* fsync a file or folder; folders: best effort (not every file system can). */
static int sync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return is_dir ? 0 : tm_fail("%s: cannot open to sync: %s", path, strerror(errno));
    int rc = fsync(fd) != 0 && !is_dir ? tm_fail("%s: fsync: %s", path, strerror(errno)) : 0;
    close(fd);
    return rc;
}

/* 1: path opens as HDF5 and its "step" attribute is step. Quiet. */
static int is_complete(const char *path, int64_t step) {
    hid_t f = h5_open_read(path);
    int64_t got = -1;
    int ok = f >= 0 && h5_read_int_attr(f, path, "step", 0, &got) == 0 && got == step;
    if (f >= 0) H5Fclose(f);
    return ok;
}

typedef struct {
    int64_t step;
    char *name;
} Found;

static int by_step_desc(const void *a, const void *b) {
    int64_t x = ((const Found *)a)->step, y = ((const Found *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The names checkpoint-<step>.h5 in dir, newest step first; with temps set,
 * the stale temporaries instead. -1 on error (dir missing: 0 names). */
static int list_dir(const char *dir, int temps, Found **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : tm_fail("%s: cannot list the checkpoint folder: %s", dir, strerror(errno));
    Found *f = NULL;
    int n = 0;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t step = 0;
        if (temps ? !is_temporary(e->d_name) : !parse_name(e->d_name, &step)) continue;
        TOK_GROW(f, cap, (size_t)n + 1);
        f[n].step = step;
        f[n++].name = strdup(e->d_name);
        if (!f[n - 1].name) tm_die("out of memory listing %s", dir);
    }
    closedir(d);
    if (n > 1) qsort(f, (size_t)n, sizeof *f, by_step_desc);
    *out = f;
    *n_out = n;
    return 0;
}

static void free_found(Found *f, int n) {
    for (int i = 0; i < n; i++) free(f[i].name);
    free(f);
}

/* Rank 0, after checkpoint-<step>.h5 is in place: keep it and the keep - 1
 * newest other complete checkpoints; remove the other complete ones and every
 * temporary. Files named like a checkpoint that are not complete (damaged,
 * foreign) are left alone. Failures here cost disk space, not the run: they
 * are warnings. */
static void prune(const char *dir, int64_t step, int keep) {
    Found *f;
    int n;
    if (list_dir(dir, 0, &f, &n) == 0) {
        int kept = 1;
        for (int i = 0; i < n && keep > 0; i++) {
            if (f[i].step == step) continue;
            char *p = path_join(dir, f[i].name);
            if (is_complete(p, f[i].step)) {
                if (kept < keep) kept++;
                else if (remove(p) != 0)
                    fprintf(stderr, "transmla: warning: %s: cannot remove old checkpoint: %s\n", p, strerror(errno));
            }
            free(p);
        }
        free_found(f, n);
    }
    if (list_dir(dir, 1, &f, &n) == 0) {
        for (int i = 0; i < n; i++) {
            char *p = path_join(dir, f[i].name);
            if (remove(p) != 0 && errno != ENOENT)
                fprintf(stderr, "transmla: warning: %s: cannot remove stale temporary: %s\n", p, strerror(errno));
            free(p);
        }
        free_found(f, n);
    }
}

/* ---- saving ---- */

typedef struct {
    char *name;
    int64_t rows, cols;
    uint8_t has_m, has_v;
    int owner; /* rank in comm of the writer */
    int local; /* index in the owner's params */
} Desc;

static int by_name(const void *a, const void *b) { return strcmp(((const Desc *)a)->name, ((const Desc *)b)->name); }

static int check_local(const char *path, const CkptParam *params, int n_params, int writer) {
    if (n_params < 0 || (n_params > 0 && !params)) return tm_fail("%s: bad parameter list (%d)", path, n_params);
    for (int i = 0; writer && i < n_params; i++) {
        const CkptParam *p = &params[i];
        if (!p->name || !p->name[0] || strchr(p->name, '/') || !strcmp(p->name, ".") || !strcmp(p->name, ".."))
            return tm_fail("%s: parameter %d has no usable name ('%s')", path, i, p->name ? p->name : "(null)");
        if (p->rows < 0 || p->cols < 0)
            return tm_fail("%s: parameter %s has shape [%" PRId64 ", %" PRId64 "]", path, p->name, p->rows, p->cols);
        if (!p->w && p->rows * (p->cols ? p->cols : 1) > 0)
            return tm_fail("%s: parameter %s has no weights", path, p->name);
    }
    return 0;
}

/* Every writer's descriptors, on every rank, sorted by name. */
static int gather_descs(const char *path, const CkptParam *params, int n_params, int writer, MPI_Comm comm,
                        Desc **out, int *n_out) {
    int size;
    MPI_Comm_size(comm, &size);
    StrBuf b = {0};
    int mine = writer ? n_params : 0;
    sb_add(&b, &mine, sizeof mine);
    for (int i = 0; i < mine; i++) {
        buf_put_str(&b, params[i].name);
        sb_add(&b, &params[i].rows, sizeof(int64_t));
        sb_add(&b, &params[i].cols, sizeof(int64_t));
        uint8_t mv[2] = {params[i].m != NULL, params[i].v != NULL};
        sb_add(&b, mv, 2);
    }
    if (b.n > INT32_MAX) tm_die("%s: too many parameter names on one rank", path);
    int len = (int)b.n;
    int *lens = mallocCheck((size_t)size * sizeof *lens), *offs = mallocCheck((size_t)size * sizeof *offs);
    MPI_Allgather(&len, 1, MPI_INT, lens, 1, MPI_INT, comm);
    int64_t total = 0;
    for (int r = 0; r < size; r++) {
        offs[r] = (int)total;
        total += lens[r];
    }
    if (total > INT32_MAX) tm_die("%s: parameter descriptors exceed 2 GiB", path);
    char *all = mallocCheck((size_t)total + 1);
    MPI_Allgatherv(b.p, len, MPI_BYTE, all, lens, offs, MPI_BYTE, comm);
    free(b.p);

    Desc *d = NULL;
    int n = 0;
    for (int r = 0; r < size; r++) {
        Reader rd = {all + offs[r], all + offs[r] + lens[r]};
        int k;
        rd_get(&rd, &k, sizeof k);
        Desc *nd = realloc(d, (size_t)(n + k + 1) * sizeof *d);
        if (!nd) tm_die("out of memory gathering checkpoint descriptors");
        d = nd;
        for (int i = 0; i < k; i++, n++) {
            d[n].name = rd_str(&rd);
            rd_get(&rd, &d[n].rows, sizeof(int64_t));
            rd_get(&rd, &d[n].cols, sizeof(int64_t));
            uint8_t mv[2];
            rd_get(&rd, mv, 2);
            d[n].has_m = mv[0];
            d[n].has_v = mv[1];
            d[n].owner = r;
            d[n].local = i;
        }
    }
    free(all);
    free(lens);
    free(offs);
    if (n > 1) qsort(d, (size_t)n, sizeof *d, by_name);
    *out = d;
    *n_out = n;
    for (int i = 1; i < n; i++)
        if (!strcmp(d[i - 1].name, d[i].name))
            return tm_fail("%s: parameter %s has two writers (ranks %d and %d); exactly one replica per stage writes",
                           path, d[i].name, d[i - 1].owner < d[i].owner ? d[i - 1].owner : d[i].owner,
                           d[i - 1].owner < d[i].owner ? d[i].owner : d[i - 1].owner);
    return 0;
}

static void free_descs(Desc *d, int n) {
    for (int i = 0; i < n; i++) free(d[i].name);
    free(d);
}

/* Rank 0's attributes, on every rank (unpacked into *out, strings malloc'd). */
static void bcast_attrs(const CkptAttr *attrs, int n_attrs, MPI_Comm comm, CkptAttr **out, int *n_out) {
    int me;
    MPI_Comm_rank(comm, &me);
    StrBuf b = {0};
    if (me == 0) {
        sb_add(&b, &n_attrs, sizeof n_attrs);
        for (int i = 0; i < n_attrs; i++) {
            int kind = (int)attrs[i].kind;
            buf_put_str(&b, attrs[i].name);
            sb_add(&b, &kind, sizeof kind);
            sb_add(&b, &attrs[i].i, sizeof attrs[i].i);
            sb_add(&b, &attrs[i].f, sizeof attrs[i].f);
            buf_put_str(&b, attrs[i].kind == CKPT_STR ? attrs[i].s : "");
        }
        if (b.n > INT32_MAX) tm_die("checkpoint attributes exceed 2 GiB");
    }
    int len = (int)b.n;
    MPI_Bcast(&len, 1, MPI_INT, 0, comm);
    if (me != 0) {
        b.p = mallocCheck((size_t)len);
        b.n = b.cap = (size_t)len;
    }
    MPI_Bcast(b.p, len, MPI_BYTE, 0, comm);
    Reader rd = {b.p, b.p + len};
    int n;
    rd_get(&rd, &n, sizeof n);
    CkptAttr *a = callocCheck((size_t)n + 1, sizeof *a);
    for (int i = 0; i < n; i++) {
        int kind;
        a[i].name = rd_str(&rd);
        rd_get(&rd, &kind, sizeof kind);
        a[i].kind = (CkptAttrKind)kind;
        rd_get(&rd, &a[i].i, sizeof a[i].i);
        rd_get(&rd, &a[i].f, sizeof a[i].f);
        a[i].s = rd_str(&rd);
    }
    free(b.p);
    *out = a;
    *n_out = n;
}

static void free_attrs(CkptAttr *a, int n) {
    for (int i = 0; i < n; i++) {
        free((char *)a[i].name);
        free((char *)a[i].s);
    }
    free(a);
}

static int write_attrs(hid_t file, const char *path, int64_t step, const CkptAttr *a, int n) {
    if (h5_write_str_attr(file, path, "format", FORMAT_NAME) || h5_write_i64_attr(file, path, "step", step)) return -1;
    for (int i = 0; i < n; i++) {
        if (!a[i].name[0] || !strcmp(a[i].name, "format") || !strcmp(a[i].name, "step"))
            return tm_fail("%s: attribute name '%s' is reserved or empty", path, a[i].name);
        const char *nm = a[i].name;
        int rc = a[i].kind == CKPT_I64   ? h5_write_i64_attr(file, path, nm, a[i].i)
                 : a[i].kind == CKPT_F64 ? h5_write_f64_attr(file, path, nm, a[i].f)
                 : a[i].kind == CKPT_STR ? h5_write_str_attr(file, path, nm, a[i].s)
                                         : tm_fail("%s: attribute '%s' has unknown kind %d", path, nm, (int)a[i].kind);
        if (rc) return -1;
    }
    return 0;
}

static hid_t create_dataset(hid_t file, const char *path, int g, const Desc *d, hid_t dcpl) {
    char name[4200];
    snprintf(name, sizeof name, "%s/%s", GROUPS[g], d->name);
    hsize_t dims[2] = {(hsize_t)d->rows, (hsize_t)d->cols};
    hid_t space = H5Screate_simple(d->cols ? 2 : 1, dims, NULL), dset = -1;
    if (space >= 0) dset = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dset < 0) tm_fail("%s: creating dataset %s: %s", path, name, h5_reason());
    if (space >= 0) H5Sclose(space);
    return dset;
}

/* data[rows, cols] (cols 0: a vector) in blocks of rows, so that no single
 * transfer passes WRITE_BLOCK_BYTES (nor MPI's 2^31-element counts). */
static int write_dataset(hid_t dset, const char *path, int g, const Desc *d, const float *data, hid_t dxpl) {
    int64_t width = d->cols ? d->cols : 1, block = write_block_bytes() / (4 * width);
    if (block < 1) block = 1;
    hid_t fspace = H5Dget_space(dset);
    int rc = fspace < 0 ? tm_fail("%s: dataset %s/%s: %s", path, GROUPS[g], d->name, h5_reason()) : 0;
    for (int64_t r0 = 0; !rc && r0 < d->rows; r0 += block) {
        int64_t nr = d->rows - r0 < block ? d->rows - r0 : block;
        hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)nr, (hsize_t)d->cols}, n = (hsize_t)(nr * width);
        if (width * nr == 0) break;
        hid_t mspace = H5Screate_simple(1, &n, NULL);
        rc = mspace < 0 || H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
             H5Dwrite(dset, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, data + r0 * width) < 0;
        if (rc) tm_fail("%s: writing dataset %s/%s: %s", path, GROUPS[g], d->name, h5_reason());
        if (mspace >= 0) H5Sclose(mspace);
    }
    if (fspace >= 0) H5Sclose(fspace);
    return rc ? -1 : 0;
}

/* Disk space the file will take, generously: the data, and per dataset its
 * object header and link (a few hundred bytes each, allocated in 2 KiB
 * blocks), the attributes twice over, and 1 MiB for the rest. */
static int64_t file_bytes(const Desc *d, int n, const CkptAttr *a, int n_attrs) {
    int64_t bytes = 1 << 20;
    for (int i = 0; i < n; i++)
        bytes += (1 + d[i].has_m + d[i].has_v) * (4 * d[i].rows * (d[i].cols ? d[i].cols : 1) + 4096);
    for (int i = 0; i < n_attrs; i++) bytes += 2 * (int64_t)(strlen(a[i].name) + strlen(a[i].s) + 64);
    return bytes;
}

/* Steps 2-4 of the file itself (every rank): 0 or -1, agreed over comm. */
static int write_file(const char *path, const char *tmp, int64_t step, const Desc *d, int n, const CkptParam *params,
                      const CkptAttr *attrs, int n_attrs, MPI_Comm comm) {
    int me;
    MPI_Comm_rank(comm, &me);
    /* the space first: HDF5 then writes only where the disk has room */
    int64_t reserve = tm_test_hook("TRANSMLA_CKPT_NO_RESERVE") ? 0 : file_bytes(d, n, attrs, n_attrs);
    if (dist_agree(comm, me == 0 ? h5_create_reserved(path, tmp, reserve) : 0)) return -1;
    hid_t file = h5_open_parallel(path, tmp, comm);
    if (dist_agree(comm, file < 0 ? -1 : 0)) return -1;

    hid_t *dsets = mallocCheck((size_t)(3 * n + 1) * sizeof *dsets);
    for (int i = 0; i < 3 * n; i++) dsets[i] = -1;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), dxpl = H5Pcreate(H5P_DATASET_XFER);
    int rc = 0;
    if (dcpl < 0 || dxpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_INDEPENDENT) < 0)
        rc = tm_fail("%s: HDF5 property lists: %s", path, h5_reason());

    /* metadata: the same calls in the same order on every rank */
    for (int g = 0; g < 3 && !rc; g++) {
        hid_t grp = H5Gcreate2(file, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (grp < 0 || H5Gclose(grp) < 0) rc = tm_fail("%s: creating group %s: %s", path, GROUPS[g], h5_reason());
    }
    for (int i = 0; i < n && !rc; i++)
        for (int g = 0; g < 3 && !rc; g++)
            if (g == 0 || (g == 1 ? d[i].has_m : d[i].has_v))
                rc = (dsets[3 * i + g] = create_dataset(file, path, g, &d[i], dcpl)) < 0;
    if (!rc) rc = write_attrs(file, path, step, attrs, n_attrs);
    rc = dist_agree(comm, rc);

    /* data: each writer its own parameters */
    int werr = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (i == n / 2) dist_inject_failure("checkpoint-write");
        if (d[i].owner != me || werr) continue;
        const CkptParam *p = &params[d[i].local];
        const float *src[3] = {p->w, p->m, p->v};
        for (int g = 0; g < 3 && !werr; g++)
            if (dsets[3 * i + g] >= 0) werr = write_dataset(dsets[3 * i + g], path, g, &d[i], src[g], dxpl);
    }
    if (!rc) rc = dist_agree(comm, werr);

    for (int i = 0; i < 3 * n; i++)
        if (dsets[i] >= 0 && H5Dclose(dsets[i]) < 0 && !rc)
            rc = tm_fail("%s: closing a dataset: %s", path, h5_reason());
    free(dsets);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (dxpl >= 0) H5Pclose(dxpl);
    /* without the reservation (no fallocate) a write can still fail, and the
     * close still writes the metadata: rank 0 frees the data's space first,
     * giving it room on a full disk (a close that fails leaves ranks waiting
     * for each other); the file is removed next anyway */
    if (rc && me == 0 && truncate(tmp, 0) != 0) rc = -1;
    /* MPI_File_sync on every rank: on a parallel file system, what each
     * writer wrote reaches the servers before rank 0 renames the file */
    if (!rc && H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) rc = tm_fail("%s: flushing %s: %s", path, tmp, h5_reason());
    if (H5Fclose(file) < 0 && !rc) rc = tm_fail("%s: closing %s: %s", path, tmp, h5_reason());
    return dist_agree(comm, rc);
}

int ckpt_save(const char *save_dir, int64_t step, const CkptParam *params, int n_params, int writer,
              const CkptAttr *attrs, int n_attrs, int keep, MPI_Comm comm) {
    int me;
    MPI_Comm_rank(comm, &me);
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint-%" PRId64 ".h5", save_dir ? save_dir : "", step);
    h5_quiet();

    /* 1. the folder and the temporary name (rank 0's pid) */
    int rc = 0;
    if (!save_dir || !save_dir[0] || step < 0) rc = tm_fail("checkpoint: bad folder or step %" PRId64, step);
    else if (me == 0) rc = path_make_dirs(save_dir, "the checkpoint folder");
    rc = dist_agree(comm, rc ? -1 : check_local(path, params, n_params, writer));
    char tmp[4200];
    if (me == 0) snprintf(tmp, sizeof tmp, "%s/.checkpoint-%" PRId64 ".h5.tmp-%ld", save_dir, step, (long)getpid());
    MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, comm);
    if (rc) return -1;

    /* 2-4. what goes in, then the file */
    Desc *d = NULL;
    int n = 0, n_a = 0;
    rc = dist_agree(comm, gather_descs(path, params, n_params, writer, comm, &d, &n));
    CkptAttr *a = NULL;
    bcast_attrs(attrs, n_attrs, comm, &a, &n_a);
    if (!rc) rc = write_file(path, tmp, step, d, n, params, a, n_a, comm);
    free_descs(d, n);
    free_attrs(a, n_a);

    /* 5. rank 0 puts it in place, once everyone has closed it */
    if (me == 0) {
        if (!rc && !(rc = sync_path(tmp, 0))) {
            if (rename(tmp, path) != 0) rc = tm_fail("%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
            else sync_path(save_dir, 1);
        }
        if (rc) remove(tmp);
    }
    rc = dist_agree(comm, rc);
    if (me == 0 && !rc) prune(save_dir, step, keep);
    return rc;
}

/* ---- reading ---- */

int ckpt_find_latest(const char *save_dir, char *path, size_t cap, int64_t *step) {
    Found *f;
    int n;
    if (list_dir(save_dir, 0, &f, &n)) return -1;
    int found = 0;
    for (int i = 0; i < n && !found; i++) {
        char *p = path_join(save_dir, f[i].name);
        if (is_complete(p, f[i].step)) {
            if (strlen(p) >= cap) {
                free(p);
                free_found(f, n);
                return tm_fail("%s/%s: path longer than %zu bytes", save_dir, f[i].name, cap);
            }
            memcpy(path, p, strlen(p) + 1);
            *step = f[i].step;
            found = 1;
        }
        free(p);
    }
    free_found(f, n);
    return found;
}

static void shape_str(char *out, size_t size, int nd, const hsize_t *dims) {
    if (nd == 1) snprintf(out, size, "[%llu]", (unsigned long long)dims[0]);
    else if (nd == 2) snprintf(out, size, "[%llu, %llu]", (unsigned long long)dims[0], (unsigned long long)dims[1]);
    else snprintf(out, size, "of rank %d", nd);
}

static int read_dataset(hid_t file, const char *path, int g, const CkptParam *p, float *out) {
    char name[4200];
    snprintf(name, sizeof name, "%s/%s", GROUPS[g], p->name);
    if (H5Lexists(file, GROUPS[g], H5P_DEFAULT) <= 0 || H5Lexists(file, name, H5P_DEFAULT) <= 0)
        return tm_fail("%s: no dataset %s", path, name);
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t type = dset >= 0 ? H5Dget_type(dset) : -1, space = dset >= 0 ? H5Dget_space(dset) : -1;
    int rc = 0;
    if (type < 0 || space < 0) {
        rc = tm_fail("%s: dataset %s: %s", path, name, h5_reason());
    } else if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 4) {
        H5T_class_t cls = H5Tget_class(type);
        if (cls == H5T_FLOAT || cls == H5T_INTEGER)
            rc = tm_fail("%s: dataset %s is %s%zu, expected float32", path, name, cls == H5T_FLOAT ? "float" : "int",
                         8 * H5Tget_size(type));
        else
            rc = tm_fail("%s: dataset %s is not numeric, expected float32", path, name);
    } else {
        hsize_t dims[H5S_MAX_RANK] = {0}, want[2] = {(hsize_t)p->rows, (hsize_t)p->cols};
        int nd = H5Sget_simple_extent_ndims(space), wnd = p->cols ? 2 : 1;
        if (nd >= 0) H5Sget_simple_extent_dims(space, dims, NULL);
        if (nd != wnd || dims[0] != want[0] || (wnd == 2 && dims[1] != want[1])) {
            char have[64], exp[64];
            shape_str(have, sizeof have, nd, dims);
            shape_str(exp, sizeof exp, wnd, want);
            rc = tm_fail("%s: dataset %s has shape %s, expected %s", path, name, have, exp);
        } else if (p->rows * (p->cols ? p->cols : 1) > 0 &&
                   H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
            rc = tm_fail("%s: dataset %s: cannot read (truncated or corrupt file?): %s", path, name, h5_reason());
        }
    }
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (dset >= 0) H5Dclose(dset);
    return rc;
}

int ckpt_load_params(const char *path, const CkptParam *params, int n_params) {
    hid_t file = h5_open_read(path);
    int rc = file < 0 ? -1 : 0;
    for (int i = 0; i < n_params && !rc; i++) {
        const CkptParam *p = &params[i];
        if (!p->name || p->rows < 0 || p->cols < 0) {
            rc = tm_fail("%s: parameter %d has no name or a negative shape", path, i);
            break;
        }
        float *dst[3] = {p->w, p->m, p->v};
        for (int g = 0; g < 3 && !rc; g++)
            if (dst[g]) rc = read_dataset(file, path, g, p, dst[g]);
    }
    if (file >= 0) H5Fclose(file);
    return rc;
}

static int read_attr(const char *path, const char *name, int kind, void *out) {
    hid_t file = h5_open_read(path);
    int rc = file < 0 ? -1
             : kind == 0 ? h5_read_int_attr(file, path, name, 0, out)
             : kind == 1 ? h5_read_f64_attr(file, path, name, out)
                         : h5_read_str_attr(file, path, name, out);
    if (file >= 0) H5Fclose(file);
    return rc ? -1 : 0;
}

int ckpt_read_i64(const char *path, const char *name, int64_t *out) { return read_attr(path, name, 0, out); }
int ckpt_read_f64(const char *path, const char *name, double *out) { return read_attr(path, name, 1, out); }
int ckpt_read_str(const char *path, const char *name, char **out) { return read_attr(path, name, 2, out); }
