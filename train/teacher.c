#include "train/teacher.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/rmsnorm.h"

int teacher_load(Teacher *t, const char *dir, const ModelPart *part, const ModelConfig *student, float alpha) {
    memset(t, 0, sizeof *t);
    t->alpha = alpha;
    if (model_load_part(&t->m, dir, part)) return -1;
    const ModelConfig *c = &t->m.cfg;
    if (c->vocab_size != student->vocab_size)
        return tm_fail("%s/config.json: vocab_size %d differs from the student's %d: a teacher must predict over "
                       "the same vocabulary", dir, c->vocab_size, student->vocab_size);
    if (c->n_layers != student->n_layers)
        return tm_fail("%s/config.json: num_hidden_layers %d differs from the student's %d: the stages split both "
                       "models at the same layers", dir, c->n_layers, student->n_layers);
    return 0;
}

/* bytes counted into t->bytes and allocated, or with t->count_only counted only (NULL). */
static void *teacher_alloc(Teacher *t, size_t bytes) {
    t->bytes += bytes;
    return t->count_only ? NULL : mallocCheck(bytes + 1);
}

/* With t->count_only counted only: the one computation behind
 * teacher_step_bytes too. */
void teacher_buffers(Teacher *t, int B, int T, int K) {
    const ModelConfig *c = &t->m.cfg;
    size_t N = (size_t)B * T, D = (size_t)c->hidden_size;
    int count = t->count_only;
    t->K = K;
    if (!count) {
        rope_table_init(&t->rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
        layer_acts_init(&t->acts, c, B, T, ACTS_FORWARD); /* the teacher has no backward pass: in place */
    }
    t->bytes += layer_acts_bytes(c, B, T, ACTS_FORWARD);
    t->x = teacher_alloc(t, N * D * sizeof(float));
    t->rstd = teacher_alloc(t, N * sizeof(float));
    if (!t->m.part.head) return;
    if (!count) t->head = callocCheck((size_t)K, sizeof *t->head);
    for (int k = 0; k < K; k++) {
        float *h = teacher_alloc(t, N * D * sizeof(float));
        if (!count) t->head[k] = h;
    }
}

uint64_t teacher_step_bytes(const Teacher *t, int B, int T, int K) {
    Teacher count = {.m = t->m, .count_only = 1}; /* a shallow copy: only its config and part are read */
    teacher_buffers(&count, B, T, K);
    return count.bytes;
}

void teacher_free(Teacher *t) {
    if (t->x) {
        rope_table_free(&t->rope);
        layer_acts_free(&t->acts);
    }
    for (int k = 0; t->head && k < t->K; k++) free(t->head[k]);
    free(t->head);
    free(t->x);
    free(t->rstd);
    model_free(&t->m);
    memset(t, 0, sizeof *t);
}

void teacher_forward(Teacher *t, int k, const int32_t *tokens, const LayerRows *rows) {
    const Model *m = &t->m;
    const ModelConfig *c = &m->cfg;
    int N = t->acts.B * t->acts.T;
    if (m->part.embed) model_embed_rows(m, tokens, N, t->x);
    LayerRows own = *rows;
    own.rope = &t->rope; /* the teacher's own rope table: its config's */
    for (int l = m->part.first; l < m->part.end; l++) layer_forward(c, &m->w.layers[l], l, t->x, t->x, &own, &t->acts);
    if (m->part.head) rmsnorm_forward_train(t->head[k], t->rstd, t->x, m->w.final_norm, N, c->hidden_size,
                                            c->rms_norm_eps);
}
