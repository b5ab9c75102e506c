/* Dataset readers and samplers: every layout read from small files written
 * into a mkdtemp folder, the real wikitext-2 in ../shared, the bad inputs
 * that must fail naming file and line, and the calibration sampler and the
 * Alpaca split against tests/ref/sample_calibration.py (run by ctest as the
 * fixture that writes TM_SAMPLE_REF_DIR). The byte tokenizer bytelm-dev makes
 * ids equal the UTF-8 bytes, so the reference needs no tokenizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "pipeline/output.h"
#include "io/dataset.h"
#include "io/base/error.h"
#include "io/base/rng.h"
#include "io/tokenizer/tokenizer.h"

#include "tests/fixture.h"

#define TMPDIR_TAG "test_ds"
#include "tests/tmpdir.h"

#ifndef TM_SAMPLE_REF_DIR
#define TM_SAMPLE_REF_DIR "sample_ref"
#endif
#define WIKITEXT_DIR TM_SHARED_DIR "/data/wikitext-2"
#define MADE_BY_SAMPLE_REF "run the make_sample_reference test first"
#define BYTE_TOKENIZER TM_SOURCE_DIR "/data/models/bytelm-dev"


/* ---------- helpers ---------- */



static const char *make_dir(char *buf, size_t len, const char *name) {
    tmp_path(buf, len, name);
    assert_int_equal(mkdir(buf, 0700), 0);
    return buf;
}

static void write_bytes(const char *dir, const char *name, const void *bytes, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void write_text(const char *dir, const char *name, const char *text) {
    write_bytes(dir, name, text, strlen(text));
}

static void write_gz(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, text, (unsigned)strlen(text)), (int)strlen(text));
    assert_int_equal(gzclose(gz), Z_OK);
}

static void assert_docs(const Documents *d, const char *const *want, size_t n) {
    assert_int_equal(d->n, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(d->text[i], want[i]);
        assert_int_equal(d->len[i], strlen(want[i]));
    }
}

/* Loading must fail with an error containing each of the given parts. */
static void expect_fail(DatasetKind kind, const char *path, const char *split, const char *field, const char *part1,
                        const char *part2) {
    Documents d;
    tm_clear_error();
    assert_int_equal(dataset_load(kind, path, split, field, &d), -1);
    const char *msg = tm_error();
    if (!strstr(msg, part1) || (part2 && !strstr(msg, part2)))
        fail_msg("error '%s' lacks '%s'%s%s", msg, part1, part2 ? " or " : "", part2 ? part2 : "");
    assert_int_equal(d.n, 0);
    assert_null(d.text);
}

/* ---------- kinds, join, RNG ---------- */

static void test_kind_names(void **state) {
    const char *names[] = {"wikitext2", "ptb", "c4", "alpaca", "text", "jsonl"};
    for (int i = 0; i < 6; i++) {
        DatasetKind k;
        assert_int_equal(dataset_kind_parse(names[i], &k), 0);
        assert_string_equal(dataset_kind_name(k), names[i]);
    }
    DatasetKind k;
    assert_int_equal(dataset_kind_parse("wikitext", &k), -1);
    assert_non_null(strstr(tm_error(), "unknown dataset 'wikitext'"));
    assert_non_null(strstr(tm_error(), "wikitext2, ptb, c4, alpaca, text or jsonl"));
}

static void test_join(void **state) {
    char text0[] = "a", text1[] = "bc", text2[] = "";
    char *texts[] = {text0, text1, text2};
    size_t lens[] = {1, 2, 0}, len;
    Documents d = {.text = texts, .len = lens, .n = 3};
    char *s = documents_join(&d, 0, 3, &len);
    assert_string_equal(s, "a\n\nbc\n\n");
    assert_int_equal(len, 7);
    free(s);
    s = documents_join(&d, 1, 1, &len);
    assert_string_equal(s, "bc");
    free(s);
}

/* splitmix64 from seed 0: the published first outputs. */
static void test_rng(void **state) {
    TmRng r;
    rng_seed(&r, 0);
    assert_true(rng_next(&r) == 0xE220A8397B1DCDAFull);
    assert_true(rng_next(&r) == 0x6E789E6AA1B965F4ull);
    assert_true(rng_next(&r) == 0x06C45D188009454Full);
}

/* ---------- wikitext-2 ---------- */

static void test_wikitext_txt_layout(void **state) {
    char dir[256];
    make_dir(dir, sizeof dir, "wiki_txt");
    write_text(dir, "test.txt", " \n = Title = \n\n text line one \n \t \nlast without newline");
    write_text(dir, "valid.txt", "valid one\n\xc2\xa0\n"); /* a no-break space alone is blank to Python */
    Documents d;
    assert_int_equal(dataset_load(DS_WIKITEXT2, dir, "test", NULL, &d), 0);
    const char *want[] = {" = Title = \n", " text line one \n", "last without newline"};
    assert_docs(&d, want, 3);
    char src[300];
    snprintf(src, sizeof src, "%s/test.txt", dir);
    assert_string_equal(d.sources, src);
    documents_free(&d);
    const char *valid[] = {"valid one\n"};
    assert_int_equal(dataset_load(DS_WIKITEXT2, dir, "valid", NULL, &d), 0);
    assert_docs(&d, valid, 1);
    documents_free(&d);
    assert_int_equal(dataset_load(DS_WIKITEXT2, dir, "validation", NULL, &d), 0);
    assert_docs(&d, valid, 1);
    documents_free(&d);
}

static void test_wikitext_raw_layout(void **state) {
    char dir[256];
    make_dir(dir, sizeof dir, "wiki_raw");
    write_text(dir, "wiki.train.raw", "train a\n\ntrain b\n");
    write_text(dir, "wiki.valid.raw", "v\n");
    /* Python's text mode: "\r\n" and a lone "\r" end lines too */
    write_text(dir, "wiki.test.raw", "a\r\nb\rc\n");
    Documents d;
    const char *train[] = {"train a\n", "train b\n"}, *test[] = {"a\n", "b\n", "c\n"};
    assert_int_equal(dataset_load(DS_WIKITEXT2, dir, "train", NULL, &d), 0);
    assert_docs(&d, train, 2);
    documents_free(&d);
    assert_int_equal(dataset_load(DS_WIKITEXT2, dir, "test", NULL, &d), 0);
    assert_docs(&d, test, 3);
    documents_free(&d);
}

static void test_wikitext_errors(void **state) {
    char dir[256], file[300];
    make_dir(dir, sizeof dir, "wiki_err");
    write_text(dir, "valid.txt", "v\n");
    write_text(dir, "test.txt", "ok\nfine\nbad \xff byte\n");
    expect_fail(DS_WIKITEXT2, dir, "train", NULL, "no train split (wiki.train.raw or train.txt)",
                "the folder has the validation and test splits");
    expect_fail(DS_WIKITEXT2, dir, "dev", NULL, "unknown split 'dev'", NULL);
    snprintf(file, sizeof file, "%s/test.txt:3: invalid UTF-8 at byte 4", dir);
    expect_fail(DS_WIKITEXT2, dir, "test", NULL, file, NULL);
    expect_fail(DS_WIKITEXT2, "/nonexistent/wikitext-2", "test", NULL, "/nonexistent/wikitext-2: cannot open", NULL);
    char empty[256];
    make_dir(empty, sizeof empty, "wiki_empty");
    write_text(empty, "test.txt", " \n\n\t\n");
    expect_fail(DS_WIKITEXT2, empty, "test", NULL, "no documents in the test split", NULL);
    /* overlong "/" and a surrogate are not UTF-8 either */
    write_text(empty, "valid.txt", "x\xc0\xaf\n");
    expect_fail(DS_WIKITEXT2, empty, "validation", NULL, "valid.txt:1: invalid UTF-8 at byte 1", NULL);
    write_text(empty, "valid.txt", "ok\n\xed\xa0\x80\n");
    expect_fail(DS_WIKITEXT2, empty, "validation", NULL, "valid.txt:2: invalid UTF-8 at byte 0", NULL);
}

/* The real test split: a document per non-blank line, counted here byte-wise. */
static void test_wikitext_real(void **state) {
    require_shared(WIKITEXT_DIR);
    char path[512];
    snprintf(path, sizeof path, "%s/test.txt", WIKITEXT_DIR);
    size_t len;
    char *raw = read_file_or_fail(path, &len, NULL);
    size_t lines = 0, first_len = 0;
    const char *first = NULL;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        int blank = 1;
        while (j < len && raw[j] != '\n') {
            if (!isspace((unsigned char)raw[j])) blank = 0;
            j++;
        }
        if (j < len) j++;
        if (!blank) {
            if (!first) first = raw + i, first_len = j - i;
            lines++;
        }
        i = j;
    }
    Documents d;
    assert_int_equal(dataset_load(DS_WIKITEXT2, WIKITEXT_DIR, "test", NULL, &d), 0);
    assert_int_equal(d.n, lines);
    assert_int_equal(d.len[0], first_len);
    assert_memory_equal(d.text[0], first, first_len);
    documents_free(&d);
    free(raw);
    expect_fail(DS_WIKITEXT2, WIKITEXT_DIR, "train", NULL, "no train split (wiki.train.raw or train.txt)",
                "the folder has the validation and test splits");
}

/* ---------- ptb ---------- */

static void test_ptb(void **state) {
    char dir[256];
    make_dir(dir, sizeof dir, "ptb");
    write_text(dir, "ptb.test.txt", " a b c \n\n  \n d <unk> e\n");
    write_text(dir, "ptb.train.txt", "t\n");
    Documents d;
    const char *want[] = {"a b c", "d <unk> e"};
    assert_int_equal(dataset_load(DS_PTB, dir, "test", NULL, &d), 0);
    assert_docs(&d, want, 2);
    documents_free(&d);
    expect_fail(DS_PTB, dir, "validation", NULL, "no validation split (ptb.valid.txt)",
                "the folder has the train and test splits");
}

/* ---------- c4 ---------- */

static void test_c4(void **state) {
    char dir[256];
    make_dir(dir, sizeof dir, "c4");
    /* a line longer than the reader's first buffer */
    size_t big_n = 200000;
    char *big = malloc(big_n + 64);
    assert_non_null(big);
    strcpy(big, "{\"text\": \"");
    size_t off = strlen(big);
    for (size_t i = 0; i < big_n; i++) big[off + i] = (char)('a' + i % 26);
    strcpy(big + off + big_n, "\", \"url\": \"u\"}\n");
    char *shard1 = malloc(strlen(big) + 64);
    assert_non_null(shard1);
    sprintf(shard1, "%s{\"text\": \"second \\u00e9\"}\n", big);
    /* written out of order: the reader sorts the shards by name */
    write_gz(dir, "c4-validation.00001-of-00002.json.gz", shard1);
    write_gz(dir, "c4-validation.00000-of-00002.json.gz", "{\"text\": \"first\\nline\"}\n{\"text\": \"\"}\n\n");
    write_gz(dir, "c4-train.00000-of-00001.json.gz", "{\"text\": \"train doc\"}\n");
    Documents d;
    assert_int_equal(dataset_load(DS_C4, dir, "validation", NULL, &d), 0);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.text[0], "first\nline");
    assert_int_equal(d.len[1], big_n);
    assert_memory_equal(d.text[1], big + off, big_n);
    assert_string_equal(d.text[2], "second \xc3\xa9");
    char want_sources[600];
    snprintf(want_sources, sizeof want_sources,
             "%s/c4-validation.00000-of-00002.json.gz\n%s/c4-validation.00001-of-00002.json.gz", dir, dir);
    assert_string_equal(d.sources, want_sources);
    documents_free(&d);
    assert_int_equal(dataset_load(DS_C4, dir, "train", NULL, &d), 0);
    const char *train[] = {"train doc"};
    assert_docs(&d, train, 1);
    documents_free(&d);
    expect_fail(DS_C4, dir, "test", NULL, "no test split (c4-test.*.json.gz)", NULL);
    /* a single shard named directly */
    char file[400];
    snprintf(file, sizeof file, "%s/c4-train.00000-of-00001.json.gz", dir);
    assert_int_equal(dataset_load(DS_C4, file, "train", NULL, &d), 0);
    assert_docs(&d, train, 1);
    documents_free(&d);
    free(big);
    free(shard1);
}

/* ---------- alpaca ---------- */

static void test_alpaca_render(void **state) {
    char dir[256], file[300];
    make_dir(dir, sizeof dir, "alpaca");
    /* one record: the 80/10/10 split puts it in validation */
    write_text(dir, "alpaca_data.json", "[{\"instruction\": \"Add.\", \"input\": \"1 2\", \"output\": \"3\"}]");
    Documents d;
    assert_int_equal(dataset_load(DS_ALPACA, dir, "validation", NULL, &d), 0);
    const char *with_input[] = {
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n1 2\n\n"
        "### Response:\n3"};
    assert_docs(&d, with_input, 1);
    documents_free(&d);
    expect_fail(DS_ALPACA, dir, "train", NULL, "no documents in the train split", NULL);
    snprintf(file, sizeof file, "%s/one.json", dir);
    write_text(dir, "one.json", "[{\"instruction\": \"Hi.\", \"input\": \"\", \"output\": \"Hello\"}]");
    assert_int_equal(dataset_load(DS_ALPACA, file, "validation", NULL, &d), 0);
    const char *no_input[] = {"Below is an instruction that describes a task. Write a response that appropriately "
                              "completes the request.\n\n### Instruction:\nHi.\n\n### Response:\nHello"};
    assert_docs(&d, no_input, 1);
    documents_free(&d);
    write_text(dir, "text.json", "[{\"instruction\": \"x\", \"output\": \"y\", \"text\": \"given text\"}]");
    snprintf(file, sizeof file, "%s/text.json", dir);
    const char *given[] = {"given text"};
    assert_int_equal(dataset_load(DS_ALPACA, file, "validation", NULL, &d), 0);
    assert_docs(&d, given, 1);
    documents_free(&d);
    /* ten records: 8 / 1 / 1 */
    char big[4096] = "[";
    for (int i = 0; i < 10; i++)
        sprintf(big + strlen(big), "%s{\"instruction\": \"i%d\", \"input\": \"\", \"output\": \"o%d\"}",
                i ? "," : "", i, i);
    strcat(big, "]");
    write_text(dir, "ten.json", big);
    snprintf(file, sizeof file, "%s/ten.json", dir);
    const char *splits[] = {"train", "test", "validation"};
    size_t sizes[] = {8, 1, 1};
    for (int s = 0; s < 3; s++) {
        assert_int_equal(dataset_load(DS_ALPACA, file, splits[s], NULL, &d), 0);
        assert_int_equal(d.n, sizes[s]);
        documents_free(&d);
    }
    /* errors */
    write_text(dir, "bad.json", "[{\"instruction\": \"caf\xe9\", \"output\": \"o\"}]");
    snprintf(file, sizeof file, "%s/bad.json: invalid UTF-8 at byte 21", dir);
    char path[300];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    expect_fail(DS_ALPACA, path, "train", NULL, file, NULL);
    write_text(dir, "noout.json", "[{\"instruction\": \"a\", \"output\": \"b\"}, {\"instruction\": \"a\"}]");
    snprintf(path, sizeof path, "%s/noout.json", dir);
    expect_fail(DS_ALPACA, path, "train", NULL, "noout.json: record 1: no field 'output'", NULL);
    write_text(dir, "obj.json", "{\"instruction\": \"a\"}");
    snprintf(path, sizeof path, "%s/obj.json", dir);
    expect_fail(DS_ALPACA, path, "train", NULL, "obj.json: top level is not a JSON list", NULL);
    char empty[256];
    make_dir(empty, sizeof empty, "alpaca_none");
    expect_fail(DS_ALPACA, empty, "train", NULL, "no alpaca_data.json", NULL);
}

/* The split order against the reference's shuffle (splitmix64, seed 42). */
static void test_alpaca_split_reference(void **state) {
    const char *splits[] = {"train", "validation", "test"};
    size_t sizes[] = {18, 3, 2}; /* 23 records: floor(18.4), rest, floor(2.3) */
    for (int s = 0; s < 3; s++) {
        char path[512];
        snprintf(path, sizeof path, "%s/alpaca_%s.json", TM_SAMPLE_REF_DIR, splits[s]);
        json_error_t e;
        json_t *want = json_load_file(path, 0, &e);
        if (!want) fail_msg("%s: %s (run the make_sample_reference test first)", path, e.text);
        Documents d;
        assert_int_equal(dataset_load(DS_ALPACA, TM_SAMPLE_REF_DIR, splits[s], NULL, &d), 0);
        assert_int_equal(d.n, json_array_size(want));
        assert_int_equal(d.n, sizes[s]);
        for (size_t i = 0; i < d.n; i++) assert_string_equal(d.text[i], json_string_value(json_array_get(want, i)));
        documents_free(&d);
        json_decref(want);
    }
}

/* ---------- text and jsonl ---------- */

static void test_text(void **state) {
    char dir[256], file[300];
    make_dir(dir, sizeof dir, "text");
    write_text(dir, "book.txt", "\npara one\n  indented two\n\n\n \t\npara two\r\n");
    snprintf(file, sizeof file, "%s/book.txt", dir);
    Documents d;
    const char *want[] = {"para one\n  indented two", "para two"};
    assert_int_equal(dataset_load(DS_TEXT, file, NULL, NULL, &d), 0);
    assert_docs(&d, want, 2);
    assert_string_equal(d.sources, file);
    documents_free(&d);
    assert_int_equal(dataset_load(DS_TEXT, file, "whatever", NULL, &d), 0); /* split ignored */
    documents_free(&d);
    write_text(dir, "blank.txt", "\n \n");
    snprintf(file, sizeof file, "%s/blank.txt", dir);
    expect_fail(DS_TEXT, file, NULL, NULL, "blank.txt: no documents", NULL);
    write_text(dir, "bad.txt", "fine\n\nbad\x80\n");
    snprintf(file, sizeof file, "%s/bad.txt", dir);
    expect_fail(DS_TEXT, file, NULL, NULL, "bad.txt:3: invalid UTF-8 at byte 3", NULL);
    expect_fail(DS_TEXT, dir, NULL, NULL, "is a folder", NULL);
}

static void test_jsonl(void **state) {
    char dir[256], file[300];
    make_dir(dir, sizeof dir, "jsonl");
    const char *lines = "{\"body\": \"x\\ny\", \"text\": \"not this\"}\n\n{\"body\": \"z \\u2713\"}\n";
    write_text(dir, "docs.jsonl", lines);
    write_gz(dir, "docs.jsonl.gz", lines);
    const char *want[] = {"x\ny", "z \xe2\x9c\x93"};
    Documents d;
    snprintf(file, sizeof file, "%s/docs.jsonl", dir);
    assert_int_equal(dataset_load(DS_JSONL, file, NULL, "body", &d), 0);
    assert_docs(&d, want, 2);
    documents_free(&d);
    snprintf(file, sizeof file, "%s/docs.jsonl.gz", dir);
    assert_int_equal(dataset_load(DS_JSONL, file, "test", "body", &d), 0);
    assert_docs(&d, want, 2);
    documents_free(&d);
    /* the default field is "text": the second line lacks it */
    char msg[400];
    snprintf(msg, sizeof msg, "%s/docs.jsonl.gz:3: no field 'text'", dir);
    expect_fail(DS_JSONL, file, NULL, NULL, msg, NULL);

    write_text(dir, "nums.jsonl", "{\"text\": \"a\"}\n{\"text\": 5}\n");
    snprintf(file, sizeof file, "%s/nums.jsonl", dir);
    expect_fail(DS_JSONL, file, NULL, NULL, "nums.jsonl:2: field 'text' is not a string", NULL);
    write_text(dir, "broken.jsonl", "{\"text\": \"a\"\n");
    snprintf(file, sizeof file, "%s/broken.jsonl", dir);
    expect_fail(DS_JSONL, file, NULL, NULL, "broken.jsonl:1: not valid JSON", NULL);
    write_text(dir, "list.jsonl", "[1, 2]\n");
    snprintf(file, sizeof file, "%s/list.jsonl", dir);
    expect_fail(DS_JSONL, file, NULL, NULL, "list.jsonl:1: not a JSON object", NULL);
    write_text(dir, "utf.jsonl", "{\"text\": \"a\"}\n{\"text\": \"\xf5\"}\n");
    snprintf(file, sizeof file, "%s/utf.jsonl", dir);
    expect_fail(DS_JSONL, file, NULL, NULL, "utf.jsonl:2: invalid UTF-8 at byte 10", NULL);
    expect_fail(DS_JSONL, "/nonexistent.jsonl", NULL, NULL, "/nonexistent.jsonl: cannot open", NULL);

    /* a .gz cut short: zlib's "unexpected end of file", not silent truncation */
    size_t len;
    snprintf(file, sizeof file, "%s/docs.jsonl.gz", dir);
    char *gz = read_file_or_fail(file, &len, NULL);
    write_bytes(dir, "cut.jsonl.gz", gz, len - 12);
    free(gz);
    snprintf(file, sizeof file, "%s/cut.jsonl.gz", dir);
    expect_fail(DS_JSONL, file, NULL, "body", "cut.jsonl.gz: corrupt or truncated gzip data near line",
                "unexpected end of file");
}

/* ---------- sampling with the byte tokenizer vs tests/ref ---------- */

static Tokenizer *byte_tokenizer(void) {
    Tokenizer *t = NULL;
    if (tokenizer_load(&t, BYTE_TOKENIZER)) fail_msg("%s", tm_error());
    return t;
}

static void check_case(Tokenizer *t, const char *split, const char *name, int nsamples, int seqlen, uint64_t seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", TM_SAMPLE_REF_DIR, name);
    size_t len;
    char *want = read_file_or_fail(path, &len, MADE_BY_SAMPLE_REF);
    Documents d;
    assert_int_equal(dataset_load(DS_WIKITEXT2, WIKITEXT_DIR, split, NULL, &d), 0);
    int32_t *ids = NULL;
    int got = -1;
    assert_int_equal(dataset_sample_calibration(t, &d, nsamples, seqlen, seed, &ids, &got), 0);
    assert_int_equal((size_t)got * (size_t)seqlen, len);
    for (size_t i = 0; i < len; i++)
        if (ids[i] != (unsigned char)want[i])
            fail_msg("%s: sample %zu id %zu: %d, expected %d", name, i / (size_t)seqlen, i % (size_t)seqlen, ids[i],
                     (unsigned char)want[i]);
    free(ids);
    free(want);
    documents_free(&d);
}

static void test_sample_reference(void **state) {
    require_shared(WIKITEXT_DIR);
    Tokenizer *t = byte_tokenizer();
    check_case(t, "test", "wiki_test_16x256_s42", 16, 256, 42);
    check_case(t, "test", "wiki_test_128x64_s123", 128, 64, 123);
    check_case(t, "validation", "wiki_valid_1000x4096_s7", 1000, 4096, 7); /* got < nsamples */
    tokenizer_free(t);
}

static void test_encode_joined_reference(void **state) {
    require_shared(WIKITEXT_DIR);
    Tokenizer *t = byte_tokenizer();
    char path[512];
    snprintf(path, sizeof path, "%s/wiki_test_joined.bin", TM_SAMPLE_REF_DIR);
    size_t len;
    char *want = read_file_or_fail(path, &len, MADE_BY_SAMPLE_REF);
    Documents d;
    assert_int_equal(dataset_load(DS_WIKITEXT2, WIKITEXT_DIR, "test", NULL, &d), 0);
    TokenIds ids = {0};
    assert_int_equal(dataset_encode_joined(t, &d, &ids), 0);
    assert_int_equal(ids.n, len);
    for (size_t i = 0; i < len; i++) assert_int_equal(ids.ids[i], (unsigned char)want[i]);
    token_ids_free(&ids);
    free(want);
    documents_free(&d);
    tokenizer_free(t);
}

static void test_sample_too_little_text(void **state) {
    char dir[256], file[300];
    make_dir(dir, sizeof dir, "sample_small");
    write_text(dir, "small.txt", "one\n\ntwo\n\nthree\n");
    snprintf(file, sizeof file, "%s/small.txt", dir);
    Documents d;
    assert_int_equal(dataset_load(DS_TEXT, file, NULL, NULL, &d), 0);
    Tokenizer *t = byte_tokenizer();
    int32_t *ids = NULL;
    int got = -1;
    assert_int_equal(dataset_sample_calibration(t, &d, 4, 1000, 42, &ids, &got), -1);
    assert_non_null(strstr(tm_error(), "not enough text for one sample of 1000 tokens"));
    assert_null(ids);
    assert_int_equal(got, 0);
    /* "one\n\ntwo\n\nthree" is 15 bytes: a sample only when the draw starts
     * at "one" (seed 3: first draw % 3 == 0; seed 42 starts at "two") */
    assert_int_equal(dataset_sample_calibration(t, &d, 4, 15, 42, &ids, &got), -1);
    assert_int_equal(dataset_sample_calibration(t, &d, 4, 15, 3, &ids, &got), 0);
    assert_int_equal(got, 1);
    for (int i = 0; i < 15; i++) assert_int_equal(ids[i], (unsigned char)"one\n\ntwo\n\nthree"[i]);
    free(ids);
    tokenizer_free(t);
    documents_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_wikitext_txt_layout),
        cmocka_unit_test(test_wikitext_raw_layout),
        cmocka_unit_test(test_wikitext_errors),
        cmocka_unit_test(test_wikitext_real),
        cmocka_unit_test(test_ptb),
        cmocka_unit_test(test_c4),
        cmocka_unit_test(test_alpaca_render),
        cmocka_unit_test(test_alpaca_split_reference),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_sample_reference),
        cmocka_unit_test(test_encode_joined_reference),
        cmocka_unit_test(test_sample_too_little_text),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
