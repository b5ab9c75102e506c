#include "pipeline/resume.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/topology.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/h5_util.h"
#include "pipeline/output.h"

#define FORMAT_NAME "transmla-convert-state"

static void file_path(const Resume *rs, char *out, size_t size, const char *name, const char *what, int index) {
    if (index >= 0) snprintf(out, size, "%s/%s.%s%05d.h5", rs->dir, name, what, index);
    else snprintf(out, size, "%s/%s.%s.h5", rs->dir, name, what);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- one small file: create with its header attributes / open and check them ---- */

typedef struct {
    hid_t file;
    char *tmp;
} Writer;

static int writer_open(Writer *w, const char *path, const char *kind) {
    w->file = h5_create_temp(path, &w->tmp);
    if (w->file < 0) return -1;
    if (h5_write_str_attr(w->file, path, "format", FORMAT_NAME) || h5_write_str_attr(w->file, path, "kind", kind)) {
        h5_close_rename(w->file, w->tmp, path, -1);
        return -1;
    }
    return 0;
}

static int writer_close(Writer *w, const char *path, int rc) { return h5_close_rename(w->file, w->tmp, path, rc); }

static hid_t reader_open(const char *path, const char *kind) {
    hid_t file = h5_open_read(path);
    char *format = NULL, *k = NULL;
    int rc = file < 0 || h5_read_str_attr(file, path, "format", &format) || h5_read_str_attr(file, path, "kind", &k);
    if (!rc && (strcmp(format, FORMAT_NAME) || strcmp(k, kind)))
        rc = tm_fail("%s: not a transmla conversion state file of kind '%s' (format '%s', kind '%s')", path, kind,
                     format, k);
    free(format);
    free(k);
    if (rc && file >= 0) H5Fclose(file);
    return rc ? -1 : file;
}

static int reader_close(hid_t file, int rc) {
    H5Fclose(file);
    return rc ? -1 : 0;
}

static int read_int_attr(hid_t f, const char *path, const char *name, int64_t lo, int64_t hi, int *out) {
    int64_t v;
    if (h5_read_int_attr_in(f, path, name, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

/* ---- the folder and its fingerprint ---- */

/* The first key (sorted) whose value differs, as "key was OLD, now NEW". */
static void first_difference(json_t *old, json_t *now, char *out, size_t size) {
    json_t *keys = json_array(), *k;
    const char *key;
    json_t *v;
    json_object_foreach(old, key, v) json_array_append_new(keys, json_string(key));
    json_object_foreach(now, key, v) if (!json_object_get(old, key)) json_array_append_new(keys, json_string(key));
    const char *best = NULL;
    size_t i;
    json_array_foreach(keys, i, k) {
        const char *name = json_string_value(k);
        if (json_equal(json_object_get(old, name), json_object_get(now, name))) continue;
        if (!best || strcmp(name, best) < 0) best = name;
    }
    if (!best) {
        snprintf(out, size, "(no field differs)");
    } else {
        json_t *a = json_object_get(old, best), *b = json_object_get(now, best);
        char *sa = a ? json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("absent");
        char *sb = b ? json_dumps(b, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("absent");
        snprintf(out, size, "%s was %.200s, now %.200s", best, sa, sb);
        free(sa);
        free(sb);
    }
    json_decref(keys);
}

static int check_fingerprint(const char *path, json_t *fingerprint) {
    hid_t f = reader_open(path, "fingerprint");
    if (f < 0) return tm_fail_context("resume");
    char *saved = NULL;
    int rc = h5_read_str_attr(f, path, "fingerprint", &saved);
    reader_close(f, rc);
    if (rc) return -1;
    json_error_t err;
    json_t *old = json_loads(saved, 0, &err);
    free(saved);
    if (!old) return tm_fail("%s: attribute 'fingerprint' is not JSON: %s", path, err.text);
    rc = 0;
    if (!json_equal(old, fingerprint)) {
        char diff[600];
        first_difference(old, fingerprint, diff, sizeof diff);
        rc = tm_fail("%s: saved progress of a different conversion (%s); rerun with the same settings and ranks, or "
                     "pass --resume never to discard it", path, diff);
    }
    json_decref(old);
    return rc;
}

static int write_fingerprint(const char *path, json_t *fingerprint) {
    char *text = json_dumps(fingerprint, JSON_SORT_KEYS | JSON_COMPACT);
    Writer w;
    int rc = writer_open(&w, path, "fingerprint");
    if (!rc) rc = writer_close(&w, path, h5_write_str_attr(w.file, path, "fingerprint", text));
    free(text);
    return rc;
}

static int open_on_root(Resume *rs, json_t *fingerprint, ResumeMode mode) {
    char state[4200];
    snprintf(state, sizeof state, "%s/state.h5", rs->dir);
    struct stat st;
    if (mode == RESUME_NEVER) output_remove_tree(rs->dir);
    if (stat(rs->dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return tm_fail("%s: exists and is not a folder (the conversion's work folder)", rs->dir);
        if (exists(state)) {
            if (check_fingerprint(state, fingerprint)) return -1;
            rs->continued = 1;
            return 0;
        }
        output_remove_tree(rs->dir); /* killed before its state was written: nothing in it counts */
    }
    if (mkdir(rs->dir, 0755) != 0) return tm_fail("%s: cannot create the work folder: %s", rs->dir, strerror(errno));
    return write_fingerprint(state, fingerprint);
}

int resume_open(Resume *rs, const char *save_path, json_t *fingerprint, ResumeMode mode, int rank) {
    memset(rs, 0, sizeof *rs);
    rs->rank = rank;
    if (snprintf(rs->dir, sizeof rs->dir, "%s.work", save_path) >= (int)sizeof rs->dir - 64)
        return tm_fail("%s: path too long", save_path);
    int rc = rank == 0 ? open_on_root(rs, fingerprint, mode) : 0;
    if (dist_agree(MPI_COMM_WORLD, rc)) return -1;
    MPI_Bcast(&rs->continued, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return 0;
}

void resume_finish(Resume *rs) {
    if (rs->rank == 0 && rs->dir[0]) output_remove_tree(rs->dir);
    rs->dir[0] = 0;
}

/* ---- streaming passes ---- */

static void stats_name(char *out, size_t size, const char *what, int layer) { snprintf(out, size, "%s_%05d", what, layer); }

int resume_save_pass(const Resume *rs, const char *pass, const PassCursor *c, const CalibStats *st) {
    char path[4200];
    file_path(rs, path, sizeof path, pass, "rank", rs->rank);
    Writer w;
    if (writer_open(&w, path, "pass")) return -1;
    hid_t f = w.file;
    int rc = h5_write_i64_attr(f, path, "next_mb", c->next_mb) || h5_write_i64_attr(f, path, "n_mb", c->n_mb) ||
             h5_write_f64_attr(f, path, "nll", c->nll) || h5_write_i64_attr(f, path, "predicted", c->predicted) ||
             h5_write_i64_attr(f, path, "has_stats", st != NULL);
    if (!rc && st) {
        rc = h5_write_i64_attr(f, path, "target", st->target) || h5_write_i64_attr(f, path, "dim", st->dim) ||
             h5_write_i64_attr(f, path, "qdim", st->want_q ? st->qdim : 0) || h5_write_i64_attr(f, path, "nrinv", st->nrinv) ||
             h5_write_i64_attr(f, path, "first", st->first) || h5_write_i64_attr(f, path, "end", st->end) ||
             h5_write_i64_attr(f, path, "count", st->count);
        for (int l = st->first; l < st->end && !rc; l++) {
            char name[32];
            stats_name(name, sizeof name, "sum", l);
            rc = h5_write_f64(f, path, name, st->sum[l], (int64_t)st->dim * st->dim);
            stats_name(name, sizeof name, "qsum", l);
            if (!rc && st->want_q) rc = h5_write_f64(f, path, name, st->qsum[l], (int64_t)st->qdim * st->qdim);
            stats_name(name, sizeof name, "rinv", l);
            if (!rc && st->nrinv) rc = h5_write_f64(f, path, name, st->rinv[l], st->nrinv);
        }
    }
    return writer_close(&w, path, rc);
}

static int load_stats(hid_t f, const char *path, CalibStats *st) {
    int64_t v[6], count;
    const char *names[6] = {"target", "dim", "qdim", "first", "end", "nrinv"};
    int64_t want[6] = {st->target, st->dim, st->want_q ? st->qdim : 0, st->first, st->end, st->nrinv};
    for (int i = 0; i < 6; i++) {
        if (h5_read_int_attr(f, path, names[i], 0, &v[i])) return -1;
        if (v[i] != want[i])
            return tm_fail("%s: attribute '%s' is %lld, this run needs %lld", path, names[i], (long long)v[i],
                           (long long)want[i]);
    }
    if (h5_read_int_attr_in(f, path, "count", 0, INT64_MAX, &count)) return -1;
    st->count = count;
    for (int l = st->first; l < st->end; l++) {
        char name[32];
        stats_name(name, sizeof name, "sum", l);
        if (h5_read_f64(f, path, name, st->sum[l], (int64_t)st->dim * st->dim)) return -1;
        stats_name(name, sizeof name, "qsum", l);
        if (st->want_q && h5_read_f64(f, path, name, st->qsum[l], (int64_t)st->qdim * st->qdim)) return -1;
        stats_name(name, sizeof name, "rinv", l);
        if (st->nrinv && h5_read_f64(f, path, name, st->rinv[l], st->nrinv)) return -1;
    }
    return 0;
}

int resume_load_pass(const Resume *rs, const char *pass, PassCursor *c, CalibStats *st) {
    memset(c, 0, sizeof *c);
    char path[4200];
    file_path(rs, path, sizeof path, pass, "rank", rs->rank);
    if (!exists(path)) return 0;
    hid_t f = reader_open(path, "pass");
    if (f < 0) return -1;
    int64_t has_stats, predicted;
    int rc = read_int_attr(f, path, "n_mb", 0, INT32_MAX, &c->n_mb) ||
             read_int_attr(f, path, "next_mb", 0, c->n_mb, &c->next_mb) || h5_read_f64_attr(f, path, "nll", &c->nll) ||
             h5_read_int_attr_in(f, path, "predicted", 0, INT64_MAX, &predicted) ||
             h5_read_int_attr_in(f, path, "has_stats", 0, 1, &has_stats);
    if (!rc) {
        c->predicted = predicted;
        if (has_stats != (st != NULL))
            rc = tm_fail("%s: %s covariance sums, this pass %s", path, has_stats ? "holds" : "holds no",
                         st ? "needs them" : "has none");
        else if (st)
            rc = load_stats(f, path, st);
    }
    return reader_close(f, rc) ? -1 : 1;
}

/* ---- per-layer results ---- */

int resume_has_layer(const Resume *rs, const char *step, int layer) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "layer", layer);
    return exists(path);
}

int resume_save_array(const Resume *rs, const char *step, int layer, const double *v, int64_t n) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "layer", layer);
    Writer w;
    if (writer_open(&w, path, "array")) return -1;
    int rc = h5_write_i64_attr(w.file, path, "layer", layer) || h5_write_f64(w.file, path, "values", v, n);
    return writer_close(&w, path, rc);
}

int resume_load_array(const Resume *rs, const char *step, int layer, double *v, int64_t n) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "layer", layer);
    hid_t f = reader_open(path, "array");
    if (f < 0) return -1;
    return reader_close(f, h5_read_f64(f, path, "values", v, n));
}

/* ---- a per-layer fit's streams on this rank ---- */

static void stream_name(char *out, size_t size, int i) { snprintf(out, size, "stream%d", i); }

int resume_save_streams(const Resume *rs, const char *step, int layer, float *const *x, int nx, int64_t n) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "rank", rs->rank);
    Writer w;
    if (writer_open(&w, path, "streams")) return -1;
    int rc = h5_write_i64_attr(w.file, path, "layer", layer) || h5_write_i64_attr(w.file, path, "streams", nx);
    for (int i = 0; i < nx && !rc; i++) {
        char name[32];
        stream_name(name, sizeof name, i);
        rc = h5_write_f32(w.file, path, name, x[i], n);
    }
    return writer_close(&w, path, rc);
}

int resume_streams_layer(const Resume *rs, const char *step, int nx) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "rank", rs->rank);
    if (!exists(path)) return RESUME_NO_STREAMS;
    hid_t f = reader_open(path, "streams");
    if (f < 0) return -1;
    int layer, count;
    int rc = read_int_attr(f, path, "layer", 0, 1 << 24, &layer) || read_int_attr(f, path, "streams", 0, 8, &count);
    if (!rc && count != nx) rc = tm_fail("%s: attribute 'streams' is %d, this fit holds %d", path, count, nx);
    return reader_close(f, rc) ? -1 : layer;
}

int resume_load_streams(const Resume *rs, const char *step, float *const *x, int nx, int64_t n) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "rank", rs->rank);
    hid_t f = reader_open(path, "streams");
    if (f < 0) return -1;
    int rc = 0;
    for (int i = 0; i < nx && !rc; i++) {
        char name[32];
        stream_name(name, sizeof name, i);
        rc = h5_read_f32(f, path, name, x[i], n);
    }
    return reader_close(f, rc);
}

#define N_SHAPE 8
static const char *shape_names[N_SHAPE] = {"H", "D", "dn", "dr", "dv", "R", "nk", "Rq"};

static void shape_of(MlaAttn *a, int *s[N_SHAPE]) {
    int *p[N_SHAPE] = {&a->H, &a->D, &a->dn, &a->dr, &a->dv, &a->R, &a->nk, &a->Rq};
    for (int i = 0; i < N_SHAPE; i++) s[i] = p[i];
}

int resume_save_attn(const Resume *rs, const char *step, int layer, MlaAttn *a, double kv_ratio) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "layer", layer);
    Writer w;
    if (writer_open(&w, path, "attention")) return -1;
    hid_t f = w.file;
    int *shape[N_SHAPE];
    shape_of(a, shape);
    int rc = h5_write_i64_attr(f, path, "layer", layer) || h5_write_f64_attr(f, path, "kv_norm", a->kv_norm) ||
             h5_write_f64_attr(f, path, "q_norm", a->q_norm) || h5_write_f64_attr(f, path, "kv_ratio", kv_ratio);
    for (int i = 0; i < N_SHAPE && !rc; i++) rc = h5_write_i64_attr(f, path, shape_names[i], *shape[i]);
    MlaField fl[MLA_MAX_FIELDS];
    int n = mla_attn_fields(a, fl);
    for (int i = 0; i < n && !rc; i++)
        if (*fl[i].p) rc = h5_write_f64(f, path, fl[i].name, *fl[i].p, fl[i].n);
    return writer_close(&w, path, rc);
}

int resume_load_attn(const Resume *rs, const char *step, int layer, MlaAttn *a, double *kv_ratio) {
    char path[4200];
    file_path(rs, path, sizeof path, step, "layer", layer);
    hid_t f = reader_open(path, "attention");
    if (f < 0) return -1;
    mla_attn_free(a);
    int *shape[N_SHAPE];
    shape_of(a, shape);
    int rc = h5_read_f64_attr(f, path, "kv_norm", &a->kv_norm) || h5_read_f64_attr(f, path, "q_norm", &a->q_norm) ||
             h5_read_f64_attr(f, path, "kv_ratio", kv_ratio);
    for (int i = 0; i < N_SHAPE && !rc; i++) rc = read_int_attr(f, path, shape_names[i], 0, 1 << 24, shape[i]);
    MlaField fl[MLA_MAX_FIELDS];
    int n = mla_attn_fields(a, fl);
    for (int i = 0; i < n && !rc; i++) {
        if (H5Lexists(f, fl[i].name, H5P_DEFAULT) <= 0) continue;
        *fl[i].p = mallocCheck((size_t)fl[i].n * sizeof(double));
        rc = h5_read_f64(f, path, fl[i].name, *fl[i].p, fl[i].n);
    }
    if (!rc && (!a->kv_a || !a->kv_b || (!a->q) == (!a->q_a)))
        rc = tm_fail("%s: an incomplete attention layer (kv_a, kv_b and one of q or q_a are needed)", path);
    if (rc) mla_attn_free(a);
    return reader_close(f, rc);
}

/* ---- phases ---- */

int resume_mark_done(const Resume *rs, const char *phase, json_t *info) {
    int rc = 0;
    if (rs->rank == 0) {
        char path[4200], *text = json_dumps(info, JSON_SORT_KEYS | JSON_COMPACT);
        file_path(rs, path, sizeof path, phase, "done", -1);
        Writer w;
        rc = writer_open(&w, path, "phase");
        if (!rc) rc = writer_close(&w, path, h5_write_str_attr(w.file, path, "info", text));
        free(text);
    }
    return dist_agree(MPI_COMM_WORLD, rc);
}

json_t *resume_phase_done(const Resume *rs, const char *phase) {
    char *text = NULL;
    int len = 0;
    if (rs->rank == 0) {
        char path[4200];
        file_path(rs, path, sizeof path, phase, "done", -1);
        hid_t f = exists(path) ? reader_open(path, "phase") : -1;
        if (f >= 0) reader_close(f, h5_read_str_attr(f, path, "info", &text));
        len = text ? (int)strlen(text) + 1 : 0; /* an unreadable marker: the phase runs again */
    }
    MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!len) return NULL;
    if (rs->rank != 0) text = mallocCheck((size_t)len);
    MPI_Bcast(text, len, MPI_CHAR, 0, MPI_COMM_WORLD);
    json_t *info = json_loads(text, 0, NULL);
    free(text);
    return info;
}

void resume_remove(const Resume *rs, const char *prefix) {
    if (!prefix[0]) tm_die("resume_remove: an empty prefix would remove the whole state"); /* a bug, not input */
    if (rs->rank == 0) {
        DIR *d = opendir(rs->dir);
        struct dirent *e;
        size_t n = strlen(prefix);
        while (d && (e = readdir(d))) {
            if (strncmp(e->d_name, prefix, n)) continue;
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", rs->dir, e->d_name);
            remove(path);
        }
        if (d) closedir(d);
    }
    MPI_Barrier(MPI_COMM_WORLD); /* nobody reads a file that is going */
}
