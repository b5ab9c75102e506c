#include "io/safetensors_write.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/base/checked.h"
#include "io/base/error.h"

static uint64_t tensor_bytes(const StWriteTensor *t) {
    uint64_t n = tm_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

static char *header_json(const StWriteTensor *t, int n) {
    json_t *root = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) json_array_append_new(shape, json_integer(t[i].shape[d]));
        uint64_t nb = tensor_bytes(&t[i]);
        json_object_set_new(e, "dtype", json_string(tm_dtype_name(t[i].dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + nb)));
        json_object_set_new(root, t[i].name, e);
        off += nb;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s) tm_die("out of memory serialising a safetensors header");
    return s;
}

static int write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n ? 0 : -1; }

/* Names must be unique and not "__metadata__"; dtypes must be real ones. */
static int check_tensors(const char *path, const StWriteTensor *t, int n) {
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0] || strcmp(t[i].name, "__metadata__") == 0)
            return tm_fail("%s: tensor %d has a reserved or empty name", path, i);
        if (tm_dtype_size(t[i].dtype) == 0) return tm_fail("%s: tensor '%s' has no valid dtype", path, t[i].name);
        if (t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS)
            return tm_fail("%s: tensor '%s' has %d dims", path, t[i].name, t[i].ndim);
        for (int j = 0; j < i; j++)
            if (strcmp(t[i].name, t[j].name) == 0) return tm_fail("%s: tensor name '%s' appears twice", path, t[i].name);
    }
    return 0;
}

/* Flush to disk before the rename makes the file visible under its real name. */
static int close_synced(FILE *fp) {
    int rc = fflush(fp) != 0 || fsync(fileno(fp)) != 0;
    return (fclose(fp) != 0) || rc;
}

int st_write_file(const char *path, const StWriteTensor *t, int n) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (check_tensors(path, t, n)) return -1;
    char *hdr = header_json(t, n);
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;  /* data starts 8-byte aligned */
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(hdr);
        return tm_fail("%s: cannot create: %s", tmp, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int rc = write_all(fp, len8, 8) || write_all(fp, hdr, hlen);
    for (size_t i = hlen; i < padded && !rc; i++) rc = fputc(' ', fp) == EOF;
    for (int i = 0; i < n && !rc; i++) rc = write_all(fp, t[i].data, (size_t)tensor_bytes(&t[i]));
    rc = close_synced(fp) || rc;
    free(hdr);
    if (rc || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return tm_fail("%s: write failed: %s", path, strerror(e));
    }
    return 0;
}

void st_shard_name(char *buf, size_t size, int shard, int n_shards) {
    if (n_shards == 1) snprintf(buf, size, "model.safetensors");
    else snprintf(buf, size, "model-%05d-of-%05d.safetensors", shard + 1, n_shards);
}

int st_write_index(const char *dir, const char *const *names, const int *shard_of, int n, int n_shards,
                   uint64_t total) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (n_shards == 1) { /* a single file needs no index; an older one must not survive */
        remove(path);
        return 0;
    }
    json_t *root = json_object(), *wm = json_object();
    json_object_set_new(root, "metadata", json_pack("{sI}", "total_size", (json_int_t)total));
    for (int i = 0; i < n; i++) {
        char fn[64];
        st_shard_name(fn, sizeof fn, shard_of[i], n_shards);
        json_object_set_new(wm, names[i], json_string(fn));
    }
    json_object_set_new(root, "weight_map", wm);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) tm_die("out of memory serialising %s", path);
    FILE *fp = fopen(tmp, "wb");
    int rc = !fp || write_all(fp, text, strlen(text));
    if (fp) rc = close_synced(fp) || rc;
    free(text);
    if (rc || rename(tmp, path) != 0) {
        remove(tmp);
        return tm_fail("%s: write failed", path);
    }
    return 0;
}

int st_shard_plan(const StWriteTensor *t, int n, uint64_t max_shard_bytes, int *shard_of, uint64_t *total) {
    int n_shards = 1;
    uint64_t in_shard = 0;
    *total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nb = tensor_bytes(&t[i]);
        if (max_shard_bytes && in_shard > 0 && in_shard + nb > max_shard_bytes) {
            n_shards++;
            in_shard = 0;
        }
        shard_of[i] = n_shards - 1;
        in_shard += nb;
        *total += nb;
    }
    return n_shards;
}

int st_write_shards(const char *dir, const StWriteTensor *t, int n, const int *shard_of, int first_shard,
                    int n_shards) {
    int rc = check_tensors(dir, t, n);
    /* Readers prefer the index over model.safetensors (transformers the other
     * way round), so the entry point of an older write must not survive. */
    char path[4096], fn[64];
    snprintf(path, sizeof path, "%s/%s", dir, n_shards == 1 ? "model.safetensors.index.json" : "model.safetensors");
    if (!rc) remove(path);
    for (int first = 0; first < n && !rc;) {
        int last = first;
        while (last < n && shard_of[last] == shard_of[first]) last++;
        st_shard_name(fn, sizeof fn, first_shard + shard_of[first], n_shards);
        snprintf(path, sizeof path, "%s/%s", dir, fn);
        rc = st_write_file(path, t + first, last - first);
        first = last;
    }
    return rc;
}

int st_write_model(const char *dir, const StWriteTensor *t, int n, uint64_t max_shard_bytes) {
    int *shard_of = mallocCheck((size_t)(n ? n : 1) * sizeof *shard_of);
    const char **names = mallocCheck((size_t)(n ? n : 1) * sizeof *names);
    uint64_t total;
    int n_shards = st_shard_plan(t, n, max_shard_bytes, shard_of, &total);
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    int rc = st_write_shards(dir, t, n, shard_of, 0, n_shards);
    if (!rc) rc = st_write_index(dir, names, shard_of, n, n_shards, total);
    free(shard_of);
    free(names);
    return rc;
}
