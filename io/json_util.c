#include "io/json_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "io/base/error.h"

json_t *tm_json_load_object(const char *path) {
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        tm_fail("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    fclose(probe);
    json_error_t e;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        tm_fail("%s: not valid JSON (%s, line %d)", path, e.text, e.line);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        tm_fail("%s: top level is not a JSON object", path);
        return NULL;
    }
    return root;
}

static const json_t *present(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

int tm_json_int_or(const char *file, const json_t *obj, const char *key, long long dflt, long long *out) {
    const json_t *v = present(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_real(v)) return tm_fail("%s: field '%s' is not an integer", file, key);
    /* configs sometimes write 8.0 for 8; a real beyond long long (3e84) has
     * no integer value, and casting it would be undefined behaviour */
    double r = json_real_value(v);
    if (!(r >= -0x1p63 && r < 0x1p63)) return tm_fail("%s: field '%s' is %g: out of range", file, key, r);
    if (r != (double)(long long)r) return tm_fail("%s: field '%s' is not an integer", file, key);
    *out = (long long)r;
    return 0;
}

int tm_json_int(const char *file, const json_t *obj, const char *key, long long *out) {
    if (!present(obj, key)) return tm_fail("%s: required field '%s' is missing", file, key);
    return tm_json_int_or(file, obj, key, 0, out);
}

int tm_json_num_or(const char *file, const json_t *obj, const char *key, double dflt, double *out) {
    const json_t *v = present(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) return tm_fail("%s: field '%s' is not a number", file, key);
    *out = json_number_value(v);
    return 0;
}

int tm_json_bool_or(const char *file, const json_t *obj, const char *key, int dflt, int *out) {
    const json_t *v = present(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) return tm_fail("%s: field '%s' is not true/false", file, key);
    *out = json_is_true(v);
    return 0;
}

int tm_json_str_or(const char *file, const json_t *obj, const char *key, const char *dflt, const char **out) {
    const json_t *v = present(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_string(v)) return tm_fail("%s: field '%s' is not a string", file, key);
    *out = json_string_value(v);
    return 0;
}
