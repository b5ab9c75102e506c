/* Typed field access on jansson objects; errors name the file and the field. */
#ifndef TM_IO_JSON_UTIL_H
#define TM_IO_JSON_UTIL_H

#include <jansson.h>

/* Load a JSON object from a file; error names the file. Caller json_decref()s. */
json_t *tm_json_load_object(const char *path);

/* Each returns 0, or -1 with "FILE: field 'KEY' ..." recorded. A missing (or
 * null) field takes the default for the *_or variants. */
int tm_json_int(const char *file, const json_t *obj, const char *key, long long *out);
int tm_json_int_or(const char *file, const json_t *obj, const char *key, long long dflt, long long *out);
int tm_json_num_or(const char *file, const json_t *obj, const char *key, double dflt, double *out);
int tm_json_bool_or(const char *file, const json_t *obj, const char *key, int dflt, int *out);
/* Borrowed string, or NULL (with *out = dflt) when missing. */
int tm_json_str_or(const char *file, const json_t *obj, const char *key, const char *dflt, const char **out);

#endif
