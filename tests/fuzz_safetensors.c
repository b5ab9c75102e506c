/* libFuzzer target for the safetensors validator: any input either fails
 * with a message, or yields tensors that satisfy every promise st_parse_image
 * makes (sorted unique names, offsets in bounds, shapes matching byte counts,
 * the data section covered exactly), with data pointers inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/dtype.h"
#include "io/base/error.h"
#include "io/safetensors.h"

#define CHECK(cond)                    \
    do {                               \
        if (!(cond)) __builtin_trap(); \
    } while (0)

static volatile unsigned sink;

typedef struct {
    uint64_t begin, end;
} Range;

static int by_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    StTensor *t = NULL;
    int n = -1;
    tm_clear_error();
    if (st_parse_image(data, size, &t, &n) != 0) {
        CHECK(t == NULL && n == 0);
        CHECK(strcmp(tm_error(), "unknown error") != 0); /* every failure says why */
        return 0;
    }

    /* Success implies a sane framing. */
    CHECK(size >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    CHECK(hlen >= 2 && hlen <= ST_MAX_HEADER_BYTES && hlen <= size - 8);
    const uint8_t *dsec = data + 8 + hlen;
    uint64_t dsize = size - 8 - hlen;
    CHECK(n >= 0 && t != NULL);

    Range *r = malloc((size_t)(n ? n : 1) * sizeof *r);
    CHECK(r != NULL);
    unsigned sum = 0;
    char buf[200];
    for (int i = 0; i < n; i++) {
        const StTensor *x = &t[i];
        CHECK(x->name != NULL);
        if (i > 0) CHECK(strcmp(t[i - 1].name, x->name) < 0);
        CHECK(strcmp(x->name, "__metadata__") != 0);
        CHECK(x->ndim >= 0 && x->ndim <= ST_MAX_DIMS);
        size_t esize = tm_dtype_size(x->dtype);
        CHECK(esize > 0);
        uint64_t need = esize;
        for (int d = 0; d < x->ndim; d++) {
            CHECK(x->shape[d] >= 0);
            CHECK(!__builtin_mul_overflow(need, (uint64_t)x->shape[d], &need));
        }
        CHECK(x->begin <= x->end && x->end <= dsize);
        CHECK(x->end - x->begin == need);
        CHECK((const uint8_t *)x->data == dsec + x->begin);
        if (x->end > x->begin) {
            const uint8_t *p = x->data;
            sum += p[0] + p[x->end - x->begin - 1];
        }
        st_shape_str(x->ndim, x->shape, buf, sizeof buf);
        sum += (unsigned)buf[0];
        r[i] = (Range){x->begin, x->end};
    }

    /* The tensors tile the data section: no overlap, no gap, nothing after. */
    qsort(r, (size_t)n, sizeof *r, by_range);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        CHECK(r[i].begin == pos);
        pos = r[i].end;
    }
    CHECK(pos == dsize);

    sink = sum;
    free(r);
    st_free_tensors(t, n);
    return 0;
}
