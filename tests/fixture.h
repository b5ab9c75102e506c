/* Test data in one place: the golden fixtures tests/ref/make_fixtures.py
 * writes under TM_FIXTURES_DIR (a folder per model with config.json, its
 * safetensors, meta.json, tokens.u32 and logits.f64; fixtures.json lists the
 * names) and the data in ../shared beside the checkout. Every function here
 * fails the running cmocka test with a message naming the missing path: a
 * test whose data is absent fails, it never passes having checked nothing.
 * And rel_error, the one error measure the numeric comparisons print. */
#ifndef TM_TESTS_FIXTURE_H
#define TM_TESTS_FIXTURE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

#define TM_SHARED_DIR TM_SOURCE_DIR "/../shared"

/* meta.json: the reference dumps hold `batch` sequences of `seqlen` tokens
 * over a vocabulary of `vocab`. */
typedef struct {
    int batch, seqlen, vocab;
} FixtureMeta;

/* The JSON array of fixture names, each a string, every fixture the tests
 * rely on among them; json_decref() it. */
json_t *fixture_list(void);

/* buf = TM_FIXTURES_DIR/name/file, or the fixture's folder when file is NULL. */
const char *fixture_path(char *buf, size_t len, const char *name, const char *file);

FixtureMeta fixture_meta(const char *name);

/* The MLA fixtures: deepseek_v3 ones named dsv3_*, gemma2_mla ones named gemma2_mla*. */
int fixture_is_mla(const char *name);

/* model_load, failing the test with the folder and the reason. */
void model_load_or_fail(Model *m, const char *dir);
void fixture_model(Model *m, const char *name);

/* tokens.u32: meta->batch * meta->seqlen ids, each below meta->vocab. free() them. */
int32_t *fixture_tokens(const char *name, const FixtureMeta *meta);

/* Exactly n little-endian elements of elem_size bytes: the file holding more
 * or fewer fails the test. free() the result. */
void *read_reference(const char *path, size_t elem_size, size_t n);
double *fixture_f64(const char *name, const char *file, size_t n);

/* The whole file, NUL-terminated (*len excludes the NUL); fails naming the
 * path and, when made_by is not NULL, what writes it. free() it. */
char *read_file_or_fail(const char *path, size_t *len, const char *made_by);

/* max |a - ref| over max |ref| (1 when ref is all zeros): an error relative
 * to the array's scale; NaN in a counts as the largest error. */
double rel_error(const float *a, const float *ref, size_t n);

/* Fails unless path (something under ../shared) exists. */
void require_shared(const char *path);

#endif
