/* Lines of a text file, plain or gzip-compressed (zlib reads both), of any
 * length and with NUL bytes kept: the dataset readers' common input. */
#ifndef TM_IO_LINE_READER_H
#define TM_IO_LINE_READER_H

#include <stddef.h>

typedef struct LineReader LineReader;

/* Errors name the file. */
int line_reader_open(LineReader **out, const char *path);
/* The next line with its "\n" (the last line may lack one), valid until the
 * next call: 1 with *line and *len set, 0 at the end, -1 on a read error
 * ("FILE: ..." recorded, e.g. a truncated .gz). */
int line_reader_next(LineReader *r, const char **line, size_t *len);
/* 1-based number of the line last returned. */
size_t line_reader_lineno(const LineReader *r);
void line_reader_close(LineReader *r);

#endif
