#define _XOPEN_SOURCE 700 /* nftw */
#include "convert/convert.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/build.h"
#include "convert/calibrate.h"
#include "convert/export.h"
#include "convert/rorope.h"
#include "io/checked.h"
#include "io/clock.h"
#include "io/error.h"
#include "model/model.h"
#include "model/ppl.h"

/* Everything one run holds, so that cleanup is one function. */
typedef struct {
    const ConvertSettings *s;
    Model orig;
    int32_t *cal_ids, *eval_ids;
    size_t n_cal, n_eval;
    int cal_nseq, eval_nseq;
    RoropeShape rs;
    MlaAttn *layers;        /* the chosen conversion, one per layer */
    char tmp_dir[4096];
    json_t *report, *ppl, *seconds, *settings;
    double t_stage;
    uint64_t mem_stats, mem_act, mem_attn; /* largest statistics, activations, converted attention held */
} Run;

static void stage_done(Run *r, const char *stage) {
    double t = tm_now_s();
    json_object_set_new(r->seconds, stage, json_real(t - r->t_stage));
    r->t_stage = t;
}

static void note_max(uint64_t *slot, uint64_t v) {
    if (v > *slot) *slot = v;
}

/* float64 layers plus the fp32 copy a built model holds */
static uint64_t layers_bytes(const MlaAttn *layers, int n) {
    uint64_t b = 0;
    for (int l = 0; l < n; l++) b += mla_attn_bytes(&layers[l]);
    return b + b / 2;
}

static void free_layers(MlaAttn *layers, int n) {
    if (!layers) return;
    for (int l = 0; l < n; l++) mla_attn_free(&layers[l]);
    free(layers);
}

/* ---- checks before any heavy work ---- */

/* mkdir -p of the folder that will hold `path`, so a bad location fails now. */
static int make_parents(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return tm_fail("%s: cannot create folder: %s", buf, strerror(errno));
        *p = '/';
    }
    return 0;
}

static int check_settings(Run *r) {
    const ConvertSettings *s = r->s;
    const ModelConfig *c = &r->orig.cfg;
    if (c->arch == TM_ARCH_DEEPSEEK_V3)
        return tm_fail("%s: model_type deepseek_v3 is already MLA; convert takes llama, qwen2, mistral or mixtral",
                       s->model_path);
    if (c->mlp_bias)
        return tm_fail("%s/config.json: mlp_bias=true, but DeepSeek-V3's MLP has no bias; such models cannot be exported",
                       s->model_path);
    int d = c->head_dim, L = c->n_kv_heads * d, qr = s->qk_mqa_dim;
    if (qr <= 0 || qr % 2 || qr > d || d % qr)
        return tm_fail("--qk-mqa-dim %d must be even, positive and divide head_dim %d (%s/config.json)", qr, d,
                       s->model_path);
    r->rs = (RoropeShape){.G = c->n_kv_heads, .d = d, .r = qr, .collapse = s->collapse ? s->collapse : d / qr};
    r->rs.freqfold = s->freqfold ? s->freqfold : r->rs.collapse;
    if (rorope_check(&r->rs)) return -1;
    if (s->kv_lora_rank < 1 || s->kv_lora_rank > 2 * L - qr)
        return tm_fail("--kv-lora-rank %d must be in [1, %d]: the latent [k_nope ; v] is 2 * kv_heads * head_dim - "
                       "qk_mqa_dim = 2*%d*%d - %d wide", s->kv_lora_rank, 2 * L - qr, c->n_kv_heads, d, qr);
    int qwidth = c->n_heads * (d + qr);
    if (s->q_lora_rank < 0 || s->q_lora_rank > qwidth)
        return tm_fail("--q-lora-rank %d must be in [0, %d] (num_attention_heads * (head_dim + qk_mqa_dim))",
                       s->q_lora_rank, qwidth);
    if (!(s->balance_kv_ratio > 0)) return tm_fail("--balance-kv-ratio must be positive");
    if (!s->freqfold && !s->eval_tokens)
        return tm_fail("--freqfold auto picks by evaluation perplexity and needs --eval-tokens");
    if (s->dtype != TM_DTYPE_INVALID && !tm_dtype_is_weight_float(s->dtype))
        return tm_fail("--dtype must be float32, bfloat16 or float16");
    struct stat st;
    if (stat(s->save_path, &st) == 0 && !s->overwrite)
        return tm_fail("%s: output folder exists; pass --overwrite to replace it", s->save_path);
    return make_parents(s->save_path);
}

static int read_windows(const char *path, const ConvertSettings *s, int vocab, int seqlen, int *nseq, int32_t **ids,
                        size_t *n, const char *flag) {
    if (token_file_read(path, s->token_dtype, vocab, ids, n)) return -1;
    if (ppl_check_windows(*n, seqlen, nseq)) {
        char why[512];
        snprintf(why, sizeof why, "%s", tm_error());
        return tm_fail("%s (%s): %s", path, flag, why);
    }
    return 0;
}

/* ---- stages ---- */

static double eval_ppl(Run *r, const Model *m, const char *label) {
    if (!r->eval_ids) return NAN;
    if (r->s->progress) fprintf(stderr, "eval[%s]: %d windows of %d tokens\n", label, r->eval_nseq, r->s->ppl_seqlen);
    PplResult res;
    if (ppl_eval(m, r->eval_ids, r->n_eval, r->s->ppl_seqlen, r->eval_nseq, r->s->eval_batch, r->s->progress, &res))
        return NAN;
    if (r->s->progress) fprintf(stderr, "eval[%s]: ppl %.6f (%.0f tokens/s)\n", label, res.ppl, res.tokens_per_s);
    return res.ppl;
}

/* RoRoPE of every layer at one freqfold, from the key statistics. */
static int rorope_layers(Run *r, const CalibStats *keys, int freqfold, MlaAttn **out) {
    const ModelConfig *c = &r->orig.cfg;
    RoropeShape rs = r->rs;
    rs.freqfold = freqfold;
    int L = c->n_kv_heads * c->head_dim;
    MlaAttn *layers = callocCheck((size_t)c->n_layers, sizeof *layers);
    double *P = mallocCheck((size_t)L * L * sizeof *P);
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        if (r->s->progress) fprintf(stderr, "rorope[freqfold %d]: layer %d/%d\n", freqfold, l + 1, c->n_layers);
        rc = rorope_rotation(keys->sum[l], &rs, P);
        if (rc) break;
        GqaAttn g;
        gqa_attn_load(&g, c, &r->orig.w.layers[l]);
        mla_from_rorope(&layers[l], &g, P, rs.r);
        gqa_attn_free(&g);
    }
    free(P);
    if (rc) {
        free_layers(layers, c->n_layers);
        return -1;
    }
    *out = layers;
    return 0;
}

static int freqfold_candidates(const RoropeShape *rs, int fixed, int *out) {
    if (fixed) {
        out[0] = fixed;
        return 1;
    }
    int n = 0;
    for (int f = rs->collapse; f <= rs->d / 2; f *= 2)
        if ((rs->d / 2) % f == 0) out[n++] = f;
    return n;
}

/* Step 1: key statistics on the original model, RoRoPE at each candidate
 * freqfold, keep the best by evaluation perplexity. */
static int stage_rorope(Run *r) {
    const ModelConfig *c = &r->orig.cfg;
    CalibStats keys;
    calib_stats_init(&keys, CAL_KEYS, c->n_layers, c->n_kv_heads * c->head_dim, 0);
    int rc = calibrate(&r->orig, r->cal_ids, r->s->cal_seqlen, r->cal_nseq, r->s->cal_batch, "calibrate[keys]",
                       r->s->progress, &keys);
    stage_done(r, "calibrate_keys");
    note_max(&r->mem_stats, calib_stats_bytes(&keys));
    note_max(&r->mem_act, keys.activation_bytes);
    int cands[32], nc = freqfold_candidates(&r->rs, r->s->freqfold, cands);
    double best = INFINITY;
    json_t *search = json_object();
    for (int i = 0; i < nc && !rc; i++) {
        MlaAttn *layers;
        if ((rc = rorope_layers(r, &keys, cands[i], &layers))) break;
        note_max(&r->mem_attn, layers_bytes(layers, c->n_layers) * (r->layers ? 2 : 1)); /* best so far + this one */
        BuiltModel bm;
        if ((rc = built_model_init(&bm, &r->orig, layers, BUILD_EXACT, 0))) {
            free_layers(layers, c->n_layers);
            break;
        }
        char label[64];
        snprintf(label, sizeof label, "rorope freqfold %d", cands[i]);
        double p = eval_ppl(r, &bm.model, label);
        built_model_free(&bm);
        char key[16];
        snprintf(key, sizeof key, "%d", cands[i]);
        json_object_set_new(search, key, json_real(p));
        if (nc == 1 || p < best) {
            best = p;
            free_layers(r->layers, c->n_layers);
            r->layers = layers;
            r->rs.freqfold = cands[i];
        } else {
            free_layers(layers, c->n_layers);
        }
    }
    calib_stats_free(&keys);
    if (rc) return -1;
    json_object_set_new(r->ppl, "rorope", json_real(best));
    json_object_set_new(r->ppl, "rorope_by_freqfold", search);
    json_object_set_new(r->settings, "freqfold", json_integer(r->rs.freqfold));
    stage_done(r, "rorope");
    return 0;
}

/* Steps 2-3: latent (and query) statistics on the RoRoPE model, BKV-PCA. */
static int stage_bkv_pca(Run *r) {
    const ModelConfig *c = &r->orig.cfg;
    const ConvertSettings *s = r->s;
    BuiltModel bm;
    if (built_model_init(&bm, &r->orig, r->layers, BUILD_EXACT, 0)) return -1;
    CalibStats lat;
    int qdim = s->q_lora_rank ? c->n_heads * (c->head_dim + s->qk_mqa_dim) : 0;
    calib_stats_init(&lat, CAL_LATENT, c->n_layers, r->layers[0].R, qdim);
    int rc = calibrate(&bm.model, r->cal_ids, s->cal_seqlen, r->cal_nseq, s->cal_batch, "calibrate[latent]", s->progress,
                       &lat);
    built_model_free(&bm);
    stage_done(r, "calibrate_latent");
    note_max(&r->mem_stats, calib_stats_bytes(&lat));
    note_max(&r->mem_act, lat.activation_bytes);
    json_t *ratios = json_array();
    for (int l = 0; l < c->n_layers && !rc; l++) {
        if (s->progress) fprintf(stderr, "bkv-pca: layer %d/%d\n", l + 1, c->n_layers);
        double ratio;
        rc = mla_bkv_pca(&r->layers[l], lat.sum[l], lat.count, s->kv_lora_rank, s->balance_kv_ratio, &ratio);
        if (!rc && s->q_lora_rank) rc = mla_q_pca(&r->layers[l], lat.qsum[l], lat.count, s->q_lora_rank);
        json_array_append_new(ratios, json_real(ratio));
    }
    json_object_set_new(r->report, "kv_balance_ratio", ratios);
    calib_stats_free(&lat);
    stage_done(r, "bkv_pca");
    return rc;
}

/* Step 4: fit the export's kv_b_proj to the kv_a_layernorm DeepSeek loaders
 * apply, on the latents of `exact` (the BUILD_EXACT model of r->layers). */
static int stage_kv_norm_fit(Run *r, const Model *exact) {
    const ModelConfig *c = &r->orig.cfg;
    const ConvertSettings *s = r->s;
    CalibStats st;
    calib_stats_init(&st, CAL_LATENT_NORMED, c->n_layers, 2 * s->kv_lora_rank, 0);
    int rc = calibrate(exact, r->cal_ids, s->cal_seqlen, r->cal_nseq, s->cal_batch, "calibrate[kv-norm]",
                       s->progress, &st);
    note_max(&r->mem_stats, calib_stats_bytes(&st));
    for (int l = 0; l < c->n_layers && !rc; l++) rc = mla_fit_kv_norm(&r->layers[l], st.sum[l]);
    calib_stats_free(&st);
    stage_done(r, "kv_norm_fit");
    return rc;
}

/* ---- output folder: temp name, renamed when complete ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int finish_output(Run *r) {
    const char *save = r->s->save_path;
    char old[4200];
    struct stat st;
    int had_old = stat(save, &st) == 0;
    snprintf(old, sizeof old, "%s.old-%ld", save, (long)getpid());
    if (had_old && rename(save, old)) return tm_fail("%s: cannot move the old folder aside: %s", save, strerror(errno));
    if (rename(r->tmp_dir, save)) return tm_fail("%s: cannot rename %s into place: %s", save, r->tmp_dir, strerror(errno));
    r->tmp_dir[0] = 0;
    if (had_old) rm_tree(old);
    return 0;
}

static json_t *settings_json(const ConvertSettings *s, const RoropeShape *rs) {
    json_t *o = json_object();
    json_object_set_new(o, "model_path", json_string(s->model_path));
    json_object_set_new(o, "cal_tokens", json_string(s->cal_tokens));
    json_object_set_new(o, "cal_max_seqlen", json_integer(s->cal_seqlen));
    json_object_set_new(o, "cal_nsamples", json_integer(s->cal_nsamples));
    json_object_set_new(o, "eval_tokens", s->eval_tokens ? json_string(s->eval_tokens) : json_null());
    json_object_set_new(o, "ppl_seqlen", json_integer(s->ppl_seqlen));
    json_object_set_new(o, "qk_mqa_dim", json_integer(rs->r));
    json_object_set_new(o, "collapse", json_integer(rs->collapse));
    json_object_set_new(o, "freqfold_requested", s->freqfold ? json_integer(s->freqfold) : json_string("auto"));
    json_object_set_new(o, "kv_lora_rank", json_integer(s->kv_lora_rank));
    json_object_set_new(o, "q_lora_rank", s->q_lora_rank ? json_integer(s->q_lora_rank) : json_null());
    json_object_set_new(o, "balance_kv_ratio", json_real(s->balance_kv_ratio));
    json_object_set_new(o, "rope_interleave", json_boolean(s->rope_interleave));
    json_object_set_new(o, "calibration", json_string("parallel"));
    json_object_set_new(o, "kv_norm", json_string(s->kv_norm_fit ? "fit" : "rms"));
    return o;
}

static uint64_t peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024;
}

static void print_table(json_t *ppl, int freqfold) {
    json_t *search = json_object_get(ppl, "rorope_by_freqfold");
    if (json_object_size(search) > 1) {
        const char *key;
        json_t *v;
        printf("freqfold search (RoRoPE ppl):");
        json_object_foreach(search, key, v) printf("  %s: %.4f", key, json_number_value(v));
        printf("  -> %d\n", freqfold);
    }
    static const char *rows[][2] = {{"original", "original GQA"},
                                    {"rorope", "RoRoPE (partial RoPE)"},
                                    {"mla", "MLA (exact, no kv norm)"},
                                    {"mla_native", "MLA as exported (DeepSeek loader)"}};
    printf("%-36s %s\n", "model", "perplexity");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        json_t *v = json_object_get(ppl, rows[i][0]);
        if (v && json_is_number(v)) printf("%-36s %.6f\n", rows[i][1], json_number_value(v));
    }
}

static int run_stages(Run *r) {
    const ConvertSettings *s = r->s;
    const ModelConfig *c = &r->orig.cfg;
    json_object_set_new(r->ppl, "original", json_real(eval_ppl(r, &r->orig, "original")));
    stage_done(r, "eval_original");
    if (stage_rorope(r) || stage_bkv_pca(r)) return -1;

    BuiltModel exact;
    if (built_model_init(&exact, &r->orig, r->layers, BUILD_EXACT, 0)) return -1;
    json_object_set_new(r->ppl, "mla", json_real(eval_ppl(r, &exact.model, "mla")));
    stage_done(r, "eval_mla");
    /* the fit only adds kv_b_native to r->layers; the exact model keeps its own fp32 copies */
    int fit_rc = s->kv_norm_fit ? stage_kv_norm_fit(r, &exact.model) : 0;
    built_model_free(&exact);
    if (fit_rc) return -1;

    /* export to the temp folder, then read it back as any DeepSeek loader would */
    snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s.tmp-%ld", s->save_path, (long)getpid());
    rm_tree(r->tmp_dir);
    if (mkdir(r->tmp_dir, 0755)) return tm_fail("%s: cannot create: %s", r->tmp_dir, strerror(errno));
    BuiltModel native;
    if (built_model_init(&native, &r->orig, r->layers, BUILD_NATIVE, s->rope_interleave)) return -1;
    TmDType dtype = s->dtype != TM_DTYPE_INVALID ? s->dtype : r->orig.w.dtype;
    if (s->progress) fprintf(stderr, "export: %s (%s)\n", s->save_path, tm_dtype_name(dtype));
    int rc = export_deepseek_v3(r->tmp_dir, &native, s->model_path, dtype, s->max_shard_bytes);
    built_model_free(&native);
    if (rc) return -1;
    stage_done(r, "export");
    if (build_drops_q_bias(&r->layers[0]) && r->eval_ids) {
        BuiltModel with_bias;
        if (built_model_init(&with_bias, &r->orig, r->layers, BUILD_NATIVE_Q_BIAS, s->rope_interleave)) return -1;
        json_object_set_new(r->ppl, "mla_native_with_q_bias", json_real(eval_ppl(r, &with_bias.model, "mla_native + q bias")));
        built_model_free(&with_bias);
    }
    Model back;
    if (model_load(&back, r->tmp_dir)) return -1;
    json_object_set_new(r->ppl, "mla_native", json_real(eval_ppl(r, &back, "mla_native")));
    model_free(&back);
    stage_done(r, "eval_mla_native");

    int L = c->n_kv_heads * c->head_dim;
    uint64_t before = 2ull * L * c->n_layers * tm_dtype_size(r->orig.w.dtype);
    uint64_t after = (uint64_t)(s->kv_lora_rank + s->qk_mqa_dim) * c->n_layers * tm_dtype_size(dtype);
    json_object_set_new(r->report, "kv_bytes_per_token", json_pack("{sIsI}", "before", (json_int_t)before, "after",
                                                                   (json_int_t)after));
    json_t *notes = json_array();
    if (build_drops_q_bias(&r->layers[0]))
        json_array_append_new(notes, json_string("q_proj bias: DeepSeek's q_proj has no bias slot, so the export drops "
                                                 "it; ppl.mla_native_with_q_bias is the export with it kept, so "
                                                 "ppl.mla_native - ppl.mla_native_with_q_bias is its cost; "
                                                 "--q-lora-rank keeps it in q_a_proj.bias"));
    if (c->sliding_window)
        json_array_append_new(notes, json_string("sliding_window: DeepSeek attention has none; the export attends to "
                                                 "the whole context"));
    json_object_set_new(r->report, "notes", notes);
    Workspace probe; /* the evaluation micro-batch's size; malloc without touching pages */
    workspace_init(&probe, c, s->eval_batch, s->ppl_seqlen);
    note_max(&r->mem_act, probe.bytes);
    workspace_free(&probe);
    json_object_set_new(r->report, "memory",
                        json_pack("{sIsIsIsIsI}", "peak_rss_bytes", (json_int_t)peak_rss_bytes(), "weights_bytes",
                                  (json_int_t)r->orig.w.n_bytes, "converted_attention_bytes", (json_int_t)r->mem_attn,
                                  "statistics_bytes", (json_int_t)r->mem_stats, "activation_bytes",
                                  (json_int_t)r->mem_act));

    char path[4200];
    snprintf(path, sizeof path, "%s/transmla_report.json", r->tmp_dir);
    if (json_dump_file(r->report, path, JSON_INDENT(2))) return tm_fail("%s: cannot write", path);
    if (finish_output(r)) return -1;
    print_table(r->ppl, r->rs.freqfold);
    printf("KV cache: %llu -> %llu bytes per token (%.2fx smaller)\n", (unsigned long long)before,
           (unsigned long long)after, (double)before / after);
    printf("peak memory %.1f MiB (weights %.1f, converted attention %.1f, statistics %.1f, one micro-batch %.1f MiB); "
           "wrote %s\n", peak_rss_bytes() / 1048576.0, r->orig.w.n_bytes / 1048576.0, r->mem_attn / 1048576.0,
           r->mem_stats / 1048576.0, r->mem_act / 1048576.0, s->save_path);
    return 0;
}

int convert_run(const ConvertSettings *s) {
    Run r;
    memset(&r, 0, sizeof r);
    r.s = s;
    if (model_load(&r.orig, s->model_path)) return -1;
    int rc = check_settings(&r);
    r.cal_nseq = s->cal_nsamples;
    r.eval_nseq = s->eval_nsamples;
    if (!rc)
        rc = read_windows(s->cal_tokens, s, r.orig.cfg.vocab_size, s->cal_seqlen, &r.cal_nseq, &r.cal_ids, &r.n_cal,
                          "--cal-tokens");
    if (!rc && s->eval_tokens)
        rc = read_windows(s->eval_tokens, s, r.orig.cfg.vocab_size, s->ppl_seqlen, &r.eval_nseq, &r.eval_ids,
                          &r.n_eval, "--eval-tokens");
    if (!rc) {
        r.report = json_object();
        r.settings = settings_json(s, &r.rs);
        r.ppl = json_object();
        r.seconds = json_object();
        json_object_set(r.report, "settings", r.settings);
        json_object_set(r.report, "ppl", r.ppl);
        json_object_set(r.report, "seconds", r.seconds);
        if (s->progress)
            fprintf(stderr, "convert: %s (%s, %d layers, %d heads / %d kv heads, head_dim %d) -> MLA kv_lora_rank %d, "
                            "qk_mqa_dim %d; calibration %d x %d tokens\n",
                    s->model_path, r.orig.cfg.model_type, r.orig.cfg.n_layers, r.orig.cfg.n_heads,
                    r.orig.cfg.n_kv_heads, r.orig.cfg.head_dim, s->kv_lora_rank, s->qk_mqa_dim, r.cal_nseq,
                    s->cal_seqlen);
        r.t_stage = tm_now_s();
        rc = run_stages(&r);
        if (rc && r.tmp_dir[0]) rm_tree(r.tmp_dir); /* never leave a half-written folder */
    }
    free_layers(r.layers, r.orig.cfg.n_layers);
    free(r.cal_ids);
    free(r.eval_ids);
    json_decref(r.settings);
    json_decref(r.ppl);
    json_decref(r.seconds);
    json_decref(r.report);
    model_free(&r.orig);
    return rc;
}
