/* Whether numbers are all finite (no NaN, no Inf): scans cheap enough to run
 * over every weight a process binds, every statistic and every tensor about
 * to be written, so that a wrong number stops the run where it first shows
 * instead of being reported as a result. */
#ifndef TM_IO_FINITE_H
#define TM_IO_FINITE_H

#include <stddef.h>

#include "io/dtype.h"

/* 1 when the n elements of dtype dt at data (any alignment) are all finite;
 * also 1 for dtypes without NaN/Inf (integers). */
int tm_all_finite(const void *data, TmDType dt, size_t n);
int tm_all_finite_f64(const double *x, size_t n);

#endif
