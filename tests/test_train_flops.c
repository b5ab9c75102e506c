/* The training FLOPs count (train/metrics.c) at Llama-3.2-1B's published
 * shapes, against numbers that do not come from the code under test: the
 * model card's 1,235,814,400 parameters (tied embedding counted once: the
 * LM head's multiply-adds; the 16 x 2 + 1 norms of 2048 weights have none)
 * and the causal attention core, 2 x 32 heads x 64 x (T + 1) / 2 per
 * layer and token (scores and weighted values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/hf_config.h"
#include "train/metrics.h"

static const double params = 1235814400.0, norms = 33.0 * 2048, T = 2048;

static double core(void) { return 16.0 * 32 * 2 * 64 * (T + 1) / 2; }

static void llama_1b(void **state) {
    (void)state;
    ModelConfig c;
    assert_int_equal(hf_config_load(&c, TM_SOURCE_DIR "/configs/models/llama-3.2-1b.config.json"), 0);
    double macs = params - norms + core();
    /* all trained: the textbook 6 N per token plus the core's 3 x forward */
    double all = train_flops_per_token(&c, (int)T, TRAIN_ALL);
    assert_true(all == 6.0 * macs);
    /* attention only: the MLPs' and the head's weight gradients (one forward each) are not computed */
    double mlp = 16.0 * 3 * 2048 * 8192, head = 2048.0 * 128256;
    assert_true(train_flops_per_token(&c, (int)T, TRAIN_ATTENTION) == all - 2.0 * (mlp + head));
    assert_true(train_flops_per_token(&c, (int)T, TRAIN_ATTENTION_NORMS) == all - 2.0 * (mlp + head));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(llama_1b)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
