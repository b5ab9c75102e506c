#include "train/params.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

int train_what_parse(const char *s, TrainWhat *out) {
    if (!strcmp(s, "all")) *out = TRAIN_ALL;
    else if (!strcmp(s, "attention")) *out = TRAIN_ATTENTION;
    else if (!strcmp(s, "attention+norms")) *out = TRAIN_ATTENTION_NORMS;
    else return tm_fail("--train: '%s' is not all, attention or attention+norms", s);
    return 0;
}

const char *train_what_name(TrainWhat w) {
    return w == TRAIN_ALL ? "all" : w == TRAIN_ATTENTION ? "attention" : "attention+norms";
}

/* Attention-only recovery trains the MLA projections and their latent norms
 * (every "self_attn." tensor); "+norms" adds the layer and final norms. */
static int trains(TrainWhat what, const char *name) {
    if (what == TRAIN_ALL || strstr(name, ".self_attn.")) return 1;
    return what == TRAIN_ATTENTION_NORMS && strstr(name, "norm.weight") != NULL;
}

static int is_matrix_weight(const WeightSlot *s) { return s->cols > 0; }

int params_init(ParamSet *ps, Model *m, TrainWhat what) {
    memset(ps, 0, sizeof *ps);
    const ModelConfig *c = &m->cfg;
    ps->embed_dtype = m->w.embed.dtype; /* before the master rebinds it to fp32 */
    WeightSlot *slots, *gslots;
    int n = weights_slots(&m->w, c, &m->part, &slots);
    int gn = weights_slots(&ps->grads, c, &m->part, &gslots);
    if (gn != n) tm_die("params_init: gradient slots (%d) do not mirror the model's (%d)", gn, n);
    ps->p = callocCheck((size_t)n + 1, sizeof *ps->p);
    for (int i = 0; i < n; i++) {
        int64_t numel = slots[i].rows * (slots[i].cols ? slots[i].cols : 1);
        if (!trains(what, slots[i].name)) {
            ps->frozen += numel;
            continue;
        }
        Param *p = &ps->p[ps->n++];
        snprintf(p->name, sizeof p->name, "%s", slots[i].name);
        p->rows = slots[i].rows;
        p->cols = slots[i].cols;
        p->n = numel;
        p->layer = slots[i].layer;
        p->decay = is_matrix_weight(&slots[i]);
        p->stored = slots[i].mat ? slots[i].mat->dtype : m->w.dtype;
        ps->total += numel;
    }
    ps->w = mallocCheck((size_t)ps->total * sizeof(float) + 1);
    ps->g = callocCheck((size_t)ps->total + 1, sizeof(float));
    ps->m = callocCheck((size_t)ps->total + 1, sizeof(float));
    ps->v = callocCheck((size_t)ps->total + 1, sizeof(float));
    ps->buckets = callocCheck((size_t)n + 1, sizeof *ps->buckets);
    int64_t off = 0;
    for (int i = 0, k = 0; i < n; i++) {
        if (!trains(what, slots[i].name)) continue;
        Param *p = &ps->p[k++];
        p->w = ps->w + off;
        p->g = ps->g + off;
        p->m = ps->m + off;
        p->v = ps->v + off;
        if (slots[i].mat) {
            tensor_to_f32(slots[i].mat, 0, p->n, p->w);
            slots[i].mat->data = p->w; /* the forward pass now reads the master */
            slots[i].mat->dtype = TM_F32;
            *gslots[i].mat = *slots[i].mat;
            gslots[i].mat->data = p->g;
        } else {
            memcpy(p->w, *slots[i].vec, (size_t)p->n * sizeof(float));
            *slots[i].vec = p->w;
            *gslots[i].vec = p->g;
        }
        GradBucket *b = ps->n_buckets ? &ps->buckets[ps->n_buckets - 1] : NULL;
        if (!b || b->layer != p->layer) {
            b = &ps->buckets[ps->n_buckets++];
            b->layer = p->layer;
            b->first = off;
        }
        off += p->n;
        b->end = off;
    }
    if (c->tie_word_embeddings) {
        m->w.lm_head = m->w.embed;
        ps->grads.lm_head = ps->grads.embed;
    }
    free(slots);
    free(gslots);
    return 0;
}

void params_free(ParamSet *ps, const ModelConfig *c) {
    free(ps->p);
    free(ps->w);
    free(ps->g);
    free(ps->m);
    free(ps->v);
    free(ps->buckets);
    weights_free(&ps->grads, c);
    memset(ps, 0, sizeof *ps);
}

void params_zero_grads(ParamSet *ps) { memset(ps->g, 0, (size_t)ps->total * sizeof(float)); }

double params_grad_sq(const ParamSet *ps) {
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < ps->total; i++) s += (double)ps->g[i] * ps->g[i];
    return s;
}

const GradBucket *params_bucket(const ParamSet *ps, int layer) {
    for (int i = 0; i < ps->n_buckets; i++)
        if (ps->buckets[i].layer == layer) return &ps->buckets[i];
    return NULL;
}
