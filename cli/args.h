/* Flag parsing for subcommands: --name VALUE or --name=VALUE, --help. */
#ifndef TM_CLI_ARGS_H
#define TM_CLI_ARGS_H

/* Integers have a least value by type: ARG_INT 0 (no count, size or seed is
 * negative), ARG_POS_INT 1, ARG_SEQLEN 2 (a window of tokens predicts at
 * least one from another). */
typedef enum { ARG_STR, ARG_INT, ARG_POS_INT, ARG_SEQLEN, ARG_FLAG } ArgType;

typedef struct {
    const char *name;     /* without the leading "--" */
    ArgType type;
    void *dest;           /* const char ** (ARG_STR), else int * (a flag is set to 1) */
    const char *metavar;
    const char *help;     /* mention the default here */
    int required;
} ArgSpec;

/* Parse argv[1..] (argv[0] is the subcommand). Prints help and exits 0 on
 * --help; on bad input (an integer with junk, out of int range or below its
 * type's least value) records one error naming the flag and returns -1. */
int args_parse(int argc, char **argv, const ArgSpec *specs, int n, const char *usage);

/* *out = the number text of flag --name: finite (no inf, nan or 1e400) and
 * positive, or with allow_zero non-negative; else one error line naming the
 * flag, and -1. */
int args_number(const char *name, const char *text, int allow_zero, double *out);

/* 0 when the text of flag --name is a or b; else one error line naming the
 * flag and both choices, and -1. */
int args_one_of(const char *name, const char *text, const char *a, const char *b);

/* --device: 0 for "cpu", 1 for "cuda" (PIPE_CPU, PIPE_CUDA); else one error
 * line and -1. */
int device_parse(const char *text);

#endif
