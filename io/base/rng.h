/* splitmix64: a tiny seeded generator whose sequence is easy to reproduce in
 * a reference script (tests/ref/sample_calibration.py), used wherever a run
 * must draw the same "random" choices for the same seed. */
#ifndef TM_IO_RNG_H
#define TM_IO_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} TmRng;

void rng_seed(TmRng *r, uint64_t seed);
uint64_t rng_next(TmRng *r);

#endif
