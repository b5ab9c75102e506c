/* Test data in one place (fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/error.h"
#include "io/base/whole_file.h"
#include "io/token_file.h"
#include "tests/fixture.h"

#define MADE_BY_FIXTURES "run the make_fixtures test first"

/* A stale fixtures.json must not quietly drop a model from every test. */
static const char *const REQUIRED[] = {"llama_mha_tied",     "llama_gqa2_bf16",    "llama3_gqa4_f16",
                                       "qwen2_bias",         "mistral_window",     "mixtral_moe_bf16",
                                       "dsv3_noqlora_dense", "dsv3_qlora_bias_llama3_f16",
                                       "dsv3_moe_softmax",   "dsv3_tied_bf16",     "qwen3",
                                       "qwen3_bf16",         "qwen3_moe",          "qwen3_moe_norm",
                                       "phi3",               "phi3_bf16",          "gemma2",
                                       "gemma2_bf16",        "gemma2_mla",         "gemma2_mla_qlora"};

static int lists(const json_t *list, const char *name) {
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (strcmp(json_string_value(v), name) == 0) return 1;
    return 0;
}

/* The build's fixtures, or TM_FIXTURES_DIR from the environment: a test
 * program carried to another machine (scripts/gpu-bundle.sh). */
static const char *fixtures_dir(void) {
    const char *d = getenv("TM_FIXTURES_DIR");
    return d && *d ? d : TM_FIXTURES_DIR;
}

json_t *fixture_list(void) {
    char path[1100];
    snprintf(path, sizeof path, "%s/fixtures.json", fixtures_dir());
    json_error_t je;
    json_t *list = json_load_file(path, 0, &je);
    if (!list) fail_msg("%s: %s (" MADE_BY_FIXTURES ")", path, je.text);
    if (!json_is_array(list)) fail_msg("%s: not a JSON array", path);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (!json_is_string(v)) fail_msg("%s: entry %zu is not a name", path, i);
    for (size_t r = 0; r < sizeof REQUIRED / sizeof *REQUIRED; r++)
        if (!lists(list, REQUIRED[r])) fail_msg("%s does not list fixture %s (rerun make_fixtures)", path, REQUIRED[r]);
    return list;
}

const char *fixture_path(char *buf, size_t len, const char *name, const char *file) {
    int n = file ? snprintf(buf, len, "%s/%s/%s", fixtures_dir(), name, file)
                 : snprintf(buf, len, "%s/%s", fixtures_dir(), name);
    if (n < 0 || (size_t)n >= len) fail_msg("fixture path for %s too long", name);
    return buf;
}

static int meta_int(const json_t *meta, const char *key, const char *path) {
    const json_t *v = json_object_get(meta, key);
    if (!json_is_integer(v)) fail_msg("%s: field '%s' missing or not an integer", path, key);
    return (int)json_integer_value(v);
}

FixtureMeta fixture_meta(const char *name) {
    char path[1100];
    fixture_path(path, sizeof path, name, "meta.json");
    json_error_t je;
    json_t *meta = json_load_file(path, 0, &je);
    if (!meta) fail_msg("%s: %s (" MADE_BY_FIXTURES ")", path, je.text);
    FixtureMeta m = {meta_int(meta, "batch", path), meta_int(meta, "seqlen", path), meta_int(meta, "vocab", path)};
    json_decref(meta);
    /* a degenerate shape would make every comparison vacuous */
    if (m.batch < 1 || m.seqlen < 2 || m.vocab < 2)
        fail_msg("%s: batch %d, seqlen %d, vocab %d", path, m.batch, m.seqlen, m.vocab);
    return m;
}

int fixture_is_mla(const char *name) { return strncmp(name, "dsv3_", 5) == 0 || strncmp(name, "gemma2_mla", 10) == 0; }

void model_load_or_fail(Model *m, const char *dir) {
    if (model_load(m, dir)) fail_msg("%s: %s", dir, tm_error());
}

void fixture_model(Model *m, const char *name) {
    char dir[1024];
    model_load_or_fail(m, fixture_path(dir, sizeof dir, name, NULL));
}

int32_t *fixture_tokens(const char *name, const FixtureMeta *meta) {
    char path[1100];
    fixture_path(path, sizeof path, name, "tokens.u32");
    int32_t *ids;
    size_t n;
    if (token_file_read(path, TM_TOKENS_U32, meta->vocab, &ids, &n)) fail_msg("%s: %s", path, tm_error());
    size_t want = (size_t)meta->batch * (size_t)meta->seqlen;
    if (n != want) fail_msg("%s: %zu ids, meta.json says %zu", path, n, want);
    return ids;
}

char *read_file_or_fail(const char *path, size_t *len, const char *made_by) {
    char *data;
    if (read_whole_file(path, &data, len) == 0) return data;
    if (made_by) fail_msg("%s (%s)", tm_error(), made_by);
    fail_msg("%s", tm_error());
    return NULL;
}

void *read_reference(const char *path, size_t elem_size, size_t n) {
    size_t len;
    char *data = read_file_or_fail(path, &len, NULL);
    if (len != elem_size * n)
        fail_msg("%s: %zu bytes, expected %zu elements of %zu bytes", path, len, n, elem_size);
    return data;
}

double *fixture_f64(const char *name, const char *file, size_t n) {
    char path[1100];
    return read_reference(fixture_path(path, sizeof path, name, file), sizeof(double), n);
}

void require_shared(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) fail_msg("%s not found: ../shared must sit beside the checkout", path);
}

double rel_error(const float *a, const float *ref, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - ref[i]), r = fabs((double)ref[i]);
        d = e > d || isnan(e) ? e : d;
        m = r > m ? r : m;
    }
    return d / (m > 0 ? m : 1);
}
