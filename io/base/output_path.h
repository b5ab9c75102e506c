/* Where a command may write: every output path is checked before any work,
 * so that a run never destroys its own input, never replaces a device node,
 * and never computes for hours to fail at the final rename. */
#ifndef TM_IO_OUTPUT_PATH_H
#define TM_IO_OUTPUT_PATH_H

#include <stddef.h>

typedef enum {
    OUT_FOLDER_RENAMED, /* a folder written elsewhere and renamed into place (convert) */
    OUT_FOLDER,         /* a folder written in place (finetune) */
    OUT_FILE,           /* a regular file written beside and renamed (tokenize) */
} OutputKind;

/* path without trailing slashes into out; "" (or only slashes), "." and
 * ".." as the last component are refused, naming flag. 0 or -1. */
int output_path_normalize(const char *flag, const char *path, char *out, size_t size);

/* The checks on an already normalised path: it must not be, contain or lie
 * inside any of inputs[0..n) (folders or files; symlinks followed; for
 * OUT_FILE only equality counts), nor be anything but a folder (a regular
 * file for OUT_FILE) when it exists, nor a mount point when it is renamed
 * into place. One error line names flag and path. */
int output_path_check(const char *flag, const char *path, OutputKind kind, const char *const *inputs, int n);

/* The absolute path with symlinks of the existing part resolved and "."
 * and ".." of the rest applied, malloc'd (what the path will name once
 * created). NULL with an error when not even the current folder resolves. */
char *output_path_resolve(const char *path);

#endif
