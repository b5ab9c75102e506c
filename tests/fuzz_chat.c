/* libFuzzer target for chat JSONL (train/chat.c): the first input byte picks
 * a shared real tokenizer and its template (qwen3/chatml, llama3/llama3,
 * mistral/inst), the rest is the .jsonl file. Any input either fails with a
 * message naming the file, or packs into rows of exactly T tokens whose ids
 * are in the vocabulary, whose counters add up, and where no document's
 * first token is a target. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "io/base/error.h"
#include "io/tokenizer/tokenizer.h"
#include "train/chat.h"
#include "train/rows.h"

enum { T = 48, N_TOK = 3 };
static const char *const names[N_TOK] = {"qwen3", "llama3", "mistral"};
static const ChatTemplate templates[N_TOK] = {TM_CHAT_CHATML, TM_CHAT_LLAMA3, TM_CHAT_INST};
static Tokenizer *tok[N_TOK];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    for (int i = 0; i < N_TOK; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", TM_SHARED_DIR, names[i]);
        if (tokenizer_load(&tok[i], dir)) {
            fprintf(stderr, "fuzz_chat: %s\n", tm_error());
            exit(1);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % N_TOK;
    const char *path = fuzz_write("chat.jsonl", data + 1, size - 1);
    TrainRows r;
    train_rows_init(&r, T);
    tm_clear_error();
    if (chat_load_rows(path, tok[which], templates[which], &r) != 0) {
        CHECK(strstr(tm_error(), "chat.jsonl") != NULL);
        train_rows_free(&r);
        return 0;
    }
    int V = tokenizer_vocab_size(tok[which]);
    int64_t labels = 0, starts = 0;
    for (int64_t i = 0; i < r.n_rows * T; i++) {
        CHECK(r.tokens[i] >= 0 && r.tokens[i] < V);
        CHECK((r.flags[i] & ~(TM_TOK_LABEL | TM_TOK_DOC_START)) == 0);
        CHECK(!((r.flags[i] & TM_TOK_LABEL) && (r.flags[i] & TM_TOK_DOC_START)));
        labels += (r.flags[i] & TM_TOK_LABEL) != 0;
        starts += (r.flags[i] & TM_TOK_DOC_START) != 0;
    }
    CHECK(labels == r.n_labels && r.n_labels <= r.n_tokens && r.n_tokens <= r.n_rows * T);
    CHECK(r.n_truncated <= r.n_docs && starts >= r.n_docs);
    train_rows_free(&r);
    return 0;
}
