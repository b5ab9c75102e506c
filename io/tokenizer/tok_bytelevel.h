/* GPT-2's bytes_to_unicode: each byte maps to a printable character so that
 * byte-level BPE vocabularies hold no spaces or control bytes. */
#ifndef TM_IO_TOK_BYTELEVEL_H
#define TM_IO_TOK_BYTELEVEL_H

#include <stdint.h>

typedef struct {
    char s[3];   /* UTF-8 of the character (1 or 2 bytes) */
    uint8_t len;
} ByteChar;

void bytelevel_table(ByteChar tab[256]);
/* The byte a character stands for, or -1 when it is not one of the 256. */
int bytelevel_byte(uint32_t cp);

#endif
