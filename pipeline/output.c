#define _XOPEN_SOURCE 700 /* nftw */
#include "pipeline/output.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/error.h"

int output_make_parents(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return tm_fail("%s: cannot create folder: %s", buf, strerror(errno));
        *p = '/';
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void output_remove_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

int output_make_temp(const char *tmp) {
    output_remove_tree(tmp);
    if (mkdir(tmp, 0755)) return tm_fail("%s: cannot create: %s", tmp, strerror(errno));
    return 0;
}

int output_finish(const char *tmp, const char *final) {
    char old[4200];
    struct stat st;
    int had_old = stat(final, &st) == 0;
    snprintf(old, sizeof old, "%s.old-%ld", final, (long)getpid());
    if (had_old && rename(final, old)) return tm_fail("%s: cannot move the old folder aside: %s", final, strerror(errno));
    if (rename(tmp, final)) return tm_fail("%s: cannot rename %s into place: %s", final, tmp, strerror(errno));
    if (had_old) output_remove_tree(old);
    return 0;
}

uint64_t output_peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024;
}

void output_print_ppl(json_t *ppl, int freqfold) {
    json_t *search = json_object_get(ppl, "rorope_by_freqfold");
    if (json_object_size(search) > 1) {
        const char *key;
        json_t *v;
        printf("freqfold search (RoRoPE ppl):");
        json_object_foreach(search, key, v) printf("  %s: %.4f", key, json_number_value(v));
        printf("  -> %d\n", freqfold);
    }
    /* with the fits on: the published rotation's numbers beside the fitted rotation's and the fitted
     * attention's; with the attention fit, as exported is the attention-fitted model */
    int attn = json_object_get(ppl, "mla_native_rotation_fit") != NULL;
    static const char *rows[][4] = {{"original", "original", "", "original GQA"},
                                    {"rorope_pca", "rorope", "", "RoRoPE (partial RoPE)"},
                                    {"mla_pca", "mla", "", "MLA (exact, no kv norm)"},
                                    {"", "mla_native", "", "MLA as exported (read back)"}};
    int fitted = json_object_get(ppl, "mla_pca") != NULL || attn;
    if (fitted) printf("%-36s %-20s %-20s %s\n", "model", "published rotation", "fitted rotation",
                       attn ? "fitted attention" : "");
    else printf("%-36s %s\n", "model", "perplexity");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *rot_key = attn && i == 3 ? "mla_native_rotation_fit" : rows[i][1];
        json_t *pub = json_object_get(ppl, rows[i][0]), *fit = json_object_get(ppl, rot_key);
        json_t *whole = attn && i == 3 ? json_object_get(ppl, "mla_native") : NULL;
        if (!fitted) {
            if (json_is_number(fit)) printf("%-36s %.6f\n", rows[i][3], json_number_value(fit));
            continue;
        }
        char a[32] = "", b[32] = "", c[32] = "";
        if (json_is_number(pub)) snprintf(a, sizeof a, "%.6f", json_number_value(pub));
        if (json_is_number(fit) && i > 0) snprintf(b, sizeof b, "%.6f", json_number_value(fit));
        if (json_is_number(whole)) snprintf(c, sizeof c, "%.6f", json_number_value(whole));
        printf("%-36s %-20s %-20s %s\n", rows[i][3], a, b, c);
    }
}
