#include "io/safetensors_set.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/checked.h"
#include "io/base/error.h"

static int by_name_ptr(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int keeps(int (*keep)(const char *, void *), void *ctx, const char *name) { return !keep || keep(name, ctx); }

/* Unique names of the shard files holding at least one kept tensor, in the
 * index's order; every weight_map entry is validated, kept or not. */
static int index_shards(const char *index_path, json_t *wm, int (*keep)(const char *, void *), void *ctx,
                        char ***names, int *n_names) {
    size_t cap = json_object_size(wm);
    char **out = callocCheck(cap + 1, sizeof *out);
    int n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v)) {
            free(out);
            return tm_fail("%s: field 'weight_map.%s' is not a string", index_path, key);
        }
        const char *fn = json_string_value(v);
        if (!fn[0] || strchr(fn, '/') || strcmp(fn, "..") == 0) {
            free(out);
            return tm_fail("%s: field 'weight_map.%s' names '%s', not a file in the model folder", index_path, key, fn);
        }
        if (!keeps(keep, ctx, key)) continue;
        int seen = 0;
        for (int i = 0; i < n && !seen; i++) seen = strcmp(out[i], fn) == 0;
        if (!seen) out[n++] = (char *)fn;
    }
    *names = out;
    *n_names = n;
    return 0;
}

static int open_files(StSet *s, char **names, int n) {
    s->files = callocCheck((size_t)n, sizeof *s->files);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", s->dir, names[i]);
        if (st_open(&s->files[i], path)) return -1;
        s->n_files = i + 1;
    }
    return 0;
}

/* Every name the index lists must be in the shard it names (checked for the
 * shards that were opened); the lookup table holds the kept indexed tensors. */
static int bind_index(StSet *s, const char *index_path, json_t *wm, int (*keep)(const char *, void *), void *ctx) {
    s->sorted = callocCheck(json_object_size(wm) + 1, sizeof *s->sorted);
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *fn = json_string_value(v);
        const StTensor *t = NULL;
        int opened = 0;
        for (int i = 0; i < s->n_files && !opened; i++) {
            const char *base = strrchr(s->files[i].path, '/') + 1;
            if (strcmp(base, fn) == 0) {
                opened = 1;
                t = st_find(&s->files[i], key);
                if (!t)
                    return tm_fail("%s: weight_map puts tensor '%s' in %s, but that file has no such tensor", index_path,
                                   key, s->files[i].path);
            }
        }
        if (opened && keeps(keep, ctx, key)) s->sorted[s->n++] = t;
    }
    return 0;
}

int st_set_open(StSet *s, const char *dir) { return st_set_open_filtered(s, dir, NULL, NULL); }

int st_set_open_filtered(StSet *s, const char *dir, int (*keep)(const char *name, void *ctx), void *ctx) {
    memset(s, 0, sizeof *s);
    s->dir = strdup(dir);
    if (!s->dir) tm_die("out of memory");
    char index_path[4096];
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    if (!file_exists(index_path)) {
        char *single = "model.safetensors";
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, single);
        if (!file_exists(path)) {
            st_set_close(s);
            return tm_fail("%s: no model.safetensors or model.safetensors.index.json", dir);
        }
        if (open_files(s, &single, 1)) {
            st_set_close(s);
            return -1;
        }
        /* the file's tensors are sorted by name already */
        s->sorted = callocCheck((size_t)s->files[0].n_tensors + 1, sizeof *s->sorted);
        for (int i = 0; i < s->files[0].n_tensors; i++)
            if (keeps(keep, ctx, s->files[0].tensors[i].name)) s->sorted[s->n++] = &s->files[0].tensors[i];
        return 0;
    }
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st_set_close(s);
        return tm_fail("%s: not valid JSON (%s, line %d)", index_path, jerr.text, jerr.line);
    }
    json_t *wm = json_object_get(root, "weight_map");
    char **names = NULL;
    int n_names = 0, rc;
    if (!json_is_object(wm))
        rc = tm_fail("%s: field 'weight_map' missing or not an object", index_path);
    else
        rc = index_shards(index_path, wm, keep, ctx, &names, &n_names);
    if (!rc) rc = open_files(s, names, n_names);
    if (!rc) rc = bind_index(s, index_path, wm, keep, ctx);
    free(names);
    json_decref(root);
    if (rc) {
        st_set_close(s);
        return -1;
    }
    qsort(s->sorted, (size_t)s->n, sizeof *s->sorted, by_name_ptr);
    return 0;
}

void st_set_close(StSet *s) {
    for (int i = 0; i < s->n_files; i++) st_close(&s->files[i]);
    free(s->files);
    free(s->sorted);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

int st_set_index(const StSet *s, const char *name) {
    StTensor key = {.name = (char *)name};
    const StTensor *kp = &key;
    const StTensor **hit = bsearch(&kp, s->sorted, (size_t)s->n, sizeof *s->sorted, by_name_ptr);
    return hit ? (int)(hit - s->sorted) : -1;
}

const StTensor *st_set_find(const StSet *s, const char *name) {
    int i = st_set_index(s, name);
    return i < 0 ? NULL : s->sorted[i];
}

void st_set_from_tensors(StSet *s, const StTensor *tensors, int n) {
    memset(s, 0, sizeof *s);
    s->dir = strdup("(memory)");
    if (!s->dir) tm_die("out of memory");
    s->sorted = callocCheck((size_t)n + 1, sizeof *s->sorted);
    for (int i = 0; i < n; i++) s->sorted[s->n++] = &tensors[i];
    qsort(s->sorted, (size_t)s->n, sizeof *s->sorted, by_name_ptr);
}

uint64_t st_set_bytes(const StSet *s) {
    uint64_t b = 0;
    for (int i = 0; i < s->n; i++) b += s->sorted[i]->end - s->sorted[i]->begin;
    return b;
}
