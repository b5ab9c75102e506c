#include "io/token_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

int token_dtype_parse(const char *s, TmTokenDType *out) {
    if (strcmp(s, "u16") == 0 || strcmp(s, "uint16") == 0) *out = TM_TOKENS_U16;
    else if (strcmp(s, "u32") == 0 || strcmp(s, "uint32") == 0) *out = TM_TOKENS_U32;
    else return tm_fail("--token-dtype '%s': use u16 or u32", s);
    return 0;
}

int token_file_read(const char *path, TmTokenDType dt, int vocab_size, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return tm_fail("%s: cannot open: %s", path, strerror(errno));
    size_t width = dt == TM_TOKENS_U16 ? 2 : 4;
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return tm_fail("%s: cannot seek", path);
    }
    long size = ftell(fp);
    rewind(fp);
    if (size < 0 || size % (long)width) {
        fclose(fp);
        return tm_fail("%s: size %ld bytes is not a multiple of %zu (wrong --token-dtype?)", path, size, width);
    }
    size_t count = (size_t)size / width;
    uint8_t *raw = mallocCheck((size_t)size);
    size_t got = fread(raw, 1, (size_t)size, fp);
    fclose(fp);
    if (got != (size_t)size) {
        free(raw);
        return tm_fail("%s: short read", path);
    }
    int32_t *out = mallocCheck(count * sizeof *out);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = raw + i * width;
        uint32_t v = width == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8
                                : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (v >= (uint32_t)vocab_size) {
            free(raw);
            free(out);
            return tm_fail("%s: token %zu has id %u, outside the model's vocab_size %d", path, i, v, vocab_size);
        }
        out[i] = (int32_t)v;
    }
    free(raw);
    *ids = out;
    *n = count;
    return 0;
}
