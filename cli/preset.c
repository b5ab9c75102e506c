#include "cli/preset.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "io/base/error.h"
#include "io/json_util.h"

const char *preset_flag(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) return argv[i + 1];
        if (!strncmp(argv[i], "--preset=", 9)) return argv[i] + 9;
    }
    return NULL;
}

typedef struct {
    const char *key;
    int *dest;
} IntKey;

/* Every key of obj must be one of keys[]; each must be a positive integer. */
static int read_ints(const char *file, const char *section, const json_t *obj, const IntKey *keys, int n,
                     const char *const *other, int n_other) {
    if (!json_is_object(obj)) return tm_fail("%s: '%s' must be an object", file, section);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        int known = 0;
        for (int i = 0; i < n && !known; i++)
            if (!strcmp(k, keys[i].key)) {
                /* above INT_MAX the int would wrap: 4294967297 must not read as 1 */
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT_MAX)
                    return tm_fail("%s: %s.%s must be a positive integer of at most %d", file, section, k, INT_MAX);
                *keys[i].dest = (int)json_integer_value(v);
                known = 1;
            }
        for (int i = 0; i < n_other && !known; i++) known = !strcmp(k, other[i]);
        if (!known) return tm_fail("%s: unknown key %s.%s", file, section, k);
    }
    return 0;
}

static int copy_string(const char *file, const char *key, const json_t *v, char *out, size_t cap) {
    if (!json_is_string(v)) return tm_fail("%s: %s must be a string", file, key);
    if (snprintf(out, cap, "%s", json_string_value(v)) >= (int)cap) return tm_fail("%s: %s is too long", file, key);
    return 0;
}

int preset_load(const char *path, Preset *p) {
    memset(p, 0, sizeof *p);
    json_t *root = tm_json_load_object(path);
    if (!root) return -1;
    int rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (rc) break;
        if (!strcmp(k, "model")) rc = copy_string(path, k, v, p->model, sizeof p->model);
        else if (!strcmp(k, "source")) rc = json_is_string(v) ? 0 : tm_fail("%s: source must be a string", path);
        else if (!strcmp(k, "config")) {
            char rel[4096];
            rc = copy_string(path, k, v, rel, sizeof rel);
            /* relative to the preset's own folder, so presets work from anywhere */
            const char *slash = strrchr(path, '/');
            int dir = !rc && rel[0] != '/' && slash ? (int)(slash - path) : 0;
            if (!rc && snprintf(p->config, sizeof p->config, "%.*s%s%s", dir, path, dir ? "/" : "", rel) >=
                           (int)sizeof p->config)
                rc = tm_fail("%s: config path too long", path);
        } else if (!strcmp(k, "convert")) {
            IntKey keys[] = {{"qk_mqa_dim", &p->qk_mqa_dim}, {"kv_lora_rank", &p->kv_lora_rank},
                             {"freqfold", &p->freqfold}};
            rc = read_ints(path, k, v, keys, 3, NULL, 0);
        } else if (!strcmp(k, "layout")) {
            IntKey keys[] = {{"nodes", &p->nodes}, {"ranks_per_node", &p->ranks_per_node}, {"stages", &p->stages}};
            static const char *const other[] = {"mem_per_node"};
            rc = read_ints(path, k, v, keys, 3, other, 1);
            json_t *mem = json_object_get(v, "mem_per_node");
            if (!rc && mem) rc = copy_string(path, "layout.mem_per_node", mem, p->mem_per_node, sizeof p->mem_per_node);
        } else {
            rc = tm_fail("%s: unknown key '%s' (expected model, config, convert, layout, source)", path, k);
        }
    }
    json_decref(root);
    return rc;
}
