/* Greedy decoding throughput with the cache, the original GQA/MHA model
 * (K and V per kv head) against its MLA conversion (the absorbed latent
 * cache), same engine (model/decode.c), same run.
 *
 *   bench_decode NAME DEPTH GQA_DIR MLA_DIR [--contexts 1024,4096,16384]
 *                [--batches 1,16] [--steps 6] [--max-cache-gib 6]
 *
 * For each context C and batch B the cache is filled to C tokens per
 * sequence with random values (attention's cost does not depend on them),
 * then `steps` batched decode steps are timed after one warm-up step:
 * tokens/s = B x steps / time. A configuration whose fp32 cache would
 * exceed --max-cache-gib is skipped and said so. DEPTH is the full model's
 * layer count, for the bf16 cache bytes per token and the tokens of cache
 * that fit in 80 GB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "model/decode.h"
#include "model/model.h"
#include "model/threads.h"

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    for (char *end; *s && n < max; s = *end ? end + 1 : end) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        out[n++] = (int)v;
    }
    return n;
}

/* tokens/s of B sequences at context C, or -1 when the cache is over budget */
static double decode_rate(const Model *m, int C, int B, int steps, double max_gib, double *cache_gib) {
    DecodeState st;
    int width = hf_config_is_mla(&m->cfg) ? m->cfg.mla.kv_lora_rank + m->cfg.mla.qk_rope_head_dim
                                          : 2 * m->cfg.n_kv_heads * m->cfg.head_dim;
    *cache_gib = (double)m->cfg.n_layers * B * (C + steps + 1) * width * sizeof(float) / (1 << 30);
    if (*cache_gib > max_gib) return -1;
    if (decode_init_batch(&st, m, C + steps + 1, B)) tm_die("decode_init_batch: %s", tm_error());
    size_t n = (size_t)m->cfg.n_layers * B * st.max_T * st.width;
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) { /* small random values: bounded scores */
        x = x * 1664525u + 1013904223u;
        st.cache[i] = (float)(x >> 8) / (float)(1u << 24) * 0.2f - 0.1f;
    }
    st.n = C;
    int32_t *tok = callocCheck((size_t)B, sizeof *tok);
    float *logits = mallocCheck((size_t)B * m->cfg.vocab_size * sizeof *logits);
    for (int b = 0; b < B; b++) tok[b] = (b * 7 + 3) % m->cfg.vocab_size;
    if (decode_step_batch(m, &st, tok, logits)) tm_die("decode: %s", tm_error()); /* warm-up */
    double t0 = tm_now_s();
    for (int s = 0; s < steps; s++)
        if (decode_step_batch(m, &st, tok, logits)) tm_die("decode: %s", tm_error());
    double dt = tm_now_s() - t0;
    free(tok);
    free(logits);
    decode_free(&st, m);
    return (double)B * steps / dt;
}

int main(int argc, char **argv) {
    threads_wait_passive(argv); /* as transmla runs */
    if (argc < 5) {
        fprintf(stderr, "usage: bench_decode NAME DEPTH GQA_DIR MLA_DIR [--contexts 1024,4096,16384] "
                        "[--batches 1,16] [--steps 6] [--max-cache-gib 6]\n");
        return 2;
    }
    const char *name = argv[1];
    int depth = atoi(argv[2]), contexts[8] = {1024, 4096, 16384}, batches[8] = {1, 16}, nc = 3, nb = 2, steps = 6;
    double max_gib = 6;
    for (int i = 5; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--contexts")) nc = parse_list(argv[i + 1], contexts, 8);
        else if (!strcmp(argv[i], "--batches")) nb = parse_list(argv[i + 1], batches, 8);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-cache-gib")) max_gib = atof(argv[i + 1]);
        else tm_die("bench_decode: unknown flag %s", argv[i]);
    }
    if (nc < 1 || nb < 1 || steps < 1 || depth < 1) tm_die("bench_decode: bad lists, --steps or DEPTH");
    Model m[2];
    for (int k = 0; k < 2; k++)
        if (model_load(&m[k], argv[3 + k])) tm_die("%s", tm_error());
    if (hf_config_is_mla(&m[0].cfg) || !hf_config_is_mla(&m[1].cfg)) tm_die("bench_decode: give the GQA model, then the MLA one");
    int wid[2] = {2 * m[0].cfg.n_kv_heads * m[0].cfg.head_dim, m[1].cfg.mla.kv_lora_rank + m[1].cfg.mla.qk_rope_head_dim};
    printf("%s (%d layers here; %d in the full model), kv heads %d, head_dim %d -> kv_lora_rank %d + rope %d\n", name,
           m[0].cfg.n_layers, depth, m[0].cfg.n_kv_heads, m[0].cfg.head_dim, m[1].cfg.mla.kv_lora_rank,
           m[1].cfg.mla.qk_rope_head_dim);
    for (int k = 0; k < 2; k++) {
        double bf16 = 2.0 * wid[k] * depth;
        printf("  %s cache: %d values per token and layer; bf16 at full depth %.0f bytes per token; %.2f M tokens "
               "in 80 GB\n", k ? "MLA" : "GQA", wid[k], bf16, 80e9 / bf16 / 1e6);
    }
    printf("| context | batch | GQA tokens/s | MLA tokens/s | MLA / GQA | fp32 cache GiB here: GQA / MLA |\n");
    printf("| --- | --- | --- | --- | --- | --- |\n");
    for (int ic = 0; ic < nc; ic++)
        for (int ib = 0; ib < nb; ib++) {
            double gib[2], r[2];
            for (int k = 0; k < 2; k++) r[k] = decode_rate(&m[k], contexts[ic], batches[ib], steps, max_gib, &gib[k]);
            char a[32], b[32], ratio[32];
            snprintf(a, sizeof a, r[0] < 0 ? "skipped (> %.0f GiB)" : "%.1f", r[0] < 0 ? max_gib : r[0]);
            snprintf(b, sizeof b, r[1] < 0 ? "skipped (> %.0f GiB)" : "%.1f", r[1] < 0 ? max_gib : r[1]);
            snprintf(ratio, sizeof ratio, r[0] > 0 && r[1] > 0 ? "%.2f" : "-", r[1] / r[0]);
            printf("| %d | %d | %s | %s | %s | %.2f / %.2f |\n", contexts[ic], batches[ib], a, b, ratio, gib[0], gib[1]);
            fflush(stdout);
        }
    for (int k = 0; k < 2; k++) model_free(&m[k]);
    return 0;
}
