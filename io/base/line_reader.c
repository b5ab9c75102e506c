#include "io/base/line_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/base/checked.h"
#include "io/base/error.h"

struct LineReader {
    gzFile gz;
    char *path;
    char *buf;          /* bytes read but not yet returned: buf[start, end) */
    size_t start, end, cap;
    size_t lineno;
    int eof;
};

int line_reader_open(LineReader **out, const char *path) {
    *out = NULL;
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return tm_fail("%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, 1 << 18);
    LineReader *r = callocCheck(1, sizeof *r);
    r->gz = gz;
    r->path = strdup(path);
    if (!r->path) tm_die("out of memory");
    r->cap = 1 << 16;
    r->buf = mallocCheck(r->cap);
    *out = r;
    return 0;
}

/* zlib's message, without the "PATH: " it puts in front. */
static int fail_read(const LineReader *r) {
    int code;
    const char *msg = gzerror(r->gz, &code);
    if (code == Z_ERRNO) return tm_fail("%s: read error near line %zu: %s", r->path, r->lineno + 1, strerror(errno));
    size_t n = strlen(r->path);
    if (!strncmp(msg, r->path, n) && !strncmp(msg + n, ": ", 2)) msg += n + 2;
    return tm_fail("%s: corrupt or truncated gzip data near line %zu: %s", r->path, r->lineno + 1, msg);
}

/* Append more bytes after buf[end]; moves the pending line to the front and
 * grows the buffer when the line is longer than it. 0 at end of file. */
static int fill(LineReader *r) {
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        r->cap *= 2;
        char *grown = realloc(r->buf, r->cap);
        if (!grown) tm_die("out of memory reading %s", r->path);
        r->buf = grown;
    }
    size_t want = r->cap - r->end;
    if (want > (1u << 30)) want = 1u << 30; /* gzread takes an unsigned */
    int got = gzread(r->gz, r->buf + r->end, (unsigned)want);
    if (got < 0) return fail_read(r);
    if (got == 0) {
        /* zlib reports a truncated stream only through gzerror at the end */
        int code;
        gzerror(r->gz, &code);
        if (code != Z_OK && code != Z_STREAM_END) return fail_read(r);
        r->eof = 1;
        return 0;
    }
    r->end += (size_t)got;
    return 1;
}

int line_reader_next(LineReader *r, const char **line, size_t *len) {
    size_t scanned = r->start;
    for (;;) {
        char *nl = memchr(r->buf + scanned, '\n', r->end - scanned);
        if (nl) {
            *line = r->buf + r->start;
            *len = (size_t)(nl + 1 - *line);
            r->start += *len;
            r->lineno++;
            return 1;
        }
        if (r->eof) break;
        size_t seen = r->end - r->start;
        int rc = fill(r);
        if (rc < 0) return -1;
        scanned = r->start + seen;
        if (rc == 0) break;
    }
    if (r->start == r->end) return 0;
    *line = r->buf + r->start; /* the last line, without "\n" */
    *len = r->end - r->start;
    r->start = r->end;
    r->lineno++;
    return 1;
}

size_t line_reader_lineno(const LineReader *r) { return r->lineno; }

void line_reader_close(LineReader *r) {
    if (!r) return;
    gzclose(r->gz);
    free(r->buf);
    free(r->path);
    free(r);
}
