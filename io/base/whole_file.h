/* Read a whole file into memory (NUL-terminated, for text). */
#ifndef TM_IO_WHOLE_FILE_H
#define TM_IO_WHOLE_FILE_H

#include <stddef.h>

/* *data is malloc'd with a NUL after the *len bytes. Errors name the file. */
int read_whole_file(const char *path, char **data, size_t *len);

#endif
