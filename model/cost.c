#include "model/cost.h"

#include <stdlib.h>

#include "io/base/checked.h"
#include "model/model.h"
#include "model/weights.h"

void model_part_bytes(const ModelConfig *c, TmDType dtype, uint64_t *layer, uint64_t *embed, uint64_t *head) {
    WeightShape *ws;
    int n = weights_expected(c, &ws);
    size_t es = tm_dtype_size(dtype);
    *embed = *head = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = (uint64_t)ws[i].rows * (ws[i].cols ? ws[i].cols : 1) * es;
        int part = weights_tensor_part(ws[i].name);
        if (part >= 0) layer[part] += b;
        else if (part == WEIGHT_PART_EMBED) *embed += b;
        else *head += b;
    }
    if (c->tie_word_embeddings) *head += *embed;
    free(ws);
}

double model_layer_flops_per_token(const ModelConfig *c, int l, int T) {
    return model_layer_forward_flops(c, l, 1, T) / T;
}

void model_layer_costs(const ModelConfig *c, double *cost) {
    int n = c->n_layers;
    uint64_t *lb = callocCheck((size_t)n, sizeof *lb), eb, hb;
    model_part_bytes(c, TM_BF16, lb, &eb, &hb);
    double *lf = mallocCheck((size_t)n * sizeof *lf), hf = 2.0 * c->hidden_size * c->vocab_size;
    double total_b = (double)eb + hb, total_f = hf;
    for (int l = 0; l < n; l++) {
        lf[l] = model_layer_flops_per_token(c, l, 2048);
        total_b += lb[l];
        total_f += lf[l];
    }
    for (int l = 0; l < n; l++) cost[l] = lb[l] / total_b + lf[l] / total_f;
    cost[0] += eb / total_b;
    cost[n - 1] += hb / total_b + hf / total_f;
    free(lb);
    free(lf);
}
