#include "io/utf8.h"

#include <string.h>

/* Valid ranges per the Unicode table 3-7: the second byte's range depends on
 * the first, which is what rules out overlongs and surrogates. Returns the
 * sequence length a lead byte announces, 0 for a byte that cannot lead. */
static size_t lead_ranges(uint8_t c, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

size_t utf8_seq_len(const uint8_t *s, size_t avail) {
    if (s[0] < 0x80) return 1;
    uint8_t lo, hi;
    size_t n = lead_ranges(s[0], &lo, &hi);
    if (!n || avail < 2 || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (i >= avail || (s[i] & 0xC0) != 0x80) return 0;
    return n;
}

int utf8_validate(const char *str, size_t len, size_t *bad) {
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs eight bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (!n) {
            *bad = i;
            return -1;
        }
        i += n;
    }
    return 0;
}

size_t utf8_decode(const char *str, uint32_t *cp) {
    const uint8_t *s = (const uint8_t *)str;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] < 0xE0) {
        *cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (s[0] < 0xF0) {
        *cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
          (s[3] & 0x3F);
    return 4;
}

void utf8_put(StrBuf *b, uint32_t cp) {
    char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sb_add(b, o, n);
}

/* A maximal subpart is the longest prefix of a valid sequence: the lead byte
 * plus the continuation bytes that still fit its ranges. */
static size_t invalid_prefix_len(const uint8_t *s, size_t avail) {
    uint8_t lo, hi;
    size_t n = lead_ranges(s[0], &lo, &hi), i = 1;
    if (!n || avail < 2 || s[1] < lo || s[1] > hi) return 1;
    i++;
    while (i < n && i < avail && (s[i] & 0xC0) == 0x80) i++;
    return i;
}

void utf8_append_lossy(StrBuf *b, const char *str, size_t len) {
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    while (i < len) {
        size_t n = s[i] < 0x80 ? 1 : utf8_seq_len(s + i, len - i);
        if (n) {
            i += n;
            continue;
        }
        sb_add(b, s + run, i - run);
        sb_add(b, "\xEF\xBF\xBD", 3);
        i += invalid_prefix_len(s + i, len - i);
        run = i;
    }
    sb_add(b, s + run, len - run);
}

int utf8_is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
