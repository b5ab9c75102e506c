/* SHA-256 of a file (OpenSSL's libcrypto): names a tokenizer in token sets. */
#ifndef TM_IO_SHA256_H
#define TM_IO_SHA256_H

#include <stddef.h>

/* hex: 64 lower-case hex digits and a NUL. Errors name the file. */
int sha256_file(const char *path, char hex[65]);
void sha256_bytes(const void *data, size_t len, char hex[65]);

#endif
