/* HDF5 token sets (layout in token_set.h). Written through a temporary file
 * renamed into place, so a set that exists is complete; read back with every
 * attribute and dataset checked, so a damaged file gives one message naming
 * it instead of HDF5's error stack or a crash. */
#include "io/token_set.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/h5_util.h"

#define FORMAT_NAME "transmla-token-set"
#define FORMAT_VERSION 1
#define CHUNK_IDS ((hsize_t)1 << 20)

int token_set_is_hdf5(const char *path) { return h5_is_hdf5(path); }

/* ---- writing ---- */

static int check_before_write(const char *path, const TokenSet *ts) {
    if (ts->vocab_size < 1) return tm_fail("%s: cannot write: vocab_size %d", path, ts->vocab_size);
    if (!ts->doc_offsets) return tm_fail("%s: cannot write: no doc_offsets", path);
    if (ts->n && !ts->ids) return tm_fail("%s: cannot write: no ids", path);
    const char *kind = ts->kind ? ts->kind : "";
    if (strcmp(kind, "joined") && strcmp(kind, "documents") && strcmp(kind, "samples"))
        return tm_fail("%s: cannot write: kind '%s' (expected joined, documents or samples)", path, kind);
    if (strlen(ts->tokenizer_sha256) != 64 || strspn(ts->tokenizer_sha256, "0123456789abcdef") != 64)
        return tm_fail("%s: cannot write: tokenizer_sha256 '%s' is not 64 lower-case hex digits", path,
                       ts->tokenizer_sha256);
    if (ts->doc_offsets[0] != 0 || ts->doc_offsets[ts->n_docs] != ts->n)
        return tm_fail("%s: cannot write: doc_offsets run from %" PRIu64 " to %" PRIu64 ", not 0 to %zu", path,
                       ts->doc_offsets[0], ts->doc_offsets[ts->n_docs], ts->n);
    for (size_t i = 0; i < ts->n_docs; i++) {
        if (ts->doc_offsets[i + 1] < ts->doc_offsets[i])
            return tm_fail("%s: cannot write: doc_offsets decrease at entry %zu", path, i + 1);
        if (!strcmp(kind, "samples") && ts->doc_offsets[i + 1] - ts->doc_offsets[i] != (uint64_t)ts->seqlen)
            return tm_fail("%s: cannot write: sample %zu has %" PRIu64 " ids, not seqlen %d", path, i,
                           ts->doc_offsets[i + 1] - ts->doc_offsets[i], ts->seqlen);
    }
    for (size_t i = 0; i < ts->n; i++)
        if (ts->ids[i] < 0 || ts->ids[i] >= ts->vocab_size)
            return tm_fail("%s: cannot write: id %d at %zu is outside vocab_size %d", path, ts->ids[i], i,
                           ts->vocab_size);
    return 0;
}

/* A 1-D dataset; chunked with shuffle + deflate when it has data (a chunk
 * cannot be larger than a fixed zero-length extent). */
static int write_1d(hid_t file, const char *path, const char *name, hid_t file_type, hid_t mem_type,
                    const void *data, size_t n) {
    hsize_t dims[1] = {n}, chunk[1] = {n < CHUNK_IDS ? n : CHUNK_IDS};
    hid_t space = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), dset = -1;
    int rc = space < 0 || dcpl < 0;
    if (!rc && n > 0) rc = H5Pset_chunk(dcpl, 1, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, 4) < 0;
    if (!rc) rc = (dset = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0;
    if (!rc && n > 0) rc = H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
    if (rc) tm_fail("%s: writing %s: %s", path, name, h5_reason());
    if (dset >= 0 && H5Dclose(dset) < 0 && !rc) rc = tm_fail("%s: writing %s: %s", path, name, h5_reason());
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return rc ? -1 : 0;
}

static int write_contents(hid_t file, const char *path, const TokenSet *ts) {
    int wide = ts->vocab_size > 65536;
    if (write_1d(file, path, "/tokens", wide ? H5T_STD_U32LE : H5T_STD_U16LE, H5T_NATIVE_INT32, ts->ids, ts->n) ||
        write_1d(file, path, "/doc_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, ts->doc_offsets, ts->n_docs + 1))
        return -1;
    uint64_t seed = ts->seed;
    if (h5_write_str_attr(file, path, "format", FORMAT_NAME) || h5_write_i64_attr(file, path, "version", FORMAT_VERSION) ||
        h5_write_str_attr(file, path, "tokenizer_sha256", ts->tokenizer_sha256) ||
        h5_write_str_attr(file, path, "tokenizer", ts->tokenizer) || h5_write_str_attr(file, path, "sources", ts->sources) ||
        h5_write_str_attr(file, path, "kind", ts->kind) || h5_write_str_attr(file, path, "dtype", wide ? "uint32" : "uint16") ||
        h5_write_i64_attr(file, path, "n_tokens", (int64_t)ts->n) ||
        h5_write_i64_attr(file, path, "n_documents", (int64_t)ts->n_docs) ||
        h5_write_i64_attr(file, path, "vocab_size", ts->vocab_size) || h5_write_i64_attr(file, path, "seqlen", ts->seqlen) ||
        h5_write_i64_attr(file, path, "add_special_tokens", ts->add_special_tokens) ||
        h5_write_attr(file, path, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed))
        return -1;
    return 0;
}

int token_set_write(const char *path, const TokenSet *ts) {
    if (check_before_write(path, ts)) return -1;
    char *tmp;
    hid_t file = h5_create_temp(path, &tmp);
    return file < 0 ? -1 : h5_close_rename(file, tmp, path, write_contents(file, path, ts));
}

/* ---- reading ---- */

/* Open 1-D integer dataset name, check its length and element size; *width
 * gets the stored bytes per element. */
static hid_t open_1d(hid_t file, const char *path, const char *name, uint64_t want_n, size_t *width) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        tm_fail("%s: no dataset %s", path, name);
        return -1;
    }
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t space = dset >= 0 ? H5Dget_space(dset) : -1, type = dset >= 0 ? H5Dget_type(dset) : -1;
    int ok = 0;
    hsize_t dims[1] = {0};
    if (space < 0 || type < 0) tm_fail("%s: %s: %s", path, name, h5_reason());
    else if (H5Sget_simple_extent_ndims(space) != 1) tm_fail("%s: %s: not one-dimensional", path, name);
    else if (H5Tget_class(type) != H5T_INTEGER || H5Tget_sign(type) != H5T_SGN_NONE)
        tm_fail("%s: %s: not unsigned integers", path, name);
    else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0 || dims[0] != want_n)
        tm_fail("%s: %s: %llu entries, but the attributes say %" PRIu64, path, name, (unsigned long long)dims[0],
                want_n);
    else {
        *width = H5Tget_size(type);
        ok = 1;
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (!ok && dset >= 0) H5Dclose(dset);
    return ok ? dset : -1;
}

/* malloc, not mallocCheck: a corrupt size must be an error, not an exit. */
static void *alloc_entries(const char *path, const char *name, uint64_t n, size_t size) {
    void *p = NULL;
    if (n <= SIZE_MAX / size / 2) p = malloc(n ? n * size : 1);
    if (!p) tm_fail("%s: %s: %" PRIu64 " entries do not fit in memory", path, name, n);
    return p;
}

static int read_1d(hid_t dset, const char *path, const char *name, hid_t mem_type, void *buf, uint64_t n) {
    int rc = n > 0 && H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0;
    if (rc) tm_fail("%s: %s: cannot read (truncated or corrupt file?): %s", path, name, h5_reason());
    H5Dclose(dset);
    return rc ? -1 : 0;
}

static int read_attributes(hid_t file, const char *path, TokenSet *out, int64_t *n_tokens, int64_t *n_docs,
                           char **dtype) {
    char *format = NULL;
    if (H5Aexists(file, "format") <= 0) return tm_fail("%s: no attribute 'format': not a transmla token set", path);
    if (h5_read_str_attr(file, path, "format", &format)) return -1;
    int bad = strcmp(format, FORMAT_NAME) != 0;
    if (bad) tm_fail("%s: attribute 'format' is '%s', not '" FORMAT_NAME "'", path, format);
    free(format);
    if (bad) return -1;
    int64_t version, v;
    if (h5_read_int_attr(file, path, "version", 0, &version)) return -1;
    if (version != FORMAT_VERSION)
        return tm_fail("%s: token set version %" PRId64 " (this build reads version %d)", path, version,
                       FORMAT_VERSION);
    char *sha = NULL;
    if (h5_read_str_attr(file, path, "tokenizer_sha256", &sha)) return -1;
    bad = strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64;
    if (bad) tm_fail("%s: attribute 'tokenizer_sha256' is '%.80s', not 64 hex digits", path, sha);
    else memcpy(out->tokenizer_sha256, sha, 65);
    free(sha);
    if (bad || h5_read_str_attr(file, path, "tokenizer", &out->tokenizer) || h5_read_str_attr(file, path, "sources", &out->sources) ||
        h5_read_str_attr(file, path, "kind", &out->kind) || h5_read_str_attr(file, path, "dtype", dtype))
        return -1;
    if (strcmp(out->kind, "joined") && strcmp(out->kind, "documents") && strcmp(out->kind, "samples"))
        return tm_fail("%s: attribute 'kind' is '%s' (expected joined, documents or samples)", path, out->kind);
    if (h5_read_int_attr_in(file, path, "n_tokens", 0, INT64_MAX, n_tokens) ||
        h5_read_int_attr_in(file, path, "n_documents", 0, INT64_MAX - 1, n_docs))
        return -1;
    if (h5_read_int_attr_in(file, path, "vocab_size", 1, INT32_MAX, &v)) return -1;
    out->vocab_size = (int)v;
    if (h5_read_int_attr_in(file, path, "seqlen", 0, INT32_MAX, &v)) return -1;
    out->seqlen = (int)v;
    if (h5_read_int_attr_in(file, path, "add_special_tokens", 0, 1, &v)) return -1;
    out->add_special_tokens = (int)v;
    return h5_read_int_attr(file, path, "seed", 1, &out->seed);
}

static int check_offsets(const char *path, const TokenSet *ts) {
    const uint64_t *o = ts->doc_offsets;
    if (o[0] != 0) return tm_fail("%s: /doc_offsets: starts at %" PRIu64 ", not 0", path, o[0]);
    for (size_t i = 0; i < ts->n_docs; i++) {
        if (o[i + 1] < o[i])
            return tm_fail("%s: /doc_offsets: entry %zu (%" PRIu64 ") is below entry %zu (%" PRIu64 ")", path, i + 1,
                           o[i + 1], i, o[i]);
        if (!strcmp(ts->kind, "samples") && o[i + 1] - o[i] != (uint64_t)ts->seqlen)
            return tm_fail("%s: /doc_offsets: sample %zu has %" PRIu64 " ids, not seqlen %d", path, i, o[i + 1] - o[i],
                           ts->seqlen);
    }
    if (o[ts->n_docs] != ts->n)
        return tm_fail("%s: /doc_offsets: ends at %" PRIu64 ", not at n_tokens %zu", path, o[ts->n_docs], ts->n);
    return 0;
}

static int read_contents(hid_t file, const char *path, TokenSet *out) {
    int64_t n_tokens, n_docs;
    char *dtype = NULL;
    int rc = read_attributes(file, path, out, &n_tokens, &n_docs, &dtype);
    size_t want_width = 0;
    if (!rc) {
        if (!strcmp(dtype, "uint16")) want_width = 2;
        else if (!strcmp(dtype, "uint32")) want_width = 4;
        else rc = tm_fail("%s: attribute 'dtype' is '%s' (expected uint16 or uint32)", path, dtype);
    }
    free(dtype);
    if (rc) return -1;
    if (!strcmp(out->kind, "samples") && out->seqlen < 1)
        return tm_fail("%s: attribute 'seqlen' is %d, but a set of samples needs one of at least 1", path, out->seqlen);
    size_t width;
    hid_t dset = open_1d(file, path, "/tokens", (uint64_t)n_tokens, &width);
    if (dset < 0) return -1;
    if (width != want_width) {
        H5Dclose(dset);
        return tm_fail("%s: /tokens: %zu-byte ids, but attribute 'dtype' says %zu-byte", path, width, want_width);
    }
    if (!(out->ids = alloc_entries(path, "/tokens", (uint64_t)n_tokens, sizeof *out->ids))) {
        H5Dclose(dset);
        return -1;
    }
    out->n = (size_t)n_tokens;
    /* ids past INT32_MAX saturate in the conversion and fail the vocab check */
    if (read_1d(dset, path, "/tokens", H5T_NATIVE_INT32, out->ids, (uint64_t)n_tokens)) return -1;
    dset = open_1d(file, path, "/doc_offsets", (uint64_t)n_docs + 1, &width);
    if (dset < 0) return -1;
    if (!(out->doc_offsets = alloc_entries(path, "/doc_offsets", (uint64_t)n_docs + 1, sizeof *out->doc_offsets))) {
        H5Dclose(dset);
        return -1;
    }
    out->n_docs = (size_t)n_docs;
    if (read_1d(dset, path, "/doc_offsets", H5T_NATIVE_UINT64, out->doc_offsets, (uint64_t)n_docs + 1) ||
        check_offsets(path, out))
        return -1;
    for (size_t i = 0; i < out->n; i++)
        if (out->ids[i] < 0 || out->ids[i] >= out->vocab_size)
            return tm_fail("%s: /tokens: id %d at position %zu is not below vocab_size %d", path, out->ids[i], i,
                           out->vocab_size);
    return 0;
}

int token_set_read(const char *path, TokenSet *out) {
    memset(out, 0, sizeof *out);
    hid_t file = h5_open_read(path);
    int rc = file < 0 ? -1 : read_contents(file, path, out);
    if (file >= 0) H5Fclose(file);
    if (rc) token_set_free(out);
    return rc ? -1 : 0;
}

void token_set_free(TokenSet *ts) {
    if (!ts) return;
    free(ts->ids);
    free(ts->doc_offsets);
    free(ts->tokenizer);
    free(ts->sources);
    free(ts->kind);
    memset(ts, 0, sizeof *ts);
}
