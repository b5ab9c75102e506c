/* Raw token files: little-endian uint16 or uint32 ids, no header. */
#ifndef TM_IO_TOKEN_FILE_H
#define TM_IO_TOKEN_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { TM_TOKENS_U16, TM_TOKENS_U32 } TmTokenDType;

/* Read the whole file into int32 ids; every id must be < vocab_size.
 * Errors name the file and, for a bad id, its position. */
int token_file_read(const char *path, TmTokenDType dt, int vocab_size, int32_t **ids, size_t *n);
int token_dtype_parse(const char *s, TmTokenDType *out);

#endif
