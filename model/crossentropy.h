/* Next-token cross-entropy over a vocabulary that arrives in column chunks,
 * so the LM head can run as a few wide GEMMs (each weight panel read once)
 * while only N x chunk logits exist at a time: a running max and sum of
 * exponentials per row (online log-sum-exp), the sum in double. */
#ifndef TM_MODEL_CROSSENTROPY_H
#define TM_MODEL_CROSSENTROPY_H

#include <stdint.h>

#include "model/tensor.h"

typedef struct {
    float *max;          /* [n] running max logit */
    double *sum;         /* [n] sum of exp(logit - max) */
    float *target_logit; /* [n] */
} CrossEntropy;

/* Room for n rows; reset/update/finish work on the first n they are given. */
void crossentropy_init(CrossEntropy *ce, int n);
void crossentropy_free(CrossEntropy *ce);
void crossentropy_reset(CrossEntropy *ce, int n);
/* logits: [n, cols], holding vocabulary columns [col0, col0 + cols). */
void crossentropy_update(CrossEntropy *ce, int n, const float *logits, int cols, int col0, const int32_t *targets);
/* Sum over rows with target >= 0 of -log softmax[target]; rows with target < 0
 * are ignored. *count gets the number of rows counted. */
double crossentropy_finish(const CrossEntropy *ce, int n, const int32_t *targets, int64_t *count);

/* A distillation teacher at the head: its final-norm output and LM head
 * over the same vocabulary. The loss becomes (1 - alpha) NLL + alpha KL(p_t
 * || p_s), KL between the teacher's and the student's next-token
 * distributions, on the rows with a target. */
typedef struct {
    const float *hidden;     /* [N, Dt] */
    const Tensor *lm_head;   /* [V, Dt] (any dtype) */
    float logit_cap;         /* the teacher's final soft-cap; 0: none */
    float alpha;             /* in [0, 1] */
    float *logits;           /* scratch of N x chunk floats */
    double kl;               /* out: KL summed over rows with a target */
} HeadTeacher;

/* LM head and cross-entropy, forward and backward at once, for training.
 * hidden [N, D]; lm_head [V, D] (any dtype); targets [N] (-1: no loss).
 * Returns the NLL summed over rows with a target (count in *n_counted).
 * The loss whose gradient is taken is weight * that sum (teacher NULL) or
 * weight * ((1 - alpha) NLL + alpha KL) with a teacher: dhidden[N, D] +=
 * its gradient; dlm_head [V, D] (fp32; NULL: frozen) += its gradient.
 * logit_cap > 0: the logits are capped, logit_cap * tanh(z / logit_cap), before
 * the softmax (gemma2's final_logit_softcapping); 0: not.
 * logits is scratch of N x chunk floats: the vocabulary goes in chunks
 * (a first pass for the log-sum-exps, a second for the gradient and KL). */
double head_loss_forward_backward(float *dhidden, float *dlm_head, const float *hidden, const Tensor *lm_head,
                                  const int32_t *targets, int N, float weight, float logit_cap, float *logits,
                                  int chunk, int64_t *n_counted, HeadTeacher *teacher);

#endif
