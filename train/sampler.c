#include "train/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/rng.h"

int sampler_init(Sampler *s, const TrainRows *rows, uint64_t seed, int B, int K, int replicas) {
    memset(s, 0, sizeof *s);
    s->rows = rows;
    s->seed = seed;
    s->B = B;
    s->K = K;
    s->replicas = replicas;
    s->global_batch = (int64_t)B * K * replicas;
    s->steps_per_epoch = rows->n_rows / s->global_batch;
    s->epoch = -1;
    if (s->steps_per_epoch < 1)
        return tm_fail("the training data packs into %lld rows of %d tokens, fewer than one global batch of %lld "
                       "(--batch-size %d x --gradient-accumulation-steps %d x %d replicas)",
                       (long long)rows->n_rows, rows->T, (long long)s->global_batch, B, K, replicas);
    s->perm = mallocCheck((size_t)rows->n_rows * sizeof *s->perm);
    return 0;
}

void sampler_free(Sampler *s) {
    free(s->perm);
    memset(s, 0, sizeof *s);
}

/* Fisher-Yates with splitmix64 seeded by (seed, epoch). */
static void shuffle_epoch(Sampler *s, int64_t epoch) {
    int64_t n = s->rows->n_rows;
    for (int64_t i = 0; i < n; i++) s->perm[i] = i;
    TmRng rng;
    rng_seed(&rng, s->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(&rng) % (uint64_t)(i + 1));
        int64_t t = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = t;
    }
    s->epoch = epoch;
}

void sampler_rows(Sampler *s, int64_t step, int r, int k, int64_t *out) {
    int64_t epoch = step / s->steps_per_epoch;
    if (epoch != s->epoch) shuffle_epoch(s, epoch);
    int64_t base = (step % s->steps_per_epoch) * s->global_batch + ((int64_t)r * s->K + k) * s->B;
    for (int b = 0; b < s->B; b++) out[b] = s->perm[base + b];
}

int64_t sampler_step_targets(Sampler *s, int64_t step) {
    int T = s->rows->T;
    int64_t count = 0, *idx = mallocCheck((size_t)s->B * sizeof *idx);
    for (int r = 0; r < s->replicas; r++)
        for (int k = 0; k < s->K; k++) {
            sampler_rows(s, step, r, k, idx);
            for (int b = 0; b < s->B; b++) {
                const uint8_t *f = s->rows->flags + idx[b] * T;
                for (int i = 1; i < T; i++) count += tm_tok_is_target(f[i]);
            }
        }
    free(idx);
    return count;
}
