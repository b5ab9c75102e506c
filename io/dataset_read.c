/* Readers for the line-oriented layouts: wikitext-2, PTB, C4, plain text and
 * JSON lines. Each appends documents (and the files it read) to a builder;
 * errors name the file and line. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/line_reader.h"
#include "io/base/path.h"
#include "io/base/str_buf.h"
#include "io/dataset_build.h"
#include "io/utf8.h"

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int check_utf8(const char *file, size_t lineno, const char *line, size_t len) {
    size_t bad;
    if (utf8_validate(line, len, &bad)) return tm_fail("%s:%zu: invalid UTF-8 at byte %zu", file, lineno, bad);
    return 0;
}

/* A document per line as the Hugging Face scripts yield rows. wikitext
 * (strip = 0) keeps each line with its "\n" and drops whitespace-only ones;
 * PTB (strip = 1) keeps each line stripped, dropping empty ones. */
static int read_line_docs(const char *file, int strip, DocBuilder *b) {
    LineReader *r;
    if (line_reader_open(&r, file)) return -1;
    builder_add_source(b, file);
    const char *line;
    size_t len;
    int rc;
    while ((rc = line_reader_next(r, &line, &len)) == 1) {
        if ((rc = check_utf8(file, line_reader_lineno(r), line, len))) break;
        size_t pos = 0, start = 0, seg;
        int ended;
        while (next_universal_line(line, len, &pos, &seg, &ended)) {
            const char *s = line + start;
            start = pos;
            size_t lo, hi;
            py_strip(s, seg, &lo, &hi);
            if (lo == hi) continue;
            if (strip) builder_add(b, s + lo, hi - lo, 0);
            else builder_add(b, s, seg, ended);
        }
    }
    line_reader_close(r);
    return rc < 0 ? -1 : 0;
}

/* The file of split in dir: the first of names[] that exists, else NULL. */
static char *find_split_file(const char *dir, const char *const *names) {
    for (; *names; names++) {
        char *p = path_join(dir, *names);
        if (is_file(p)) return p;
        free(p);
    }
    return NULL;
}

typedef struct {
    const char *split;
    const char *const *names;
} SplitFiles;

/* "DIR: no train split (wiki.train.raw or train.txt); the folder has the
 * validation and test splits": what to ask for instead, whatever the flag. */
static int fail_no_split(const char *dir, const char *split, const SplitFiles *all, const char *expect) {
    char have[64] = "";
    int n = 0;
    for (int i = 0; i < 3; i++) {
        char *p = find_split_file(dir, all[i].names);
        if (!p) continue;
        free(p);
        n++;
        if (have[0]) strcat(have, " and ");
        strcat(have, all[i].split);
    }
    if (!n) return tm_fail("%s: no %s split (%s); the folder holds no split of this dataset", dir, split, expect);
    return tm_fail("%s: no %s split (%s); the folder has the %s split%s", dir, split, expect, have, n > 1 ? "s" : "");
}

static int read_split_folder(const char *dir, const char *split, const SplitFiles *all, int strip, DocBuilder *b) {
    if (!is_dir(dir)) return tm_fail("%s: not a folder (expected the folder holding the split files)", dir);
    for (int i = 0; i < 3; i++) {
        if (strcmp(all[i].split, split)) continue;
        char *file = find_split_file(dir, all[i].names);
        if (!file) {
            char expect[128] = "";
            for (const char *const *n = all[i].names; *n; n++) {
                if (n != all[i].names) strcat(expect, " or ");
                strcat(expect, *n);
            }
            return fail_no_split(dir, split, all, expect);
        }
        int rc = read_line_docs(file, strip, b);
        free(file);
        return rc;
    }
    return tm_fail("%s: unknown split '%s'", dir, split);
}

int read_wikitext2(const char *dir, const char *split, DocBuilder *b) {
    static const char *const train[] = {"wiki.train.raw", "train.txt", NULL};
    static const char *const valid[] = {"wiki.valid.raw", "valid.txt", NULL};
    static const char *const test[] = {"wiki.test.raw", "test.txt", NULL};
    const SplitFiles all[3] = {{"train", train}, {"validation", valid}, {"test", test}};
    return read_split_folder(dir, split, all, 0, b);
}

int read_ptb(const char *dir, const char *split, DocBuilder *b) {
    static const char *const train[] = {"ptb.train.txt", NULL};
    static const char *const valid[] = {"ptb.valid.txt", NULL};
    static const char *const test[] = {"ptb.test.txt", NULL};
    const SplitFiles all[3] = {{"train", train}, {"validation", valid}, {"test", test}};
    return read_split_folder(dir, split, all, 1, b);
}

/* One JSON object per line, the document in field; blank lines skipped,
 * empty texts dropped. */
static int read_json_lines(const char *file, const char *field, DocBuilder *b) {
    LineReader *r;
    if (line_reader_open(&r, file)) return -1;
    builder_add_source(b, file);
    const char *line;
    size_t len;
    int rc;
    while ((rc = line_reader_next(r, &line, &len)) == 1) {
        size_t lineno = line_reader_lineno(r);
        if ((rc = check_utf8(file, lineno, line, len))) break;
        if (py_is_blank(line, len)) continue;
        json_error_t e;
        json_t *obj = json_loadb(line, len, 0, &e);
        if (!obj) {
            rc = tm_fail("%s:%zu: not valid JSON (%s)", file, lineno, e.text);
            break;
        }
        const json_t *v = json_is_object(obj) ? json_object_get(obj, field) : NULL;
        if (!json_is_object(obj)) rc = tm_fail("%s:%zu: not a JSON object", file, lineno);
        else if (!v) rc = tm_fail("%s:%zu: no field '%s'", file, lineno, field);
        else if (!json_is_string(v)) rc = tm_fail("%s:%zu: field '%s' is not a string", file, lineno, field);
        else if (json_string_length(v) > 0) builder_add(b, json_string_value(v), json_string_length(v), 0);
        json_decref(obj);
        if (rc) break;
    }
    line_reader_close(r);
    return rc < 0 ? -1 : 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int json_lines_name(const char *name) {
    return ends_with(name, ".json.gz") || ends_with(name, ".json") || ends_with(name, ".jsonl") ||
           ends_with(name, ".jsonl.gz");
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int read_c4(const char *path, const char *split, DocBuilder *b) {
    if (!is_dir(path)) return read_json_lines(path, "text", b);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "c4-%s.", split);
    DIR *dir = opendir(path);
    if (!dir) return tm_fail("%s: cannot open folder: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(dir))) {
        if (strncmp(ent->d_name, prefix, strlen(prefix)) || !json_lines_name(ent->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown) tm_die("out of memory");
            names = grown;
        }
        names[n] = strdup(ent->d_name);
        if (!names[n++]) tm_die("out of memory");
    }
    closedir(dir);
    int rc = 0;
    if (n == 0)
        rc = tm_fail("%s: no %s split (%s*.json.gz)%s", path, split, prefix,
                     strcmp(split, "test") ? "" : "; C4 has train and validation splits only: evaluate the validation split");
    if (n > 1) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && !rc; i++) {
        char *file = path_join(path, names[i]);
        rc = read_json_lines(file, "text", b);
        free(file);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int read_jsonl(const char *path, const char *field, DocBuilder *b) {
    if (is_dir(path)) return tm_fail("%s: is a folder; the jsonl dataset wants a .jsonl or .jsonl.gz file", path);
    return read_json_lines(path, field, b);
}

/* The gathered lines as one document, without the last line's end. */
static void flush_paragraph(StrBuf *s, DocBuilder *b) {
    while (s->n && (s->p[s->n - 1] == '\n' || s->p[s->n - 1] == '\r')) s->n--;
    if (s->n) builder_add(b, s->p, s->n, 0);
    s->n = 0;
}

int read_text(const char *path, DocBuilder *b) {
    if (is_dir(path)) return tm_fail("%s: is a folder; the text dataset wants a plain text file", path);
    LineReader *r;
    if (line_reader_open(&r, path)) return -1;
    builder_add_source(b, path);
    StrBuf doc = {0};
    const char *line;
    size_t len;
    int rc;
    while ((rc = line_reader_next(r, &line, &len)) == 1) {
        if ((rc = check_utf8(path, line_reader_lineno(r), line, len))) break;
        if (py_is_blank(line, len)) flush_paragraph(&doc, b);
        else sb_add(&doc, line, len);
    }
    if (rc == 0) flush_paragraph(&doc, b);
    free(doc.p);
    line_reader_close(r);
    return rc < 0 ? -1 : 0;
}
