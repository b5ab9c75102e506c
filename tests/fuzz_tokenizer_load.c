/* libFuzzer target for tokenizer.json loading (io/tokenizer_load.c and the
 * normalizer, pre-tokenizer, added-token, decoder and post-processor
 * parsers). The input is tokenizer.json up to its first NUL byte and, after
 * it, tokenizer_config.json. Any input either fails with one line, or gives
 * a tokenizer whose special ids are in range and which encodes a fixed text
 * to ids in range that decode without error. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "io/base/error.h"
#include "io/tokenizer/tokenizer.h"

static const char sample[] = "Hello, world! 123 4567 "
                             "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9" /* unicode, in Latin-1 letters */
                             " \xe2\x96\x81x\n\n\t  <s></s><|im_end|> \xf0\x9f\x98\x80 it's";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    fuzz_write("tokenizer.json", data, json_len);
    if (nul) fuzz_write("tokenizer_config.json", nul + 1, size - json_len - 1);
    else fuzz_unlink("tokenizer_config.json");

    Tokenizer *t = NULL;
    tm_clear_error();
    if (tokenizer_load(&t, fuzz_folder()) != 0) {
        CHECK(t == NULL);
        CHECK(strcmp(tm_error(), "unknown error") != 0);
        return 0;
    }
    int V = tokenizer_vocab_size(t);
    CHECK(V >= 0);
    CHECK(tokenizer_bos_id(t) < V && tokenizer_eos_id(t) < V);
    CHECK(strlen(tokenizer_sha256(t)) == 64);
    TokenIds ids = {0};
    if (tokenizer_encode(t, sample, sizeof sample - 1, 1, &ids) == 0) {
        for (size_t i = 0; i < ids.n; i++) CHECK(ids.ids[i] >= 0 && ids.ids[i] < V);
        char *text = NULL;
        size_t len = 0;
        if (tokenizer_decode(t, ids.ids, ids.n, &text, &len) == 0) CHECK(text && text[len] == '\0');
        free(text);
    }
    token_ids_free(&ids);
    tokenizer_free(t);
    return 0;
}
