#include "train/metrics.h"

#include <cblas.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"

int metrics_open(Metrics *m, const char *path, int64_t resume_step) {
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    /* keep the lines of steps <= resume_step */
    FILE *in = fopen(path, "r");
    char *kept = NULL;
    size_t kept_len = 0;
    if (in) {
        FILE *mem = open_memstream(&kept, &kept_len);
        char line[4096];
        while (fgets(line, sizeof line, in)) {
            json_t *o = json_loads(line, 0, NULL);
            json_t *st = o ? json_object_get(o, "step") : NULL;
            if (st && json_is_integer(st) && json_integer_value(st) <= resume_step) fputs(line, mem);
            json_decref(o);
        }
        fclose(mem);
        fclose(in);
    }
    m->f = fopen(path, "w");
    if (!m->f) {
        free(kept);
        return tm_fail("%s: cannot write the metrics log", path);
    }
    if (kept) fwrite(kept, 1, kept_len, m->f);
    free(kept);
    fflush(m->f);
    return 0;
}

void metrics_write(Metrics *m, const StepLog *s) {
    if (!m->f) return;
    fprintf(m->f,
            "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.17g, \"lr\": %.17g, \"grad_norm\": %.17g, \"tokens\": %lld, "
            "\"target_tokens\": %lld, \"step_s\": %.4f, \"tokens_per_s\": %.1f, \"gflops\": %.2f, \"mfu\": %.4f, "
            "\"elapsed_s\": %.2f",
            (long long)s->step, s->epoch, s->loss, s->lr, s->grad_norm, (long long)s->tokens, (long long)s->targets,
            s->step_s, s->tokens_per_s, s->gflops, s->mfu, s->elapsed_s);
    if (s->distill) fprintf(m->f, ", \"kl\": %.17g", s->kl);
    fputs("}\n", m->f);
    fflush(m->f);
}

void metrics_close(Metrics *m) {
    if (m->f) fclose(m->f);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

void metrics_print(FILE *to, const StepLog *s) {
    char eta[32];
    fmt_duration(eta, sizeof eta, s->eta_s);
    fprintf(to, "finetune: step %lld/%lld  loss %.4f  lr %.3e  grad-norm %.3f  %.0f tokens/s  %.1f GFLOP/s",
            (long long)s->step, (long long)s->total_steps, s->loss, s->lr, s->grad_norm, s->tokens_per_s, s->gflops);
    if (s->distill) fprintf(to, "  KL %.4f", s->kl);
    if (s->mfu > 0) fprintf(to, " (MFU %.0f%% of sgemm)", 100.0 * s->mfu);
    fprintf(to, "  ETA %s\n", eta);
}

/* Multiply-adds per token of one layer's attention: its projections'
 * (*proj) and its causal scores and weighted values (*core), on average
 * over a sequence of T. */
static void attention_macs(const ModelConfig *c, int T, double *proj, double *core) {
    double D = c->hidden_size, H = c->n_heads, mean_keys = (T + 1) / 2.0;
    if (!hf_config_is_mla(c)) {
        double hd = c->head_dim, G = c->n_kv_heads;
        *proj = D * H * hd + 2.0 * D * G * hd + H * hd * D;
        *core = H * 2.0 * hd * mean_keys;
        return;
    }
    const MlaConfig *m = &c->mla;
    double qk = m->qk_nope_head_dim + m->qk_rope_head_dim, R = m->kv_lora_rank, Rq = m->q_lora_rank;
    double dv = m->v_head_dim;
    *proj = (Rq > 0 ? D * Rq + Rq * H * qk : D * H * qk) + D * (R + m->qk_rope_head_dim) +
            R * H * (m->qk_nope_head_dim + dv) + H * dv * D;
    *core = H * (qk + dv) * mean_keys;
}

double train_flops_per_token(const ModelConfig *c, int T, TrainWhat what) {
    double D = c->hidden_size, attn_proj, core, mlp = 0.0;
    attention_macs(c, T, &attn_proj, &core); /* every layer's attention is alike */
    attn_proj *= c->n_layers, core *= c->n_layers;
    for (int l = 0; l < c->n_layers; l++)
        mlp += hf_config_layer_is_moe(c, l)
                   ? D * c->n_experts + c->n_experts_per_tok * 3.0 * D * c->expert_intermediate_size
                   : 3.0 * D * c->intermediate_size;
    double head = D * c->vocab_size, forward = attn_proj + core + mlp + head;
    /* backward: every input gradient (one forward's worth, the core's two), and
     * the weight gradients of what is trained (one forward's worth of each) */
    double weight_grads = attn_proj + (what == TRAIN_ALL ? mlp + head : 0.0);
    return 2.0 * (2.0 * forward + core + weight_grads);
}

double measure_sgemm_gflops_at(int M, int N, int K, double seconds) {
    float *a = mallocCheck((size_t)M * K * sizeof(float)), *b = mallocCheck((size_t)N * K * sizeof(float));
    float *c = mallocCheck((size_t)M * N * sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)((i % 13) - 6) / 8.0f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)((i % 13) - 6) / 8.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N); /* warm-up */
    int reps = 0;
    double t0 = tm_now_s(), t;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        reps++;
    } while ((t = tm_now_s() - t0) < seconds);
    free(a);
    free(b);
    free(c);
    return 2.0 * M * (double)N * K * reps / t / 1e9;
}

double measure_sgemm_gflops(int n, double seconds) { return measure_sgemm_gflops_at(n, n, n, seconds); }
