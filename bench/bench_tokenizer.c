/* Tokenizer encode speed on one core.
 *
 *   bench_tokenizer TOKENIZER_DIR TEXT_FILE [N]
 *
 * Loads DIR/tokenizer.json, encodes the whole file N times (default 3) with
 * a fresh tokenizer each time, so the per-word cache starts cold as it would
 * in one `transmla tokenize` run, and prints the best time as MB/s (10^6
 * bytes) and tokens/s. Load time is reported apart. */
#include <stdio.h>
#include <stdlib.h>

#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/tokenizer/tokenizer.h"
#include "io/base/whole_file.h"

static char *read_file(const char *path, size_t *len) {
    char *data;
    return read_whole_file(path, &data, len) ? NULL : data;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR TEXT_FILE [N]\n", argv[0]);
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    size_t len;
    char *text = read_file(argv[2], &len);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", argv[2]);
        return 1;
    }
    double best = 1e30, best_load = 1e30;
    size_t ntok = 0;
    for (int r = 0; r < reps; r++) {
        Tokenizer *t;
        double t0 = tm_now_s();
        if (tokenizer_load(&t, argv[1])) {
            fprintf(stderr, "bench_tokenizer: %s\n", tm_error());
            free(text);
            return 1;
        }
        double t1 = tm_now_s();
        TokenIds ids = {0};
        if (tokenizer_encode(t, text, len, 0, &ids)) {
            fprintf(stderr, "bench_tokenizer: %s: %s\n", argv[2], tm_error());
            return 1;
        }
        double t2 = tm_now_s();
        ntok = ids.n;
        if (t2 - t1 < best) best = t2 - t1;
        if (t1 - t0 < best_load) best_load = t1 - t0;
        token_ids_free(&ids);
        tokenizer_free(t);
    }
    printf("%s: %zu bytes -> %zu tokens; encode %.3f s = %.2f MB/s, %.0f tokens/s (best of %d); load %.3f s\n", argv[1],
           len, ntok, best, len / best / 1e6, ntok / best, reps, best_load);
    free(text);
    return 0;
}
