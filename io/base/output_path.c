#define _XOPEN_SOURCE 700 /* realpath */
#include "io/base/output_path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/checked.h"
#include "io/base/error.h"

int output_path_normalize(const char *flag, const char *path, char *out, size_t size) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    if (n == 0) return tm_fail("%s is empty: name the output", flag);
    if (n >= size) return tm_fail("%s %.80s...: path too long", flag, path);
    memcpy(out, path, n);
    out[n] = 0;
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    if (!strcmp(out, "/") || !strcmp(base, ".") || !strcmp(base, ".."))
        return tm_fail("%s '%s' names no output of its own (the output is written beside it and renamed into place); "
                       "name a new folder, e.g. '%s%sout'", flag, path, out, strcmp(out, "/") ? "/" : "");
    return 0;
}

/* dirname and basename of a path without trailing slashes. */
static void split_last(const char *path, char **parent, const char **base) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *parent = mallocCheck(2);
        strcpy(*parent, ".");
        *base = path;
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        *parent = mallocCheck(n + 1);
        memcpy(*parent, path, n);
        (*parent)[n] = 0;
        *base = slash + 1;
    }
}

char *output_path_resolve(const char *path) {
    char *real = realpath(path, NULL);
    if (real) return real;
    char buf[PATH_MAX];
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    if (n == 0 || n >= sizeof buf) {
        tm_fail("%s: cannot resolve the path", path);
        return NULL;
    }
    memcpy(buf, path, n);
    buf[n] = 0;
    char *parent;
    const char *base;
    split_last(buf, &parent, &base);
    if (!strcmp(parent, buf)) { /* "." or "/" that does not resolve */
        free(parent);
        tm_fail("%s: cannot resolve the path: %s", path, strerror(errno));
        return NULL;
    }
    char *up = output_path_resolve(parent);
    free(parent);
    if (!up || !*base || !strcmp(base, ".")) return up;
    if (!strcmp(base, "..")) { /* a component that does not exist yet: ".." is lexical there */
        char *slash = strrchr(up, '/');
        if (slash && slash != up) *slash = 0;
        else if (slash) slash[1] = 0;
        return up;
    }
    size_t len = strlen(up) + strlen(base) + 2;
    char *joined = mallocCheck(len);
    snprintf(joined, len, "%s%s%s", up, strcmp(up, "/") ? "/" : "", base);
    free(up);
    return joined;
}

/* a lies strictly inside folder b. */
static int inside(const char *a, const char *b) {
    size_t n = strlen(b);
    if (!strcmp(b, "/")) return strcmp(a, "/") != 0;
    return strncmp(a, b, n) == 0 && a[n] == '/';
}

/* A folder on another device than its parent, or the root, cannot be
 * renamed or replaced. */
static int is_mount_point(const char *resolved) {
    char *parent;
    const char *base;
    split_last(resolved, &parent, &base);
    struct stat me, up;
    int mount = stat(resolved, &me) == 0 && stat(parent, &up) == 0 &&
                (me.st_dev != up.st_dev || (me.st_ino == up.st_ino && me.st_dev == up.st_dev));
    free(parent);
    return mount;
}

static int check_against_input(const char *flag, const char *path, const char *out, OutputKind kind,
                               const char *input) {
    char *in = realpath(input, NULL);
    if (!in) return 0; /* an input that does not exist is refused where it is read */
    int rc = 0;
    if (!strcmp(out, in))
        rc = tm_fail("%s %s: is the input %s; writing there would destroy it", flag, path, input);
    else if (kind != OUT_FILE && inside(out, in))
        rc = tm_fail("%s %s: lies inside the input %s; name a folder outside it", flag, path, input);
    else if (kind != OUT_FILE && inside(in, out))
        rc = tm_fail("%s %s: contains the input %s; replacing it would destroy the input", flag, path, input);
    free(in);
    return rc;
}

int output_path_check(const char *flag, const char *path, OutputKind kind, const char *const *inputs, int n) {
    char *out = output_path_resolve(path);
    if (!out) return tm_fail_context("%s", flag);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (inputs[i] && *inputs[i]) rc = check_against_input(flag, path, out, kind, inputs[i]);
    struct stat st;
    if (!rc && stat(path, &st) == 0) {
        if (kind == OUT_FILE && !S_ISREG(st.st_mode))
            rc = tm_fail("%s %s: exists and is not a regular file (a folder, device, socket or FIFO); name a file",
                         flag, path);
        else if (kind != OUT_FILE && !S_ISDIR(st.st_mode))
            rc = tm_fail("%s %s: exists and is not a folder (a file, device, socket or FIFO); name a folder", flag,
                         path);
        else if (kind == OUT_FOLDER_RENAMED && is_mount_point(out))
            rc = tm_fail("%s %s: is a mount point, which cannot be replaced (the output is written beside it and "
                         "renamed into place); name a folder inside it", flag, path);
    }
    free(out);
    return rc;
}
