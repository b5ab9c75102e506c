/* Flag parsing for subcommands: --name VALUE or --name=VALUE, --help. */
#ifndef TM_CLI_ARGS_H
#define TM_CLI_ARGS_H

typedef enum { ARG_STR, ARG_INT, ARG_FLAG } ArgType;

typedef struct {
    const char *name;     /* without the leading "--" */
    ArgType type;
    void *dest;           /* const char **, int *, or int * (flag: set to 1) */
    const char *metavar;
    const char *help;     /* mention the default here */
    int required;
} ArgSpec;

/* Parse argv[1..] (argv[0] is the subcommand). Prints help and exits 0 on
 * --help; on bad input records an error and returns -1. */
int args_parse(int argc, char **argv, const ArgSpec *specs, int n, const char *usage);

/* *out = the number text of flag --name: positive, or with allow_zero
 * non-negative; else one error line naming the flag, and -1. */
int args_number(const char *name, const char *text, int allow_zero, double *out);

#endif
