/* transmla_report.json's settings, memory and tail sections, and the
 * memory table printed at the end of `transmla convert` (run.h). */
#include <stdio.h>
#include <stdlib.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "pipeline/build.h"
#include "pipeline/output.h"
#include "pipeline/run.h"

json_t *run_settings_json(const Run *r) {
    const ConvertSettings *s = r->s;
    json_t *o = json_object();
    json_object_set_new(o, "model_path", json_string(s->model_path));
    json_object_set_new(o, "cal_dataset", json_string(run_data_free(r) ? "none" : s->cal.dataset ? s->cal.dataset : "tokens"));
    json_object_set_new(o, "cal_source", run_data_free(r) ? json_null() : json_string(token_source_describe(&s->cal)));
    json_object_set_new(o, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(o, "cal_max_seqlen", json_integer(s->cal_seqlen));
    json_object_set_new(o, "cal_nsamples", json_integer(r->cal_nseq));
    json_object_set_new(o, "eval_source", run_has_eval(s) ? json_string(token_source_describe(&s->eval)) : json_null());
    json_object_set_new(o, "ppl_seqlen", json_integer(s->ppl_seqlen));
    json_object_set_new(o, "qk_mqa_dim", json_integer(r->rs.r));
    json_object_set_new(o, "collapse", json_integer(r->rs.collapse));
    json_object_set_new(o, "freqfold_requested", s->freqfold ? json_integer(s->freqfold) : json_string("auto"));
    json_object_set_new(o, "kv_lora_rank", json_integer(s->kv_lora_rank));
    json_object_set_new(o, "q_lora_rank", s->q_lora_rank ? json_integer(s->q_lora_rank) : json_null());
    json_object_set_new(o, "balance_kv_ratio", json_real(s->balance_kv_ratio));
    json_object_set_new(o, "rope_interleave", json_boolean(s->rope_interleave));
    json_object_set_new(o, "calibration", json_string(run_data_free(r) ? "none (weights only)" : "parallel"));
    int fit = r->s->rorope_fit_steps > 0 && !run_data_free(r);
    json_object_set_new(o, "rorope_fit_steps", json_integer(fit ? s->rorope_fit_steps : 0));
    if (fit) {
        json_object_set_new(o, "rorope_fit_lr", json_real(s->rorope_fit_lr));
        json_object_set_new(o, "rorope_fit_nsamples", json_integer(s->rorope_fit_nsamples));
        json_object_set_new(o, "rorope_fit_schedule", json_string(s->rorope_fit_sequential ? "sequential" : "parallel"));
        json_object_set_new(o, "published_mla", json_boolean(!s->skip_published_mla));
    }
    json_object_set_new(o, "kv_norm", json_string(s->kv_norm_fit && !run_data_free(r) ? "fit" : "rms"));
    int attn = run_attn_fit_enabled(r);
    json_object_set_new(o, "attn_fit_steps", json_integer(attn ? s->attn_fit_steps : 0));
    if (attn) {
        json_object_set_new(o, "attn_fit_lr", json_real(s->attn_fit_lr));
        json_object_set_new(o, "attn_fit_nsamples", json_integer(s->attn_fit_nsamples));
        json_object_set_new(o, "attn_fit_windows_per_step", json_integer(s->attn_fit_windows_per_step));
        json_object_set_new(o, "attn_fit_o_proj", json_boolean(s->attn_fit_o));
        json_object_set_new(o, "attn_fit_schedule", json_string(s->attn_fit_sequential ? "sequential" : "parallel"));
    }
    json_object_set_new(o, "ranks", json_integer(r->t.size));
    json_object_set_new(o, "stages", json_integer(r->t.stages));
    json_object_set_new(o, "replicas", json_integer(r->t.replicas));
    json_object_set_new(o, "scalapack_min_n", json_integer(s->scalapack_min_n));
    return o;
}

/* Per-rank memory, summed pieces on rank 0: peak RSS, weights, statistics,
 * activations, converted attention. */
void run_memory_report(Run *r) {
    uint64_t mine[5] = {run_peak_rss(r), r->orig.w.n_bytes, r->rep.mem_stats, r->rep.mem_act, r->rep.mem_attn};
    uint64_t *all = mallocCheck((size_t)r->t.size * 5 * sizeof *all);
    MPI_Gather(mine, 5, MPI_UINT64_T, all, 5, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (run_is_root(r)) {
        json_t *per = json_array();
        for (int i = 0; i < r->t.size; i++) {
            uint64_t *m = all + 5 * i;
            json_array_append_new(per, json_pack("{sisisIsIsIsIsI}", "rank", i, "stage", i % r->t.stages,
                                                 "peak_rss_bytes", (json_int_t)m[0], "weights_bytes", (json_int_t)m[1],
                                                 "statistics_bytes", (json_int_t)m[2], "activation_bytes",
                                                 (json_int_t)m[3], "converted_attention_bytes", (json_int_t)m[4]));
        }
        /* rank 0's figures at the top level, as a one-process run reports them */
        json_t *mem = json_pack("{sIsIsIsIsI}", "peak_rss_bytes", (json_int_t)all[0], "weights_bytes",
                                (json_int_t)all[1], "statistics_bytes", (json_int_t)all[2], "activation_bytes",
                                (json_int_t)all[3], "converted_attention_bytes", (json_int_t)all[4]);
        json_object_set_new(mem, "per_rank", per);
        json_object_set_new(r->rep.report, "memory", mem);
    }
    free(all);
}

void run_print_memory(const Run *r) {
    json_t *per = json_object_get(json_object_get(r->rep.report, "memory"), "per_rank");
    size_t i;
    json_t *m;
    printf("%-6s %-6s %12s %12s %12s %12s %12s\n", "rank", "stage", "peak MiB", "weights", "converted", "statistics",
           "micro-batch");
    json_array_foreach(per, i, m) {
#define MIB(k) (json_integer_value(json_object_get(m, k)) / 1048576.0)
        printf("%-6zu %-6lld %12.1f %12.1f %12.1f %12.1f %12.1f\n", i,
               (long long)json_integer_value(json_object_get(m, "stage")), MIB("peak_rss_bytes"), MIB("weights_bytes"),
               MIB("converted_attention_bytes"), MIB("statistics_bytes"), MIB("activation_bytes"));
#undef MIB
    }
}

void run_report_tail(Run *r, TmDType dtype) {
    const ModelConfig *c = &r->cfg;
    const ConvertSettings *s = r->s;
    double *ratios = callocCheck((size_t)c->n_layers, sizeof *ratios), *sum = callocCheck((size_t)c->n_layers, sizeof *sum);
    if (r->t.replica == 0)
        for (int l = r->first; l < r->end; l++) ratios[l] = r->kv_ratio[l];
    MPI_Reduce(ratios, sum, c->n_layers, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    int calls[2] = {r->rep.scalapack_calls, r->rep.lapack_calls}, total[2];
    MPI_Reduce(calls, total, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (run_is_root(r)) {
        json_t *a = json_array();
        for (int l = 0; l < c->n_layers; l++) json_array_append_new(a, json_real(sum[l]));
        json_object_set_new(r->rep.report, "kv_balance_ratio", a);
        json_object_set_new(r->rep.report, "eigen_solver",
                            json_pack("{sisi}", "scalapack_problems", total[0], "lapack_problems", total[1]));
        int L = c->n_kv_heads * c->head_dim;
        uint64_t before = 2ull * L * c->n_layers * tm_dtype_size(r->orig.w.dtype);
        uint64_t after = (uint64_t)(s->kv_lora_rank + s->qk_mqa_dim) * c->n_layers * tm_dtype_size(dtype);
        json_object_set_new(r->rep.report, "kv_bytes_per_token",
                            json_pack("{sIsI}", "before", (json_int_t)before, "after", (json_int_t)after));
        json_t *notes = json_array();
        if (build_drops_q_bias(&r->layers[r->first]))
            json_array_append_new(notes, json_string("q_proj bias: DeepSeek's q_proj has no bias slot, so the export drops "
                                                     "it; ppl.mla_native_with_q_bias is the export with it kept, so "
                                                     "ppl.mla_native - ppl.mla_native_with_q_bias is its cost; "
                                                     "--q-lora-rank keeps it in q_a_proj.bias"));
        if (c->sliding_window && c->arch != TM_ARCH_GEMMA2) /* gemma2_mla keeps each layer's window */
            json_array_append_new(notes, json_string("sliding_window: DeepSeek attention has none; the export attends to "
                                                     "the whole context"));
        if (run_data_free(r))
            json_array_append_new(notes, json_string("--cal-dataset none: principal directions from the weights alone "
                                                     "(inputs taken as the input norm's weight times white noise); "
                                                     "kv_a_layernorm weight = the latent RMS under that assumption"));
        json_object_set_new(r->rep.report, "notes", notes);
    }
    free(ratios);
    free(sum);
}

/* ---- times across the runs of a resumed conversion ---- */

/* An object as [key, value] pairs: the state's markers are written with
 * sorted keys, and the report keeps the stages in the order they ran. */
static json_t *as_pairs(json_t *obj) {
    json_t *pairs = json_array(), *v;
    const char *k;
    json_object_foreach(obj, k, v) json_array_append_new(pairs, json_pack("[sO]", k, v));
    return pairs;
}

static void update_from_pairs(json_t *obj, json_t *pairs) {
    size_t i;
    json_t *kv;
    json_array_foreach(pairs, i, kv) {
        const char *k = json_string_value(json_array_get(kv, 0));
        if (k) json_object_set(obj, k, json_array_get(kv, 1));
    }
}

int run_times_save(Run *r) {
    uint64_t mine = run_peak_rss(r), *all = mallocCheck((size_t)r->t.size * sizeof *all);
    MPI_Gather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    json_t *info = NULL;
    if (run_is_root(r)) {
        json_t *peaks = json_array();
        for (int i = 0; i < r->t.size; i++) json_array_append_new(peaks, json_integer((json_int_t)all[i]));
        double in_stage = tm_now_s() - r->rep.t_stage + r->rep.carried;
        info = json_pack("{sososfsisO}", "seconds", as_pairs(r->rep.seconds), "peak_rss_after",
                         as_pairs(r->rep.peak_rss), "in_stage_seconds", in_stage, "runs", r->rep.runs,
                         "peak_rss_per_rank", peaks);
        json_decref(peaks);
    }
    free(all);
    int rc = resume_mark_done(&r->resume, "times", info);
    json_decref(info);
    return rc;
}

/* Rank 0 carries the stage seconds on (the stage in progress gets its time
 * so far when it finishes: run_stage_done); every rank its own earlier peak. */
static void run_times_continue(Run *r, json_t *info) {
    json_t *peaks = json_object_get(info, "peak_rss_per_rank");
    r->rep.prior_peak = (uint64_t)json_integer_value(json_array_get(peaks, (size_t)r->t.rank));
    r->rep.runs = (int)json_integer_value(json_object_get(info, "runs")) + 1;
    if (run_is_root(r)) {
        update_from_pairs(r->rep.seconds, json_object_get(info, "seconds"));
        update_from_pairs(r->rep.peak_rss, json_object_get(info, "peak_rss_after"));
        r->rep.carried = json_real_value(json_object_get(info, "in_stage_seconds"));
    }
}

void run_times_load(Run *r) {
    r->rep.runs = 1;
    json_t *info = r->resume.continued ? resume_phase_done(&r->resume, "times") : NULL;
    if (info) run_times_continue(r, info);
    json_decref(info);
    if (run_is_root(r)) json_object_set_new(json_object_get(r->rep.report, "resume"), "runs", json_integer(r->rep.runs));
}
