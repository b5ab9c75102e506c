/* Python's idea of whitespace and line ends, so documents match the Hugging
 * Face rows the reference reads (UTF-8 checks are io/utf8.h's). */
#include <stdint.h>

#include "io/dataset_build.h"
#include "io/utf8.h"

/* Python's str.isspace(): the Unicode White_Space characters plus the
 * information separators 0x1C-0x1F. */
static int py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static uint32_t decode_at(const char *s, size_t i, size_t *n) {
    uint32_t cp;
    *n = utf8_decode(s + i, &cp);
    return cp;
}

void py_strip(const char *s, size_t len, size_t *begin, size_t *end) {
    size_t b = 0, e = len, n;
    while (b < e && py_space(decode_at(s, b, &n))) b += n;
    while (e > b) {
        size_t start = e - 1;
        while (start > b && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        if (!py_space(decode_at(s, start, &n))) break;
        e = start;
    }
    *begin = b;
    *end = e;
}

int py_is_blank(const char *s, size_t len) {
    size_t b, e;
    py_strip(s, len, &b, &e);
    return b == e;
}

int next_universal_line(const char *s, size_t len, size_t *pos, size_t *seg_len, int *ended) {
    size_t a = *pos, i = a;
    if (a >= len) return 0;
    while (i < len && s[i] != '\n' && s[i] != '\r') i++;
    *seg_len = i - a;
    *ended = i < len;
    if (i < len) i += (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') ? 2 : 1;
    *pos = i;
    return 1;
}
