/* Alpaca: a JSON list of {instruction, input, output[, text]} records. The
 * published data has no splits, so train/test/validation are 80/10/10 of a
 * seeded shuffle (seed 42, splitmix64: tests/ref can redo it). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/rng.h"
#include "io/dataset_build.h"
#include "io/utf8.h"

#define ALPACA_SPLIT_SEED 42

static const char prompt_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n"
    "### Response:\n%s";
static const char prompt_no_input[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Response:\n%s";

/* The whole file, NUL-terminated; errors name it. */
static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        tm_fail("%s: cannot open", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = mallocCheck(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (!grown) tm_die("out of memory reading %s", path);
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, fp);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        tm_fail("%s: read error", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int string_field(const char *file, size_t i, const json_t *rec, const char *key, int required,
                        const char **out) {
    const json_t *v = json_object_get(rec, key);
    *out = "";
    if (!v || json_is_null(v)) {
        if (required) return tm_fail("%s: record %zu: no field '%s'", file, i, key);
        return 0;
    }
    if (!json_is_string(v)) return tm_fail("%s: record %zu: field '%s' is not a string", file, i, key);
    *out = json_string_value(v);
    return 0;
}

/* The record's "text" when it has one, else the Alpaca prompt rendered. */
static int render(const char *file, size_t i, const json_t *rec, char **text, size_t *len) {
    if (!json_is_object(rec)) return tm_fail("%s: record %zu is not a JSON object", file, i);
    const json_t *t = json_object_get(rec, "text");
    const char *ins, *inp, *outp;
    if (string_field(file, i, rec, "instruction", !json_is_string(t), &ins) ||
        string_field(file, i, rec, "input", 0, &inp) || string_field(file, i, rec, "output", !json_is_string(t), &outp))
        return -1;
    if (json_is_string(t)) {
        *len = json_string_length(t);
        *text = mallocCheck(*len + 1);
        memcpy(*text, json_string_value(t), *len + 1);
        return 0;
    }
    int n = *inp ? snprintf(NULL, 0, prompt_input, ins, inp, outp) : snprintf(NULL, 0, prompt_no_input, ins, outp);
    *text = mallocCheck((size_t)n + 1);
    if (*inp) snprintf(*text, (size_t)n + 1, prompt_input, ins, inp, outp);
    else snprintf(*text, (size_t)n + 1, prompt_no_input, ins, outp);
    *len = (size_t)n;
    return 0;
}

/* Record indices in split order: Fisher-Yates with splitmix64. */
static size_t *shuffled(size_t n) {
    size_t *idx = mallocCheck((n ? n : 1) * sizeof *idx);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    TmRng rng;
    rng_seed(&rng, ALPACA_SPLIT_SEED);
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)(rng_next(&rng) % (uint64_t)(i + 1));
        size_t tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
    }
    return idx;
}

static int read_alpaca_file(const char *file, const char *split, DocBuilder *b) {
    size_t len;
    char *raw = slurp(file, &len);
    if (!raw) return -1;
    builder_add_source(b, file);
    size_t bad;
    if (utf8_validate(raw, len, &bad)) {
        free(raw);
        return tm_fail("%s: invalid UTF-8 at byte %zu", file, bad);
    }
    json_error_t e;
    json_t *root = json_loadb(raw, len, 0, &e);
    free(raw);
    if (!root) return tm_fail("%s: not valid JSON (%s, line %d)", file, e.text, e.line);
    if (!json_is_array(root)) {
        json_decref(root);
        return tm_fail("%s: top level is not a JSON list of records", file);
    }
    size_t n = json_array_size(root);
    char **texts = callocCheck(n ? n : 1, sizeof *texts);
    size_t *lens = callocCheck(n ? n : 1, sizeof *lens);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = render(file, i, json_array_get(root, i), &texts[i], &lens[i]);
    json_decref(root);
    if (!rc) {
        size_t n_train = n * 8 / 10, n_test = n / 10;
        size_t first = 0, count = n_train;
        if (!strcmp(split, "test")) first = n_train, count = n_test;
        else if (!strcmp(split, "validation")) first = n_train + n_test, count = n - n_train - n_test;
        size_t *idx = shuffled(n);
        for (size_t k = first; k < first + count; k++) {
            size_t i = idx[k];
            if (lens[i] == 0) continue;
            builder_add_owned(b, texts[i], lens[i]);
            texts[i] = NULL;
        }
        free(idx);
    }
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(lens);
    return rc;
}

int read_alpaca(const char *path, const char *split, DocBuilder *b) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path) + sizeof "/alpaca_data.json";
        char *file = mallocCheck(n);
        snprintf(file, n, "%s/alpaca_data.json", path);
        int rc = stat(file, &st) == 0 ? read_alpaca_file(file, split, b)
                                      : tm_fail("%s: no alpaca_data.json in the folder", path);
        free(file);
        return rc;
    }
    return read_alpaca_file(path, split, b);
}
