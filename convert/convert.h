/* `transmla convert` on one process: calibrate, RoRoPE, BKV-PCA, absorb,
 * export, evaluate each stage, report. */
#ifndef TM_CONVERT_CONVERT_H
#define TM_CONVERT_CONVERT_H

#include <stdint.h>

#include "io/dtype.h"
#include "io/token_file.h"

typedef struct {
    const char *model_path, *save_path;
    int overwrite;
    const char *cal_tokens, *eval_tokens;
    TmTokenDType token_dtype;
    int cal_seqlen, cal_nsamples, cal_batch;  /* nsamples 0: every complete window */
    int ppl_seqlen, eval_nsamples, eval_batch;
    int qk_mqa_dim;
    int collapse;     /* 0: auto = head_dim / qk_mqa_dim */
    int freqfold;     /* 0: auto = search c, 2c, 4c, ... by evaluation perplexity */
    int kv_lora_rank, q_lora_rank;
    double balance_kv_ratio;
    TmDType dtype;    /* TM_DTYPE_INVALID: follow the input */
    int rope_interleave;
    int kv_norm_fit;  /* 1: fit kv_b_proj to the exported kv_a_layernorm (one more calibration pass); 0: RMS weight */
    uint64_t max_shard_bytes;
    int progress;
} ConvertSettings;

/* Returns 0, or -1 with tm_error() set; errors in the settings are found
 * before any heavy work, and nothing appears at save_path unless the whole
 * conversion succeeded. */
int convert_run(const ConvertSettings *s);

#endif
