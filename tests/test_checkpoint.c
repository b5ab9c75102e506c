/* Training checkpoints (train/checkpoint.c) under mpirun with 1, 2 and 4
 * ranks: ranks are S stages x Dp replicas (S = 2 from 2 ranks on), each stage
 * holds different parameters, replica 0 of each stage writes them. Every
 * value is a random bit pattern made from (name, step, tensor, replica), so
 * a load is checked bit for bit against the generator, not against what the
 * code under test wrote; non-writing replicas hold other bits, which must
 * not reach the file.
 *
 * Besides the cmocka tests (no arguments), tests/checkpoint_crash.sh drives
 * three modes of this program:
 *   save DIR STEP KEEP   save this program's parameters for STEP
 *   check DIR STEP       the newest checkpoint is STEP and loads bit-exactly
 *   raw NAME STEP OUT    the expected float32 bytes of /params/NAME at STEP */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <mpi.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "pipeline/output.h"
#include "dist/topology.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "train/checkpoint.h"

typedef struct {
    const char *name;
    int64_t rows, cols;
    int stage;   /* with 2 stages, which one holds it */
    int moments; /* 0: frozen, no Adam moments */
} Spec;

static const Spec SPECS[] = {
    {"model.embed_tokens.weight", 37, 16, 0, 1},
    {"model.layers.0.input_layernorm.weight", 16, 0, 0, 1},
    {"model.layers.0.self_attn.q_proj.weight", 24, 16, 0, 1},
    {"model.layers.0.mlp.frozen_gate.weight", 8, 16, 0, 0},
    {"model.layers.1.self_attn.kv_a_proj_with_mqa.weight", 20, 16, 1, 1},
    {"model.norm.weight", 16, 0, 1, 1},
    {"lm_head.weight", 37, 16, 1, 1},
};
#define N_SPECS ((int)(sizeof SPECS / sizeof SPECS[0]))

static Topology topo;
static char dir[256]; /* shared by every rank: made by rank 0 */

static uint64_t mix(uint64_t x) { /* splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Any 32-bit pattern (NaNs with payloads, denormals, -0 included). */
static void fill(float *out, int64_t n, const char *name, int64_t step, int tensor, int replica) {
    uint64_t h = 1469598103934665603ull;
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    h = mix(h ^ mix((uint64_t)step * 4 + (uint64_t)tensor) ^ mix(0x1000 + (uint64_t)replica));
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)(mix(h + (uint64_t)i) >> 16);
        memcpy(&out[i], &bits, 4);
    }
}

static int64_t numel(const Spec *s) { return s->rows * (s->cols ? s->cols : 1); }

typedef struct {
    CkptParam p[N_SPECS + 1];
    const Spec *spec[N_SPECS + 1];
    int n;
} Set;

static int holds(const Spec *s) { return topo.stages == 1 || s->stage == topo.stage; }

/* This rank's parameters: filled for step (replica's own bits) or zeroed. */
static void set_make(Set *set, int64_t step, int zeroed) {
    memset(set, 0, sizeof *set);
    for (int i = 0; i < N_SPECS; i++) {
        const Spec *s = &SPECS[i];
        if (!holds(s)) continue;
        CkptParam *p = &set->p[set->n];
        set->spec[set->n++] = s;
        p->name = s->name;
        p->rows = s->rows;
        p->cols = s->cols;
        float **t[3] = {&p->w, &p->m, &p->v};
        for (int k = 0; k < (s->moments ? 3 : 1); k++) {
            *t[k] = callocCheck((size_t)numel(s), sizeof(float));
            if (!zeroed) fill(*t[k], numel(s), s->name, step, k, topo.replica);
        }
    }
}

static void set_free(Set *set) {
    for (int i = 0; i < set->n; i++) {
        free(set->p[i].w);
        free(set->p[i].m);
        free(set->p[i].v);
    }
}

/* 1: every tensor of set holds replica 0's bits for step. */
static int set_matches(const Set *set, int64_t step) {
    int ok = 1;
    for (int i = 0; i < set->n; i++) {
        const Spec *s = set->spec[i];
        float *want = mallocCheck((size_t)numel(s) * sizeof(float));
        const float *got[3] = {set->p[i].w, set->p[i].m, set->p[i].v};
        for (int k = 0; k < 3; k++) {
            if (!got[k]) continue;
            fill(want, numel(s), s->name, step, k, 0);
            if (memcmp(want, got[k], (size_t)numel(s) * sizeof(float))) {
                fprintf(stderr, "rank %d: %s tensor %d differs from step %" PRId64 "'s\n", topo.rank, s->name, k, step);
                ok = 0;
            }
        }
        free(want);
    }
    return ok;
}

/* Every rank passes ok (so that a failure on one rank fails the test on all,
 * instead of leaving the others waiting in the next collective). */
static void assert_all(int ok) {
    int all;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    assert_true(all);
}

static const CkptAttr ATTRS[] = {
    {"seed", CKPT_I64, -1234567890123456789, 0, NULL},
    {"lr", CKPT_F64, 0, 3e-4, NULL},
    {"loss", CKPT_F64, 0, -0.0, NULL},
    {"config_hash", CKPT_STR, 0, 0, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    {"topology", CKPT_STR, 0, 0, "stages=2 replicas=2 \xc3\xa9"},
    {"empty", CKPT_STR, 0, 0, ""},
};
#define N_ATTRS ((int)(sizeof ATTRS / sizeof ATTRS[0]))

static int save(const char *d, int64_t step, int keep) {
    Set set;
    set_make(&set, step, 0);
    CkptAttr attrs[N_ATTRS + 1];
    memcpy(attrs, ATTRS, sizeof ATTRS);
    /* rank 0's attributes are the ones written */
    attrs[N_ATTRS] = (CkptAttr){"written_by", CKPT_I64, topo.rank, 0, NULL};
    int rc = ckpt_save(d, step, set.p, set.n, topo.replica == 0, attrs, N_ATTRS + 1, keep, MPI_COMM_WORLD);
    set_free(&set);
    return rc;
}

static const char *in_dir(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

/* Rank 0: the sorted names in dir, joined by spaces, into out. */
static void listing(char *out, size_t n) {
    DIR *d = opendir(dir);
    char *names[64];
    int k = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && k < 64) names[k++] = strdup(e->d_name);
    if (d) closedir(d);
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    out[0] = 0;
    for (int i = 0; i < k; i++) {
        snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? " " : "", names[i]);
        free(names[i]);
    }
}

static int listing_is(const char *want) {
    char got[4096];
    listing(got, sizeof got);
    if (strcmp(got, want)) fprintf(stderr, "folder holds '%s', expected '%s'\n", got, want);
    return strcmp(got, want) == 0;
}

static int error_is(const char *want) {
    if (strcmp(tm_error(), want)) fprintf(stderr, "rank %d: error '%s', expected '%s'\n", topo.rank, tm_error(), want);
    return strcmp(tm_error(), want) == 0;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp)) tm_die("cannot write %s", path);
}

static void copy_file(const char *from, const char *to, long max) {
    FILE *fp = fopen(from, "rb");
    if (!fp) tm_die("cannot open %s", from);
    char *buf = mallocCheck(1 << 20);
    size_t n = fread(buf, 1, 1 << 20, fp);
    fclose(fp);
    write_file(to, buf, max >= 0 && (size_t)max < n ? (size_t)max : n);
    free(buf);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ---- tests ---- */

/* Two saves with keep = 1: only the newest stays; it loads back bit for bit
 * (replica 0's bits on every replica), and a frozen parameter has no moments. */
static void save_keep_and_load(void **state) {
    (void)state;
    assert_all(save(dir, 10, 1) == 0);
    assert_all(save(dir, 20, 1) == 0);
    assert_all(topo.rank != 0 || listing_is("checkpoint-20.h5"));

    char path[512];
    in_dir(path, sizeof path, "checkpoint-20.h5");
    Set set;
    set_make(&set, 20, 1);
    int ok = ckpt_load_params(path, set.p, set.n) == 0;
    if (!ok) fprintf(stderr, "rank %d: %s\n", topo.rank, tm_error());
    assert_all(ok && set_matches(&set, 20));
    set_free(&set);

    /* the frozen parameter's moments were never written */
    float w[8 * 16], m[8 * 16];
    CkptParam frozen = {"model.layers.0.mlp.frozen_gate.weight", 8, 16, w, m, NULL};
    char want[600];
    snprintf(want, sizeof want, "%s: no dataset /adam_m/model.layers.0.mlp.frozen_gate.weight", path);
    assert_all(ckpt_load_params(path, &frozen, 1) == -1 && error_is(want));
}

/* Root attributes: the caller's (rank 0's), "step" and "format"; errors name
 * the file and the attribute. */
static void attributes_round_trip(void **state) {
    (void)state;
    char path[512], want[600];
    in_dir(path, sizeof path, "checkpoint-20.h5");
    int64_t i = 0;
    double f = 1;
    char *s = NULL;
    int ok = ckpt_read_i64(path, "step", &i) == 0 && i == 20;
    ok = ok && ckpt_read_i64(path, "seed", &i) == 0 && i == -1234567890123456789;
    ok = ok && ckpt_read_i64(path, "written_by", &i) == 0 && i == 0;
    ok = ok && ckpt_read_f64(path, "lr", &f) == 0 && f == 3e-4;
    ok = ok && ckpt_read_f64(path, "loss", &f) == 0 && f == 0 && signbit(f);
    for (int k = 3; ok && k < N_ATTRS; k++) {
        ok = ckpt_read_str(path, ATTRS[k].name, &s) == 0 && strcmp(s, ATTRS[k].s) == 0;
        free(s);
    }
    ok = ok && ckpt_read_str(path, "format", &s) == 0 && strcmp(s, "transmla-checkpoint") == 0;
    free(s);
    if (!ok) fprintf(stderr, "rank %d: %s\n", topo.rank, tm_error());
    snprintf(want, sizeof want, "%s: no attribute 'nope'", path);
    ok = ok && ckpt_read_i64(path, "nope", &i) == -1 && error_is(want);
    snprintf(want, sizeof want, "%s: attribute 'lr' is not an integer", path);
    ok = ok && ckpt_read_i64(path, "lr", &i) == -1 && error_is(want);
    snprintf(want, sizeof want, "%s: attribute 'seed' is not a string", path);
    ok = ok && ckpt_read_str(path, "seed", &s) == -1 && error_is(want);
    assert_all(ok);
}

/* find_latest takes the newest complete checkpoint: never a temporary (even
 * a complete one), nor a file that is not HDF5, truncated, or whose step
 * attribute differs from its name. The next save removes the temporaries
 * and the older complete checkpoint, and leaves the damaged files alone. */
static void find_latest_skips_bad_files(void **state) {
    (void)state;
    char path[512], a[512], b[512];
    int64_t step = -1;
    assert_all(ckpt_find_latest("/nonexistent/checkpoints", path, sizeof path, &step) == 0);

    assert_all(save(dir, 50, 0) == 0);
    assert_all(save(dir, 98, 0) == 0);
    if (topo.rank == 0) {
        rename(in_dir(a, sizeof a, "checkpoint-50.h5"), in_dir(b, sizeof b, ".checkpoint-50.h5.tmp-123"));
        long size = file_size(in_dir(a, sizeof a, "checkpoint-98.h5"));
        copy_file(a, in_dir(b, sizeof b, "checkpoint-98.h5.part"), size / 2);
        rename(b, a);
        write_file(in_dir(a, sizeof a, "checkpoint-99.h5"), "not hdf5\n", 9);
        write_file(in_dir(a, sizeof a, ".checkpoint-9.h5.tmp-123"), "", 0);
        copy_file(in_dir(a, sizeof a, "checkpoint-20.h5"), in_dir(b, sizeof b, "checkpoint-97.h5"), -1);
        copy_file(a, in_dir(b, sizeof b, "checkpoint-020.h5"), -1);
        copy_file(a, in_dir(b, sizeof b, "checkpoint-120.h5~"), -1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    int found = ckpt_find_latest(dir, path, sizeof path, &step);
    assert_all(found == 1 && step == 20 && !strcmp(path, in_dir(a, sizeof a, "checkpoint-20.h5")));

    assert_all(save(dir, 30, 1) == 0);
    assert_all(topo.rank != 0 || listing_is("checkpoint-020.h5 checkpoint-120.h5~ checkpoint-30.h5 checkpoint-97.h5 "
                                            "checkpoint-98.h5 checkpoint-99.h5"));
    found = ckpt_find_latest(dir, path, sizeof path, &step);
    assert_all(found == 1 && step == 30);
}

/* Shapes and names that do not match the file: one line naming both. */
static void load_errors_name_file_and_dataset(void **state) {
    (void)state;
    char path[512], want[800];
    in_dir(path, sizeof path, "checkpoint-30.h5");
    float buf[37 * 16];
    CkptParam p = {"model.layers.0.self_attn.q_proj.weight", 16, 24, buf, NULL, NULL};
    snprintf(want, sizeof want,
             "%s: dataset /params/model.layers.0.self_attn.q_proj.weight has shape [24, 16], expected [16, 24]", path);
    int ok = ckpt_load_params(path, &p, 1) == -1 && error_is(want);
    p = (CkptParam){"model.norm.weight", 16, 1, buf, NULL, NULL};
    snprintf(want, sizeof want, "%s: dataset /params/model.norm.weight has shape [16], expected [16, 1]", path);
    ok = ok && ckpt_load_params(path, &p, 1) == -1 && error_is(want);
    p = (CkptParam){"model.layers.9.nope", 4, 0, buf, NULL, NULL};
    snprintf(want, sizeof want, "%s: no dataset /params/model.layers.9.nope", path);
    ok = ok && ckpt_load_params(path, &p, 1) == -1 && error_is(want);
    /* a float64 tensor where float32 belongs (made with plain HDF5 by rank 0) */
    in_dir(path, sizeof path, "float64.h5");
    if (topo.rank == 0) {
        double d[4] = {1, 2, 3, 4};
        hsize_t dims[1] = {4};
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t sp = H5Screate_simple(1, dims, NULL);
        hid_t ds = H5Dcreate2(g, "x", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d);
        H5Dclose(ds);
        H5Sclose(sp);
        H5Gclose(g);
        H5Fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    p = (CkptParam){"x", 4, 0, buf, NULL, NULL};
    snprintf(want, sizeof want, "%s: dataset /params/x is float64, expected float32", path);
    ok = ok && ckpt_load_params(path, &p, 1) == -1 && error_is(want);
    in_dir(path, sizeof path, "checkpoint-99.h5");
    snprintf(want, sizeof want, "%s: not an HDF5 file (no HDF5 signature at byte 0)", path);
    ok = ok && ckpt_load_params(path, &p, 1) == -1 && error_is(want);
    assert_all(ok);
}

/* A save that fails fails on every rank with the same message and leaves no
 * file: a folder that cannot be made, two writers of one name. */
static void save_errors_agree(void **state) {
    (void)state;
    char file[512], sub[600], want[800];
    in_dir(file, sizeof file, "checkpoint-99.h5");
    snprintf(sub, sizeof sub, "%s/sub", file);
    int ok = save(sub, 40, 1) == -1 && strstr(tm_error(), "cannot create folder") && strstr(tm_error(), sub);
    if (!ok) fprintf(stderr, "rank %d: %s\n", topo.rank, tm_error());

    char dupdir[600];
    snprintf(dupdir, sizeof dupdir, "%s/dup", dir);
    float w[2] = {1, 2};
    CkptParam p = {"model.shared", 2, 0, w, NULL, NULL};
    int rc = ckpt_save(dupdir, 5, &p, 1, 1, NULL, 0, 1, MPI_COMM_WORLD);
    if (topo.size == 1) {
        ok = ok && rc == 0;
    } else {
        snprintf(want, sizeof want,
                 "%s/checkpoint-5.h5: parameter model.shared has two writers (ranks 0 and 1); exactly one replica per "
                 "stage writes",
                 dupdir);
        ok = ok && rc == -1 && error_is(want);
        ok = ok && (topo.rank != 0 || file_size(dupdir) >= 0); /* made, but empty */
        DIR *d = opendir(dupdir);
        struct dirent *e;
        int n = 0;
        while (d && (e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        if (d) closedir(d);
        ok = ok && n == 0;
    }
    assert_all(ok);
}

/* ---- modes for checkpoint_crash.sh ---- */

static int mode_check(const char *d, int64_t step) {
    char path[512];
    int64_t got = -1;
    int found = ckpt_find_latest(d, path, sizeof path, &got);
    if (found != 1 || got != step) {
        fprintf(stderr, "rank %d: find_latest %d step %" PRId64 ", expected step %" PRId64 " (%s)\n", topo.rank, found,
                got, step, found < 0 ? tm_error() : "");
        return 1;
    }
    Set set;
    set_make(&set, step, 1);
    int ok = ckpt_load_params(path, set.p, set.n) == 0;
    if (!ok) fprintf(stderr, "rank %d: %s\n", topo.rank, tm_error());
    ok = ok && set_matches(&set, step);
    set_free(&set);
    return !ok;
}

static int mode_raw(const char *name, int64_t step, const char *out) {
    for (int i = 0; i < N_SPECS; i++)
        if (!strcmp(SPECS[i].name, name)) {
            float *w = mallocCheck((size_t)numel(&SPECS[i]) * sizeof(float));
            fill(w, numel(&SPECS[i]), name, step, 0, 0);
            write_file(out, w, (size_t)numel(&SPECS[i]) * sizeof(float));
            free(w);
            return 0;
        }
    return 1;
}

static int run_mode(int argc, char **argv) {
    int rc = 2;
    if (!strcmp(argv[1], "save") && argc == 5) {
        rc = save(argv[2], atoll(argv[3]), atoi(argv[4])) ? 1 : 0;
        if (rc && topo.rank == 0) fprintf(stderr, "save: %s\n", tm_error());
    } else if (!strcmp(argv[1], "check") && argc == 4) {
        rc = mode_check(argv[2], atoll(argv[3]));
    } else if (!strcmp(argv[1], "raw") && argc == 5) {
        rc = mode_raw(argv[2], atoll(argv[3]), argv[4]);
    } else {
        fprintf(stderr, "usage: test_checkpoint [save DIR STEP KEEP | check DIR STEP | raw NAME STEP OUT]\n");
    }
    int all;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (topology_init(&topo, size >= 2 ? 2 : 1)) tm_die("%s", tm_error());
    int failed;
    if (argc > 1) {
        failed = run_mode(argc, argv);
    } else {
        if (topo.rank != 0 && !freopen("/dev/null", "w", stdout))
            tm_die("cannot redirect stdout of rank %d", topo.rank);
        if (topo.rank == 0) {
            snprintf(dir, sizeof dir, "/tmp/tm_checkpoint_XXXXXX");
            if (!mkdtemp(dir)) tm_die("mkdtemp: cannot make a temporary folder");
        }
        MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(save_keep_and_load),
            cmocka_unit_test(attributes_round_trip),
            cmocka_unit_test(find_latest_skips_bad_files),
            cmocka_unit_test(load_errors_name_file_and_dataset),
            cmocka_unit_test(save_errors_agree),
        };
        failed = cmocka_run_group_tests(tests, NULL, NULL);
        MPI_Barrier(MPI_COMM_WORLD);
        if (topo.rank == 0) output_remove_tree(dir);
    }
    topology_free(&topo);
    dist_finalize();
    return failed;
}
