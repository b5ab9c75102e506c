/* Dump the packed rows of a chat JSONL file for tests/ref/chat_expected.py:
 *
 *   chat_dump TOKENIZER_DIR TEMPLATE T DATA.jsonl[.gz] OUT.json
 *
 * Per row: tokens, flags, train_rows_batch's targets/pos/doc_start, and per
 * document (a DOC_START to the next) its decoded text and the decoded text of
 * each run of LABEL tokens. The checks are all in the Python script. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/error.h"
#include "io/tokenizer/tokenizer.h"
#include "io/utf8.h"
#include "train/chat.h"

static json_t *ints(const int32_t *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *decoded(const Tokenizer *tok, const int32_t *ids, int n) {
    char *text;
    size_t len;
    if (tokenizer_decode(tok, ids, (size_t)n, &text, &len) < 0) {
        fprintf(stderr, "chat_dump: decode: %s\n", tm_error());
        exit(1);
    }
    StrBuf b = {0}; /* a multi-byte character cut by truncation becomes U+FFFD */
    utf8_append_lossy(&b, text, len);
    json_t *s = json_stringn(b.p ? b.p : "", b.n);
    sb_free(&b);
    free(text);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: chat_dump TOKENIZER_DIR TEMPLATE T DATA OUT.json\n");
        return 2;
    }
    Tokenizer *tok;
    ChatTemplate tmpl;
    if (tokenizer_load(&tok, argv[1]) < 0 || chat_template_resolve(argv[2], argv[1], &tmpl) < 0) {
        fprintf(stderr, "chat_dump: %s\n", tm_error());
        return 1;
    }
    int T = atoi(argv[3]);
    TrainRows r;
    train_rows_init(&r, T);
    if (chat_load_rows(argv[4], tok, tmpl, &r) < 0) {
        fprintf(stderr, "chat_dump: %s\n", tm_error());
        return 1;
    }
    int64_t *idx = malloc((size_t)(r.n_rows ? r.n_rows : 1) * sizeof *idx);
    size_t all = (size_t)(r.n_rows ? r.n_rows : 1) * (size_t)T;
    int32_t *tokens = malloc(all * 4), *targets = malloc(all * 4), *pos = malloc(all * 4), *ds = malloc(all * 4);
    for (int64_t i = 0; i < r.n_rows; i++) idx[i] = r.n_rows - 1 - i; /* reversed: row order must not matter */
    train_rows_batch(&r, idx, (int)r.n_rows, tokens, targets, pos, ds);

    json_t *out = json_object();
    json_object_set_new(out, "template", json_string(chat_template_name(tmpl)));
    json_object_set_new(out, "T", json_integer(T));
    json_object_set_new(out, "pad_id", json_integer(tokenizer_eos_id(tok)));
    json_object_set_new(out, "n_docs", json_integer(r.n_docs));
    json_object_set_new(out, "n_truncated", json_integer(r.n_truncated));
    json_object_set_new(out, "n_skipped", json_integer(r.n_skipped));
    json_object_set_new(out, "n_tokens", json_integer(r.n_tokens));
    json_object_set_new(out, "n_labels", json_integer(r.n_labels));
    json_t *rows = json_array();
    for (int64_t row = 0; row < r.n_rows; row++) {
        const int32_t *tk = r.tokens + (size_t)row * (size_t)T;
        const uint8_t *fl = r.flags + (size_t)row * (size_t)T;
        size_t b = (size_t)(r.n_rows - 1 - row) * (size_t)T; /* its place in the reversed batch */
        int32_t flags32[T];
        for (int i = 0; i < T; i++) flags32[i] = fl[i];
        json_t *jr = json_object();
        json_object_set_new(jr, "tokens", ints(tk, T));
        json_object_set_new(jr, "flags", ints(flags32, T));
        json_object_set_new(jr, "batch_tokens", ints(tokens + b, T));
        json_object_set_new(jr, "targets", ints(targets + b, T));
        json_object_set_new(jr, "pos", ints(pos + b, T));
        json_object_set_new(jr, "doc_start", ints(ds + b, T));
        json_t *docs = json_array();
        for (int s = 0; s < T;) {
            int e = s + 1;
            while (e < T && !(fl[e] & TM_TOK_DOC_START)) e++;
            json_t *jd = json_object();
            json_object_set_new(jd, "start", json_integer(s));
            json_object_set_new(jd, "len", json_integer(e - s));
            json_object_set_new(jd, "text", decoded(tok, tk + s, e - s));
            json_t *runs = json_array();
            for (int i = s; i < e;) {
                if (!(fl[i] & TM_TOK_LABEL)) {
                    i++;
                    continue;
                }
                int j = i;
                while (j < e && (fl[j] & TM_TOK_LABEL)) j++;
                json_array_append_new(runs, decoded(tok, tk + i, j - i));
                i = j;
            }
            json_object_set_new(jd, "label_runs", runs);
            json_array_append_new(docs, jd);
            s = e;
        }
        json_object_set_new(jr, "docs", docs);
        json_array_append_new(rows, jr);
    }
    json_object_set_new(out, "rows", rows);
    int rc = json_dump_file(out, argv[5], JSON_COMPACT);
    json_decref(out);
    free(idx);
    free(tokens);
    free(targets);
    free(pos);
    free(ds);
    train_rows_free(&r);
    tokenizer_free(tok);
    if (rc) fprintf(stderr, "chat_dump: cannot write %s\n", argv[5]);
    return rc ? 1 : 0;
}
