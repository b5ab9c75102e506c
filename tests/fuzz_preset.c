/* libFuzzer target for presets (cli/preset.c, configs/presets/NAME.json): any
 * input either fails with a message naming the file, or gives a preset whose
 * numbers are positive or unset and whose strings are terminated. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cli/preset.h"
#include "fuzz_file.h"
#include "io/base/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("preset.json", data, size);
    Preset p;
    tm_clear_error();
    if (preset_load(path, &p) != 0) {
        CHECK(strstr(tm_error(), "preset.json") != NULL);
        return 0;
    }
    const int nums[] = {p.qk_mqa_dim, p.kv_lora_rank, p.freqfold, p.nodes, p.ranks_per_node, p.stages};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) CHECK(nums[i] >= 0);
    CHECK(memchr(p.model, 0, sizeof p.model) && memchr(p.config, 0, sizeof p.config));
    CHECK(memchr(p.mem_per_node, 0, sizeof p.mem_per_node));
    return 0;
}
