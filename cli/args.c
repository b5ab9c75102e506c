#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

static void print_help(const ArgSpec *specs, int n, const char *usage) {
    printf("%s\n\noptions:\n", usage);
    for (int i = 0; i < n; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", specs[i].name, specs[i].type == ARG_FLAG ? "" : " ",
                 specs[i].type == ARG_FLAG ? "" : specs[i].metavar);
        printf("  %-28s %s%s\n", left, specs[i].help, specs[i].required ? " (required)" : "");
    }
    printf("  %-28s %s\n", "--help", "show this help");
}

static int set_value(const ArgSpec *s, const char *val) {
    if (s->type == ARG_STR) {
        *(const char **)s->dest = val;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || *end || end == val || v < -2147483647L || v > 2147483647L)
        return tm_fail("--%s '%s': expected an integer", s->name, val);
    int least = s->type == ARG_SEQLEN ? 2 : s->type == ARG_POS_INT ? 1 : 0;
    if (v < least)
        return least ? tm_fail("--%s %ld must be at least %d", s->name, v, least)
                     : tm_fail("--%s %ld must not be negative", s->name, v);
    *(int *)s->dest = (int)v;
    return 0;
}

int args_parse(int argc, char **argv, const ArgSpec *specs, int n, const char *usage) {
    char seen[64] = {0};
    if (n > (int)sizeof seen) tm_die("args_parse: %d options, at most %zu supported", n, sizeof seen);
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(specs, n, usage);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0) return tm_fail("unexpected argument '%s' (see --help)", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int i = 0;
        while (i < n && !(strlen(specs[i].name) == len && strncmp(specs[i].name, name, len) == 0)) i++;
        if (i == n) return tm_fail("unknown option '%.*s' (see --help)", (int)(len + 2), arg);
        seen[i] = 1;
        if (specs[i].type == ARG_FLAG) {
            if (eq) return tm_fail("--%s takes no value", specs[i].name);
            *(int *)specs[i].dest = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!val) return tm_fail("--%s needs a value (%s)", specs[i].name, specs[i].metavar);
        if (set_value(&specs[i], val)) return -1;
    }
    for (int i = 0; i < n; i++)
        if (specs[i].required && !seen[i]) return tm_fail("missing required option --%s (see --help)", specs[i].name);
    return 0;
}

int args_one_of(const char *name, const char *text, const char *a, const char *b) {
    if (strcmp(text, a) && strcmp(text, b)) return tm_fail("--%s '%s': expected %s or %s", name, text, a, b);
    return 0;
}

int args_number(const char *name, const char *text, int allow_zero, double *out) {
    char *end;
    double v = strtod(text, &end); /* "inf", "nan" and 1e400 (HUGE_VAL) parse: isfinite refuses them */
    if (!*text || *end || !isfinite(v) || !(allow_zero ? v >= 0 : v > 0))
        return tm_fail("--%s '%s': expected a finite %s number", name, text, allow_zero ? "non-negative" : "positive");
    *out = v;
    return 0;
}

int device_parse(const char *text) {
    if (!strcmp(text, "cpu")) return 0;
    if (!strcmp(text, "cuda")) return 1;
    return tm_fail("--device %s: use cpu or cuda", text);
}
