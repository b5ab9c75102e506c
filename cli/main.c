/* transmla: convert GQA models to multi-head latent attention. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "io/base/error.h"
#include "model/threads.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *help;
} commands[] = {
    {"convert", cmd_convert, "convert a GQA model to DeepSeek-V3 MLA (RoRoPE + BKV-PCA)"},
    {"finetune", cmd_finetune, "fine-tune a converted model (AdamW, chat or text data, HDF5 checkpoints, MPI)"},
    {"eval", cmd_eval, "perplexity of a model on a dataset or a token file"},
    {"generate", cmd_generate, "greedy decoding with a KV cache (latent cache for MLA models)"},
    {"plan", cmd_plan, "stage layout and memory per rank of a conversion on N nodes (config.json only)"},
    {"tokenize", cmd_tokenize, "text to token ids (JSON) or an HDF5 token set"},
    {"inspect", cmd_inspect, "architecture, parameter count and KV-cache size of a model"},
    {"version", cmd_version, "version and the libraries linked in"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

int cli_fail(void) {
    fprintf(stderr, "transmla: error: %s\n", tm_error());
    return 1;
}

static void usage(FILE *to) {
    fprintf(to, "usage: transmla COMMAND [options]   (transmla COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    threads_wait_passive(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) return cmd_version(argc - 1, argv + 1);
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "transmla: error: unknown command '%s' (see transmla --help)\n", argv[1]);
    return 2;
}
