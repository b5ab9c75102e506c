#include "io/token_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/sha256.h"
#include "io/dataset.h"
#include "io/token_set.h"
#include "io/tokenizer/tokenizer.h"

int token_source_is_dataset(const char *name) {
    DatasetKind k;
    if (!name || !strcmp(name, "tokens") || !strcmp(name, "none")) return 0;
    int rc = dataset_kind_parse(name, &k);
    tm_clear_error();
    return rc == 0;
}

const char *token_source_describe(const TokenSource *src) {
    static char buf[4200];
    if (src->tokens) snprintf(buf, sizeof buf, "%s", src->tokens);
    else snprintf(buf, sizeof buf, "%s %s split (%s)", src->dataset, src->split, src->data_path);
    return buf;
}

static int check_vocab(const char *file, const int32_t *ids, size_t n, int vocab_size) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab_size)
            return tm_fail("%s: token %zu has id %d, outside the model's vocab_size %d", file, i, ids[i], vocab_size);
    return 0;
}

/* A token set must come from the model's own tokenizer.json (same bytes). A
 * model folder without one cannot be checked: say so and go on. */
static int check_tokenizer(const TokenSource *src, const TokenSet *ts, const char *model_dir) {
    const char *file = src->tokens;
    char path[4096], hex[65];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (src->warn)
            fprintf(stderr, "transmla: warning: %s has no tokenizer.json; cannot check that %s was made by its tokenizer\n",
                model_dir, file);
        return 0;
    }
    if (sha256_file(path, hex)) return -1;
    if (strcmp(hex, ts->tokenizer_sha256))
        return tm_fail("%s: made by tokenizer %s (sha256 %.12s...), but the model's %s has sha256 %.12s...; "
                       "re-tokenize with: transmla tokenize --tokenizer %s", file, ts->tokenizer, ts->tokenizer_sha256,
                       path, hex, model_dir);
    return 0;
}

static int read_file_ids(const TokenSource *src, const char *model_dir, int vocab_size, int seqlen, int32_t **ids,
                         size_t *n) {
    if (!token_set_is_hdf5(src->tokens)) return token_file_read(src->tokens, src->dtype, vocab_size, ids, n);
    TokenSet ts;
    if (token_set_read(src->tokens, &ts)) return -1;
    int rc = check_tokenizer(src, &ts, model_dir);
    if (!rc) rc = check_vocab(src->tokens, ts.ids, ts.n, vocab_size);
    if (!rc && seqlen > 0 && !strcmp(ts.kind, "samples") && ts.seqlen != seqlen)
        rc = tm_fail("%s: holds calibration samples of %d tokens, but the run asks for %d (%s); "
                     "re-tokenize with --seqlen %d", src->tokens, ts.seqlen, seqlen, src->flag, seqlen);
    if (!rc) {
        *ids = ts.ids; /* hand the ids over */
        *n = ts.n;
        ts.ids = NULL;
    }
    token_set_free(&ts);
    return rc;
}

/* Load the split and the model's tokenizer, then run encode(t, docs). */
static int with_dataset(const TokenSource *src, const char *model_dir, Tokenizer **t, Documents *docs) {
    DatasetKind kind;
    *t = NULL;
    memset(docs, 0, sizeof *docs);
    if (dataset_kind_parse(src->dataset, &kind)) return tm_fail_context("%s", src->flag);
    if (!src->data_path) return tm_fail("%s %s needs a data path (the folder or file with the text)", src->flag,
                                        src->dataset);
    if (dataset_load(kind, src->data_path, src->split, src->text_field, docs)) return -1;
    if (tokenizer_load(t, model_dir)) {
        documents_free(docs);
        return tm_fail_context("%s %s needs the model's tokenizer", src->flag, src->dataset);
    }
    return 0;
}

int token_source_stream(const TokenSource *src, const char *model_dir, int vocab_size, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (src->tokens) return read_file_ids(src, model_dir, vocab_size, 0, ids, n);
    Tokenizer *t;
    Documents docs;
    if (with_dataset(src, model_dir, &t, &docs)) return -1;
    TokenIds out = {0};
    int rc = dataset_encode_joined(t, &docs, &out);
    if (!rc) rc = check_vocab(src->data_path, out.ids, out.n, vocab_size);
    documents_free(&docs);
    tokenizer_free(t);
    if (rc) {
        token_ids_free(&out);
        return -1;
    }
    *ids = out.ids;
    *n = out.n;
    return 0;
}

int token_source_calibration(const TokenSource *src, const char *model_dir, int vocab_size, int nsamples, int seqlen,
                             uint64_t seed, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (src->tokens) return read_file_ids(src, model_dir, vocab_size, seqlen, ids, n);
    if (nsamples < 1) return tm_fail("%s %s: --cal-nsamples must be at least 1 for a text dataset", src->flag,
                                     src->dataset);
    Tokenizer *t;
    Documents docs;
    if (with_dataset(src, model_dir, &t, &docs)) return -1;
    int got = 0;
    int rc = dataset_sample_calibration(t, &docs, nsamples, seqlen, seed, ids, &got);
    if (!rc) rc = check_vocab(src->data_path, *ids, (size_t)got * (size_t)seqlen, vocab_size);
    if (!rc && got < nsamples && src->warn)
        fprintf(stderr, "transmla: warning: %s: only %d calibration samples of %d tokens (asked for %d)\n",
                token_source_describe(src), got, seqlen, nsamples);
    documents_free(&docs);
    tokenizer_free(t);
    if (rc) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    *n = (size_t)got * (size_t)seqlen;
    return 0;
}
