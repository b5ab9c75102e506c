#include "pipeline/mla_layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "dist/linalg.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/finite.h"

static double *to_f64(const Tensor *t) {
    int64_t n = t->rows * t->cols;
    float *f = mallocCheck((size_t)n * sizeof *f);
    double *out = mallocCheck((size_t)n * sizeof *out);
    tensor_to_f32(t, 0, n, f);
    for (int64_t i = 0; i < n; i++) out[i] = f[i];
    free(f);
    return out;
}

static double *vec_f64(const float *v, int n) {
    if (!v) return NULL;
    double *out = mallocCheck((size_t)n * sizeof *out);
    for (int i = 0; i < n; i++) out[i] = v[i];
    return out;
}

/* Rows of head h (of n) scaled by norm[j] * mean_rinv[h]: QK-norm with its
 * 1/rms replaced by a constant. */
static void fold_heads(double *w, double *bias, int n, int d, int D, const float *norm, const double *mean_rinv) {
    for (int h = 0; h < n; h++)
        for (int j = 0; j < d; j++) {
            int64_t row = (int64_t)h * d + j;
            double s = norm[j] * mean_rinv[h];
            for (int i = 0; i < D; i++) w[row * D + i] *= s;
            if (bias) bias[row] *= s;
        }
}

void gqa_attn_load(GqaAttn *g, const ModelConfig *c, const LayerWeights *L, const double *qk_fold) {
    g->H = c->n_heads;
    g->G = c->n_kv_heads;
    g->d = c->head_dim;
    g->D = c->hidden_size;
    g->score_dim = hf_config_score_dim(c);
    g->wq = to_f64(&L->q);
    g->wk = to_f64(&L->k);
    g->wv = to_f64(&L->v);
    g->bq = vec_f64(L->q_bias, g->H * g->d);
    g->bk = vec_f64(L->k_bias, g->G * g->d);
    g->bv = vec_f64(L->v_bias, g->G * g->d);
    if (qk_fold) {
        fold_heads(g->wq, g->bq, g->H, g->d, g->D, L->q_head_norm, qk_fold);
        fold_heads(g->wk, g->bk, g->G, g->d, g->D, L->k_head_norm, qk_fold + g->H);
    }
}

void gqa_attn_free(GqaAttn *g) {
    free(g->wq);
    free(g->wk);
    free(g->wv);
    free(g->bq);
    free(g->bk);
    free(g->bv);
    memset(g, 0, sizeof *g);
}

/* out[rows, D] = P[row0 .. row0+rows) . W (P [L, L], W [L, D]); same for a bias. */
static void rotate(double *out, double *out_bias, const double *P, int row0, int rows, int L, const double *W,
                   const double *bias, int D) {
    if (rows) dgemm_rm(0, 0, rows, D, L, P + (int64_t)row0 * L, W, out);
    if (bias && out_bias)
        for (int i = 0; i < rows; i++) {
            double s = 0;
            for (int j = 0; j < L; j++) s += P[(int64_t)(row0 + i) * L + j] * bias[j];
            out_bias[i] = s;
        }
}

void mla_from_rorope(MlaAttn *a, const GqaAttn *g, const double *P, int r) {
    int H = g->H, d = g->d, D = g->D, L = g->G * d, rep = g->H / g->G;
    memset(a, 0, sizeof *a);
    a->H = H;
    a->D = D;
    a->dn = a->dv = d;
    a->dr = r;
    a->nk = L - r;
    a->R = 2 * L - r;
    int qk = d + r, R = a->R, has_bias = g->bk || g->bv;
    double scale = sqrt((d + r) / g->score_dim); /* scores go from the original's scale to 1/sqrt(d + r) */

    /* queries: [q_h ; P_rope S_g^T q_h] per head */
    a->q = callocCheck((size_t)H * qk * D, sizeof(double));
    if (g->bq) a->q_bias = callocCheck((size_t)H * qk, sizeof(double));
    for (int h = 0; h < H; h++) {
        int grp = h / rep;
        double *qh = a->q + (int64_t)h * qk * D;
        const double *wq = g->wq + (int64_t)h * d * D;
        for (int i = 0; i < d * D; i++) qh[i] = scale * wq[i];
        for (int j = 0; j < r; j++) {
            const double *p = P + (int64_t)j * L + grp * d; /* rope row j restricted to head grp */
            double *dst = qh + (int64_t)(d + j) * D;
            for (int i = 0; i < d; i++)
                for (int x = 0; x < D; x++) dst[x] += scale * p[i] * wq[(int64_t)i * D + x];
            if (g->bq) {
                double s = 0;
                for (int i = 0; i < d; i++) s += p[i] * g->bq[h * d + i];
                a->q_bias[h * qk + d + j] = scale * s;
            }
        }
        if (g->bq)
            for (int i = 0; i < d; i++) a->q_bias[h * qk + i] = scale * g->bq[h * d + i];
    }

    /* latent [P_nope k ; v], then the rope rows P_rope k */
    a->kv_a = mallocCheck((size_t)(R + r) * D * sizeof(double));
    if (has_bias) a->kv_a_bias = callocCheck((size_t)(R + r), sizeof(double));
    rotate(a->kv_a, a->kv_a_bias, P, r, L - r, L, g->wk, g->bk, D);
    memcpy(a->kv_a + (int64_t)(L - r) * D, g->wv, (size_t)L * D * sizeof(double));
    if (g->bv) memcpy(a->kv_a_bias + (L - r), g->bv, (size_t)L * sizeof(double));
    rotate(a->kv_a + (int64_t)R * D, a->kv_a_bias ? a->kv_a_bias + R : NULL, P, 0, r, L, g->wk, g->bk, D);

    /* up-projections: head h's keys are S_g P_nope^T of the key latent, its values block g of v */
    a->kv_b = callocCheck((size_t)H * 2 * d * R, sizeof(double));
    for (int h = 0; h < H; h++) {
        int grp = h / rep;
        for (int i = 0; i < d; i++) {
            double *krow = a->kv_b + ((int64_t)h * 2 * d + i) * R;
            for (int cidx = 0; cidx < L - r; cidx++) krow[cidx] = P[(int64_t)(r + cidx) * L + grp * d + i];
            a->kv_b[((int64_t)h * 2 * d + d + i) * R + (L - r) + grp * d + i] = 1.0;
        }
    }
}

/* Sum of the top n eigenvalues over n * count: the mean square of a latent
 * coordinate on the calibration tokens. */
static double latent_rms(const double *w, int n, int64_t count) {
    double s = 0;
    for (int i = 0; i < n; i++) s += w[i] > 0 ? w[i] : 0;
    return count > 0 && n > 0 && s > 0 ? sqrt(s / ((double)n * count)) : 1.0;
}

/* BKV-PCA's balance from the latent's second-moment diagonal: mean key-dim
 * norm over mean value-dim norm times `balance` (the reference skips the
 * first r value dims in that mean). Latent dim j is divided by s[j]. */
static double balance_scale(const double *diag, const MlaAttn *a, double balance, double *s) {
    int R0 = a->R, nk = a->nk, dr = a->dr, nv_used = 0;
    double kn = 0, vn = 0;
    for (int j = 0; j < nk; j++) kn += sqrt(diag[j]);
    for (int j = nk + dr; j < R0; j++, nv_used++) vn += sqrt(diag[j]);
    double ratio = 1.0;
    if (nk > 0 && nv_used > 0 && kn > 0 && vn > 0) ratio = (kn / nk) / ((vn / nv_used) * balance);
    for (int j = 0; j < R0; j++) s[j] = j < nk ? ratio : 1.0;
    return ratio;
}

/* Keep the top R directions U[R, R0] (rows, of the balanced latent):
 * kv_a_nope' = U diag(1/s) kv_a_nope; kv_b' = kv_b diag(s) U^T. */
static void bkv_apply(MlaAttn *a, const double *U, const double *w, const double *s, int R, int64_t count) {
    int R0 = a->R, D = a->D, Hout = a->H * (a->dn + a->dv), dr = a->dr;
    double *Us = mallocCheck((size_t)R * R0 * sizeof *Us);
    for (int m = 0; m < R; m++)
        for (int j = 0; j < R0; j++) Us[(int64_t)m * R0 + j] = U[(int64_t)m * R0 + j] / s[j];
    double *kv_a = mallocCheck((size_t)(R + dr) * D * sizeof *kv_a);
    dgemm_rm(0, 0, R, D, R0, Us, a->kv_a, kv_a);
    memcpy(kv_a + (int64_t)R * D, a->kv_a + (int64_t)R0 * D, (size_t)dr * D * sizeof *kv_a);
    if (a->kv_a_bias) {
        double *b = mallocCheck((size_t)(R + dr) * sizeof *b);
        for (int m = 0; m < R; m++) {
            double acc = 0;
            for (int j = 0; j < R0; j++) acc += Us[(int64_t)m * R0 + j] * a->kv_a_bias[j];
            b[m] = acc;
        }
        memcpy(b + R, a->kv_a_bias + R0, (size_t)dr * sizeof *b);
        free(a->kv_a_bias);
        a->kv_a_bias = b;
    }
    for (int i = 0; i < Hout; i++)
        for (int j = 0; j < R0; j++) a->kv_b[(int64_t)i * R0 + j] *= s[j];
    double *kv_b = mallocCheck((size_t)Hout * R * sizeof *kv_b);
    dgemm_rm(0, 1, Hout, R, R0, a->kv_b, U, kv_b); /* U's first R rows */
    free(a->kv_a);
    free(a->kv_b);
    a->kv_a = kv_a;
    a->kv_b = kv_b;
    a->kv_norm = latent_rms(w, R, count);
    a->R = R;
    a->nk = 0;
    free(Us);
}

int mla_bkv_pca(MlaAttn *a, const double *Z, int64_t count, int R, double balance, const EigenSolver *e,
                double *ratio_out) {
    int R0 = a->R;
    double *s = mallocCheck((size_t)R0 * sizeof *s), *diag = mallocCheck((size_t)R0 * sizeof *diag);
    for (int j = 0; j < R0; j++) diag[j] = Z[(int64_t)j * R0 + j];
    *ratio_out = balance_scale(diag, a, balance, s);
    double *U = mallocCheck((size_t)R0 * R0 * sizeof *U), *w = mallocCheck((size_t)R0 * sizeof *w);
    for (int i = 0; i < R0; i++)
        for (int j = 0; j < R0; j++) U[(int64_t)i * R0 + j] = Z[(int64_t)i * R0 + j] / (s[i] * s[j]);
    int rc = tm_all_finite_f64(U, (size_t)R0 * R0)
                 ? e->eigh(e, R0, U, w)
                 : tm_fail("BKV-PCA: the balanced latent covariance overflows (key scale %g; --balance-kv-ratio %g)",
                           *ratio_out, balance);
    if (!rc) bkv_apply(a, U, w, s, R, count);
    free(s);
    free(diag);
    free(U);
    free(w);
    return rc;
}

/* F[rows, D+1] = [W diag(g), b]: F F^T is the second moment of W x + b for
 * inputs x = g * (unit-variance, uncorrelated), the data-free assumption
 * about a normed hidden state. */
static double *weight_factor(const double *W, const double *b, const float *g, int rows, int D) {
    double *F = mallocCheck((size_t)rows * (D + 1) * sizeof *F);
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < D; j++) F[(int64_t)i * (D + 1) + j] = W[(int64_t)i * D + j] * g[j];
        F[(int64_t)i * (D + 1) + D] = b ? b[i] : 0.0;
    }
    return F;
}

static int too_few_directions(const char *what, int want, int k) {
    return tm_fail("data-free %s: %s %d exceeds the %d directions the weights span (hidden_size + 1); lower it", what,
                   what[0] == 'B' ? "--kv-lora-rank" : "--q-lora-rank", want, k);
}

int mla_bkv_pca_weights(MlaAttn *a, const float *input_norm, int R, double balance, const EigenSolver *e,
                        double *ratio_out) {
    int R0 = a->R, D = a->D, k = R0 < D + 1 ? R0 : D + 1;
    if (R > k) return too_few_directions("BKV-PCA", R, k);
    double *F = weight_factor(a->kv_a, a->kv_a_bias, input_norm, R0, D);
    double *s = mallocCheck((size_t)R0 * sizeof *s), *diag = mallocCheck((size_t)R0 * sizeof *diag);
    for (int i = 0; i < R0; i++) {
        double acc = 0;
        for (int j = 0; j <= D; j++) acc += F[(int64_t)i * (D + 1) + j] * F[(int64_t)i * (D + 1) + j];
        diag[i] = acc;
    }
    *ratio_out = balance_scale(diag, a, balance, s);
    for (int i = 0; i < R0; i++)
        for (int j = 0; j <= D; j++) F[(int64_t)i * (D + 1) + j] /= s[i];
    double *U = mallocCheck((size_t)k * R0 * sizeof *U), *w = mallocCheck((size_t)k * sizeof *w);
    int rc = tm_all_finite_f64(F, (size_t)R0 * (D + 1))
                 ? e->svd_left(e, R0, D + 1, F, U, w)
                 : tm_fail("data-free BKV-PCA: the balanced K/V projections overflow (key scale %g; "
                           "--balance-kv-ratio %g)", *ratio_out, balance);
    if (!rc) {
        for (int i = 0; i < k; i++) w[i] *= w[i]; /* singular values -> second-moment eigenvalues */
        bkv_apply(a, U, w, s, R, 1);
    }
    free(F);
    free(s);
    free(diag);
    free(U);
    free(w);
    return rc;
}

/* Keep the top Rq query directions U[Rq, n]: q_a = U q, q_b = U^T. */
static void q_apply(MlaAttn *a, const double *U, const double *w, int Rq, int64_t count) {
    int n = a->H * (a->dn + a->dr), D = a->D;
    a->Rq = Rq;
    a->q_a = mallocCheck((size_t)Rq * D * sizeof(double));
    dgemm_rm(0, 0, Rq, D, n, U, a->q, a->q_a);
    if (a->q_bias) {
        a->q_a_bias = mallocCheck((size_t)Rq * sizeof(double));
        for (int m = 0; m < Rq; m++) {
            double acc = 0;
            for (int j = 0; j < n; j++) acc += U[(int64_t)m * n + j] * a->q_bias[j];
            a->q_a_bias[m] = acc;
        }
    }
    a->q_b = mallocCheck((size_t)n * Rq * sizeof(double));
    for (int i = 0; i < n; i++)
        for (int m = 0; m < Rq; m++) a->q_b[(int64_t)i * Rq + m] = U[(int64_t)m * n + i];
    a->q_norm = latent_rms(w, Rq, count);
    free(a->q);
    free(a->q_bias);
    a->q = a->q_bias = NULL;
}

int mla_q_pca(MlaAttn *a, const double *Q, int64_t count, int Rq, const EigenSolver *e) {
    int n = a->H * (a->dn + a->dr);
    double *U = mallocCheck((size_t)n * n * sizeof *U), *w = mallocCheck((size_t)n * sizeof *w);
    memcpy(U, Q, (size_t)n * n * sizeof *U);
    int rc = e->eigh(e, n, U, w);
    if (!rc) q_apply(a, U, w, Rq, count);
    free(U);
    free(w);
    return rc;
}

int mla_q_pca_weights(MlaAttn *a, const float *input_norm, int Rq, const EigenSolver *e) {
    int n = a->H * (a->dn + a->dr), D = a->D, k = n < D + 1 ? n : D + 1;
    if (Rq > k) return too_few_directions("query PCA", Rq, k);
    double *F = weight_factor(a->q, a->q_bias, input_norm, n, D);
    double *U = mallocCheck((size_t)k * n * sizeof *U), *w = mallocCheck((size_t)k * sizeof *w);
    int rc = e->svd_left(e, n, D + 1, F, U, w);
    if (!rc) {
        for (int i = 0; i < k; i++) w[i] *= w[i];
        q_apply(a, U, w, Rq, 1);
    }
    free(F);
    free(U);
    free(w);
    return rc;
}

void gqa_key_moment(const GqaAttn *g, const float *input_norm, double *K) {
    int L = g->G * g->d, D = g->D;
    double *F = weight_factor(g->wk, g->bk, input_norm, L, D);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, L, D + 1, 1.0, F, D + 1, 0.0, K, L);
    sym_fill_lower(K, L);
    free(F);
}

/* LAPACK Cholesky solve (Fortran entry point; hidden string length last). */
extern void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b,
                   const int *ldb, int *info, size_t);

int mla_fit_kv_norm(MlaAttn *a, const double *S) {
    int R = a->R, R2 = 2 * R, Hout = a->H * (a->dn + a->dv), info = 0;
    double *Cnn = mallocCheck((size_t)R * R * sizeof *Cnn), *X = mallocCheck((size_t)R * R * sizeof *X);
    double trace = 0;
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            Cnn[(int64_t)i * R + j] = S[(int64_t)(R + i) * R2 + R + j];
            X[(int64_t)i * R + j] = S[(int64_t)i * R2 + R + j]; /* C_cn, i.e. C_nc in LAPACK's column order */
        }
    for (int i = 0; i < R; i++) trace += Cnn[(int64_t)i * R + i];
    for (int i = 0; i < R; i++) Cnn[(int64_t)i * R + i] += 1e-9 * trace / R; /* keep it positive definite */
    /* M C_nn = C_cn  <=>  C_nn M^T = C_nc. LAPACK solves column-major, so
     * the solution M^T in column order reads back row-major as M. */
    dposv_("U", &R, &R, Cnn, &R, X, &R, &info, 1);
    if (!info) {
        free(a->kv_b_native);
        a->kv_b_native = mallocCheck((size_t)Hout * R * sizeof(double));
        dgemm_rm(0, 0, Hout, R, R, a->kv_b, X, a->kv_b_native);
        a->kv_norm = 1.0;
    }
    free(Cnn);
    free(X);
    return info ? tm_fail("kv_a_layernorm fit: the normed-latent covariance is singular (LAPACK dposv info %d)", info) : 0;
}

void mla_attn_free(MlaAttn *a) {
    free(a->kv_b_native);
    free(a->q);
    free(a->q_bias);
    free(a->q_a);
    free(a->q_a_bias);
    free(a->q_b);
    free(a->kv_a);
    free(a->kv_a_bias);
    free(a->kv_b);
    free(a->kv_norm_w);
    free(a->q_norm_w);
    free(a->o);
    memset(a, 0, sizeof *a);
}

int mla_attn_fields(MlaAttn *a, MlaField *f) {
    int64_t qk = (int64_t)a->H * (a->dn + a->dr), kvb = (int64_t)a->H * (a->dn + a->dv);
    int k = 0;
    f[k++] = (MlaField){"q", &a->q, qk * a->D};
    f[k++] = (MlaField){"q_bias", &a->q_bias, qk};
    f[k++] = (MlaField){"q_a", &a->q_a, (int64_t)a->Rq * a->D};
    f[k++] = (MlaField){"q_a_bias", &a->q_a_bias, a->Rq};
    f[k++] = (MlaField){"q_b", &a->q_b, qk * a->Rq};
    f[k++] = (MlaField){"kv_a", &a->kv_a, (int64_t)(a->R + a->dr) * a->D};
    f[k++] = (MlaField){"kv_a_bias", &a->kv_a_bias, a->R + a->dr};
    f[k++] = (MlaField){"kv_b", &a->kv_b, kvb * a->R};
    f[k++] = (MlaField){"kv_b_native", &a->kv_b_native, kvb * a->R};
    f[k++] = (MlaField){"kv_norm_w", &a->kv_norm_w, a->R};
    f[k++] = (MlaField){"q_norm_w", &a->q_norm_w, a->Rq};
    f[k++] = (MlaField){"o", &a->o, (int64_t)a->D * a->H * a->dv};
    return k;
}

uint64_t mla_attn_bytes(const MlaAttn *a) {
    uint64_t qk = (uint64_t)a->H * (a->dn + a->dr), n = 0;
    n += a->Rq ? (uint64_t)a->Rq * a->D + qk * a->Rq : qk * a->D;
    n += (uint64_t)(a->R + a->dr) * a->D + (uint64_t)a->H * (a->dn + a->dv) * a->R;
    return 8 * n;
}

int mla_attn_check_finite(MlaAttn *a, int layer, const char *step) {
    MlaField f[MLA_MAX_FIELDS];
    int n = mla_attn_fields(a, f);
    for (int i = 0; i < n; i++)
        if (*f[i].p && !tm_all_finite_f64(*f[i].p, (size_t)f[i].n))
            return tm_fail("%s: layer %d: the result's %s holds NaN/Inf", step, layer, f[i].name);
    if (!isfinite(a->kv_norm) || !isfinite(a->q_norm))
        return tm_fail("%s: layer %d: the result's %s norm is not finite", step, layer, isfinite(a->kv_norm) ? "q" : "kv");
    return 0;
}
