/* UTF-8 checks and code points, strict like Unicode: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
#ifndef TM_IO_UTF8_H
#define TM_IO_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "io/base/str_buf.h"

/* Length of the valid sequence starting at s (1..4), or 0 when invalid. */
size_t utf8_seq_len(const uint8_t *s, size_t avail);

/* 0 when valid; else -1 with *bad the offset of the first invalid sequence. */
int utf8_validate(const char *s, size_t len, size_t *bad);

/* Decode one code point from valid UTF-8; returns its length. */
size_t utf8_decode(const char *s, uint32_t *cp);

/* Unicode White_Space (Rust's char::is_whitespace). */
int utf8_is_space(uint32_t cp);

/* Append cp as UTF-8. */
void utf8_put(StrBuf *b, uint32_t cp);

/* Append bytes, replacing each maximal invalid subpart by U+FFFD (like Rust's
 * String::from_utf8_lossy and the WHATWG decoder). */
void utf8_append_lossy(StrBuf *b, const char *s, size_t len);

#endif
