/* C side of tests/ref/grad_check.py: `test_grad CASE DIR` reads DIR/in.safetensors
 * (and for layer cases the model in DIR/model), runs one backward kernel, and
 * writes its results to DIR/out.safetensors, which grad_check.py compares
 * with finite differences of its own float64 forward. Integers travel as F32.
 * Forward consistency checks that need no reference (training forward vs the
 * inference forward) are done here and fail the program. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/safetensors.h"
#include "io/safetensors_set.h"
#include "io/safetensors_write.h"
#include "model/attention.h"
#include "model/crossentropy.h"
#include "model/matmul.h"
#include "model/model.h"
#include "model/rmsnorm.h"
#include "model/rope.h"
#include "model/swiglu.h"
#include "model/layer.h"

static StFile in;
static StWriteTensor outs[512];
static void *owned[512];
static int n_out, n_owned;

static const StTensor *need(const char *name) {
    const StTensor *t = st_find(&in, name);
    if (!t) tm_die("in.safetensors: no tensor %s", name);
    return t;
}
static const float *f32(const char *name, int64_t *n) {
    const StTensor *t = need(name);
    if (t->dtype != TM_F32) tm_die("in.safetensors: %s is not F32", name);
    if (n) *n = st_numel(t);
    return t->data;
}
static int scalar(const char *name) { return (int)f32(name, NULL)[0]; }
static float scalar_f(const char *name) { return f32(name, NULL)[0]; }
static int has(const char *name) { return st_find(&in, name) != NULL; }
/* An F32 tensor of `in` as int32 (owned until exit). */
static int32_t *ints(const char *name, int64_t *n_out_) {
    int64_t n;
    const float *f = f32(name, &n);
    int32_t *v = mallocCheck((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (int32_t)f[i];
    owned[n_owned++] = v;
    if (n_out_) *n_out_ = n;
    return v;
}
/* A fresh fp32 buffer, a copy of `init` when in holds it, else zeros. */
static float *buf(int64_t n, const char *init) {
    float *b = callocCheck((size_t)n, sizeof(float));
    if (init && has(init)) {
        int64_t m;
        const float *s = f32(init, &m);
        if (m != n) tm_die("%s: %lld elements, %lld expected", init, (long long)m, (long long)n);
        memcpy(b, s, (size_t)n * sizeof(float));
    }
    owned[n_owned++] = b;
    return b;
}
static Tensor weight(const char *name) {
    const StTensor *t = need(name);
    return (Tensor){.data = t->data, .dtype = t->dtype, .rows = t->shape[0], .cols = t->ndim > 1 ? t->shape[1] : 1,
                    .name = t->name};
}

static float max_abs_diff(const float *a, const float *b, int64_t n, float *max_ref) {
    float d = 0.0f, m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        d = fmaxf(d, fabsf(a[i] - b[i]));
        m = fmaxf(m, fabsf(b[i]));
    }
    if (max_ref) *max_ref = m;
    return d;
}

static void put(const char *name, const float *data, int64_t rows, int64_t cols) {
    StWriteTensor *o = &outs[n_out++];
    char *nm = strdup(name);
    owned[n_owned++] = nm;
    *o = (StWriteTensor){.name = nm, .dtype = TM_F32, .ndim = 2, .shape = {rows, cols}, .data = data};
}

static void case_rmsnorm(void) {
    int N = scalar("N"), C = scalar("C");
    const float *x = f32("x", NULL), *w = f32("w", NULL), *dy = f32("dout", NULL);
    float *y = buf((int64_t)N * C, NULL), *y0 = buf((int64_t)N * C, NULL), *rstd = buf(N, NULL);
    float *dx = buf((int64_t)N * C, "dx0"), *dw = buf(C, "dw0");
    rmsnorm_forward_train(y, rstd, x, w, N, C, scalar_f("eps"));
    rmsnorm_forward(y0, x, w, N, C, scalar_f("eps"));
    if (memcmp(y, y0, (size_t)N * C * sizeof(float))) tm_die("rmsnorm_forward_train differs from rmsnorm_forward");
    rmsnorm_backward(dx, dw, dy, x, w, rstd, N, C);
    put("dx", dx, N, C);
    put("dw", dw, 1, C);
}

static void case_linear(void) {
    int N = scalar("N");
    Tensor W = weight("W");
    const float *x = f32("x", NULL), *dy = f32("dout", NULL), *b = has("b") ? f32("b", NULL) : NULL;
    float *dx = buf(N * W.cols, "dx0"), *dW = buf(W.rows * W.cols, "dW0"), *db = buf(W.rows, "db0");
    float *y = buf(N * W.rows, NULL);
    matmul_forward(y, x, &W, b, N, 0);
    matmul_backward(dx, dW, b ? db : NULL, dy, x, &W, N);
    float *esz = buf(1, NULL);
    esz[0] = (float)tm_dtype_size(W.dtype); /* so the script knows which weight dtype ran */
    put("W_elem_bytes", esz, 1, 1);
    put("y", y, N, W.rows);
    put("dx", dx, N, W.cols);
    put("dW", dW, W.rows, W.cols);
    if (b) put("db", db, 1, W.rows);
}

/* A gated activation act(gate) * up: its forward with an output equals the
 * in-place one bit for bit, and its backward. */
typedef struct {
    const char *name;
    void (*forward_out)(float *out, const float *gate, const float *up, int64_t n);
    void (*forward)(float *gate, const float *up, int64_t n);
    void (*backward)(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);
} GatedAct;

static void case_gated(const GatedAct *a) {
    int64_t n;
    const float *g = f32("g", &n), *u = f32("u", NULL), *dy = f32("dout", NULL);
    float *y = buf(n, NULL), *y0 = buf(n, "g"), *dg = buf(n, NULL), *du = buf(n, NULL);
    a->forward_out(y, g, u, n);
    a->forward(y0, u, n);
    if (memcmp(y, y0, (size_t)n * sizeof(float))) tm_die("%s_forward_out differs from %s_forward", a->name, a->name);
    a->backward(dg, du, dy, g, u, n);
    put("y", y, 1, n);
    put("dg", dg, 1, n);
    put("du", du, 1, n);
}

static const GatedAct SWIGLU = {"swiglu", swiglu_forward_out, swiglu_forward, swiglu_backward};
static const GatedAct GEGLU = {"geglu", geglu_forward_out, geglu_forward, geglu_backward};

static void case_rope(void) {
    int N = scalar("N"), W = scalar("W"), T = scalar("T");
    RopeLayout lay = {.n_heads = scalar("n_heads"), .head_stride = scalar("head_stride"), .offset = scalar("offset"),
                      .interleave = scalar("interleave")};
    TmRopeScalingCfg plain = {.type = TM_ROPE_PLAIN};
    RopeTable rt;
    rope_table_init(&rt, &plain, scalar_f("theta"), scalar("rope_dim"), scalar("max_pos"));
    int32_t *pos = ints("pos", NULL);
    float *y = buf((int64_t)N * W, "x"), *dx = buf((int64_t)N * W, "dout");
    rope_forward_pos(y, W, &rt, N, pos, &lay);
    rope_backward_pos(dx, W, &rt, N, pos, &lay);
    /* positions 0..T-1 per row: the same bits as rope_forward */
    float *a = buf((int64_t)N * W, "x"), *b = buf((int64_t)N * W, "x");
    int32_t *seq = mallocCheck((size_t)N * sizeof *seq);
    for (int i = 0; i < N; i++) seq[i] = i % T;
    rope_forward(a, W, &rt, N / T, T, 0, &lay);
    rope_forward_pos(b, W, &rt, N, seq, &lay);
    if (memcmp(a, b, (size_t)N * W * sizeof(float))) tm_die("rope_forward_pos differs from rope_forward");
    free(seq);
    rope_table_free(&rt);
    put("y", y, N, W);
    put("dx", dx, N, W);
}

static void case_attention(void) {
    int B = scalar("B"), T = scalar("T"), H = scalar("H"), G = scalar("G"), dqk = scalar("dqk"), dv = scalar("dv");
    int N = B * T;
    float scale = scalar_f("scale"), cap = has("softcap") ? scalar_f("softcap") : 0.0f;
    const float *q = f32("q", NULL), *k = f32("k", NULL), *v = f32("v", NULL), *dy = f32("dout", NULL);
    int32_t *doc = ints("doc_start", NULL);
    float *out = buf((int64_t)N * H * dv, NULL), *lse = buf((int64_t)N * H, NULL);
    float *dq = buf((int64_t)N * H * dqk, NULL), *dk = buf((int64_t)N * G * dqk, NULL), *dvv = buf((int64_t)N * G * dv, NULL);
    attention_forward(out, lse, q, k, v, B, T, H, G, dqk, dv, doc, 0, scale, cap);
    attention_backward(dq, dk, dvv, dy, out, lse, q, k, v, B, T, H, G, dqk, dv, doc, 0, scale, cap);
    /* a window given as such sees the keys it sees composed into doc_start: the same bits */
    int window = T / 2 > 1 ? T / 2 : 1;
    int32_t *win = mallocCheck((size_t)N * sizeof *win);
    for (int i = 0; i < N; i++) {
        int t = i % T, lo = t - window + 1;
        win[i] = lo > doc[i] ? lo : doc[i];
    }
    float *o1 = buf((int64_t)N * H * dv, NULL), *o2 = buf((int64_t)N * H * dv, NULL);
    attention_forward(o1, NULL, q, k, v, B, T, H, G, dqk, dv, doc, window, scale, cap);
    attention_forward(o2, NULL, q, k, v, B, T, H, G, dqk, dv, win, 0, scale, cap);
    if (memcmp(o1, o2, (size_t)N * H * dv * sizeof(float))) tm_die("attention_forward: window != composed doc_start");
    free(win);
    /* without lse and documents a row at a time: the blocked kernel's result within fp32 rounding */
    attention_forward(o1, lse, q, k, v, B, T, H, G, dqk, dv, NULL, window, scale, cap);
    attention_forward(o2, NULL, q, k, v, B, T, H, G, dqk, dv, NULL, window, scale, cap);
    float ref, d = max_abs_diff(o1, o2, (int64_t)N * H * dv, &ref);
    if (d > 1e-6f * ref) tm_die("attention_forward: rows differ from blocks by %g", d);
    put("out", out, N, H * dv);
    put("dq", dq, N, H * dqk);
    put("dk", dk, N, G * dqk);
    put("dv", dvv, N, G * dv);
}

static void case_head(void) {
    int N = scalar("N"), chunk = scalar("chunk");
    Tensor W = weight("W");
    const float *hid = f32("hidden", NULL);
    int32_t *tg = ints("targets", NULL);
    float *dh = buf(N * W.cols, "dh0"), *dW = buf(W.rows * W.cols, "dW0"), *logits = buf((int64_t)N * chunk, NULL);
    int64_t cnt;
    float cap = has("softcap") ? scalar_f("softcap") : 0.0f;
    HeadTeacher ht, *teacher = NULL;
    if (has("alpha")) { /* distillation: the teacher's hidden and head, its own cap */
        static Tensor Wt;
        Wt = weight("Wt");
        ht = (HeadTeacher){.hidden = f32("hidden_t", NULL), .lm_head = &Wt, .logit_cap = scalar_f("softcap_t"),
                           .alpha = scalar_f("alpha"), .logits = buf((int64_t)N * chunk, NULL)};
        teacher = &ht;
    }
    double nll = head_loss_forward_backward(dh, dW, hid, &W, tg, N, scalar_f("weight"), cap, logits, chunk, &cnt,
                                            teacher);
    float *res = buf(3, NULL);
    res[0] = (float)nll;
    res[1] = (float)cnt;
    res[2] = teacher ? (float)ht.kl : 0.0f;
    put("dhidden", dh, N, W.cols);
    put("dW", dW, W.rows, W.cols);
    put("nll_count", res, 1, 3);
}

static void case_embedding(void) {
    int V = scalar("V"), D = scalar("D");
    int64_t N;
    int32_t *tok = ints("tokens", &N);
    float *dE = buf((int64_t)V * D, "dE0");
    embedding_backward(dE, f32("dout", NULL), tok, (int)N, D);
    put("dE", dE, V, D);
}

/* A layer of DIR/model (input "layer", default 0): forward, backward, every
 * parameter gradient of the layer written as "grad.<name>"; with "frozen",
 * every other slot is NULL. */
static void case_layer(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model/config.json", dir);
    ModelConfig cfg;
    if (hf_config_load(&cfg, path)) tm_die("%s", tm_error());
    cfg.mla.latent_norms = scalar("latent_norms");
    cfg.mla.q_bias = scalar("q_bias");
    snprintf(path, sizeof path, "%s/model", dir);
    StSet set;
    if (st_set_open(&set, path)) tm_die("%s", tm_error());
    Model m;
    if (model_init(&m, &cfg, &set, "config.json")) tm_die("%s", tm_error());
    const ModelConfig *c = &m.cfg;
    int B = scalar("B"), T = scalar("T"), N = B * T, D = c->hidden_size, frozen = has("frozen");
    int l = has("layer") ? scalar("layer") : 0;
    const float *x = f32("x", NULL), *dy = f32("dout", NULL);
    int32_t *pos = ints("pos", NULL), *doc = ints("doc_start", NULL);
    RopeTable rt;
    rope_table_init(&rt, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    LayerActs acts;
    layer_acts_init(&acts, c, B, T, 1);

    /* pos = t, one document per row: what model_layers computes (in place,
     * activations for the forward alone, attention a row at a time) */
    Workspace ws;
    workspace_init(&ws, c, B, T);
    memcpy(ws.x, x, (size_t)N * D * sizeof(float));
    model_layers(&m, &ws, l, l + 1);
    int32_t *pos0 = mallocCheck((size_t)N * sizeof *pos0), *doc0 = callocCheck((size_t)N, sizeof *doc0);
    for (int i = 0; i < N; i++) pos0[i] = i % T;
    float *y = buf((int64_t)N * D, NULL);
    LayerRows rows0 = {.B = B, .T = T, .pos = pos0, .doc_start = doc0, .rope = &rt};
    layer_forward(c, &m.w.layers[l], l, x, y, &rows0, &acts);
    float ref, d = max_abs_diff(y, ws.x, (int64_t)N * D, &ref);
    fprintf(stderr, "layer_forward (for the backward pass) vs model_layers: max |diff| %.3g (max |y| %.3g)\n", d, ref);
    if (d > 1e-5f * ref) tm_die("layer_forward for the backward pass differs from model_layers");
    workspace_free(&ws);
    free(pos0);
    free(doc0);

    ModelWeights gw = {0};
    ModelPart part = {.first = l, .end = l + 1, .embed = 0, .head = 0};
    WeightSlot *slots;
    int ns = weights_slots(&gw, c, &part, &slots);
    for (int i = 0; i < ns; i++) {
        if (slots[i].layer != l) continue;
        int64_t n = slots[i].rows * (slots[i].cols ? slots[i].cols : 1);
        float *g = (frozen && i % 2) ? NULL : buf(n, NULL);
        if (slots[i].mat) *slots[i].mat = (Tensor){.data = g, .dtype = TM_F32, .rows = slots[i].rows, .cols = slots[i].cols};
        else *slots[i].vec = g;
        if (g) {
            char nm[200];
            snprintf(nm, sizeof nm, "grad.%s", slots[i].name);
            put(nm, g, slots[i].cols ? slots[i].rows : 1, slots[i].cols ? slots[i].cols : n);
        }
    }
    LayerRows rows = {.B = B, .T = T, .pos = pos, .doc_start = doc, .rope = &rt};
    layer_forward(c, &m.w.layers[l], l, x, y, &rows, &acts);
    float *dx = buf((int64_t)N * D, "dout");
    layer_backward(c, &m.w.layers[l], &gw.layers[l], l, x, dx, dx, &rows, &acts); /* in place */
    (void)dy;
    put("y", y, N, D);
    put("dx", dx, N, D);
    free(slots);
    weights_free(&gw, c);
    layer_acts_free(&acts);
    rope_table_free(&rt);
    model_free(&m);
}

int main(int argc, char **argv) {
    if (argc != 3) tm_die("usage: test_grad CASE DIR");
    const char *cs = argv[1], *dir = argv[2];
    char path[4096];
    snprintf(path, sizeof path, "%s/in.safetensors", dir);
    if (st_open(&in, path)) tm_die("%s", tm_error());
    if (!strcmp(cs, "rmsnorm")) case_rmsnorm();
    else if (!strcmp(cs, "linear")) case_linear();
    else if (!strcmp(cs, "swiglu")) case_gated(&SWIGLU);
    else if (!strcmp(cs, "geglu")) case_gated(&GEGLU);
    else if (!strcmp(cs, "rope")) case_rope();
    else if (!strcmp(cs, "attention")) case_attention();
    else if (!strcmp(cs, "head")) case_head();
    else if (!strcmp(cs, "embedding")) case_embedding();
    else if (!strcmp(cs, "layer")) case_layer(dir);
    else tm_die("unknown case %s", cs);
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    if (st_write_file(path, outs, n_out)) tm_die("%s", tm_error());
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    st_close(&in);
    return 0;
}
