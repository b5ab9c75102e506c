#include "train/export.h"

#include <stdlib.h>
#include <string.h>

#include "convert/export.h"
#include "dist/export.h"
#include "io/checked.h"
#include "io/error.h"

/* n fp32 values as dtype, in a new buffer. */
static void *narrow(const float *x, int64_t n, TmDType dtype) {
    if (dtype == TM_F32) {
        float *out = mallocCheck((size_t)n * sizeof(float) + 1);
        memcpy(out, x, (size_t)n * sizeof(float));
        return out;
    }
    uint16_t *out = mallocCheck((size_t)n * sizeof(uint16_t) + 1);
    for (int64_t i = 0; i < n; i++) out[i] = dtype == TM_BF16 ? tm_f32_to_bf16(x[i]) : tm_f32_to_f16(x[i]);
    return out;
}

int train_export(const Topology *t, Model *m, const char *dir, const char *src_dir) {
    WeightSlot *slots;
    int n = weights_slots(&m->w, &m->cfg, &m->part, &slots);
    int writer = t->replica == 0;
    StWriteTensor *ts = callocCheck((size_t)n + 1, sizeof *ts);
    void **owned = callocCheck((size_t)n + 1, sizeof *owned);
    TmDType dtype = m->w.dtype; /* of the stored model; the trained masters are rounded back to it */
    for (int i = 0; i < n && writer; i++) {
        const WeightSlot *s = &slots[i];
        StWriteTensor *w = &ts[i];
        w->name = s->name;
        w->ndim = s->cols ? 2 : 1;
        w->shape[0] = s->rows;
        w->shape[1] = s->cols;
        int64_t numel = s->rows * (s->cols ? s->cols : 1);
        if (s->mat && s->mat->dtype != TM_F32) { /* frozen and not widened: as stored */
            w->dtype = s->mat->dtype;
            w->data = s->mat->data;
        } else {
            w->dtype = dtype;
            w->data = owned[i] = narrow(s->mat ? (const float *)s->mat->data : *s->vec, numel, dtype);
        }
    }
    int rc = dist_write_tensors(t, dir, ts, writer ? n : 0, writer, 4ull << 30);
    if (!rc && t->rank == 0) rc = export_copy_tokenizer_files(dir, src_dir, 1);
    for (int i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(ts);
    free(slots);
    return dist_agree(MPI_COMM_WORLD, rc);
}
