/* libFuzzer target for config.json (io/hf_config.c): any input either fails
 * with a message naming the file, or gives a config inside the limits
 * hf_config_check_limits promises, with the invariants the model code
 * relies on (whole GQA groups, even RoPE widths, experts per token <=
 * experts). Found: a real such as 3e84 cast to long long (undefined). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_file.h"
#include "io/base/error.h"
#include "io/hf_config.h"
#include "io/hf_config_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("config.json", data, size);
    ModelConfig c;
    tm_clear_error();
    if (hf_config_load(&c, path) != 0) {
        CHECK(strstr(tm_error(), "config.json") != NULL); /* every failure names the file */
        return 0;
    }
    CHECK(hf_config_check_limits("config.json", &c) == 0);
    CHECK(c.hidden_size > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.head_dim > 0);
    CHECK(c.intermediate_size > 0 && c.vocab_size > 0);
    CHECK(c.n_heads % c.n_kv_heads == 0);
    CHECK(c.head_dim % 2 == 0);
    CHECK(c.rotary_dim >= 2 && c.rotary_dim % 2 == 0 && c.rotary_dim <= c.head_dim);
    CHECK(hf_config_qk_head_dim(&c) > 0 && hf_config_v_head_dim(&c) > 0);
    CHECK(c.n_experts >= 0 && c.n_experts_per_tok <= c.n_experts + (c.n_experts == 0 ? c.n_experts_per_tok : 0));
    if (c.n_experts) CHECK(c.n_experts_per_tok > 0 && c.expert_intermediate_size > 0);
    CHECK(c.sliding_window >= 0);
    CHECK(c.rms_norm_eps > 0 && c.rope_theta > 1);
    CHECK(memchr(c.model_type, 0, sizeof c.model_type) != NULL);
    CHECK(hf_config_has_dense_layer(&c) == 0 || hf_config_has_dense_layer(&c) == 1);
    return 0;
}
