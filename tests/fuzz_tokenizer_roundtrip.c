/* libFuzzer target: the shared real tokenizers (../shared/tokenizers) encode
 * arbitrary bytes, and decode(encode(x)) gives x back where Hugging Face's
 * tokenizers guarantee it. The first input byte picks the tokenizer (its
 * value mod 3) and, with its top bit set, asks for the rest to be made valid
 * UTF-8 first (invalid sequences replaced by U+FFFD), so that most inputs
 * reach the round trip; the rest is the text x. For every tokenizer: invalid
 * UTF-8 fails with "invalid UTF-8", valid UTF-8 encodes to ids below the
 * vocabulary size (with and without the special tokens around them) that
 * decode.
 *  llama3   byte-level BPE, no normalizer: decode(encode(x)) == x.
 *  qwen3    byte-level BPE after an NFC normalizer: decode(encode(x)) ==
 *           NFC(x) (added tokens start and end with a starter, so cutting
 *           them out first does not change the composition).
 *  mistral  SentencePiece style: the normalizer prepends "▁" and turns " "
 *           into "▁", the decoder turns "▁" back into " " and strips one
 *           leading space, so x comes back unless it contains "▁" itself
 *           (decoded as a space) or an added token (<unk>, <s>, </s>: the
 *           text after one gets its own "▁" prefix, i.e. an extra space). */
#define _GNU_SOURCE /* memmem */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "fuzz_file.h"
#include "io/base/error.h"
#include "io/base/str_buf.h"
#include "io/tokenizer/tokenizer.h"
#include "io/utf8.h"

enum { LLAMA3, QWEN3, MISTRAL, N_TOK };
static const char *const names[N_TOK] = {"llama3", "qwen3", "mistral"};
static Tokenizer *tok[N_TOK];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    for (int i = 0; i < N_TOK; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", TM_SHARED_DIR, names[i]);
        if (tokenizer_load(&tok[i], dir)) {
            fprintf(stderr, "fuzz_tokenizer_roundtrip: %s\n", tm_error());
            exit(1);
        }
    }
    return 0;
}

/* The text decode must give back, or NULL when the property does not hold. */
static char *expected(int which, const char *x, size_t n, size_t *len) {
    char *e = NULL;
    if (which == QWEN3) { /* x has no NUL here */
        char *z = malloc(n + 1);
        memcpy(z, x, n);
        z[n] = 0;
        e = (char *)utf8proc_NFC((const utf8proc_uint8_t *)z);
        free(z);
        if (e) *len = strlen(e);
        return e;
    }
    if (which == MISTRAL) {
        static const char *const breakers[] = {"\xe2\x96\x81", "<unk>", "<s>", "</s>"};
        for (size_t i = 0; i < sizeof breakers / sizeof breakers[0]; i++)
            if (memmem(x, n, breakers[i], strlen(breakers[i]))) return NULL;
    }
    e = malloc(n + 1);
    memcpy(e, x, n);
    e[n] = 0;
    *len = n;
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = (data[0] & 0x7f) % N_TOK;
    Tokenizer *t = tok[which];
    const char *x = (const char *)data + 1;
    size_t n = size - 1, bad;
    StrBuf fixed = {0};
    if (data[0] & 0x80) {
        utf8_append_lossy(&fixed, x, n);
        x = fixed.p ? fixed.p : "";
        n = fixed.n;
    }
    int valid = utf8_validate(x, n, &bad) == 0;
    if (data[0] & 0x80) CHECK(valid);
    TokenIds ids = {0}, with = {0};
    tm_clear_error();
    int rc = tokenizer_encode(t, x, n, 0, &ids);
    if (!valid) {
        CHECK(rc != 0 && strstr(tm_error(), "invalid UTF-8"));
        token_ids_free(&ids);
        sb_free(&fixed);
        return 0;
    }
    CHECK(rc == 0);
    CHECK(tokenizer_encode(t, x, n, 1, &with) == 0 && with.n >= ids.n);
    int V = tokenizer_vocab_size(t);
    for (size_t i = 0; i < with.n; i++) CHECK(with.ids[i] >= 0 && with.ids[i] < V);
    char *text = NULL;
    size_t len = 0;
    CHECK(tokenizer_decode(t, ids.ids, ids.n, &text, &len) == 0);
    size_t elen = 0;
    /* NUL bytes: NFC would stop at the first one, so qwen3 checks texts without */
    char *e = which == QWEN3 && memchr(x, 0, n) ? NULL : expected(which, x, n, &elen);
    if (e) CHECK(len == elen && memcmp(text, e, len) == 0);
    free(e);
    free(text);
    token_ids_free(&ids);
    token_ids_free(&with);
    sb_free(&fixed);
    return 0;
}
