/* Parts of a model (pipeline stages): a process that loads layers [first,
 * end), plus the embedding on the first stage and the final norm and head on
 * the last, must
 *  1. compute what the whole model computes: model_embed -> model_layers over
 *     parts loaded one after another -> model_final_norm -> model_head_nll
 *     gives the whole model's model_nll and final hidden states bit for bit
 *     (the same operations in the same order), with the attention hook called
 *     with global layer numbers; the same for converted (MLA) models built
 *     from each part (pipeline/build.c);
 *  2. hold exactly its own tensors: w.n_bytes is the byte size of exactly
 *     those, its lookup table lists only them, layers outside it stay zeroed,
 *     and with a sharded model only the shards holding them are opened (a
 *     part inside one shard opens one file);
 *  3. fail on a missing tensor of its own with the 'missing tensor' message,
 *     and not on one missing from another part; a tensor the config does not
 *     explain is still an error for the part it would belong to.
 *
 * Models: every golden fixture (tests/ref/make_fixtures.py; two of them are
 * sharded), the bundled bytelm-dev and stories260K, and copies of
 * stories260K written here with one shard per layer. The expected tensor sets
 * are worked out here from the names (not with weights_tensor_part). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/build.h"
#include "pipeline/fit_stream.h"
#include "pipeline/mla_layer.h"
#include "io/base/error.h"
#include "pipeline/output.h"
#include "io/safetensors_set.h"
#include "io/safetensors_write.h"
#include "io/token_file.h"
#include "model/model.h"
#include "tests/fixture.h"

#define TMPDIR_TAG "test_part"
#include "tests/tmpdir.h"

#define MAX_LAYERS 64
#define MAX_PARTS (MAX_LAYERS + 2)


/* ---------- helpers ---------- */


static const char *make_dir(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", tmp_root, name);
    output_remove_tree(buf);
    assert_int_equal(mkdir(buf, 0700), 0);
    return buf;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static int has_index(const char *dir) {
    char path[1200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    return stat(path, &sb) == 0;
}

static ModelPart part_of(int first, int end, int embed, int head) {
    return (ModelPart){.first = first, .end = end, .embed = embed, .head = head};
}

/* Which group a tensor belongs to, by name alone: -1 embedding, -2 final
 * norm / lm_head, else the layer. Fails on a name no model tensor has. */
static int test_group(const char *name) {
    int layer, len = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &len) == 1 && len > 0) return layer;
    if (strcmp(name, "model.embed_tokens.weight") == 0) return -1;
    if (strcmp(name, "model.norm.weight") == 0 || strcmp(name, "lm_head.weight") == 0) return -2;
    fail_msg("unexpected tensor name %s", name);
    return -3;
}

/* Whether part p reads the tensor (a tied head reads the embedding), and
 * whether it binds it (a tied model's stray lm_head.weight is not bound). */
static int test_reads(const ModelPart *p, int tied, const char *name) {
    int g = test_group(name);
    if (g >= 0) return g >= p->first && g < p->end;
    if (g == -1) return p->embed || (p->head && tied);
    return p->head;
}

static int test_binds(const ModelPart *p, int tied, const char *name) {
    return test_reads(p, tied, name) && !(tied && strcmp(name, "lm_head.weight") == 0);
}

/* Distinct shard files holding a tensor the part reads (1: a single file). */
static int expected_files(const char *dir, const ModelPart *p, int tied) {
    if (!has_index(dir)) return 1;
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    assert_non_null(root);
    json_t *wm = json_object_get(root, "weight_map"), *files = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) if (test_reads(p, tied, key)) json_object_set_new(files, json_string_value(v), json_true());
    int n = (int)json_object_size(files);
    json_decref(files);
    json_decref(root);
    return n;
}

/* Stored bytes of the tensors of `full` that part p binds. */
static uint64_t part_bytes(const StSet *full, const ModelPart *p, int tied) {
    uint64_t bytes = 0;
    for (int i = 0; i < full->n; i++)
        if (test_binds(p, tied, full->sorted[i]->name)) bytes += full->sorted[i]->end - full->sorted[i]->begin;
    return bytes;
}

/* What a loaded part must hold, against the whole model's set `full`. */
static void check_part_holds(const Model *pm, const StSet *full, const char *dir, const char *label) {
    const ModelPart *p = &pm->part;
    int tied = pm->cfg.tie_word_embeddings, n_read = 0;
    uint64_t bytes = part_bytes(full, p, tied);
    for (int i = 0; i < full->n; i++) {
        const StTensor *t = full->sorted[i];
        n_read += test_reads(p, tied, t->name);
        /* the part's lookup table holds exactly what it reads */
        if ((st_set_find(&pm->set, t->name) != NULL) != test_reads(p, tied, t->name))
            fail_msg("%s part [%d,%d) e%d h%d: tensor %s %s its set", label, p->first, p->end, p->embed, p->head,
                     t->name, test_reads(p, tied, t->name) ? "missing from" : "wrongly in");
    }
    assert_int_equal(pm->set.n, n_read);
    if (pm->w.n_bytes != bytes)
        fail_msg("%s part [%d,%d) e%d h%d: n_bytes %llu, its tensors hold %llu", label, p->first, p->end, p->embed,
                 p->head, (unsigned long long)pm->w.n_bytes, (unsigned long long)bytes);
    int want_files = expected_files(dir, p, tied);
    if (pm->set.n_files != want_files)
        fail_msg("%s part [%d,%d) e%d h%d: %d files opened, its tensors are in %d", label, p->first, p->end, p->embed,
                 p->head, pm->set.n_files, want_files);
    static const LayerWeights zero;
    for (int l = 0; l < pm->cfg.n_layers; l++) {
        int inside = l >= p->first && l < p->end;
        int is_zero = memcmp(&pm->w.layers[l], &zero, sizeof zero) == 0;
        if (inside == is_zero) fail_msg("%s: layer %d is %s", label, l, inside ? "not bound" : "bound outside the part");
    }
    assert_true((pm->w.embed.data != NULL) == (p->embed || (p->head && tied)));
    assert_true((pm->w.final_norm != NULL) == (p->head != 0));
    assert_true((pm->w.lm_head.data != NULL) == (p->head || (tied && p->embed)));
}

/* The attention hook: the layers it is called for, and a checksum of q. */
typedef struct {
    int n, layers[MAX_LAYERS];
    double qsum[MAX_LAYERS];
    int64_t q_width;
} HookLog;

static void log_hook(void *ctx, int layer, const AttnProjections *p) {
    HookLog *h = ctx;
    assert_true(h->n < MAX_LAYERS);
    double s = 0;
    for (int64_t i = 0; i < (int64_t)p->N * h->q_width; i++) s += p->q[i];
    h->layers[h->n] = layer;
    h->qsum[h->n++] = s;
}

typedef struct {
    double nll;
    int64_t predicted;
    float *x, *xn; /* [N, D] final residual stream and its norm */
    HookLog hook;
} Run;

static void run_free(Run *r) {
    free(r->x);
    free(r->xn);
}

static void run_keep(Run *r, const Workspace *ws, int D) {
    size_t bytes = (size_t)ws->B * ws->T * D * sizeof(float);
    r->x = malloc(bytes);
    r->xn = malloc(bytes);
    memcpy(r->x, ws->x, bytes);
    memcpy(r->xn, ws->xn, bytes);
}

static void runs_equal(const Run *a, const Run *b, int N, int D, const char *label) {
    if (memcmp(&a->nll, &b->nll, sizeof a->nll) != 0)
        fail_msg("%s: NLL %.17g, the whole model's %.17g", label, b->nll, a->nll);
    assert_int_equal(a->predicted, b->predicted);
    if (memcmp(a->x, b->x, (size_t)N * D * sizeof(float)) != 0) fail_msg("%s: final hidden states differ", label);
    if (memcmp(a->xn, b->xn, (size_t)N * D * sizeof(float)) != 0) fail_msg("%s: final normed states differ", label);
    assert_int_equal(a->hook.n, b->hook.n);
    for (int i = 0; i < a->hook.n; i++) {
        assert_int_equal(a->hook.layers[i], b->hook.layers[i]);
        if (memcmp(&a->hook.qsum[i], &b->hook.qsum[i], sizeof(double)) != 0)
            fail_msg("%s: layer %d's queries differ", label, a->hook.layers[i]);
    }
}

/* One pass of a chain: run the stage model `m` (holding m->part) on ws. */
static void run_stage(const Model *m, const int32_t *ids, Workspace *ws, Run *r) {
    const ModelPart *p = &m->part;
    if (p->embed) model_embed(m, ids, ws);
    model_layers(m, ws, p->first, p->end);
    if (p->head) {
        model_final_norm(m, ws);
        r->nll = model_head_nll(m, ids, ws, &r->predicted);
        run_keep(r, ws, m->cfg.hidden_size);
    }
}

static void workspace_with_hook(Workspace *ws, const ModelConfig *c, int B, int T, HookLog *log) {
    workspace_init(ws, c, B, T);
    memset(log, 0, sizeof *log);
    log->q_width = (int64_t)c->n_heads * hf_config_qk_head_dim(c);
    ws->hook = log_hook;
    ws->hook_ctx = log;
}

/* The partitions of n layers into stages tried on every model. Returns the
 * number of partitions; parts[k] has n_parts[k] stages. */
static int partitions(int n, ModelPart parts[][MAX_PARTS], int *n_parts) {
    int k = 0;
    for (int cut = 0; cut <= n; cut++) { /* two stages, including a stage with no layers */
        parts[k][0] = part_of(0, cut, 1, 0);
        parts[k][1] = part_of(cut, n, 0, 1);
        n_parts[k++] = 2;
    }
    /* embedding alone, each layer alone (middle stages with neither), head alone */
    parts[k][0] = part_of(0, 0, 1, 0);
    for (int l = 0; l < n; l++) parts[k][1 + l] = part_of(l, l + 1, 0, 0);
    parts[k][n + 1] = part_of(n, n, 0, 1);
    n_parts[k++] = n + 2;
    if (n >= 3) { /* three stages, a multi-layer middle one */
        parts[k][0] = part_of(0, 1, 1, 0);
        parts[k][1] = part_of(1, n - 1, 0, 0);
        parts[k][2] = part_of(n - 1, n, 0, 1);
        n_parts[k++] = 3;
    }
    parts[k][0] = part_of(0, n, 1, 1); /* everything, through model_load_part */
    n_parts[k++] = 1;
    return k;
}

/* Checks 1 and 2 on one model folder with tokens [B, T]. */
static void check_model(const char *dir, const int32_t *ids, int B, int T, const char *label) {
    Model whole;
    model_load_or_fail(&whole, dir);
    const ModelConfig *c = &whole.cfg;
    int n = c->n_layers, N = B * T, D = c->hidden_size;
    assert_true(n <= MAX_LAYERS);
    ModelPart all = model_part_all(c);
    assert_memory_equal(&whole.part, &all, sizeof all);
    assert_true(all.first == 0 && all.end == n && all.embed && all.head);
    check_part_holds(&whole, &whole.set, dir, label);

    Workspace ws;
    Run ref = {0};
    workspace_with_hook(&ws, c, B, T, &ref.hook);
    ref.nll = model_nll(&whole, ids, &ws, &ref.predicted);
    run_keep(&ref, &ws, D);
    assert_int_equal(ref.hook.n, n);
    for (int l = 0; l < n; l++) assert_int_equal(ref.hook.layers[l], l);
    workspace_free(&ws);

    static ModelPart parts[MAX_LAYERS + 8][MAX_PARTS];
    int n_parts[MAX_LAYERS + 8];
    int np = partitions(n, parts, n_parts);
    for (int k = 0; k < np; k++) {
        Run run = {0};
        workspace_with_hook(&ws, c, B, T, &run.hook);
        char what[1400];
        int len = snprintf(what, sizeof what, "%s split", label);
        for (int s = 0; s < n_parts[k]; s++) {
            const ModelPart *p = &parts[k][s];
            len += snprintf(what + len, sizeof what - (size_t)len, " [%d,%d)%s%s", p->first, p->end,
                            p->embed ? "+embed" : "", p->head ? "+head" : "");
        }
        for (int s = 0; s < n_parts[k]; s++) { /* each stage loaded on its own, as a rank would */
            Model pm;
            if (model_load_part(&pm, dir, &parts[k][s])) fail_msg("%s: %s", what, tm_error());
            check_part_holds(&pm, &whole.set, dir, what);
            run_stage(&pm, ids, &ws, &run);
            model_free(&pm);
        }
        runs_equal(&ref, &run, N, D, what);
        run_free(&run);
        workspace_free(&ws);
    }
    printf("  %-28s %d layers, %d splits: NLL %.9f bitwise equal; bytes and files per part match\n", label, n, np,
           ref.nll);
    run_free(&ref);
    model_free(&whole);
}

/* ---------- converted (MLA) models built from a part ---------- */

/* Exact MLA layers of the part's GQA layers (identity RoRoPE, rope width d),
 * indexed by global layer; entries outside the part stay zeroed. */
static MlaAttn *exact_layers(const Model *m) {
    const ModelConfig *c = &m->cfg;
    int L = c->n_kv_heads * c->head_dim;
    MlaAttn *a = calloc((size_t)c->n_layers, sizeof *a);
    double *P = calloc((size_t)L * L, sizeof *P);
    for (int i = 0; i < L; i++) P[(size_t)i * L + i] = 1.0;
    for (int l = m->part.first; l < m->part.end; l++) {
        GqaAttn g;
        gqa_attn_load(&g, c, &m->w.layers[l], NULL);
        mla_from_rorope(&a[l], &g, P, c->head_dim);
        gqa_attn_free(&g);
    }
    free(P);
    return a;
}

static void free_layers(MlaAttn *a, int n) {
    for (int l = 0; l < n; l++) mla_attn_free(&a[l]);
    free(a);
}

static void check_built(const char *dir, const int32_t *ids, int B, int T, const char *label) {
    Model whole;
    model_load_or_fail(&whole, dir);
    int n = whole.cfg.n_layers;
    MlaAttn *layers = exact_layers(&whole);
    BuiltModel bw;
    if (built_model_init(&bw, &whole, layers, BUILD_EXACT, 0)) fail_msg("%s: %s", label, tm_error());
    ModelPart all = model_part_all(&whole.cfg);
    assert_memory_equal(&bw.model.part, &all, sizeof all);
    const ModelConfig *c = &bw.model.cfg;
    int N = B * T, D = c->hidden_size;
    Workspace ws;
    Run ref = {0};
    workspace_with_hook(&ws, c, B, T, &ref.hook);
    ref.nll = model_nll(&bw.model, ids, &ws, &ref.predicted);
    run_keep(&ref, &ws, D);
    workspace_free(&ws);

    static ModelPart parts[MAX_LAYERS + 8][MAX_PARTS];
    int n_parts[MAX_LAYERS + 8];
    int np = partitions(n, parts, n_parts);
    for (int k = 0; k < np; k++) {
        Run run = {0};
        workspace_with_hook(&ws, c, B, T, &run.hook);
        for (int s = 0; s < n_parts[k]; s++) {
            const ModelPart *p = &parts[k][s];
            Model pm;
            if (model_load_part(&pm, dir, p)) fail_msg("%s: %s", label, tm_error());
            MlaAttn *pl = exact_layers(&pm);
            BuiltModel b;
            if (p->first == p->end) { /* a stage with no layers has nothing to convert */
                assert_int_equal(built_model_init(&b, &pm, pl, BUILD_EXACT, 0), -1);
                assert_non_null(strstr(tm_error(), "no layers"));
                run_stage(&pm, ids, &ws, &run); /* the original embedding / head is the converted one */
            } else {
                if (built_model_init(&b, &pm, pl, BUILD_EXACT, 0)) fail_msg("%s: %s", label, tm_error());
                assert_memory_equal(&b.model.part, p, sizeof *p);
                static const LayerWeights zero;
                for (int l = 0; l < n; l++)
                    assert_true((l >= p->first && l < p->end) !=
                                (memcmp(&b.model.w.layers[l], &zero, sizeof zero) == 0));
                /* only the part's tensors were carried over */
                for (int i = 0; i < b.model.set.n; i++)
                    assert_true(test_reads(p, c->tie_word_embeddings, b.model.set.sorted[i]->name));
                run_stage(&b.model, ids, &ws, &run);
                built_model_free(&b);
            }
            free_layers(pl, n);
            model_free(&pm);
        }
        char what[600];
        snprintf(what, sizeof what, "%s (converted) partition %d", label, k);
        runs_equal(&ref, &run, N, D, what);
        run_free(&run);
        workspace_free(&ws);
    }
    printf("  %-28s converted: %d splits bitwise equal (NLL %.9f)\n", label, np, ref.nll);
    run_free(&ref);
    built_model_free(&bw);
    free_layers(layers, n);
    model_free(&whole);
}

/* ---------- the models ---------- */

static void fixture_case(const char *name, int built) {
    char dir[1024];
    fixture_path(dir, sizeof dir, name, NULL);
    FixtureMeta meta = fixture_meta(name);
    int32_t *ids = fixture_tokens(name, &meta);
    if (built) check_built(dir, ids, meta.batch, meta.seqlen, name);
    else check_model(dir, ids, meta.batch, meta.seqlen, name);
    free(ids);
}

static void all_fixtures(void **state) {
    json_t *list = fixture_list();
    size_t i;
    json_t *v;
    int sharded = 0;
    json_array_foreach(list, i, v) {
        char dir[1024];
        sharded += has_index(fixture_path(dir, sizeof dir, json_string_value(v), NULL));
        fixture_case(json_string_value(v), 0);
    }
    assert_true(sharded >= 1); /* the sharded path must have been walked */
    json_decref(list);
}

static void converted_fixtures(void **state) {
    json_t *list = fixture_list();
    size_t i;
    json_t *v;
    /* MLA fixtures (gemma2_mla included) are converted already */
    json_array_foreach(list, i, v) if (!fixture_is_mla(json_string_value(v))) fixture_case(json_string_value(v), 1);
    json_decref(list);
}

/* The fits' calibration stream starts from the rows the model's forward
 * embeds (gemma2 scales them by sqrt(hidden_size)), bit for bit. */
static void fit_stream_embeds_as_forward(void **state) {
    json_t *list = fixture_list();
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        const char *name = json_string_value(v);
        FixtureMeta meta = fixture_meta(name);
        int32_t *ids = fixture_tokens(name, &meta);
        Model m;
        fixture_model(&m, name);
        Topology t = {.stages = 1, .replicas = 1};
        FitStream f;
        fit_stream_init(&f, &m.cfg, &t, meta.batch, meta.seqlen, 1);
        assert_int_equal(fit_stream_start(&f, f.x, &t, ids, &m), 0);
        Workspace ws;
        workspace_init(&ws, &m.cfg, meta.batch, meta.seqlen);
        model_embed(&m, ids, &ws);
        if (memcmp(f.x, ws.x, (size_t)f.N * f.D * sizeof(float))) fail_msg("%s: the fit stream's embedding differs", name);
        workspace_free(&ws);
        fit_stream_free(&f);
        model_free(&m);
        free(ids);
    }
    json_decref(list);
}

#define BUNDLED_B 2
#define BUNDLED_T 40

static int32_t *bundled_tokens(const char *dir, int V) {
    char path[1200];
    snprintf(path, sizeof path, "%s/eval.u16", dir);
    int32_t *ids;
    size_t n;
    assert_int_equal(token_file_read(path, TM_TOKENS_U16, V, &ids, &n), 0);
    assert_true(n >= (size_t)BUNDLED_B * BUNDLED_T);
    return ids;
}

static void bundled_models(void **state) {
    static const struct {
        const char *name;
        int V;
    } models[] = {{"bytelm-dev", 256}, {"stories260K", 512}};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/data/models/%s", TM_SOURCE_DIR, models[i].name);
        int32_t *ids = bundled_tokens(dir, models[i].V);
        check_model(dir, ids, BUNDLED_B, BUNDLED_T, models[i].name);
        check_built(dir, ids, BUNDLED_B, BUNDLED_T, models[i].name);
        free(ids);
    }
}

/* ---------- stories260K rewritten: one shard per layer, variants ---------- */

#define STORIES TM_SOURCE_DIR "/data/models/stories260K"

/* Write tensors w[0..n) into dir: one shard per group (embedding, each
 * layer, final norm/head) plus the index, or one model.safetensors. */
static void write_variant(const char *dir, const StWriteTensor *w, int n, int n_layers, int sharded) {
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    copy_file(STORIES "/config.json", path);
    if (!sharded) {
        assert_int_equal(st_write_model(dir, w, n, 0), 0);
        return;
    }
    int n_groups = n_layers + 2;
    StWriteTensor *g = malloc((size_t)n * sizeof *g);
    json_t *wm = json_object();
    for (int k = 0; k < n_groups; k++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            int layer, len = 0, slot = n_layers + 1; /* final norm, head and anything unexplained */
            if (strcmp(w[i].name, "model.embed_tokens.weight") == 0) slot = 0;
            else if (sscanf(w[i].name, "model.layers.%d.%n", &layer, &len) == 1 && len > 0 && layer < n_layers)
                slot = 1 + layer;
            if (slot == k) g[m++] = w[i];
        }
        if (!m) continue;
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", k + 1, n_groups);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        assert_int_equal(st_write_file(path, g, m), 0);
        for (int i = 0; i < m; i++) json_object_set_new(wm, g[i].name, json_string(file));
    }
    json_t *root = json_pack("{s:{},s:o}", "metadata", "weight_map", wm);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    assert_int_equal(json_dump_file(root, path, JSON_INDENT(1)), 0);
    json_decref(root);
    free(g);
}

/* The tensors of stories260K (pointing into `set`), less `drop`, plus `add`. */
static int variant_tensors(const StSet *set, StWriteTensor *w, const char *drop, const StWriteTensor *add) {
    int n = 0;
    for (int i = 0; i < set->n; i++) {
        const StTensor *t = set->sorted[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        w[n] = (StWriteTensor){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(w[n].shape, t->shape, sizeof t->shape);
        n++;
    }
    if (add) w[n++] = *add;
    return n;
}

static void expect_part_ok(const char *dir, ModelPart p, const char *why) {
    Model m;
    if (model_load_part(&m, dir, &p))
        fail_msg("%s: part [%d,%d) e%d h%d failed: %s", why, p.first, p.end, p.embed, p.head, tm_error());
    model_free(&m);
}

static void expect_part_fails(const char *dir, ModelPart p, const char *sub, const char *why) {
    Model m;
    if (model_load_part(&m, dir, &p) == 0) {
        model_free(&m);
        fail_msg("%s: part [%d,%d) e%d h%d loaded; expected an error with \"%s\"", why, p.first, p.end, p.embed, p.head,
                 sub);
    }
    if (!strstr(tm_error(), sub)) fail_msg("%s: error \"%s\" lacks \"%s\"", why, tm_error(), sub);
}

static void sharded_per_layer(void **state) {
    StSet set;
    if (st_set_open(&set, STORIES)) fail_msg("%s", tm_error());
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, STORIES "/config.json"), 0);
    int n = c.n_layers;
    assert_true(n >= 3);
    StWriteTensor *w = malloc((size_t)(set.n + 1) * sizeof *w);
    int nw = variant_tensors(&set, w, NULL, NULL);
    char dir[512];
    make_dir(dir, sizeof dir, "stories_sharded");
    write_variant(dir, w, nw, n, 1);

    /* every split on the sharded copy equals the original single-file model */
    int32_t *ids = bundled_tokens(STORIES, c.vocab_size);
    check_model(dir, ids, BUNDLED_B, BUNDLED_T, "stories260K per-layer shards");
    free(ids);

    /* a middle part needs one shard, and opens only that one */
    for (int l = 0; l < n; l++) {
        ModelPart p = part_of(l, l + 1, 0, 0);
        Model m;
        if (model_load_part(&m, dir, &p)) fail_msg("%s", tm_error());
        assert_int_equal(m.set.n_files, 1);
        char want[64];
        snprintf(want, sizeof want, "/model-%05d-of-%05d.safetensors", l + 2, n + 2);
        assert_non_null(strstr(m.set.files[0].path, want));
        model_free(&m);
    }
    /* the embedding stage opens its shard and its layers'; the tied head the embedding's too */
    Model m;
    ModelPart first = part_of(0, 1, 1, 0), last = part_of(n - 1, n, 0, 1);
    assert_int_equal(model_load_part(&m, dir, &first), 0);
    assert_int_equal(m.set.n_files, 2);
    model_free(&m);
    assert_int_equal(model_load_part(&m, dir, &last), 0);
    assert_int_equal(m.set.n_files, c.tie_word_embeddings ? 3 : 2);
    model_free(&m);

    /* the filtered open with no filter keeps everything */
    StSet none;
    assert_int_equal(st_set_open_filtered(&none, dir, NULL, NULL), 0);
    assert_int_equal(none.n_files, n + 2);
    assert_int_equal(none.n, set.n);
    st_set_close(&none);
    free(w);
    st_set_close(&set);
}

static int keep_nothing(const char *name, void *ctx) {
    (void)name;
    ++*(int *)ctx;
    return 0;
}

static void filter_keeps_nothing(void **state) {
    char dir[512];
    StSet set, none;
    if (st_set_open(&set, STORIES)) fail_msg("%s", tm_error());
    StWriteTensor *w = malloc((size_t)set.n * sizeof *w);
    int nw = variant_tensors(&set, w, NULL, NULL);
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, STORIES "/config.json"), 0);
    make_dir(dir, sizeof dir, "stories_keep_nothing");
    write_variant(dir, w, nw, c.n_layers, 1);
    int asked = 0;
    assert_int_equal(st_set_open_filtered(&none, dir, keep_nothing, &asked), 0);
    assert_int_equal(none.n_files, 0);
    assert_int_equal(none.n, 0);
    assert_true(asked >= nw);
    st_set_close(&none);
    /* single file: mapped, nothing listed */
    asked = 0;
    assert_int_equal(st_set_open_filtered(&none, STORIES, keep_nothing, &asked), 0);
    assert_int_equal(none.n_files, 1);
    assert_int_equal(none.n, 0);
    assert_int_equal(asked, set.n);
    st_set_close(&none);
    free(w);
    st_set_close(&set);
}

/* Check 3: a part fails on its own missing tensor only. */
static void missing_tensors(void **state) {
    StSet set;
    if (st_set_open(&set, STORIES)) fail_msg("%s", tm_error());
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, STORIES "/config.json"), 0);
    int n = c.n_layers;
    assert_true(n == 5 && c.tie_word_embeddings);
    StWriteTensor *w = malloc((size_t)(set.n + 1) * sizeof *w);
    char dir[512], label[600];
    for (int sharded = 0; sharded <= 1; sharded++) {
        /* a layer tensor */
        const char *up2 = "model.layers.2.mlp.up_proj.weight";
        int nw = variant_tensors(&set, w, up2, NULL);
        assert_int_equal(nw, set.n - 1);
        snprintf(label, sizeof label, "no %s (%s)", up2, sharded ? "sharded" : "one file");
        make_dir(dir, sizeof dir, sharded ? "miss_up2_sharded" : "miss_up2");
        write_variant(dir, w, nw, n, sharded);
        expect_part_fails(dir, part_of(2, 3, 0, 0), "missing tensor 'model.layers.2.mlp.up_proj.weight'", label);
        expect_part_fails(dir, part_of(1, 4, 0, 0), "missing tensor 'model.layers.2.mlp.up_proj.weight'", label);
        expect_part_fails(dir, model_part_all(&c), "missing tensor 'model.layers.2.mlp.up_proj.weight'", label);
        Model m;
        assert_int_equal(model_load(&m, dir), -1);
        assert_non_null(strstr(tm_error(), "missing tensor 'model.layers.2.mlp.up_proj.weight'"));
        expect_part_ok(dir, part_of(0, 2, 1, 0), label);
        expect_part_ok(dir, part_of(3, 5, 0, 1), label);
        expect_part_ok(dir, part_of(3, 4, 0, 0), label);

        /* the final norm: only the head's stage needs it */
        nw = variant_tensors(&set, w, "model.norm.weight", NULL);
        snprintf(label, sizeof label, "no model.norm.weight (%s)", sharded ? "sharded" : "one file");
        make_dir(dir, sizeof dir, sharded ? "miss_norm_sharded" : "miss_norm");
        write_variant(dir, w, nw, n, sharded);
        expect_part_fails(dir, part_of(4, 5, 0, 1), "missing tensor 'model.norm.weight'", label);
        expect_part_fails(dir, part_of(5, 5, 0, 1), "missing tensor 'model.norm.weight'", label);
        expect_part_ok(dir, part_of(0, 5, 1, 0), label);

        /* the embedding: the first stage, and the tied head, need it */
        nw = variant_tensors(&set, w, "model.embed_tokens.weight", NULL);
        snprintf(label, sizeof label, "no model.embed_tokens.weight (%s)", sharded ? "sharded" : "one file");
        make_dir(dir, sizeof dir, sharded ? "miss_embed_sharded" : "miss_embed");
        write_variant(dir, w, nw, n, sharded);
        expect_part_fails(dir, part_of(0, 1, 1, 0), "missing tensor 'model.embed_tokens.weight'", label);
        expect_part_fails(dir, part_of(4, 5, 0, 1), "missing tensor 'model.embed_tokens.weight'", label);
        expect_part_ok(dir, part_of(0, 5, 0, 0), label);
    }
    free(w);
    st_set_close(&set);
}

/* Tensors the config does not explain stay errors for the part they name. */
static void unknown_tensors(void **state) {
    StSet set;
    if (st_set_open(&set, STORIES)) fail_msg("%s", tm_error());
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, STORIES "/config.json"), 0);
    int n = c.n_layers;
    float junk[4] = {1, 2, 3, 4};
    StWriteTensor *w = malloc((size_t)(set.n + 1) * sizeof *w);
    char dir[512];
    const char *msg = "is not part of the model";
    for (int sharded = 0; sharded <= 1; sharded++) {
        /* a stray tensor in layer 1: that layer's stage reports it */
        StWriteTensor bogus = {.name = "model.layers.1.self_attn.bogus.weight", .dtype = TM_F32, .ndim = 1,
                               .shape = {4}, .data = junk};
        int nw = variant_tensors(&set, w, NULL, &bogus);
        make_dir(dir, sizeof dir, sharded ? "bogus1_sharded" : "bogus1");
        write_variant(dir, w, nw, n, sharded);
        expect_part_fails(dir, part_of(1, 2, 0, 0), "'model.layers.1.self_attn.bogus.weight' is not part of the model",
                          "stray layer-1 tensor");
        expect_part_fails(dir, model_part_all(&c), msg, "stray layer-1 tensor");
        expect_part_ok(dir, part_of(2, 5, 0, 1), "stray layer-1 tensor, other stage");

        /* a name no part explains: every stage reports it */
        StWriteTensor extra = {.name = "extra.weight", .dtype = TM_F32, .ndim = 1, .shape = {4}, .data = junk};
        nw = variant_tensors(&set, w, NULL, &extra);
        make_dir(dir, sizeof dir, sharded ? "extra_sharded" : "extra");
        write_variant(dir, w, nw, n, sharded);
        expect_part_fails(dir, part_of(2, 3, 0, 0), "'extra.weight' is not part of the model", "extra.weight");
        expect_part_fails(dir, part_of(0, 1, 1, 0), msg, "extra.weight");

        /* a layer the config does not have */
        StWriteTensor beyond = {.name = "model.layers.7.mlp.up_proj.weight", .dtype = TM_F32, .ndim = 1,
                                .shape = {4}, .data = junk};
        nw = variant_tensors(&set, w, NULL, &beyond);
        make_dir(dir, sizeof dir, sharded ? "beyond_sharded" : "beyond");
        write_variant(dir, w, nw, n, sharded);
        expect_part_fails(dir, part_of(2, 3, 0, 0), "'model.layers.7.mlp.up_proj.weight' is not part of the model",
                          "layer 7 of 5");
    }

    /* model_init_part over an unfiltered set: other parts' tensors are fine,
     * a stray one in another part is still reported */
    ModelPart mid = part_of(1, 3, 0, 0);
    StSet full;
    Model m;
    assert_int_equal(st_set_open(&full, STORIES), 0);
    if (model_init_part(&m, &c, &full, "(stories config)", &mid)) fail_msg("%s", tm_error());
    assert_int_equal(m.set.n, set.n); /* the set it was given, whole */
    assert_int_equal(m.w.n_bytes, part_bytes(&set, &mid, c.tie_word_embeddings));
    assert_true(m.w.embed.data == NULL && m.w.final_norm == NULL && m.w.layers[0].o.data == NULL);
    assert_true(m.w.layers[1].o.data != NULL && m.w.layers[2].o.data != NULL && m.w.layers[3].o.data == NULL);
    model_free(&m);
    make_dir(dir, sizeof dir, "bogus4");
    StWriteTensor bogus4 = {.name = "model.layers.4.mlp.bogus.weight", .dtype = TM_F32, .ndim = 1, .shape = {4},
                            .data = junk};
    int nw = variant_tensors(&set, w, NULL, &bogus4);
    write_variant(dir, w, nw, n, 0);
    assert_int_equal(st_set_open(&full, dir), 0);
    assert_int_equal(model_init_part(&m, &c, &full, "(stories config)", &mid), -1);
    assert_non_null(strstr(tm_error(), "'model.layers.4.mlp.bogus.weight' is not part of the model"));
    expect_part_ok(dir, mid, "stray layer-4 tensor, filtered load of layers 1..2");

    /* a part outside the model's layers is refused */
    assert_int_equal(model_load_part(&m, STORIES, &(ModelPart){.first = 3, .end = 6}), -1);
    assert_non_null(strstr(tm_error(), "num_hidden_layers"));
    assert_int_equal(model_load_part(&m, STORIES, &(ModelPart){.first = 3, .end = 2}), -1);
    free(w);
    st_set_close(&set);
}

static void tensor_part_names(void **state) {
    assert_int_equal(weights_tensor_part("model.layers.0.mlp.up_proj.weight"), 0);
    assert_int_equal(weights_tensor_part("model.layers.17.self_attn.q_proj.bias"), 17);
    assert_int_equal(weights_tensor_part("model.layers.123.block_sparse_moe.experts.3.w1.weight"), 123);
    assert_int_equal(weights_tensor_part("model.embed_tokens.weight"), WEIGHT_PART_EMBED);
    assert_int_equal(weights_tensor_part("model.norm.weight"), WEIGHT_PART_HEAD);
    assert_int_equal(weights_tensor_part("lm_head.weight"), WEIGHT_PART_HEAD);
    assert_int_equal(weights_tensor_part("model.layers.x.mlp.up_proj.weight"), WEIGHT_PART_OTHER);
    assert_int_equal(weights_tensor_part("model.layers.3"), WEIGHT_PART_OTHER);
    assert_int_equal(weights_tensor_part("model.layers.-1.mlp"), WEIGHT_PART_OTHER);
    assert_int_equal(weights_tensor_part("model.layers.99999999999.mlp"), WEIGHT_PART_OTHER);
    assert_int_equal(weights_tensor_part("model.embed_tokens.bias"), WEIGHT_PART_OTHER);
    assert_int_equal(weights_tensor_part("extra.weight"), WEIGHT_PART_OTHER);
    assert_int_equal(WEIGHT_PART_EMBED, -1);
    assert_int_equal(WEIGHT_PART_HEAD, -2);
    assert_int_equal(WEIGHT_PART_OTHER, -3);

    ModelConfig c = {.n_layers = 4, .tie_word_embeddings = 1};
    ModelPart last = part_of(3, 4, 0, 1), first = part_of(0, 1, 1, 0), mid = part_of(1, 3, 0, 0);
    assert_true(model_part_wants(&last, &c, "model.embed_tokens.weight")); /* tied head */
    assert_true(model_part_wants(&last, &c, "model.norm.weight"));
    assert_false(model_part_wants(&first, &c, "model.norm.weight"));
    assert_true(model_part_wants(&first, &c, "model.embed_tokens.weight"));
    assert_false(model_part_wants(&mid, &c, "model.embed_tokens.weight"));
    assert_true(model_part_wants(&mid, &c, "model.layers.2.mlp.up_proj.weight"));
    assert_false(model_part_wants(&mid, &c, "model.layers.3.mlp.up_proj.weight"));
    assert_true(model_part_wants(&mid, &c, "model.layers.9.mlp.up_proj.weight")); /* unexplained: reported */
    assert_true(model_part_wants(&mid, &c, "extra.weight"));
    c.tie_word_embeddings = 0;
    assert_false(model_part_wants(&last, &c, "model.embed_tokens.weight"));
    assert_true(model_part_wants(&last, &c, "lm_head.weight"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tensor_part_names),  cmocka_unit_test(all_fixtures),
        cmocka_unit_test(converted_fixtures), cmocka_unit_test(fit_stream_embeds_as_forward),
        cmocka_unit_test(bundled_models),
        cmocka_unit_test(sharded_per_layer),  cmocka_unit_test(filter_keeps_nothing),
        cmocka_unit_test(missing_tensors),    cmocka_unit_test(unknown_tensors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
