#include "cli/token_flags.h"

#include <stdio.h>
#include <string.h>

#include "io/base/error.h"

/* "--cal-tokens" from ("cal", "tokens"); "--tokens" from ("", "tokens"). */
static const char *flag_name(char *buf, size_t len, const char *prefix, const char *what) {
    snprintf(buf, len, "--%s%s%s", prefix, *prefix ? "-" : "", what);
    return buf;
}

int token_flags_resolve(const char *prefix, const TokenFlags *f, const char *text_field, TmTokenDType dt,
                        TokenSource *out, int *present) {
    memset(out, 0, sizeof *out);
    *present = 0;
    char t_buf[32], d_buf[32], p_buf[32];
    const char *tokens_flag = flag_name(t_buf, sizeof t_buf, prefix, "tokens");
    const char *dataset_flag = flag_name(d_buf, sizeof d_buf, prefix, "dataset");
    const char *path_flag = flag_name(p_buf, sizeof p_buf, prefix, "data-path");
    int file = f->tokens != NULL && *f->tokens;
    if (f->dataset && strcmp(f->dataset, "tokens") && !token_source_is_dataset(f->dataset))
        return tm_fail("%s '%s': expected wikitext2, ptb, c4, alpaca, text, jsonl, tokens or none", dataset_flag,
                       f->dataset);
    int text = f->dataset && token_source_is_dataset(f->dataset);
    if (file && text)
        return tm_fail("%s and %s %s both name the tokens; give one", tokens_flag, dataset_flag, f->dataset);
    if (f->dataset && !strcmp(f->dataset, "tokens") && !file)
        return tm_fail("%s tokens needs %s FILE", dataset_flag, tokens_flag);
    if (text && !f->data_path)
        return tm_fail("%s %s needs %s (the folder or file with the text)", dataset_flag, f->dataset, path_flag);
    if (!text && f->data_path) return tm_fail("%s is for a text dataset; name one with %s", path_flag, dataset_flag);
    if (file) {
        out->tokens = f->tokens;
        out->dtype = dt;
        snprintf(out->flag, sizeof out->flag, "%s", tokens_flag);
    } else if (text) {
        out->dataset = f->dataset;
        out->data_path = f->data_path;
        out->split = f->split;
        out->text_field = text_field;
        snprintf(out->flag, sizeof out->flag, "%s", dataset_flag);
    } else {
        return 0;
    }
    *present = 1;
    return 0;
}
