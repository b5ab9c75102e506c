/* Dataset kinds, the load entry point and the Documents list itself. The
 * per-format readers are in dataset_read.c and dataset_alpaca.c, the
 * sampling in dataset_sample.c. */
#include "io/dataset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/dataset_build.h"

static const char *const kind_names[] = {"wikitext2", "ptb", "c4", "alpaca", "text", "jsonl"};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

int dataset_kind_parse(const char *name, DatasetKind *out) {
    for (size_t i = 0; i < N_KINDS; i++)
        if (name && strcmp(name, kind_names[i]) == 0) {
            *out = (DatasetKind)i;
            return 0;
        }
    return tm_fail("unknown dataset '%s': expected wikitext2, ptb, c4, alpaca, text or jsonl", name ? name : "");
}

const char *dataset_kind_name(DatasetKind k) {
    return (unsigned)k < N_KINDS ? kind_names[k] : "unknown";
}

int split_canonical(const char *split, const char **out) {
    if (split && (!strcmp(split, "train") || !strcmp(split, "test"))) *out = split;
    else if (split && (!strcmp(split, "validation") || !strcmp(split, "valid"))) *out = "validation";
    else return tm_fail("unknown split '%s': expected train, validation or test", split ? split : "");
    return 0;
}

void builder_init(DocBuilder *b, Documents *d) {
    memset(d, 0, sizeof *d);
    b->d = d;
    b->cap = 0;
    b->sources_len = 0;
}

void builder_add_owned(DocBuilder *b, char *text, size_t len) {
    Documents *d = b->d;
    if (d->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 1024;
        char **t = realloc(d->text, b->cap * sizeof *t);
        if (!t) tm_die("out of memory: %zu documents", b->cap);
        d->text = t;
        size_t *l = realloc(d->len, b->cap * sizeof *l);
        if (!l) tm_die("out of memory: %zu documents", b->cap);
        d->len = l;
    }
    d->text[d->n] = text;
    d->len[d->n] = len;
    d->n++;
}

void builder_add(DocBuilder *b, const char *text, size_t len, int add_newline) {
    size_t total = len + (add_newline ? 1 : 0);
    char *copy = mallocCheck(total + 1);
    memcpy(copy, text, len);
    if (add_newline) copy[len] = '\n';
    copy[total] = '\0';
    builder_add_owned(b, copy, total);
}

void builder_add_source(DocBuilder *b, const char *path) {
    size_t add = strlen(path), sep = b->sources_len ? 1 : 0;
    char *s = realloc(b->d->sources, b->sources_len + sep + add + 1);
    if (!s) tm_die("out of memory");
    if (sep) s[b->sources_len] = '\n';
    memcpy(s + b->sources_len + sep, path, add + 1);
    b->d->sources = s;
    b->sources_len += sep + add;
}

int dataset_load(DatasetKind kind, const char *path, const char *split, const char *text_field, Documents *out) {
    DocBuilder b;
    builder_init(&b, out);
    if (!path || !*path) return tm_fail("%s dataset: no path given", dataset_kind_name(kind));
    struct stat st;
    if (stat(path, &st) != 0) return tm_fail("%s: cannot open: %s", path, strerror(errno));
    const char *canon = NULL;
    if (kind != DS_TEXT && kind != DS_JSONL && split_canonical(split, &canon))
        return tm_fail_context("%s", path);
    int rc;
    switch (kind) {
    case DS_WIKITEXT2: rc = read_wikitext2(path, canon, &b); break;
    case DS_PTB: rc = read_ptb(path, canon, &b); break;
    case DS_C4: rc = read_c4(path, canon, &b); break;
    case DS_ALPACA: rc = read_alpaca(path, canon, &b); break;
    case DS_TEXT: rc = read_text(path, &b); break;
    case DS_JSONL: rc = read_jsonl(path, text_field ? text_field : "text", &b); break;
    default: rc = tm_fail("unknown dataset kind %d", (int)kind);
    }
    if (rc == 0 && out->n == 0) {
        if (kind == DS_TEXT || kind == DS_JSONL) rc = tm_fail("%s: no documents in the file", path);
        else rc = tm_fail("%s: no documents in the %s split", path, canon);
    }
    if (rc) documents_free(out);
    return rc;
}

void documents_free(Documents *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free(d->text[i]);
    free(d->text);
    free(d->len);
    free(d->sources);
    memset(d, 0, sizeof *d);
}

char *documents_join(const Documents *d, size_t first, size_t count, size_t *len) {
    if (first > d->n) first = d->n;
    if (count > d->n - first) count = d->n - first;
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += d->len[first + i] + (i ? 2 : 0);
    char *out = mallocCheck(total + 1), *p = out;
    for (size_t i = 0; i < count; i++) {
        if (i) {
            memcpy(p, "\n\n", 2);
            p += 2;
        }
        memcpy(p, d->text[first + i], d->len[first + i]);
        p += d->len[first + i];
    }
    *p = '\0';
    if (len) *len = total;
    return out;
}
