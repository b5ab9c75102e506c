/* Training rows and chat data: packing edge cases (a document exactly T long,
 * one longer than T, padding, stream windows) and train_rows_batch on rows
 * whose expected arrays are written out by hand; template names and "auto"
 * detection on the shared tokenizer_config.json files; a small conversation
 * rendered with each template, compared with the exact expected string; one
 * clear error line naming file, line and field for bad JSONL; a .jsonl.gz
 * gives the same rows as the .jsonl. The full fixture is checked against the
 * independent Python reference by tests/chat_ref.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/base/error.h"
#include "io/tokenizer/tokenizer.h"
#include "train/chat.h"
#include "train/rows.h"

#include "tests/fixture.h"

#define TMPDIR_TAG "test_chat"
#include "tests/tmpdir.h"

#define TOKDIR TM_SHARED_DIR "/tokenizers"
#define FIXTURE TM_SOURCE_DIR "/tests/data/chat/smoltalk_tiny.jsonl"

enum { PAD = 99 };

/* Each shared tokenizer is loaded once (loading is the slow part) and freed at the end. */
static Tokenizer *tok_cache[3];
static const char *const TOK_NAMES[3] = {"qwen3", "llama3", "mistral"};

static Tokenizer *get_tok(const char *dir) {
    for (int i = 0; i < 3; i++) {
        if (!strstr(dir, TOK_NAMES[i])) continue;
        require_shared(dir);
        if (!tok_cache[i] && tokenizer_load(&tok_cache[i], dir) < 0) fail_msg("%s", tm_error());
        return tok_cache[i];
    }
    fail_msg("no tokenizer %s", dir);
    return NULL;
}

static int teardown_all(void **state) {
    for (int i = 0; i < 3; i++) tokenizer_free(tok_cache[i]);
    return group_teardown(state);
}

/* A document of n tokens with ids base, base+1, ...; label from index lab0 on. */
static void make_doc(TrainDoc *d, int n, int base, int lab0) {
    d->n = 0;
    for (int i = 0; i < n; i++) train_doc_push(d, base + i, i >= lab0);
}

static void expect_row(const TrainRows *r, int64_t row, const int32_t *tok, const uint8_t *fl) {
    for (int i = 0; i < r->T; i++) {
        size_t k = (size_t)row * (size_t)r->T + (size_t)i;
        if (r->tokens[k] != tok[i] || r->flags[k] != fl[i])
            fail_msg("row %lld [%d]: token %d flags %d, expected %d %d", (long long)row, i, r->tokens[k], r->flags[k],
                     tok[i], fl[i]);
    }
}

/* ---------- rows ---------- */

static void test_rows_exact_t(void **state) {
    (void)state;
    TrainRows r;
    TrainDoc d = {0};
    train_rows_init(&r, 4);
    make_doc(&d, 4, 10, 0); /* every token labelled: the first must still not be */
    train_rows_add_doc(&r, &d, PAD);
    make_doc(&d, 4, 20, 2);
    train_rows_add_doc(&r, &d, PAD);
    train_rows_finish(&r, PAD);
    assert_int_equal(r.n_rows, 2);
    expect_row(&r, 0, (int32_t[]){10, 11, 12, 13}, (uint8_t[]){2, 1, 1, 1});
    expect_row(&r, 1, (int32_t[]){20, 21, 22, 23}, (uint8_t[]){2, 0, 1, 1});
    assert_int_equal(r.n_docs, 2);
    assert_int_equal(r.n_truncated, 0);
    assert_int_equal(r.n_tokens, 8);
    assert_int_equal(r.n_labels, 5);
    train_doc_free(&d);
    train_rows_free(&r);
}

static void test_rows_truncate_and_pad(void **state) {
    (void)state;
    TrainRows r;
    TrainDoc d = {0};
    train_rows_init(&r, 5);
    make_doc(&d, 2, 10, 1); /* row 0: [10 11] */
    train_rows_add_doc(&r, &d, PAD);
    make_doc(&d, 2, 20, 1); /* fits: row 0: [10 11 20 21] */
    train_rows_add_doc(&r, &d, PAD);
    make_doc(&d, 7, 30, 3); /* too long: cut to 5, new row; row 0 padded */
    train_rows_add_doc(&r, &d, PAD);
    make_doc(&d, 3, 40, 1); /* row 2, padded by finish */
    train_rows_add_doc(&r, &d, PAD);
    d.n = 0; /* an empty document is ignored */
    train_rows_add_doc(&r, &d, PAD);
    train_rows_finish(&r, PAD);
    train_rows_finish(&r, PAD); /* twice: nothing more */
    assert_int_equal(r.n_rows, 3);
    expect_row(&r, 0, (int32_t[]){10, 11, 20, 21, PAD}, (uint8_t[]){2, 1, 2, 1, 2});
    expect_row(&r, 1, (int32_t[]){30, 31, 32, 33, 34}, (uint8_t[]){2, 0, 0, 1, 1});
    expect_row(&r, 2, (int32_t[]){40, 41, 42, PAD, PAD}, (uint8_t[]){2, 1, 1, 2, 0});
    assert_int_equal(r.n_docs, 4);
    assert_int_equal(r.n_truncated, 1);
    assert_int_equal(r.n_tokens, 2 + 2 + 5 + 3);
    assert_int_equal(r.n_labels, 1 + 1 + 2 + 2);

    /* the batch, rows 2 and 0, written out by hand from the rules in rows.h */
    int32_t tok[10], tgt[10], pos[10], ds[10];
    train_rows_batch(&r, (int64_t[]){2, 0}, 2, tok, tgt, pos, ds);
    const int32_t e_tok[10] = {40, 41, 42, PAD, PAD, 10, 11, 20, 21, PAD};
    const int32_t e_tgt[10] = {41, 42, -1, -1, -1, 11, -1, 21, -1, -1};
    const int32_t e_pos[10] = {0, 1, 2, 0, 1, 0, 1, 0, 1, 0};
    const int32_t e_ds[10] = {0, 0, 0, 3, 3, 0, 0, 2, 2, 4};
    for (int i = 0; i < 10; i++) {
        assert_int_equal(tok[i], e_tok[i]);
        assert_int_equal(tgt[i], e_tgt[i]);
        assert_int_equal(pos[i], e_pos[i]);
        assert_int_equal(ds[i], e_ds[i]);
    }
    train_rows_batch(&r, (int64_t[]){1}, 1, tok, tgt, pos, ds);
    const int32_t e1_tgt[5] = {-1, -1, 33, 34, -1}; /* 31, 32 are not labels; nothing after the row's end */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tgt[i], e1_tgt[i]);
        assert_int_equal(pos[i], i);
        assert_int_equal(ds[i], 0);
    }
    train_doc_free(&d);
    train_rows_free(&r);
}

static void test_rows_stream(void **state) {
    (void)state;
    int32_t ids[11];
    for (int i = 0; i < 11; i++) ids[i] = 100 + i;
    TrainRows r = {0};
    train_rows_from_stream(&r, ids, 11, 4); /* windows [0,4) [4,8); the tail of 3 is dropped */
    assert_int_equal(r.T, 4);
    assert_int_equal(r.n_rows, 2);
    expect_row(&r, 0, (int32_t[]){100, 101, 102, 103}, (uint8_t[]){2, 1, 1, 1});
    expect_row(&r, 1, (int32_t[]){104, 105, 106, 107}, (uint8_t[]){2, 1, 1, 1});
    assert_int_equal(r.n_docs, 2);
    assert_int_equal(r.n_tokens, 8);
    assert_int_equal(r.n_labels, 6);
    int32_t tok[4], tgt[4], pos[4], ds[4];
    train_rows_batch(&r, (int64_t[]){1}, 1, tok, tgt, pos, ds);
    const int32_t e_tgt[4] = {105, 106, 107, -1}; /* T - 1 predictions per window */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tgt[i], e_tgt[i]);
        assert_int_equal(pos[i], i);
        assert_int_equal(ds[i], 0);
    }
    train_rows_free(&r);
    train_rows_init(&r, 4);
    train_rows_from_stream(&r, ids, 3, 4); /* shorter than a window: nothing */
    assert_int_equal(r.n_rows, 0);
    train_rows_free(&r);
}

/* ---------- templates ---------- */

static void test_template_resolve(void **state) {
    (void)state;
    require_shared(TOKDIR);
    ChatTemplate t;
    assert_int_equal(chat_template_resolve("auto", TOKDIR "/qwen3", &t), 0);
    assert_int_equal(t, TM_CHAT_CHATML);
    assert_int_equal(chat_template_resolve(NULL, TOKDIR "/llama3", &t), 0);
    assert_int_equal(t, TM_CHAT_LLAMA3);
    assert_int_equal(chat_template_resolve("mistral", NULL, &t), 0);
    assert_int_equal(t, TM_CHAT_INST);
    assert_int_equal(chat_template_resolve("llama2", NULL, &t), 0);
    assert_int_equal(t, TM_CHAT_INST);
    assert_string_equal(chat_template_name(TM_CHAT_LLAMA3), "llama3");
    /* the shared Mistral tokenizer_config.json has no chat_template */
    assert_int_equal(chat_template_resolve("auto", TOKDIR "/mistral", &t), -1);
    assert_non_null(strstr(tm_error(), "mistral/tokenizer_config.json: field 'chat_template' missing"));
    assert_non_null(strstr(tm_error(), "--chat-template"));
    assert_int_equal(chat_template_resolve("vicuna", NULL, &t), -1);
    assert_non_null(strstr(tm_error(), "--chat-template: unknown template 'vicuna'"));
}

/* Render roles/contents with the tokenizer in DIR; the decoded text, and the
 * decoded label tokens joined with "|" between runs. */
static void render(const char *dir, ChatTemplate t, const char *const *roles, const char *const *contents, int n,
                   char **text, char **labels) {
    Tokenizer *tok = get_tok(dir);
    TrainDoc d = {0};
    if (chat_render(tok, t, roles, contents, n, &d) < 0) fail_msg("%s", tm_error());
    size_t len;
    assert_int_equal(tokenizer_decode(tok, d.ids, d.n, text, &len), 0);
    size_t cap = 4096, used = 0;
    *labels = calloc(cap, 1);
    for (size_t i = 0; i < d.n;) {
        if (!d.label[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < d.n && d.label[j]) j++;
        char *s;
        assert_int_equal(tokenizer_decode(tok, d.ids + i, j - i, &s, &len), 0);
        used += (size_t)snprintf(*labels + used, cap - used, "%s%s", used ? "|" : "", s);
        free(s);
        i = j;
    }
    train_doc_free(&d);
}

static const char *const ROLES[] = {"system", "user", "assistant", "user", "assistant"};
static const char *const CONTENTS[] = {"Be brief.", "Hi!", " Hello.\n", "2+2?", "4"};

static void test_render_exact(void **state) {
    (void)state;
    char *text, *labels;
    render(TOKDIR "/qwen3", TM_CHAT_CHATML, ROLES, CONTENTS, 5, &text, &labels);
    assert_string_equal(text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                              "<|im_start|>assistant\n Hello.\n<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                              "<|im_start|>assistant\n4<|im_end|>\n");
    assert_string_equal(labels, " Hello.\n<|im_end|>|4<|im_end|>");
    free(text);
    free(labels);
    render(TOKDIR "/llama3", TM_CHAT_LLAMA3, ROLES, CONTENTS, 5, &text, &labels);
    assert_string_equal(text, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                              "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                              "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>");
    assert_string_equal(labels, "Hello.<|eot_id|>|4<|eot_id|>");
    free(text);
    free(labels);
    /* SentencePiece: every piece gets its "▁", decoded as a space (see chat.c) */
    render(TOKDIR "/mistral", TM_CHAT_INST, ROLES, CONTENTS, 5, &text, &labels);
    assert_string_equal(text, "<s> [INST] Be brief.\n\nHi! [/INST]  Hello.\n</s> [INST] 2+2? [/INST] 4</s>");
    assert_string_equal(labels, " Hello.\n</s>|4</s>");
    free(text);
    free(labels);
}

/* ---------- JSONL errors ---------- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loading text as PATH fails with an error that contains each of want[]. */
static void expect_load_error(const char *name, const char *text, const char *want) {
    char path[256], prefix[300];
    tmp_path(path, sizeof path, name);
    write_file(path, text);
    Tokenizer *tok = get_tok(TOKDIR "/qwen3");
    TrainRows r;
    train_rows_init(&r, 64);
    tm_clear_error();
    assert_int_equal(chat_load_rows(path, tok, TM_CHAT_CHATML, &r), -1);
    const char *e = tm_error();
    snprintf(prefix, sizeof prefix, "%s:", path);
    if (strncmp(e, prefix, strlen(prefix)) != 0 || !strstr(e, want) || strchr(e, '\n'))
        fail_msg("error line '%s' should start with '%s' and contain '%s'", e, prefix, want);
    train_rows_free(&r);
}

#define GOOD "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n"

static void test_load_errors(void **state) {
    (void)state;
    expect_load_error("bad_json.jsonl", GOOD "\n{\"messages\": [\n", ":3: invalid JSON");
    expect_load_error("no_messages.jsonl", GOOD GOOD "{\"conversation\": []}\n", ":3: field 'messages' missing");
    expect_load_error("unknown_role.jsonl",
                      GOOD "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"tool\", \"content\": \"b\"}]}\n",
                      ":2: field 'messages[1].role': unknown role 'tool'");
    expect_load_error("no_content.jsonl", "{\"messages\": [{\"role\": \"user\"}]}\n",
                      ":1: field 'messages[0].content' missing");
    expect_load_error("role_number.jsonl", "{\"messages\": [{\"role\": 3, \"content\": \"x\"}]}\n",
                      ":1: field 'messages[0].role' is not a string");
    expect_load_error("not_list.jsonl", "{\"messages\": {}}\n", ":1: field 'messages' is not a list");
    expect_load_error("not_object.jsonl", "[1, 2]\n", ":1: expected a JSON object");
    char path[256];
    Tokenizer *tok = get_tok(TOKDIR "/mistral");
    TrainRows r;
    train_rows_init(&r, 64);
    tmp_path(path, sizeof path, "two_users.jsonl");
    write_file(path, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}, "
                     "{\"role\": \"assistant\", \"content\": \"c\"}]}\n");
    assert_int_equal(chat_load_rows(path, tok, TM_CHAT_INST, &r), -1);
    assert_non_null(strstr(tm_error(), ":1: field 'messages[1].role': 'user' where the inst template needs 'assistant'"));
    train_rows_free(&r);
    tok = get_tok(TOKDIR "/qwen3");
    train_rows_init(&r, 64);
    tmp_path(path, sizeof path, "missing.jsonl");
    assert_int_equal(chat_load_rows(path, tok, TM_CHAT_CHATML, &r), -1);
    assert_non_null(strstr(tm_error(), "missing.jsonl: cannot open"));
    train_rows_free(&r);
}

/* ---------- gzip ---------- */

static void load(const char *path, const char *dir, ChatTemplate t, TrainRows *r) {
    Tokenizer *tok = get_tok(dir);
    train_rows_init(r, 128);
    if (chat_load_rows(path, tok, t, r) < 0) fail_msg("%s", tm_error());
}

static void test_gzip(void **state) {
    (void)state;
    size_t n;
    char *text = read_file_or_fail(FIXTURE, &n, NULL);
    char gzpath[256], cutpath[256], buf[4096];
    tmp_path(gzpath, sizeof gzpath, "tiny.jsonl.gz");
    gzFile gz = gzopen(gzpath, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, text, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
    free(text);

    TrainRows a, b;
    load(FIXTURE, TOKDIR "/qwen3", TM_CHAT_CHATML, &a);
    load(gzpath, TOKDIR "/qwen3", TM_CHAT_CHATML, &b);
    assert_int_equal(a.n_rows, b.n_rows);
    assert_int_equal(a.n_docs, 11);
    assert_int_equal(a.n_skipped, 1);
    assert_int_equal(a.n_truncated, 1);
    assert_int_equal(b.n_skipped, 1);
    assert_memory_equal(a.tokens, b.tokens, (size_t)a.n_rows * 128 * sizeof *a.tokens);
    assert_memory_equal(a.flags, b.flags, (size_t)a.n_rows * 128);
    train_rows_free(&a);
    train_rows_free(&b);

    /* a gzip file cut short: an error naming the file, not a silent end */
    FILE *f = fopen(gzpath, "rb");
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tmp_path(cutpath, sizeof cutpath, "cut.jsonl.gz");
    f = fopen(cutpath, "wb");
    fwrite(buf, 1, len / 2, f);
    fclose(f);
    Tokenizer *tok = get_tok(TOKDIR "/qwen3");
    train_rows_init(&a, 128);
    assert_int_equal(chat_load_rows(cutpath, tok, TM_CHAT_CHATML, &a), -1);
    assert_non_null(strstr(tm_error(), "cut.jsonl.gz"));
    train_rows_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_exact_t),    cmocka_unit_test(test_rows_truncate_and_pad),
        cmocka_unit_test(test_rows_stream),     cmocka_unit_test(test_template_resolve),
        cmocka_unit_test(test_render_exact),    cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_gzip),
    };
    return cmocka_run_group_tests(tests, group_setup, teardown_all);
}
