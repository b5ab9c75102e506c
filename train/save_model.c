#include "train/save_model.h"

#include <stdlib.h>

#include "dist/write_tensors.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/hf_folder.h"

/* A copy of v[n] less what loading added (gemma2's norms are held as 1 + w
 * and stored as w). */
static float *minus_load_offset(const float *v, int64_t n, float add) {
    float *w = mallocCheck((size_t)n * sizeof *w + 1);
    for (int64_t i = 0; i < n; i++) w[i] = v[i] - add;
    return w;
}

int train_export(const Topology *t, Model *m, const char *dir, const char *src_dir) {
    WeightSlot *slots;
    int n = weights_slots(&m->w, &m->cfg, &m->part, &slots);
    int writer = t->replica == 0;
    StWriteTensor *ts = callocCheck((size_t)n + 1, sizeof *ts);
    void **owned = callocCheck((size_t)n + 1, sizeof *owned);
    float **owned_f32 = callocCheck((size_t)n + 1, sizeof *owned_f32);
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
        } else { /* fp32 (a trained master, or a frozen fp32 weight): written as is or rounded */
            const float *f32 = s->mat ? (const float *)s->mat->data : *s->vec;
            if (s->vec && s->add != 0) f32 = owned_f32[i] = minus_load_offset(f32, numel, s->add);
            w->dtype = dtype;
            w->data = dtype == TM_F32 ? (const void *)f32 : (owned[i] = tensor_f32_to_16bit(f32, numel, dtype));
        }
    }
    int rc = dist_write_tensors(t, dir, ts, writer ? n : 0, writer, 4ull << 30);
    if (!rc && t->rank == 0) rc = hf_copy_tokenizer_files(dir, src_dir, 1);
    for (int i = 0; i < n; i++) {
        free(owned[i]);
        free(owned_f32[i]);
    }
    free(owned);
    free(owned_f32);
    free(ts);
    free(slots);
    return dist_agree(MPI_COMM_WORLD, rc);
}
