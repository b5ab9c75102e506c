#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/checked.h"
#include "io/base/error.h"

int64_t st_numel(const StTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t pos = 0;
    pos += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (pos < len) snprintf(buf + pos, len - pos, "]");
    return buf;
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON integer that is a non-negative int64. */
static int json_nonneg_int(const json_t *v, int64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    *out = (int64_t)x;
    return 0;
}

static int parse_shape(const char *name, const json_t *shape, StTensor *t) {
    if (!json_is_array(shape)) return tm_fail("tensor '%s': field 'shape' is not an array", name);
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS)
        return tm_fail("tensor '%s': field 'shape' has %zu dims (at most %d supported)", name, nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++)
        if (json_nonneg_int(json_array_get(shape, i), &t->shape[i]))
            return tm_fail("tensor '%s': field 'shape' entry %zu is not a non-negative integer", name, i);
    return 0;
}

/* Bytes the shape needs, or -1 when the product of its non-zero dims
 * overflows (whatever their order, so later code may multiply any subset). */
static int64_t shape_bytes(const StTensor *t) {
    uint64_t n = tm_dtype_size(t->dtype);
    int zero = 0;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (!d) {
            zero = 1;
            continue;
        }
        if (n > (uint64_t)INT64_MAX / d) return -1;
        n *= d;
    }
    return zero ? 0 : (int64_t)n;
}

static int parse_entry(const char *name, const json_t *v, uint64_t data_size, StTensor *t) {
    char sbuf[160];
    if (!json_is_object(v)) return tm_fail("tensor '%s': entry is not a JSON object", name);
    const json_t *dt = json_object_get(v, "dtype");
    const json_t *shape = json_object_get(v, "shape");
    const json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return tm_fail("tensor '%s': field 'dtype' missing or not a string", name);
    t->dtype = tm_dtype_parse(json_string_value(dt));
    if (t->dtype == TM_DTYPE_INVALID)
        return tm_fail("tensor '%s': unknown dtype '%s'", name, json_string_value(dt));
    if (!shape) return tm_fail("tensor '%s': field 'shape' missing", name);
    if (parse_shape(name, shape, t)) return -1;
    int64_t b, e;
    if (!json_is_array(offs) || json_array_size(offs) != 2 || json_nonneg_int(json_array_get(offs, 0), &b) ||
        json_nonneg_int(json_array_get(offs, 1), &e))
        return tm_fail("tensor '%s': field 'data_offsets' is not a pair of non-negative integers", name);
    if (b > e) return tm_fail("tensor '%s': data_offsets [%lld, %lld] end before they begin", name, (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return tm_fail("tensor '%s': data_offsets [%lld, %lld] run past the data section (%llu bytes; file truncated?)",
                       name, (long long)b, (long long)e, (unsigned long long)data_size);
    int64_t need = shape_bytes(t);
    if (need < 0) return tm_fail("tensor '%s': shape %s overflows", name, st_shape_str(t->ndim, t->shape, sbuf, sizeof sbuf));
    if (need != e - b)
        return tm_fail("tensor '%s': shape %s of %s needs %lld bytes but data_offsets [%lld, %lld] hold %lld", name,
                       st_shape_str(t->ndim, t->shape, sbuf, sizeof sbuf), tm_dtype_name(t->dtype), (long long)need,
                       (long long)b, (long long)e, (long long)(e - b));
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    return 0;
}

static int by_begin(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

/* The data section must be covered exactly: no overlap, no gap, nothing after. */
static int check_layout(StTensor *t, int n, uint64_t data_size) {
    qsort(t, (size_t)n, sizeof *t, by_begin);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
        if (t[i].begin < pos)
            return tm_fail("tensors '%s' and '%s' overlap (byte %llu)", prev, t[i].name, (unsigned long long)t[i].begin);
        if (t[i].begin > pos)
            return tm_fail("tensor '%s' starts at byte %llu, leaving a gap after byte %llu", t[i].name,
                           (unsigned long long)t[i].begin, (unsigned long long)pos);
        pos = t[i].end;
        prev = t[i].name;
    }
    if (pos != data_size)
        return tm_fail("data section is %llu bytes but the tensors cover %llu", (unsigned long long)data_size,
                       (unsigned long long)pos);
    return 0;
}

static int check_metadata(const json_t *meta) {
    if (!json_is_object(meta)) return tm_fail("field '__metadata__' is not an object");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)meta, k, v)
        if (!json_is_string(v)) return tm_fail("field '__metadata__.%s' is not a string", k);
    return 0;
}

void st_free_tensors(StTensor *tensors, int n) {
    if (!tensors) return;
    for (int i = 0; i < n; i++) free(tensors[i].name);
    free(tensors);
}

int st_parse_image(const uint8_t *image, size_t size, StTensor **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (size < 8) return tm_fail("file is %zu bytes, too short to hold the 8-byte header length (truncated?)", size);
    uint64_t hlen = read_le64(image);
    if (hlen < 2 || hlen > ST_MAX_HEADER_BYTES)
        return tm_fail("header length %llu is not sane (must be 2..%u bytes)", (unsigned long long)hlen, ST_MAX_HEADER_BYTES);
    if (hlen > size - 8)
        return tm_fail("header length %llu runs past the end of the file (%zu bytes; truncated?)",
                       (unsigned long long)hlen, size);
    uint64_t data_size = size - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)image + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return tm_fail("header is not valid JSON (%s at byte %d)", jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return tm_fail("header is not a JSON object");
    }
    size_t cap = json_object_size(root);
    StTensor *t = callocCheck(cap, sizeof *t);
    int n = 0, rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = check_metadata(val))) break;
            continue;
        }
        if ((rc = parse_entry(key, val, data_size, &t[n]))) break;
        t[n].name = strdup(key);
        if (!t[n].name) tm_die("out of memory");
        t[n].data = image + 8 + hlen + t[n].begin;
        n++;
    }
    json_decref(root);
    if (!rc) rc = check_layout(t, n, data_size);
    if (rc) {
        st_free_tensors(t, n);
        return -1;
    }
    qsort(t, (size_t)n, sizeof *t, by_name);
    *out = t;
    *n_out = n;
    return 0;
}

int st_open(StFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return tm_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return tm_fail("%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return tm_fail("%s: mmap failed: %s", path, strerror(errno));
        }
    }
    close(fd);
    if (st_parse_image(map ? map : (const void *)"", size, &f->tensors, &f->n_tensors)) {
        if (map) munmap(map, size);
        return tm_fail_context("%s", path);
    }
    f->path = strdup(path);
    if (!f->path) tm_die("out of memory");
    f->map = map;
    f->map_size = size;
    for (int i = 0; i < f->n_tensors; i++) f->tensors[i].file = f->path;
    return 0;
}

void st_close(StFile *f) {
    st_free_tensors(f->tensors, f->n_tensors);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    StTensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof key, by_name);
}
