#include "io/tokenizer/tok_bytelevel.h"

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes, in
 * order, take U+0100 onwards. */
static int is_self(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

static uint32_t byte_cp(int b) {
    if (is_self(b)) return (uint32_t)b;
    int n = 0;
    for (int k = 0; k < b; k++) n += !is_self(k);
    return 256u + (uint32_t)n;
}

void bytelevel_table(ByteChar tab[256]) {
    for (int b = 0; b < 256; b++) {
        uint32_t cp = byte_cp(b);
        if (cp < 0x80) {
            tab[b].s[0] = (char)cp;
            tab[b].len = 1;
        } else {
            tab[b].s[0] = (char)(0xC0 | (cp >> 6));
            tab[b].s[1] = (char)(0x80 | (cp & 0x3F));
            tab[b].len = 2;
        }
    }
}

int bytelevel_byte(uint32_t cp) {
    if (cp < 256) return is_self((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    int n = (int)(cp - 256);
    for (int b = 0; b < 256; b++)
        if (!is_self(b) && n-- == 0) return b;
    return -1;
}
