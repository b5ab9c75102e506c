/* RoRoPE: the orthogonal change of basis of the key latent that gathers the
 * keys' energy into a small rope head (DESIGN.md section 2, step 1).
 *
 * The latent is the G kv heads' keys side by side (L = G*d dims, rotate-half
 * pairs (i, i + d/2) at frequency i in each head). Frequencies are cut into
 * buckets of f neighbours; within a bucket, the G*f planes of all heads are
 * treated as sharing one frequency, so any real orthogonal mix of them
 * commutes with RoPE. Per bucket, PCA over the calibration keys (real and
 * imaginary parts as samples) orders the mixes by energy; the top f/c of
 * each bucket form the rope head (r = d/c dims), the rest lose RoPE.
 *
 * Partial rotary (phi3's partial_rotary_factor): only the leading rd dims of
 * each head turn (pairs (i, i + rd/2)); RoRoPE mixes those, c = rd / r, and
 * the other d - rd dims of every head go to the no-RoPE rows unchanged. */
#ifndef TM_PIPELINE_ROROPE_H
#define TM_PIPELINE_ROROPE_H

typedef struct {
    int G, d;      /* kv heads, head_dim (the stride of a head in the latent) */
    int rd;        /* the rotary dims of each head, the leading ones (d unless partial rotary) */
    int r;         /* rope head width (qk_mqa_dim) */
    int collapse;  /* c = rd / r */
    int freqfold;  /* f: frequencies per bucket, a multiple of c dividing rd/2 */
} RoropeShape;

/* Check the shape; errors name the flag at fault. */
int rorope_check(const RoropeShape *s);

/* From the key covariance sum K^T K [L, L] (keys before RoPE, biases
 * included), the rotation P [L, L] (row-major, orthogonal): new latent dim i
 * = P[i] . k. Rows 0 .. r-1 are the rope head in rotate-half order (pair q is
 * rows q and q + r/2, frequency index q * c of the original head); rows
 * r .. L-1 carry no RoPE (the last G*(d - rd): each head's non-rotary dims). */
int rorope_rotation(const double *key_cov, const RoropeShape *s, double *P);

/* The same in two halves. Each bucket's basis V_b [n, n] (n = G*f, row j =
 * mix j of the bucket's planes, rows 0 .. f/c-1 join the rope head): V holds
 * the d/(2f) buckets' bases one after another. rorope_bases fills it by PCA;
 * rorope_assemble writes P from any orthogonal bases (RoRoPE's fit turns
 * them); rorope_extract reads them back out of such a P. */
int rorope_bases(const double *key_cov, const RoropeShape *s, double *V);
void rorope_assemble(const double *V, const RoropeShape *s, double *P);
void rorope_extract(const double *P, const RoropeShape *s, double *V);
/* The adjoint of rorope_assemble: dV = d(objective)/dV from dP (both parts
 * of each plane add). */
void rorope_assemble_adjoint(const double *dP, const RoropeShape *s, double *dV);
/* Buckets and their size n. */
static inline int rorope_buckets(const RoropeShape *s) { return s->rd / 2 / s->freqfold; }
static inline int rorope_bucket_size(const RoropeShape *s) { return s->G * s->freqfold; }

#endif
