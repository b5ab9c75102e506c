#ifndef TM_MODEL_CROSSENTROPY_H
#define TM_MODEL_CROSSENTROPY_H

#include <stdint.h>

/* Sum over rows with target >= 0 of -log softmax(logits[row])[target]; the
 * log-sum-exp runs in double. Rows with target < 0 are ignored. Writes the
 * number of counted rows to *count. */
double crossentropy_forward(const float *logits, const int32_t *targets, int n, int V, int64_t *count);

#endif
