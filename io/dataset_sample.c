/* The two ways conversion turns documents into ids (DESIGN.md section 2):
 * the evaluation stream (everything joined, encoded once) and the
 * reference's calibration sampler (fxmeng/TransMLA utils.prepare_dataloader
 * with varied_seqlen False), seeded with splitmix64 instead of torch. */
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/rng.h"
#include "io/dataset.h"

/* "FILE" (the first source) for messages; static buffer. */
static const char *first_source(const Documents *d) {
    static _Thread_local char buf[512];
    if (!d->sources) return "dataset";
    size_t n = strcspn(d->sources, "\n");
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, d->sources, n);
    buf[n] = '\0';
    return buf;
}

int dataset_encode_joined(Tokenizer *t, const Documents *d, TokenIds *out) {
    size_t len;
    char *text = documents_join(d, 0, d->n, &len);
    int rc = tokenizer_encode(t, text, len, 1, out);
    free(text);
    if (rc) return tm_fail_context("%s: encoding the joined documents", first_source(d));
    return 0;
}

/* Documents idx[0..count) joined with "\n\n" (malloc'd). */
static char *join_picked(const Documents *d, const size_t *idx, size_t count, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += d->len[idx[i]] + (i ? 2 : 0);
    char *out = mallocCheck(total + 1), *p = out;
    for (size_t i = 0; i < count; i++) {
        if (i) {
            memcpy(p, "\n\n", 2);
            p += 2;
        }
        memcpy(p, d->text[idx[i]], d->len[idx[i]]);
        p += d->len[idx[i]];
    }
    *p = '\0';
    *len = total;
    return out;
}

/* Number of ids of sep + document i without special tokens: how the
 * reference measures a piece (tokenizer.tokenize(sep + item)). */
static int piece_count(Tokenizer *t, const Documents *d, size_t i, int with_sep, char **buf, size_t *cap,
                       TokenIds *scratch, size_t *count) {
    const char *text = d->text[i];
    size_t len = d->len[i];
    if (with_sep) {
        if (*cap < len + 3) {
            *cap = len + 3;
            free(*buf);
            *buf = mallocCheck(*cap);
        }
        memcpy(*buf, "\n\n", 2);
        memcpy(*buf + 2, text, len + 1);
        text = *buf;
        len += 2;
    }
    scratch->n = 0;
    if (tokenizer_encode(t, text, len, 0, scratch)) return tm_fail_context("%s: document %zu", first_source(d), i);
    *count = scratch->n;
    return 0;
}

int dataset_sample_calibration(Tokenizer *t, const Documents *d, int nsamples, int seqlen, uint64_t seed,
                               int32_t **ids, int *got) {
    *ids = NULL;
    *got = 0;
    if (nsamples < 1 || seqlen < 1)
        return tm_fail("calibration needs at least 1 sample of at least 1 token (asked for %d x %d)", nsamples, seqlen);
    size_t width = (size_t)seqlen;
    int32_t *out = mallocCheck((size_t)nsamples * width * sizeof *out);
    size_t *pool = mallocCheck((d->n ? d->n : 1) * sizeof *pool), pool_n = d->n;
    for (size_t i = 0; i < pool_n; i++) pool[i] = i;
    TmRng rng;
    rng_seed(&rng, seed);
    TokenIds scratch = {0};
    char *buf = NULL;
    size_t cap = 0;
    int kept = 0, rc = 0;
    while (kept < nsamples && pool_n > 0 && !rc) {
        size_t start = (size_t)(rng_next(&rng) % pool_n), idx = start, count = 0;
        while (count < width && idx < pool_n && !rc) {
            size_t n = 0;
            rc = piece_count(t, d, pool[idx], idx > start, &buf, &cap, &scratch, &n);
            count += n;
            idx++;
        }
        if (rc) break;
        if (count >= width) {
            /* encoded as one text the pieces can merge across the joins, so
             * the whole may fall short: then the sample is skipped */
            size_t len;
            char *text = join_picked(d, pool + start, idx - start, &len);
            scratch.n = 0;
            rc = tokenizer_encode(t, text, len, 1, &scratch);
            free(text);
            if (rc) tm_fail_context("%s: calibration sample %d", first_source(d), kept);
            else if (scratch.n >= width) {
                memcpy(out + (size_t)kept * width, scratch.ids, width * sizeof *out);
                kept++;
            }
        }
        memmove(pool + start, pool + idx, (pool_n - idx) * sizeof *pool);
        pool_n -= idx - start;
    }
    free(buf);
    free(pool);
    token_ids_free(&scratch);
    if (!rc && kept == 0)
        rc = tm_fail("%s: not enough text for one sample of %d tokens (%zu documents)", first_source(d), seqlen, d->n);
    if (rc) {
        free(out);
        return -1;
    }
    *ids = out;
    *got = kept;
    return 0;
}
