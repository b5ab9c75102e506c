/* safetensors reading, writing and model folders: round trips through the
 * writer and the mmap reader, sharded folders, and the header validator fed
 * hand-built images that break one rule each. Files go to a mkdtemp folder
 * under /tmp that is removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/error.h"
#include "io/safetensors.h"
#include "pipeline/output.h"
#include "io/safetensors_set.h"
#include "io/safetensors_write.h"

#define TMPDIR_TAG "test_st"
#include "tests/tmpdir.h"


/* ---------- helpers ---------- */



static const char *make_dir(char *buf, size_t len, const char *name) {
    tmp_path(buf, len, name);
    assert_int_equal(mkdir(buf, 0700), 0);
    return buf;
}

static void write_file(const char *path, const void *bytes, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Number of entries in `dir` whose name ends in `suffix`. */
static int count_suffix(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    size_t ls = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l >= ls && strcmp(e->d_name + l - ls, suffix) == 0) n++;
    }
    closedir(d);
    return n;
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* `8-byte LE len_field + header + data`. The header is written with ' ' for
 * '"' so the cases below stay readable. Caller frees. */
static uint8_t *image_len(uint64_t len_field, const char *header, const void *data, size_t dlen, size_t *size) {
    size_t hl = strlen(header);
    *size = 8 + hl + dlen;
    uint8_t *img = malloc(*size ? *size : 1);
    assert_non_null(img);
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)(len_field >> (8 * i));
    for (size_t i = 0; i < hl; i++) img[8 + i] = header[i] == '\'' ? '"' : (uint8_t)header[i];
    if (dlen) memcpy(img + 8 + hl, data, dlen);
    return img;
}

static uint8_t *image(const char *header, const void *data, size_t dlen, size_t *size) {
    return image_len(strlen(header), header, data, dlen, size);
}

/* The parse must fail, leave no tensors, and tm_error() must contain every
 * string in `subs` (NULL-terminated). */
static void expect_parse_error_at(const uint8_t *img, size_t size, const char *const *subs, int line) {
    StTensor *t = (StTensor *)(uintptr_t)1;
    int n = -7;
    tm_clear_error();
    int rc = st_parse_image(img, size, &t, &n);
    if (rc != -1) {
        print_error("line %d: expected the parse to fail, it returned %d with %d tensors\n", line, rc, n);
        st_free_tensors(t, n);
        fail();
    }
    assert_null(t);
    assert_int_equal(n, 0);
    for (int i = 0; subs[i]; i++) {
        if (!strstr(tm_error(), subs[i])) {
            print_error("line %d: error \"%s\" lacks \"%s\"\n", line, tm_error(), subs[i]);
            fail();
        }
    }
}

#define EXPECT_PARSE_ERROR(img, size, ...) \
    expect_parse_error_at((img), (size), (const char *const[]){__VA_ARGS__, NULL}, __LINE__)

/* Build an image from `header` + `dlen` bytes of data, expect an error. */
#define EXPECT_HEADER_ERROR(header, dlen, ...)                          \
    do {                                                                \
        uint8_t data_[64] = {0};                                        \
        size_t size_;                                                   \
        uint8_t *img_ = image((header), data_, (dlen), &size_);         \
        EXPECT_PARSE_ERROR(img_, size_, __VA_ARGS__);                   \
        free(img_);                                                     \
    } while (0)

static void expect_error_contains(const char *sub) {
    if (!strstr(tm_error(), sub)) {
        print_error("error \"%s\" lacks \"%s\"\n", tm_error(), sub);
        fail();
    }
}

static void assert_in_map(const StFile *f, const StTensor *t) {
    const uint8_t *lo = f->map, *hi = (const uint8_t *)f->map + f->map_size;
    const uint8_t *p = t->data;
    assert_true(p >= lo && p <= hi);
    assert_true(t->end - t->begin <= (uint64_t)(hi - p));
}

/* ---------- round trip through one file ---------- */

static float f32_a[12];
static const uint16_t f16_b[5] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000};
static const uint16_t bf16_c[6] = {0x3f80, 0xbf80, 0x4049, 0x0000, 0x7f80, 0x1234};
static const uint16_t bf16_scalar = 0x4040;
static const float f32_scalar = -2.5f;

static int round_trip_tensors(StWriteTensor *w) {
    for (int i = 0; i < 12; i++) f32_a[i] = 0.25f * (float)i - 1.0f;
    /* Written in this (unsorted) order; the reader lists them by name. */
    StWriteTensor t[] = {
        {.name = "model.layers.0.w", .dtype = TM_F32, .ndim = 2, .shape = {3, 4}, .data = f32_a},
        {.name = "b.bias.f16", .dtype = TM_F16, .ndim = 1, .shape = {5}, .data = f16_b},
        {.name = "empty", .dtype = TM_F32, .ndim = 2, .shape = {0, 4}, .data = f32_a},
        {.name = "c.bf16", .dtype = TM_BF16, .ndim = 2, .shape = {2, 3}, .data = bf16_c},
        {.name = "scalar.bf16", .dtype = TM_BF16, .ndim = 0, .data = &bf16_scalar},
        {.name = "a.scalar.f32", .dtype = TM_F32, .ndim = 0, .data = &f32_scalar},
    };
    memcpy(w, t, sizeof t);
    return (int)(sizeof t / sizeof t[0]);
}

static size_t wt_bytes(const StWriteTensor *w) {
    size_t n = tm_dtype_size(w->dtype);
    for (int d = 0; d < w->ndim; d++) n *= (size_t)w->shape[d];
    return n;
}

static void check_tensor_matches(const StTensor *t, const StWriteTensor *w) {
    assert_non_null(t);
    assert_string_equal(t->name, w->name);
    assert_int_equal(t->dtype, w->dtype);
    assert_int_equal(t->ndim, w->ndim);
    for (int d = 0; d < w->ndim; d++) assert_int_equal(t->shape[d], w->shape[d]);
    size_t nb = wt_bytes(w);
    assert_int_equal(t->end - t->begin, nb);
    if (nb) assert_memory_equal(t->data, w->data, nb);
}

static void round_trip_single_file(void **state) {
    StWriteTensor w[8];
    int n = round_trip_tensors(w);
    char path[512];
    tmp_path(path, sizeof path, "round_trip.safetensors");
    assert_int_equal(st_write_file(path, w, n), 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(file_exists(tmp));

    StFile f;
    if (st_open(&f, path)) fail_msg("st_open: %s", tm_error());
    assert_int_equal(f.n_tensors, n);
    assert_string_equal(f.path, path);

    /* The file: 8-byte length, header padded with spaces to a multiple of 8,
     * then exactly the tensor bytes. */
    const uint8_t *m = f.map;
    uint64_t hlen = le64(m);
    assert_int_equal(hlen % 8, 0);
    assert_int_equal((8 + hlen) % 8, 0);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += wt_bytes(&w[i]);
    assert_int_equal(f.map_size, 8 + hlen + total);
    uint64_t last = 8 + hlen - 1;
    while (m[last] == ' ') last--;
    assert_int_equal(m[last], '}');
    assert_true(8 + hlen - 1 - last < 8);

    /* Sorted by name, every tensor found, bytes identical, in the mapping. */
    for (int i = 1; i < f.n_tensors; i++) assert_true(strcmp(f.tensors[i - 1].name, f.tensors[i].name) < 0);
    uint64_t min_begin = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        const StTensor *t = st_find(&f, w[i].name);
        check_tensor_matches(t, &w[i]);
        assert_in_map(&f, t);
        assert_ptr_equal(t->data, m + 8 + hlen + t->begin);
        assert_ptr_equal(t->file, f.path);
        if (t->begin < min_begin) min_begin = t->begin;
    }
    assert_int_equal(min_begin, 0);
    /* The data section starts 8-byte aligned within the mapping. */
    assert_int_equal((uintptr_t)(m + 8 + hlen) % 8, 0);

    const StTensor *s = st_find(&f, "scalar.bf16");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(st_numel(s), 1);
    const StTensor *e = st_find(&f, "empty");
    assert_int_equal(st_numel(e), 0);
    assert_int_equal(e->begin, e->end);
    assert_null(st_find(&f, "__metadata__"));
    assert_null(st_find(&f, "missing"));

    char buf[64];
    assert_string_equal(st_shape_str(2, st_find(&f, "model.layers.0.w")->shape, buf, sizeof buf), "[3, 4]");
    assert_string_equal(st_shape_str(0, s->shape, buf, sizeof buf), "[]");
    st_close(&f);
    assert_null(f.map);
    assert_null(f.tensors);
}

static void round_trip_no_tensors(void **state) {
    char path[512];
    tmp_path(path, sizeof path, "none.safetensors");
    assert_int_equal(st_write_file(path, NULL, 0), 0);
    StFile f;
    if (st_open(&f, path)) fail_msg("st_open: %s", tm_error());
    assert_int_equal(f.n_tensors, 0);
    assert_int_equal(le64(f.map) % 8, 0);
    assert_null(st_find(&f, "x"));
    st_close(&f);
}

/* ---------- model folders ---------- */

enum { N_SHARD_T = 6, SHARD_ELEMS = 16 };
static float shard_data[N_SHARD_T][SHARD_ELEMS];
static char shard_names[N_SHARD_T][32];

static void shard_tensors(StWriteTensor *w) {
    for (int i = 0; i < N_SHARD_T; i++) {
        for (int j = 0; j < SHARD_ELEMS; j++) shard_data[i][j] = (float)(i * 100 + j) + 0.5f;
        snprintf(shard_names[i], sizeof shard_names[i], "layer.%d.weight", N_SHARD_T - 1 - i);
        w[i] = (StWriteTensor){.name = shard_names[i], .dtype = TM_F32, .ndim = 2, .shape = {4, 4},
                               .data = shard_data[i]};
    }
}

/* Six 64-byte tensors with 128-byte shards: three shards of two. */
static void sharded_write_and_open(void **state) {
    StWriteTensor w[N_SHARD_T];
    shard_tensors(w);
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "sharded");
    if (st_write_model(dir, w, N_SHARD_T, 128)) fail_msg("st_write_model: %s", tm_error());

    for (int s = 1; s <= 3; s++) {
        snprintf(path, sizeof path, "%s/model-%05d-of-00003.safetensors", dir, s);
        assert_true(file_exists(path));
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_false(file_exists(path));
    assert_int_equal(count_suffix(dir, ".safetensors"), 3);
    assert_int_equal(count_suffix(dir, ".tmp"), 0);

    /* The index: total size and where each tensor lives. */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    assert_non_null(root);
    json_t *total = json_object_get(json_object_get(root, "metadata"), "total_size");
    assert_true(json_is_integer(total));
    assert_int_equal(json_integer_value(total), N_SHARD_T * SHARD_ELEMS * 4);
    json_t *wm = json_object_get(root, "weight_map");
    assert_int_equal(json_object_size(wm), N_SHARD_T);
    for (int i = 0; i < N_SHARD_T; i++) {
        char want[64];
        snprintf(want, sizeof want, "model-%05d-of-00003.safetensors", i / 2 + 1);
        assert_string_equal(json_string_value(json_object_get(wm, w[i].name)), want);
    }
    json_decref(root);

    StSet set;
    if (st_set_open(&set, dir)) fail_msg("st_set_open: %s", tm_error());
    assert_int_equal(set.n_files, 3);
    assert_int_equal(set.n, N_SHARD_T);
    assert_int_equal(st_set_bytes(&set), N_SHARD_T * SHARD_ELEMS * 4);
    for (int i = 1; i < set.n; i++) assert_true(strcmp(set.sorted[i - 1]->name, set.sorted[i]->name) < 0);
    for (int i = 0; i < N_SHARD_T; i++) {
        const StTensor *t = st_set_find(&set, w[i].name);
        check_tensor_matches(t, &w[i]);
        char want[64];
        snprintf(want, sizeof want, "/model-%05d-of-00003.safetensors", i / 2 + 1);
        assert_non_null(strstr(t->file, want));
        int idx = st_set_index(&set, w[i].name);
        assert_true(idx >= 0 && idx < set.n);
        assert_ptr_equal(set.sorted[idx], t);
    }
    assert_null(st_set_find(&set, "layer.9.weight"));
    assert_int_equal(st_set_index(&set, "nope"), -1);
    st_set_close(&set);
}

static void single_file_model(void **state) {
    StWriteTensor w[N_SHARD_T];
    shard_tensors(w);
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "single");
    if (st_write_model(dir, w, N_SHARD_T, 0)) fail_msg("st_write_model: %s", tm_error());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_true(file_exists(path));
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    assert_false(file_exists(path));
    assert_int_equal(count_suffix(dir, ".safetensors"), 1);
    assert_int_equal(count_suffix(dir, ".tmp"), 0);

    StSet set;
    if (st_set_open(&set, dir)) fail_msg("st_set_open: %s", tm_error());
    assert_int_equal(set.n_files, 1);
    assert_int_equal(set.n, N_SHARD_T);
    for (int i = 0; i < N_SHARD_T; i++) check_tensor_matches(st_set_find(&set, w[i].name), &w[i]);
    st_set_close(&set);
}

/* A limit the tensors fit under writes one file; a tensor larger than the
 * limit gets a shard of its own. */
static void shard_limits(void **state) {
    StWriteTensor w[N_SHARD_T];
    shard_tensors(w);
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "fits");
    assert_int_equal(st_write_model(dir, w, N_SHARD_T, N_SHARD_T * SHARD_ELEMS * 4), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_true(file_exists(path));
    assert_int_equal(count_suffix(dir, ".json"), 0);

    make_dir(dir, sizeof dir, "oversize");
    assert_int_equal(st_write_model(dir, w, 3, 32), 0); /* each 64-byte tensor alone */
    assert_int_equal(count_suffix(dir, "-of-00003.safetensors"), 3);
    assert_int_equal(count_suffix(dir, ".tmp"), 0);
    StSet set;
    if (st_set_open(&set, dir)) fail_msg("st_set_open: %s", tm_error());
    assert_int_equal(set.n_files, 3);
    for (int i = 0; i < 3; i++) check_tensor_matches(st_set_find(&set, w[i].name), &w[i]);
    st_set_close(&set);
}

/* Rewriting a folder in the other layout must not leave the old entry point:
 * readers would load the stale weights. */
static void rewrite_switches_layout(void **state) {
    StWriteTensor w[N_SHARD_T];
    shard_tensors(w);
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "relayout");
    assert_int_equal(st_write_model(dir, w, N_SHARD_T, 128), 0);
    float changed[SHARD_ELEMS];
    for (int j = 0; j < SHARD_ELEMS; j++) changed[j] = 5.0f;
    w[0].data = changed;
    assert_int_equal(st_write_model(dir, w, N_SHARD_T, 0), 0);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    assert_false(file_exists(path));
    StSet set;
    assert_int_equal(st_set_open(&set, dir), 0);
    check_tensor_matches(st_set_find(&set, w[0].name), &w[0]);
    st_set_close(&set);

    w[0].data = shard_data[0];
    assert_int_equal(st_write_model(dir, w, N_SHARD_T, 128), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_false(file_exists(path));
    assert_int_equal(st_set_open(&set, dir), 0);
    check_tensor_matches(st_set_find(&set, w[0].name), &w[0]);
    st_set_close(&set);
}

/* The writer refuses what it could not read back. */
static void writer_rejects_bad_tensors(void **state) {
    float x[2] = {1, 2};
    char dir[512], path[1024];
    make_dir(dir, sizeof dir, "badwrite");
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    StWriteTensor dup[2] = {{.name = "x", .dtype = TM_F32, .ndim = 1, .shape = {1}, .data = x},
                            {.name = "x", .dtype = TM_F32, .ndim = 1, .shape = {1}, .data = x + 1}};
    assert_int_equal(st_write_file(path, dup, 2), -1);
    expect_error_contains("'x' appears twice");
    StWriteTensor meta = {.name = "__metadata__", .dtype = TM_F32, .ndim = 1, .shape = {1}, .data = x};
    assert_int_equal(st_write_file(path, &meta, 1), -1);
    expect_error_contains("reserved");
    StWriteTensor bad = {.name = "y", .dtype = TM_DTYPE_INVALID, .ndim = 1, .shape = {1}, .data = x};
    assert_int_equal(st_write_model(dir, &bad, 1, 0), -1);
    expect_error_contains("'y' has no valid dtype");
    assert_int_equal(count_suffix(dir, ".safetensors"), 0);
    assert_int_equal(count_suffix(dir, ".tmp"), 0);
}

/* ---------- model folder errors ---------- */

static void write_sharded(const char *dir) {
    StWriteTensor w[N_SHARD_T];
    shard_tensors(w);
    assert_int_equal(st_write_model(dir, w, N_SHARD_T, 128), 0);
}

static void set_index_names_absent_tensor(void **state) {
    char dir[512], index[1024];
    make_dir(dir, sizeof dir, "ghost");
    write_sharded(dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    write_text(index, "{\"weight_map\": {\"layer.5.weight\": \"model-00001-of-00003.safetensors\","
                      " \"ghost.weight\": \"model-00002-of-00003.safetensors\"}}");
    StSet set;
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains(index);
    expect_error_contains("'ghost.weight'");
    expect_error_contains("model-00002-of-00003.safetensors");
    assert_null(set.files);
    assert_null(set.sorted);
}

static void set_index_path_with_slash(void **state) {
    char dir[512], index[1024];
    make_dir(dir, sizeof dir, "slash");
    write_sharded(dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    write_text(index, "{\"weight_map\": {\"layer.5.weight\": \"../slash/model-00001-of-00003.safetensors\"}}");
    StSet set;
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains(index);
    expect_error_contains("weight_map.layer.5.weight");
    expect_error_contains("not a file in the model folder");

    write_text(index, "{\"weight_map\": {\"layer.5.weight\": \"..\"}}");
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains("not a file in the model folder");
    write_text(index, "{\"weight_map\": {\"layer.5.weight\": \"\"}}");
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains("not a file in the model folder");
    write_text(index, "{\"weight_map\": {\"layer.5.weight\": 3}}");
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains("'weight_map.layer.5.weight' is not a string");
}

static void set_index_other_errors(void **state) {
    char dir[512], index[1024];
    make_dir(dir, sizeof dir, "badindex");
    write_sharded(dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    StSet set;

    write_text(index, "{\"weight_map\": {\"layer.5.weight\": \"model-00009-of-00009.safetensors\"}}");
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains("model-00009-of-00009.safetensors");
    expect_error_contains("cannot open");

    write_text(index, "{\"weight_map\": ");
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains(index);
    expect_error_contains("not valid JSON");

    write_text(index, "{\"metadata\": {}}");
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains("'weight_map'");

    /* A corrupt shard: the message names the shard. */
    char shard[1024];
    snprintf(shard, sizeof shard, "%s/model-00002-of-00003.safetensors", dir);
    write_sharded(dir);
    write_text(shard, "garbage!garbage!");
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains(shard);
}

static void set_folder_without_weights(void **state) {
    char dir[512];
    make_dir(dir, sizeof dir, "nothing");
    StSet set;
    assert_int_equal(st_set_open(&set, dir), -1);
    expect_error_contains(dir);
    expect_error_contains("no model.safetensors or model.safetensors.index.json");

    char missing[600];
    snprintf(missing, sizeof missing, "%s/does-not-exist", dir);
    assert_int_equal(st_set_open(&set, missing), -1);
    expect_error_contains(missing);
}

/* ---------- st_open errors ---------- */

static void open_errors_name_the_path(void **state) {
    char path[512];
    StFile f;
    tmp_path(path, sizeof path, "no-such-file.safetensors");
    assert_int_equal(st_open(&f, path), -1);
    expect_error_contains(path);
    expect_error_contains("cannot open");
    assert_null(f.map);

    make_dir(path, sizeof path, "a-directory.safetensors");
    assert_int_equal(st_open(&f, path), -1);
    expect_error_contains(path);
    expect_error_contains("not a regular file");

    tmp_path(path, sizeof path, "empty.safetensors");
    write_text(path, "");
    assert_int_equal(st_open(&f, path), -1);
    expect_error_contains(path);
    expect_error_contains("too short");

    tmp_path(path, sizeof path, "bad-header.safetensors");
    write_file(path, "\x05\0\0\0\0\0\0\0{}", 10);
    assert_int_equal(st_open(&f, path), -1);
    expect_error_contains(path);
}

/* ---------- st_parse_image: framing ---------- */

static void parse_short_file(void **state) {
    uint8_t img[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_PARSE_ERROR(img, 0, "0 bytes", "too short");
    EXPECT_PARSE_ERROR(img, 7, "7 bytes", "too short");
}

static void parse_bad_header_length(void **state) {
    size_t size;
    uint8_t *img = image_len(0, "{}", NULL, 0, &size);
    EXPECT_PARSE_ERROR(img, size, "header length 0 ", "not sane");
    free(img);
    img = image_len(1, "{}", NULL, 0, &size);
    EXPECT_PARSE_ERROR(img, size, "header length 1 ", "not sane");
    free(img);
    img = image_len((uint64_t)ST_MAX_HEADER_BYTES + 1, "{}", NULL, 0, &size);
    EXPECT_PARSE_ERROR(img, size, "header length 104857601", "not sane");
    free(img);
    img = image_len(UINT64_MAX, "{}", NULL, 0, &size);
    EXPECT_PARSE_ERROR(img, size, "header length 18446744073709551615", "not sane");
    free(img);
    /* The limit itself is sane: this fails only because the file is short. */
    img = image_len(ST_MAX_HEADER_BYTES, "{}", NULL, 0, &size);
    EXPECT_PARSE_ERROR(img, size, "header length 104857600", "runs past the end");
    free(img);
}

static void parse_header_past_end(void **state) {
    size_t size;
    uint8_t *img = image_len(100, "{}      ", NULL, 0, &size);
    EXPECT_PARSE_ERROR(img, size, "header length 100", "runs past the end", "16 bytes", "truncated");
    free(img);
    img = image_len(3, "{}", NULL, 0, &size); /* one byte too long */
    EXPECT_PARSE_ERROR(img, size, "header length 3", "runs past the end");
    free(img);
}

static void parse_not_json_object(void **state) {
    EXPECT_HEADER_ERROR("{'w': ", 0, "not valid JSON");
    EXPECT_HEADER_ERROR("{'w': {}} trailing", 0, "not valid JSON");
    EXPECT_HEADER_ERROR("[1, 2]", 0, "not a JSON object");
    EXPECT_HEADER_ERROR("'str'", 0, "header is not");
    EXPECT_HEADER_ERROR("{'w': 5}", 0, "tensor 'w'", "not a JSON object");
    EXPECT_HEADER_ERROR("{'a':{'dtype':'U8','shape':[1],'data_offsets':[0,1]},"
                        "'a':{'dtype':'U8','shape':[1],'data_offsets':[1,2]}}",
                        2, "not valid JSON", "duplicate");
}

/* ---------- st_parse_image: tensor entries ---------- */

static void parse_bad_dtype(void **state) {
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F99','shape':[1],'data_offsets':[0,4]}}", 4, "tensor 'w'",
                        "unknown dtype 'F99'");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'f32','shape':[1],'data_offsets':[0,4]}}", 4, "unknown dtype 'f32'");
    EXPECT_HEADER_ERROR("{'w':{'dtype':4,'shape':[1],'data_offsets':[0,4]}}", 4, "tensor 'w'", "'dtype'",
                        "not a string");
}

static void parse_missing_fields(void **state) {
    EXPECT_HEADER_ERROR("{'w':{'shape':[1],'data_offsets':[0,4]}}", 4, "tensor 'w'", "'dtype' missing");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','data_offsets':[0,4]}}", 4, "tensor 'w'", "'shape' missing");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[1]}}", 4, "tensor 'w'", "'data_offsets'");
}

static void parse_bad_shape(void **state) {
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[2,-1],'data_offsets':[0,4]}}", 4, "tensor 'w'", "'shape'",
                        "entry 1", "non-negative");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[1.0],'data_offsets':[0,4]}}", 4, "tensor 'w'", "'shape'",
                        "entry 0");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':4,'data_offsets':[0,4]}}", 4, "tensor 'w'",
                        "'shape' is not an array");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[1,1,1,1,1,1,1,1,1],'data_offsets':[0,4]}}", 4,
                        "tensor 'w'", "9 dims", "at most 8");
    /* 2^62 * 4 elements of 4 bytes do not fit in int64. */
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[4611686018427387904,4],'data_offsets':[0,4]}}", 4,
                        "tensor 'w'", "overflows");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F64','shape':[3037000500,3037000500],'data_offsets':[0,8]}}", 8,
                        "tensor 'w'", "overflows");
    /* a zero dim does not excuse overflowing others, whatever the order */
    EXPECT_HEADER_ERROR("{'w':{'dtype':'U8','shape':[0,4611686018427387904,4611686018427387904],'data_offsets':[0,0]}}",
                        0, "tensor 'w'", "overflows");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'U8','shape':[4611686018427387904,4611686018427387904,0],'data_offsets':[0,0]}}",
                        0, "tensor 'w'", "overflows");
}

static void parse_bad_offsets(void **state) {
    const char *not_pair[] = {
        "{'w':{'dtype':'U8','shape':[4],'data_offsets':[0]}}",
        "{'w':{'dtype':'U8','shape':[4],'data_offsets':[0,4,8]}}",
        "{'w':{'dtype':'U8','shape':[4],'data_offsets':'0,4'}}",
        "{'w':{'dtype':'U8','shape':[4],'data_offsets':[0,'4']}}",
        "{'w':{'dtype':'U8','shape':[4],'data_offsets':[0,4.0]}}",
        "{'w':{'dtype':'U8','shape':[4],'data_offsets':[-4,0]}}",
        "{'w':{'dtype':'U8','shape':[4],'data_offsets':[0,-4]}}",
    };
    for (size_t i = 0; i < sizeof not_pair / sizeof not_pair[0]; i++)
        EXPECT_HEADER_ERROR(not_pair[i], 4, "tensor 'w'", "'data_offsets'", "pair of non-negative integers");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'U8','shape':[4],'data_offsets':[4,0]}}", 4, "tensor 'w'",
                        "data_offsets [4, 0]", "end before they begin");
}

static void parse_truncated_data(void **state) {
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[4],'data_offsets':[0,16]}}", 12, "tensor 'w'",
                        "data_offsets [0, 16]", "past the data section", "12 bytes", "truncated");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[0],'data_offsets':[5,5]}}", 4, "tensor 'w'",
                        "past the data section");
}

static void parse_shape_size_mismatch(void **state) {
    EXPECT_HEADER_ERROR("{'w':{'dtype':'F32','shape':[2,3],'data_offsets':[0,20]}}", 20, "tensor 'w'",
                        "[2, 3]", "F32", "needs 24 bytes", "hold 20");
    EXPECT_HEADER_ERROR("{'w':{'dtype':'BF16','shape':[],'data_offsets':[0,4]}}", 4, "tensor 'w'",
                        "needs 2 bytes");
}

/* ---------- st_parse_image: layout of the data section ---------- */

static void parse_overlap(void **state) {
    EXPECT_HEADER_ERROR("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
                        "'b':{'dtype':'F32','shape':[2],'data_offsets':[4,12]}}",
                        12, "'a'", "'b'", "overlap");
    /* the same range twice */
    EXPECT_HEADER_ERROR("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
                        "'b':{'dtype':'U8','shape':[8],'data_offsets':[0,8]}}",
                        8, "overlap");
    /* an empty tensor inside another */
    EXPECT_HEADER_ERROR("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
                        "'e':{'dtype':'F32','shape':[0],'data_offsets':[4,4]}}",
                        8, "'e'", "overlap");
}

static void parse_gap(void **state) {
    EXPECT_HEADER_ERROR("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
                        "'b':{'dtype':'F32','shape':[1],'data_offsets':[8,12]}}",
                        12, "tensor 'b'", "gap", "byte 4");
    EXPECT_HEADER_ERROR("{'b':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", 8, "tensor 'b'", "gap");
}

static void parse_trailing_bytes(void **state) {
    EXPECT_HEADER_ERROR("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]}}", 8, "data section is 8 bytes",
                        "cover 4");
    EXPECT_HEADER_ERROR("{}", 3, "data section is 3 bytes", "cover 0");
    EXPECT_HEADER_ERROR("{'__metadata__':{}}", 1, "data section is 1 bytes");
}

static void parse_bad_metadata(void **state) {
    EXPECT_HEADER_ERROR("{'__metadata__':'pt'}", 0, "'__metadata__'", "not an object");
    EXPECT_HEADER_ERROR("{'__metadata__':['pt']}", 0, "'__metadata__'", "not an object");
    EXPECT_HEADER_ERROR("{'__metadata__':{'format':'pt','layers':3}}", 0, "'__metadata__.layers'",
                        "not a string");
    EXPECT_HEADER_ERROR("{'a':{'dtype':'U8','shape':[1],'data_offsets':[0,1]},'__metadata__':{'k':null}}", 1,
                        "'__metadata__.k'");
}

/* ---------- st_parse_image: valid images ---------- */

static void parse_empty_header_ok(void **state) {
    size_t size;
    uint8_t *img = image("{}      ", NULL, 0, &size);
    assert_int_equal(size, 16);
    StTensor *t = NULL;
    int n = -1;
    if (st_parse_image(img, size, &t, &n)) fail_msg("parse: %s", tm_error());
    assert_int_equal(n, 0);
    st_free_tensors(t, n);
    free(img);

    img = image("{'__metadata__':{'format':'pt'}}", NULL, 0, &size); /* unpadded is fine too */
    if (st_parse_image(img, size, &t, &n)) fail_msg("parse: %s", tm_error());
    assert_int_equal(n, 0);
    st_free_tensors(t, n);
    free(img);
}

/* Offsets in any header order, names sorted on output, empty tensors at the
 * start, middle and end, data pointers into the image. */
static void parse_valid_layout(void **state) {
    const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    size_t size;
    uint8_t *img = image("{'z':{'dtype':'U8','shape':[2],'data_offsets':[12,14]},"
                         "'e0':{'dtype':'F32','shape':[0,3],'data_offsets':[0,0]},"
                         "'m':{'dtype':'F32','shape':[1,2],'data_offsets':[4,12]},"
                         "'__metadata__':{'format':'pt'},"
                         "'e1':{'dtype':'I64','shape':[5,0],'data_offsets':[4,4]},"
                         "'a':{'dtype':'BF16','shape':[2],'data_offsets':[0,4]},"
                         "'e2':{'dtype':'F16','shape':[0],'data_offsets':[14,14]}}   ",
                         data, sizeof data, &size);
    StTensor *t = NULL;
    int n = 0;
    if (st_parse_image(img, size, &t, &n)) fail_msg("parse: %s", tm_error());
    assert_int_equal(n, 6);
    const char *names[] = {"a", "e0", "e1", "e2", "m", "z"};
    const uint64_t begin[] = {0, 0, 4, 14, 4, 12}, end[] = {4, 0, 4, 14, 12, 14};
    const uint8_t *dsec = img + size - sizeof data;
    for (int i = 0; i < n; i++) {
        assert_string_equal(t[i].name, names[i]);
        assert_int_equal(t[i].begin, begin[i]);
        assert_int_equal(t[i].end, end[i]);
        assert_ptr_equal(t[i].data, dsec + begin[i]);
        assert_null(t[i].file);
    }
    assert_int_equal(t[0].dtype, TM_BF16);
    assert_int_equal(t[4].dtype, TM_F32);
    assert_int_equal(t[4].ndim, 2);
    assert_int_equal(t[4].shape[1], 2);
    assert_int_equal(((const uint8_t *)t[5].data)[1], 14);
    st_free_tensors(t, n);
    free(img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_single_file),
        cmocka_unit_test(round_trip_no_tensors),
        cmocka_unit_test(sharded_write_and_open),
        cmocka_unit_test(single_file_model),
        cmocka_unit_test(shard_limits),
        cmocka_unit_test(rewrite_switches_layout),
        cmocka_unit_test(writer_rejects_bad_tensors),
        cmocka_unit_test(set_index_names_absent_tensor),
        cmocka_unit_test(set_index_path_with_slash),
        cmocka_unit_test(set_index_other_errors),
        cmocka_unit_test(set_folder_without_weights),
        cmocka_unit_test(open_errors_name_the_path),
        cmocka_unit_test(parse_short_file),
        cmocka_unit_test(parse_bad_header_length),
        cmocka_unit_test(parse_header_past_end),
        cmocka_unit_test(parse_not_json_object),
        cmocka_unit_test(parse_bad_dtype),
        cmocka_unit_test(parse_missing_fields),
        cmocka_unit_test(parse_bad_shape),
        cmocka_unit_test(parse_bad_offsets),
        cmocka_unit_test(parse_truncated_data),
        cmocka_unit_test(parse_shape_size_mismatch),
        cmocka_unit_test(parse_overlap),
        cmocka_unit_test(parse_gap),
        cmocka_unit_test(parse_trailing_bytes),
        cmocka_unit_test(parse_bad_metadata),
        cmocka_unit_test(parse_empty_header_ok),
        cmocka_unit_test(parse_valid_layout),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
