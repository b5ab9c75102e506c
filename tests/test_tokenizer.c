/* Tokenizer: ids equal Hugging Face's on the Mistral, Llama-3 and Qwen3
 * tokenizer.json files (expected ids from HF's own JavaScript tokenizer,
 * tests/ref/hf_tokenize.mjs), the bundled byte tokenizer gives the bytes,
 * decode inverts encode, added-token flags and Metaspace on a small
 * hand-made tokenizer, and broken files or text fail with one clear message.
 * Bad files go to a mkdtemp folder under /tmp that is removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "pipeline/output.h"
#include "io/base/error.h"
#include "io/base/sha256.h"
#include "io/tokenizer/tokenizer.h"

#include "tests/fixture.h"

#define TMPDIR_TAG "test_tok"
#include "tests/tmpdir.h"

#define EXPECTED TM_SOURCE_DIR "/tests/data/tokenizer/expected"
#define HOSTILE TM_SOURCE_DIR "/tests/data/tokenizer/hostile.txt"
#define WIKITEXT TM_SHARED_DIR "/data/wikitext-2/test.txt"



/* ---------- helpers ---------- */

static json_t *read_gz_json(const char *path) {
    gzFile gz = gzopen(path, "rb");
    assert_non_null(gz);
    size_t n = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    int got;
    while ((got = gzread(gz, buf + n, (unsigned)(cap - n))) > 0) {
        n += (size_t)got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    assert_true(got == 0);
    gzclose(gz);
    json_error_t e;
    json_t *j = json_loadb(buf, n, 0, &e);
    free(buf);
    if (!j) fail_msg("%s: %s", path, e.text);
    return j;
}

/* On a mismatch: the first differing position and the ids around it. */
static void assert_ids(const char *what, const int32_t *got, size_t n, const int32_t *want, size_t m) {
    size_t i = 0;
    while (i < n && i < m && got[i] == want[i]) i++;
    if (i == n && n == m) return;
    size_t lo = i > 8 ? i - 8 : 0;
    fprintf(stderr, "%s: ids differ at position %zu (ours %zu ids, expected %zu)\n  ours:    ", what, i, n, m);
    for (size_t k = lo; k < i + 8 && k < n; k++) fprintf(stderr, "%s%d", k == i ? " [" : " ", got[k]);
    fprintf(stderr, "\n  expected:");
    for (size_t k = lo; k < i + 8 && k < m; k++) fprintf(stderr, "%s%d", k == i ? " [" : " ", want[k]);
    fprintf(stderr, "\n");
    fail_msg("%s: ids differ at position %zu", what, i);
}

static void assert_ids_json(const char *what, const TokenIds *got, const json_t *want) {
    size_t m = json_array_size(want);
    int32_t *w = malloc((m + 1) * sizeof *w);
    for (size_t i = 0; i < m; i++) w[i] = (int32_t)json_integer_value(json_array_get(want, i));
    assert_ids(what, got->ids, got->n, w, m);
    free(w);
}

static Tokenizer *load_ok(const char *dir) {
    Tokenizer *t = NULL;
    if (tokenizer_load(&t, dir)) fail_msg("%s: %s", dir, tm_error());
    return t;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* ---------- the real tokenizers against Hugging Face ---------- */

static void check_input(Tokenizer *t, const char *name, const char *input_name, const char *input) {
    char path[512], what[128];
    snprintf(path, sizeof path, "%s/%s-%s.json.gz", EXPECTED, name, input_name);
    json_t *exp = read_gz_json(path);
    size_t len;
    char *text = read_file_or_fail(input, &len, NULL);
    assert_non_null(text);
    assert_int_equal(len, json_integer_value(json_object_get(exp, "input_bytes")));

    TokenIds ids = {0}, sp = {0};
    assert_int_equal(tokenizer_encode(t, text, len, 0, &ids), 0);
    snprintf(what, sizeof what, "%s on %s", name, input_name);
    assert_ids_json(what, &ids, json_object_get(exp, "ids"));
    assert_int_equal(tokenizer_encode(t, text, len, 1, &sp), 0);
    snprintf(what, sizeof what, "%s on %s with special tokens", name, input_name);
    assert_ids_json(what, &sp, json_object_get(exp, "ids_with_special_tokens"));

    char *back;
    size_t blen;
    assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, &back, &blen), 0);
    if (json_is_true(json_object_get(exp, "decode_roundtrip"))) {
        assert_int_equal(blen, len);
        assert_memory_equal(back, text, len);
    }
    free(back);
    token_ids_free(&ids);
    token_ids_free(&sp);
    free(text);
    json_decref(exp);
}

static void check_real(const char *name, int bos, int eos, int vocab) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", TM_SHARED_DIR, name);
    require_shared(dir);
    require_shared(WIKITEXT);
    Tokenizer *t = load_ok(dir);
    assert_int_equal(tokenizer_bos_id(t), bos);
    assert_int_equal(tokenizer_eos_id(t), eos);
    assert_int_equal(tokenizer_vocab_size(t), vocab);
    char hex[65];
    assert_int_equal(sha256_file(tokenizer_path(t), hex), 0);
    assert_string_equal(tokenizer_sha256(t), hex);
    check_input(t, name, "hostile", HOSTILE);
    check_input(t, name, "wikitext2-test", WIKITEXT);
    tokenizer_free(t);
}

static void mistral_matches_hf(void **state) { check_real("mistral", 1, 2, 32000); }

/* Mistral's text is one long BPE word, which the model cuts before each "▁"
 * when no merge could join across it. One extra merge ("Q", "▁Q"), which
 * wikitext never uses, forbids the cut: the heap merge loop then runs over
 * the whole 1.2 MB word and must still give Hugging Face's ids, quickly. */
static void mistral_long_word_matches_hf(void **state) {
    char src[512], dir[256], path[300];
    snprintf(src, sizeof src, "%s/tokenizers/mistral/tokenizer.json", TM_SHARED_DIR);
    require_shared(src);
    require_shared(WIKITEXT);
    json_t *root = json_load_file(src, 0, NULL);
    assert_non_null(root);
    json_t *model = json_object_get(root, "model");
    json_object_set_new(json_object_get(model, "vocab"), "Q\u2581Q", json_integer(32000));
    json_array_append_new(json_object_get(model, "merges"), json_string("Q \u2581Q"));
    snprintf(dir, sizeof dir, "%s/mistral_nocut", tmp_root);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(json_dump_file(root, path, JSON_COMPACT), 0);
    json_decref(root);
    Tokenizer *t = load_ok(dir);
    check_input(t, "mistral", "wikitext2-test", WIKITEXT);
    tokenizer_free(t);
}
static void llama3_matches_hf(void **state) { check_real("llama3", 128000, 128001, 128256); }
static void qwen3_matches_hf(void **state) { check_real("qwen3", -1, 151645, 151669); }

static void bytelm_ids_are_bytes(void **state) {
    Tokenizer *t = load_ok(TM_SOURCE_DIR "/data/models/bytelm-dev");
    assert_int_equal(tokenizer_vocab_size(t), 256);
    assert_int_equal(tokenizer_bos_id(t), -1);
    assert_int_equal(tokenizer_eos_id(t), -1);
    size_t len;
    char *text = read_file_or_fail(HOSTILE, &len, NULL);
    TokenIds ids = {0};
    assert_int_equal(tokenizer_encode(t, text, len, 1, &ids), 0);
    assert_int_equal(ids.n, len);
    for (size_t i = 0; i < len; i++) assert_int_equal(ids.ids[i], (uint8_t)text[i]);
    char *back;
    size_t blen;
    assert_int_equal(tokenizer_decode(t, ids.ids, ids.n, &back, &blen), 0);
    assert_int_equal(blen, len);
    assert_memory_equal(back, text, len);
    free(back);
    /* bytes that are not UTF-8 decode as U+FFFD, like HF */
    int32_t bad[] = {'a', 0xE2, 0x82, 'b', 0xFF};
    assert_int_equal(tokenizer_decode(t, bad, 5, &back, &blen), 0);
    assert_string_equal(back, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
    free(back);
    int32_t out_of_range = 256;
    assert_int_equal(tokenizer_decode(t, &out_of_range, 1, &back, &blen), -1);
    assert_non_null(strstr(tm_error(), "id 256"));
    token_ids_free(&ids);
    free(text);
    tokenizer_free(t);
}

/* ---------- a small hand-made tokenizer: Metaspace, unk, added-token flags ---------- */

static const char *SMALL_JSON =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "{\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false},"
    "{\"id\": 1, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
    "{\"id\": 2, \"content\": \"</s>\", \"special\": true, \"normalized\": false},"
    "{\"id\": 9, \"content\": \"[X]\", \"lstrip\": true, \"rstrip\": true, \"normalized\": false},"
    "{\"id\": 10, \"content\": \"[W]\", \"single_word\": true, \"normalized\": false}],"
    "\"normalizer\": null,"
    "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"always\", \"split\": true},"
    "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}},"
    "  {\"Sequence\": {\"id\": \"A\"}}, {\"SpecialToken\": {\"id\": \"</s>\"}}],"
    "  \"special_tokens\": {\"<s>\": {\"ids\": [1]}, \"</s>\": {\"ids\": [2]}}},"
    "\"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"always\"},"
    "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", \"fuse_unk\": %s, \"byte_fallback\": false,"
    "  \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"\u2581\": 3, \"a\": 4, \"b\": 5, \"ab\": 6, \"\u2581ab\": 7, \"c\": 8},"
    "  \"merges\": [\"a b\", \"\u2581 ab\"]}}";

static Tokenizer *small_tokenizer(const char *name, const char *fuse) {
    char dir[256], path[300], json[4096];
    snprintf(dir, sizeof dir, "%s/%s", tmp_root, name);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(json, sizeof json, SMALL_JSON, fuse);
    write_text(path, json);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_text(path, "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}");
    return load_ok(dir);
}

static void encode_is(Tokenizer *t, const char *text, int special, const int32_t *want, size_t m) {
    TokenIds ids = {0};
    assert_int_equal(tokenizer_encode(t, text, strlen(text), special, &ids), 0);
    assert_ids(text, ids.ids, ids.n, want, m);
    token_ids_free(&ids);
}

static void decode_is(Tokenizer *t, const int32_t *ids, size_t n, const char *want) {
    char *s;
    size_t len;
    assert_int_equal(tokenizer_decode(t, ids, n, &s, &len), 0);
    assert_string_equal(s, want);
    free(s);
}

/* Expected ids checked against @huggingface/tokenizers 0.2.0, except
 * single_word, which it ignores (these follow the Rust tokenizers). */
static void small_tokenizer_features(void **state) {
    Tokenizer *t = small_tokenizer("small", "true");
    assert_int_equal(tokenizer_bos_id(t), 1);
    assert_int_equal(tokenizer_eos_id(t), 2);
    encode_is(t, "ab xyz c", 0, (int32_t[]){7, 3, 0, 3, 8}, 5);       /* x, y, z fuse into one unk */
    encode_is(t, "ab xyz c", 1, (int32_t[]){1, 7, 3, 0, 3, 8, 2}, 7);
    encode_is(t, "ab  [X]  c", 0, (int32_t[]){7, 9, 3, 8}, 4);        /* lstrip and rstrip eat the spaces */
    encode_is(t, "<s>ab</s>", 0, (int32_t[]){1, 7, 2}, 3);
    encode_is(t, "  ab", 0, (int32_t[]){3, 7}, 2);
    encode_is(t, " [W] ", 0, (int32_t[]){3, 10, 3}, 3);
    encode_is(t, "a[W]", 0, (int32_t[]){3, 4, 0}, 3);                /* not a single word: no match */
    encode_is(t, "", 1, (int32_t[]){1, 2}, 2);
    decode_is(t, (int32_t[]){7, 9, 3, 8}, 4, "ab[X] c");
    decode_is(t, (int32_t[]){1, 7, 2}, 3, "<s> ab</s>");
    decode_is(t, (int32_t[]){3, 7}, 2, " ab");
    tokenizer_free(t);
    t = small_tokenizer("small_nofuse", "false");
    encode_is(t, "ab xyz c", 0, (int32_t[]){7, 3, 0, 0, 0, 3, 8}, 7);
    tokenizer_free(t);
}

/* ---------- errors ---------- */

static const char *bad_dir(const char *name, const char *json) {
    static char dir[256];
    char path[300];
    snprintf(dir, sizeof dir, "%s/%s", tmp_root, name);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_text(path, json);
    return dir;
}

static void load_fails_with(const char *name, const char *json, const char *msg) {
    Tokenizer *t = NULL;
    const char *dir = bad_dir(name, json);
    assert_int_equal(tokenizer_load(&t, dir), -1);
    assert_null(t);
    if (!strstr(tm_error(), msg) || !strstr(tm_error(), dir)) fail_msg("error '%s' lacks '%s' or the path", tm_error(), msg);
}

#define MODEL(fields) "{\"added_tokens\": [], \"model\": {\"type\": \"BPE\", " fields "}}"

static void broken_files_fail_clearly(void **state) {
    load_fails_with("malformed", "{\"model\": {", "not valid JSON");
    load_fails_with("no_merges", MODEL("\"vocab\": {\"a\": 0}"), "model.merges: missing");
    load_fails_with("no_vocab", MODEL("\"merges\": []"), "model.vocab: missing");
    load_fails_with("unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
                    "model.type 'Unigram': only BPE is supported");
    load_fails_with("merge_oov", MODEL("\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", \"a c\"]"),
                    "model.merges[1]: 'c' is not in model.vocab");
    load_fails_with("merge_result_oov", MODEL("\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]"),
                    "model.merges[0]: 'ab' is not in model.vocab");
    load_fails_with("merge_shape", MODEL("\"vocab\": {\"a\": 0}, \"merges\": [3]"), "model.merges[0]: not a string");
    load_fails_with("vocab_type", MODEL("\"vocab\": {\"a\": \"x\"}, \"merges\": []"), "model.vocab['a']");
    load_fails_with("dropout", MODEL("\"dropout\": 0.1, \"vocab\": {}, \"merges\": []"), "model.dropout");
    load_fails_with("prefix", MODEL("\"continuing_subword_prefix\": \"##\", \"vocab\": {}, \"merges\": []"),
                    "model.continuing_subword_prefix");
    load_fails_with("unk_oov", MODEL("\"unk_token\": \"<unk>\", \"vocab\": {}, \"merges\": []"), "model.unk_token '<unk>'");
    load_fails_with("bad_regex",
                    "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"},"
                    " \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
                    "pre_tokenizer.pattern: regex does not compile");
    load_fails_with("bad_normalizer", "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": {\"type\": \"BPE\", "
                                      "\"vocab\": {}, \"merges\": []}}",
                    "normalizer.type 'BertNormalizer': normalizer not supported");
    load_fails_with("bad_added", "{\"added_tokens\": [{\"id\": 1}], \"model\": {\"type\": \"BPE\", \"vocab\": {}, "
                                 "\"merges\": []}}",
                    "added_tokens[0].content");

    Tokenizer *t = NULL;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/empty_folder", tmp_root);
    mkdir(dir, 0700);
    assert_int_equal(tokenizer_load(&t, dir), -1);
    assert_non_null(strstr(tm_error(), "tokenizer.json: cannot open"));
    assert_non_null(strstr(tm_error(), dir));
}

static void invalid_utf8_fails(void **state) {
    Tokenizer *t = load_ok(TM_SOURCE_DIR "/data/models/bytelm-dev");
    struct {
        const char *text;
        size_t len, at;
    } cases[] = {
        {"ab\xff", 3, 2},                 /* never valid */
        {"abc\xe2\x82", 5, 3},            /* truncated 3-byte sequence */
        {"x\xc0\xaf", 3, 1},              /* overlong '/' */
        {"xy\xe0\x80\xaf", 5, 2},         /* overlong 3-byte */
        {"\xed\xa0\x80z", 4, 0},          /* surrogate U+D800 */
        {"ok\xf4\x90\x80\x80", 6, 2},     /* above U+10FFFF */
        {"12345678\x80", 9, 8},           /* lone continuation after the ASCII fast path */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TokenIds ids = {0};
        char want[64];
        assert_int_equal(tokenizer_encode(t, cases[i].text, cases[i].len, 0, &ids), -1);
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", cases[i].at);
        assert_string_equal(tm_error(), want);
        token_ids_free(&ids);
    }
    tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mistral_matches_hf),
        cmocka_unit_test(mistral_long_word_matches_hf),
        cmocka_unit_test(llama3_matches_hf),
        cmocka_unit_test(qwen3_matches_hf),
        cmocka_unit_test(bytelm_ids_are_bytes),
        cmocka_unit_test(small_tokenizer_features),
        cmocka_unit_test(broken_files_fail_clearly),
        cmocka_unit_test(invalid_utf8_fails),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
