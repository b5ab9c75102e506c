/* The sharding plan: which contiguous layers each pipeline stage owns, and
 * what one of its ranks is expected to hold. Made from config.json alone, so
 * a layout can be checked before any weight is read. */
#ifndef TM_PIPELINE_PLAN_H
#define TM_PIPELINE_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "io/hf_config.h"

/* The per-layer fits' settings their memory depends on (rotation_windows
 * 0 or attention_per_step 0: that fit does not run). */
typedef struct {
    int rotation_windows;          /* --rorope-fit-nsamples (capped by the calibration windows) */
    int rotation_choose;           /* freqfold auto: one more micro-batch, held back */
    int rotation_sequential;
    int attention_windows;         /* --attn-fit-nsamples (0: every calibration window) */
    int attention_per_step;        /* windows per Adam step */
    int attention_sequential, attention_o;
} PlanFits;

/* What the memory estimate depends on besides the architecture. */
typedef struct {
    int stages, replicas;
    TmDType dtype;                 /* stored weight dtype */
    int cal_batch, cal_seqlen;     /* one calibration micro-batch */
    int eval_batch, ppl_seqlen;    /* one evaluation micro-batch (0: no evaluation) */
    int qk_mqa_dim, q_lora_rank;
    int cal_nsamples, kv_lora_rank; /* the fits' window pool (convert's 0, every window: 128 assumed) and
                                     * the converted latent width */
    PlanFits fits;
    int attention_copies;          /* converted attention held at once: 2 while freqfold candidates or the
                                    * published MLA sit beside the kept layers, else 1 (0: 2) */
    int rorope_builds;             /* 1: RoRoPE's search builds each candidate (its fp32 copy) to judge it */
    uint64_t mem_per_rank;         /* 0: no limit */
} PlanInputs;

typedef struct {
    int first, end;                /* layers [first, end) */
    uint64_t weight_bytes;         /* its tensors (embedding on stage 0, norm and head on the last) */
    uint64_t readback_bytes;       /* with evaluation: the export's tensors of the stage, read back at the
                                    * end; file-backed pages the kernel can drop, so not in the peak */
    double flops_per_token;        /* forward over cal_seqlen windows, head included on the last stage */
    double head_flops_per_token;   /* the head's part of it (last stage): evaluations run it, calibration not */
    double eval_flops_per_token;   /* forward over ppl_seqlen windows (evaluation), head included */
    uint64_t stats_bytes;          /* float64 covariance sums of its layers, largest calibration step */
    uint64_t convert_bytes;        /* RoRoPE's search: float64 converted attention of its layers,
                                    * attention_copies of it, and the fp32 built copy if rorope_builds */
    uint64_t activation_bytes;     /* the largest of: one micro-batch with the pipeline's send/receive
                                    * buffers, and each fit's rows, state and micro-batch */
    uint64_t peak_bytes;           /* the estimated peak of one rank: the process, weights, stats and the
                                    * larger of (convert + a micro-batch) and (one copy + the fits) */
} StagePlan;

typedef struct {
    PlanInputs in;
    int n_stages;
    StagePlan *stage;              /* [n_stages] */
} Plan;

/* Split the layers into in->stages contiguous blocks minimising the largest
 * stage cost (its share of the bytes plus its share of the FLOPs). Refuses
 * more stages than layers and, with in->mem_per_rank, a stage whose estimate
 * does not fit. */
int plan_make(Plan *p, const ModelConfig *c, const PlanInputs *in);
void plan_free(Plan *p);
void plan_print(const Plan *p, const ModelConfig *c, FILE *to);

/* "512G", "300M", "1.5T", "4096" (bytes) -> bytes; 0 with tm_fail on junk. */
int plan_parse_bytes(const char *s, uint64_t *out);

#endif
