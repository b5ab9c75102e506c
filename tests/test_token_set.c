/* HDF5 token sets: round trips (uint16 and uint32 ids, attributes kept),
 * damaged files (truncated, signature overwritten, wrong format attribute,
 * inconsistent offsets) that must fail with one message naming the file, a
 * failed write that leaves no temporary file, and h5dump reading what we
 * wrote. Files go to a mkdtemp folder removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/output.h"
#include "io/base/error.h"
#include "io/token_set.h"

#define TMPDIR_TAG "test_ts"
#include "tests/tmpdir.h"

static const char sha[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";



/* Three documents of 5, 0 and 7 ids spread over the vocabulary. */
typedef struct {
    int32_t ids[12];
    uint64_t offsets[4];
    TokenSet ts;
} Sample;

static void make_sample(Sample *s, int vocab_size, const char *kind) {
    for (int i = 0; i < 12; i++) s->ids[i] = (int32_t)(((int64_t)i * 7919 + 3) % vocab_size);
    s->ids[11] = vocab_size - 1;
    uint64_t off[4] = {0, 5, 5, 12};
    memcpy(s->offsets, off, sizeof off);
    s->ts = (TokenSet){.ids = s->ids, .n = 12, .doc_offsets = s->offsets, .n_docs = 3, .vocab_size = vocab_size,
                       .tokenizer = "/models/x/tokenizer.json", .sources = "/data/a.txt\n/data/b.txt",
                       .kind = (char *)kind, .seqlen = 0, .add_special_tokens = 1, .seed = 0xFEDCBA9876543210ull};
    memcpy(s->ts.tokenizer_sha256, sha, sizeof sha);
}

static void assert_same(const TokenSet *a, const TokenSet *b) {
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->ids, b->ids, a->n * sizeof *a->ids);
    assert_int_equal(a->n_docs, b->n_docs);
    assert_memory_equal(a->doc_offsets, b->doc_offsets, (a->n_docs + 1) * sizeof *a->doc_offsets);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_string_equal(a->tokenizer_sha256, b->tokenizer_sha256);
    assert_string_equal(a->tokenizer, b->tokenizer);
    assert_string_equal(a->sources, b->sources);
    assert_string_equal(a->kind, b->kind);
    assert_int_equal(a->seqlen, b->seqlen);
    assert_int_equal(a->add_special_tokens, b->add_special_tokens);
    assert_true(a->seed == b->seed);
}

static void expect_read_fail(const char *path, const char *part) {
    TokenSet got;
    tm_clear_error();
    assert_int_equal(token_set_read(path, &got), -1);
    const char *msg = tm_error();
    if (!strstr(msg, path) || !strstr(msg, part)) fail_msg("error '%s' lacks the file or '%s'", msg, part);
    assert_null(got.ids);
    assert_null(got.kind);
}

/* The stored type of /tokens: 2 or 4 bytes. */
static size_t stored_width(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "/tokens", H5P_DEFAULT), t = H5Dget_type(d), p = H5Dget_create_plist(d);
    size_t w = H5Tget_size(t);
    assert_int_equal(H5Pget_layout(p), H5D_CHUNKED);
    assert_true(H5Pget_nfilters(p) == 2); /* shuffle + deflate */
    H5Pclose(p);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    return w;
}

static void test_round_trip(void **state) {
    int vocabs[] = {256, 65536, 65537, 151936};
    size_t widths[] = {2, 2, 4, 4};
    for (int v = 0; v < 4; v++) {
        Sample s;
        make_sample(&s, vocabs[v], "documents");
        char path[256];
        snprintf(path, sizeof path, "%s/rt_%d.h5", tmp_root, vocabs[v]);
        assert_int_equal(token_set_write(path, &s.ts), 0);
        assert_true(token_set_is_hdf5(path));
        assert_int_equal(stored_width(path), widths[v]);
        TokenSet got;
        if (token_set_read(path, &got)) fail_msg("%s", tm_error());
        assert_same(&s.ts, &got);
        token_set_free(&got);
    }
}

static void test_samples_and_empty(void **state) {
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    uint64_t off[3] = {0, 3, 6}, zero[1] = {0};
    TokenSet ts = {.ids = ids, .n = 6, .doc_offsets = off, .n_docs = 2, .vocab_size = 10, .tokenizer = "t",
                   .sources = "s", .kind = "samples", .seqlen = 3, .add_special_tokens = 1, .seed = 42};
    memcpy(ts.tokenizer_sha256, sha, sizeof sha);
    char path[256];
    tmp_path(path, sizeof path, "samples.h5");
    assert_int_equal(token_set_write(path, &ts), 0);
    TokenSet got;
    assert_int_equal(token_set_read(path, &got), 0);
    assert_same(&ts, &got);
    token_set_free(&got);
    /* a set of samples whose lengths differ from seqlen is refused */
    ts.seqlen = 4;
    assert_int_equal(token_set_write(path, &ts), -1);
    assert_non_null(strstr(tm_error(), "sample 0 has 3 ids, not seqlen 4"));
    /* no ids at all still makes a readable file */
    TokenSet empty = {.doc_offsets = zero, .vocab_size = 10, .tokenizer = "t", .sources = "s", .kind = "joined"};
    memcpy(empty.tokenizer_sha256, sha, sizeof sha);
    tmp_path(path, sizeof path, "empty.h5");
    assert_int_equal(token_set_write(path, &empty), 0);
    assert_int_equal(token_set_read(path, &got), 0);
    assert_int_equal(got.n, 0);
    assert_int_equal(got.n_docs, 0);
    token_set_free(&got);
}

/* Attributes past the 64 KiB an object header holds (a C4 run lists 1024
 * shard paths) go to dense storage. */
static void test_long_sources(void **state) {
    Sample s;
    make_sample(&s, 32000, "documents");
    size_t n = 200000;
    char *sources = malloc(n + 1);
    assert_non_null(sources);
    for (size_t i = 0; i < n; i++) sources[i] = i % 80 == 79 ? '\n' : (char)('a' + i % 26);
    sources[n] = '\0';
    s.ts.sources = sources;
    char path[256];
    tmp_path(path, sizeof path, "long.h5");
    if (token_set_write(path, &s.ts)) fail_msg("%s", tm_error());
    TokenSet got;
    if (token_set_read(path, &got)) fail_msg("%s", tm_error());
    assert_same(&s.ts, &got);
    token_set_free(&got);
    free(sources);
}

static void write_sample(const char *path) {
    Sample s;
    make_sample(&s, 1000, "joined");
    uint64_t one[2] = {0, 12};
    s.ts.doc_offsets = one;
    s.ts.n_docs = 1;
    assert_int_equal(token_set_write(path, &s.ts), 0);
}

static void copy_prefix(const char *from, const char *to, long keep) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    long left = keep;
    while (left != 0 && (n = fread(buf, 1, left > 0 && (long)sizeof buf > left ? (size_t)left : sizeof buf, in)) > 0) {
        fwrite(buf, 1, n, out);
        if (left > 0) left -= (long)n;
    }
    fclose(in);
    fclose(out);
}

static long file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static void test_corrupt_files(void **state) {
    char good[256], bad[256];
    tmp_path(good, sizeof good, "good.h5");
    write_sample(good);
    long size = file_size(good);

    /* truncated at several places: an error each time, never a crash */
    long cuts[] = {4, 100, size / 2, size - 200, size - 1};
    for (int i = 0; i < 5; i++) {
        tmp_path(bad, sizeof bad, "cut.h5");
        copy_prefix(good, bad, cuts[i]);
        TokenSet got;
        tm_clear_error();
        assert_int_equal(token_set_read(bad, &got), -1);
        assert_non_null(strstr(tm_error(), bad));
        assert_null(got.ids);
    }
    tmp_path(bad, sizeof bad, "cut.h5");
    copy_prefix(good, bad, size / 2);
    expect_read_fail(bad, "truncated");

    /* signature overwritten */
    tmp_path(bad, sizeof bad, "nosig.h5");
    copy_prefix(good, bad, -1);
    FILE *fp = fopen(bad, "r+b");
    assert_non_null(fp);
    fwrite("XXXX", 1, 4, fp);
    fclose(fp);
    assert_false(token_set_is_hdf5(bad));
    expect_read_fail(bad, "not an HDF5 file");

    tmp_path(bad, sizeof bad, "missing.h5");
    assert_false(token_set_is_hdf5(bad));
    expect_read_fail(bad, "cannot open");
}

/* Write a file with the HDF5 API by hand: a format attribute and an
 * inconsistent offsets dataset. */
static void write_string_attr(hid_t f, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(value) + 1); /* fixed-length: readers must take both kinds */
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, t, value) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void write_int_attr(hid_t f, const char *name, long long value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int v = (int)value;
    assert_true(H5Awrite(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static void write_u_dataset(hid_t f, const char *name, hid_t type, hid_t mem, const void *data, hsize_t n) {
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
}

/* A set with every attribute right (fixed-length strings, 32-bit ints) and
 * the given format, offsets and ids. */
static void hand_made(const char *path, const char *format, const uint64_t *off, const uint16_t *ids) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    write_string_attr(f, "format", format);
    write_int_attr(f, "version", 1);
    write_string_attr(f, "tokenizer_sha256", sha);
    write_string_attr(f, "tokenizer", "tok.json");
    write_string_attr(f, "sources", "src.txt");
    write_string_attr(f, "kind", "documents");
    write_string_attr(f, "dtype", "uint16");
    write_int_attr(f, "n_tokens", 4);
    write_int_attr(f, "n_documents", 2);
    write_int_attr(f, "vocab_size", 100);
    write_int_attr(f, "seqlen", 0);
    write_int_attr(f, "add_special_tokens", 0);
    write_int_attr(f, "seed", 42);
    write_u_dataset(f, "/tokens", H5T_STD_U16LE, H5T_NATIVE_UINT16, ids, 4);
    write_u_dataset(f, "/doc_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, off, 3);
    assert_true(H5Fclose(f) >= 0);
}

static void test_hand_made(void **state) {
    char path[256];
    uint64_t good_off[3] = {0, 1, 4}, down[3] = {0, 3, 2}, short_end[3] = {0, 1, 3};
    uint16_t ids[4] = {1, 2, 3, 99}, big[4] = {1, 2, 100, 4};
    tmp_path(path, sizeof path, "hand.h5");
    hand_made(path, "transmla-token-set", good_off, ids);
    TokenSet got;
    if (token_set_read(path, &got)) fail_msg("%s", tm_error());
    assert_int_equal(got.n, 4);
    assert_int_equal(got.ids[3], 99);
    assert_string_equal(got.kind, "documents");
    assert_true(got.seed == 42);
    token_set_free(&got);

    hand_made(path, "something-else", good_off, ids);
    expect_read_fail(path, "attribute 'format' is 'something-else', not 'transmla-token-set'");
    hand_made(path, "transmla-token-set", down, ids);
    expect_read_fail(path, "/doc_offsets: entry 2 (2) is below entry 1 (3)");
    hand_made(path, "transmla-token-set", short_end, ids);
    expect_read_fail(path, "/doc_offsets: ends at 3, not at n_tokens 4");
    hand_made(path, "transmla-token-set", good_off, big);
    expect_read_fail(path, "/tokens: id 100 at position 2 is not below vocab_size 100");

    /* a plain HDF5 file without our attributes */
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fail(path, "no attribute 'format': not a transmla token set");
}

static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

static void test_failed_write_leaves_nothing(void **state) {
    Sample s;
    make_sample(&s, 1000, "documents");
    char path[256];
    snprintf(path, sizeof path, "%s/no/such/folder/set.h5", tmp_root);
    assert_int_equal(token_set_write(path, &s.ts), -1);
    assert_non_null(strstr(tm_error(), path));
    /* an id outside the vocabulary: refused before anything is created */
    tmp_path(path, sizeof path, "refused.h5");
    s.ids[3] = 1000;
    assert_int_equal(token_set_write(path, &s.ts), -1);
    assert_non_null(strstr(tm_error(), "id 1000 at 3 is outside vocab_size 1000"));
    assert_int_equal(count_entries(tmp_root, "refused.h5"), 0);
    /* an existing target that cannot be replaced (a non-empty folder) */
    char blocker[256];
    tmp_path(blocker, sizeof blocker, "blocked.h5");
    assert_int_equal(mkdir(blocker, 0700), 0);
    char inner[300];
    snprintf(inner, sizeof inner, "%s/x", blocker);
    FILE *fp = fopen(inner, "w");
    fclose(fp);
    s.ids[3] = 3;
    assert_int_equal(token_set_write(blocker, &s.ts), -1);
    assert_non_null(strstr(tm_error(), "cannot rename"));
    assert_int_equal(count_entries(tmp_root, "blocked.h5.tmp-"), 0);
    remove(inner);
    rmdir(blocker);
}

static void test_h5dump(void **state) {
    if (system("command -v h5dump >/dev/null 2>&1") != 0) fail_msg("h5dump not installed (hdf5-tools, scripts/install-deps.sh)");
    char path[256], cmd[1200];
    tmp_path(path, sizeof path, "dump.h5");
    write_sample(path);
    snprintf(cmd, sizeof cmd, "h5dump -H '%s' > '%s.txt' 2>&1", path, path);
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd,
             "grep -q 'ATTRIBUTE \"format\"' '%s.txt' && grep -q 'DATASET \"tokens\"' '%s.txt' && "
             "h5dump -a format '%s' | grep -q transmla-token-set",
             path, path, path);
    if (rc == 0) rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s.txt'", path);
        if (system(cmd)) {}
        fail_msg("h5dump -H %s failed or lacks the format attribute and /tokens", path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_samples_and_empty),
        cmocka_unit_test(test_long_sources),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_hand_made),
        cmocka_unit_test(test_failed_write_leaves_nothing),
        cmocka_unit_test(test_h5dump),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
