#include "io/hf_folder.h"

#include <stdio.h>

#include "io/base/error.h"

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return 0; /* optional file absent */
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return tm_fail("%s: cannot create", to);
    }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = tm_fail("%s: write failed", to);
    fclose(in);
    if (fclose(out)) rc = tm_fail("%s: write failed", to);
    return rc;
}

static const char *tokenizer_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "tokenizer.model", "generation_config.json", "vocab.json", "merges.txt"};

int hf_copy_tokenizer_files(const char *dir, const char *src_dir, int with_config) {
    char src[4096], dst[4096];
    int rc = 0;
    for (size_t i = 0; i < sizeof tokenizer_files / sizeof tokenizer_files[0] && !rc; i++) {
        snprintf(src, sizeof src, "%s/%s", src_dir, tokenizer_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, tokenizer_files[i]);
        rc = copy_file(src, dst);
    }
    if (with_config && !rc) { /* last: a folder without it is not a model */
        snprintf(src, sizeof src, "%s/config.json", src_dir);
        snprintf(dst, sizeof dst, "%s/config.json", dir);
        rc = copy_file(src, dst);
    }
    return rc;
}
