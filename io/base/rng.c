#include "io/base/rng.h"

void rng_seed(TmRng *r, uint64_t seed) { r->state = seed; }

uint64_t rng_next(TmRng *r) {
    r->state += 0x9E3779B97F4A7C15ull;
    uint64_t z = r->state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
