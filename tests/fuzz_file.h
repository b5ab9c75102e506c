/* For fuzz targets whose parser reads a file: the input is written to a file
 * in a private temporary folder (made once, removed at exit), rewritten for
 * every input. */
#ifndef TM_TESTS_FUZZ_FILE_H
#define TM_TESTS_FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[64];
static char fuzz_names[4][64];

static inline void fuzz_dir_remove(void) {
    char path[160];
    for (int i = 0; i < 4; i++)
        if (fuzz_names[i][0]) {
            snprintf(path, sizeof path, "%s/%s", fuzz_dir, fuzz_names[i]);
            unlink(path);
        }
    rmdir(fuzz_dir);
}

/* The folder the files live in. */
static inline const char *fuzz_folder(void) {
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/tm_fuzz_XXXXXX");
        if (!mkdtemp(fuzz_dir)) abort();
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir;
}

/* Write size bytes to FOLDER/name (at most 4 names per process); its path. */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    static char path[160];
    int slot = 0;
    while (slot < 4 && fuzz_names[slot][0] && strcmp(fuzz_names[slot], name)) slot++;
    if (slot == 4) abort();
    snprintf(fuzz_names[slot], sizeof fuzz_names[slot], "%s", name);
    snprintf(path, sizeof path, "%s/%s", fuzz_folder(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) abort();
    return path;
}

/* Remove FOLDER/name if it is there (an optional file the previous input wrote). */
static inline void fuzz_unlink(const char *name) {
    char path[160];
    snprintf(path, sizeof path, "%s/%s", fuzz_folder(), name);
    unlink(path);
}

#define CHECK(cond)                    \
    do {                               \
        if (!(cond)) __builtin_trap(); \
    } while (0)

#endif
