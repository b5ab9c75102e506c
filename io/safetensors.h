/* safetensors files: read by mmap (tensors are used in place, never copied).
 * The header is untrusted input and is validated completely before use:
 * JSON syntax, dtypes, shapes against byte sizes, offsets in bounds, tensors
 * neither overlapping nor leaving holes, a sane header length. */
#ifndef TM_IO_SAFETENSORS_H
#define TM_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER_BYTES (100u << 20) /* the limit the reference library uses */

typedef struct {
    char *name;
    TmDType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;  /* byte offsets within the data section */
    const void *data;     /* points into the mapping (NULL until mapped) */
    const char *file;     /* path of the file holding it, for messages */
} StTensor;

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    int n_tensors;
    StTensor *tensors;    /* sorted by name */
} StFile;

/* Validate a whole file image (8-byte length, JSON header, data section) and
 * list its tensors, sorted by name, with data pointers into `image`.
 * On error returns -1 with tm_error() describing the first problem found. */
int st_parse_image(const uint8_t *image, size_t size, StTensor **tensors, int *n_tensors);
void st_free_tensors(StTensor *tensors, int n_tensors);

int st_open(StFile *f, const char *path);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);

int64_t st_numel(const StTensor *t);
/* "[4, 64]" into buf. */
const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

#endif
