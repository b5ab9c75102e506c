#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/token_file.h"
#include "model/model.h"
#include "model/ppl.h"

int cmd_eval(int argc, char **argv) {
    const char *model_path = TRANSMLA_DEFAULT_MODEL, *tokens = NULL, *token_dtype = "u16";
    int seqlen = 2048, nseq = 0, batch = 4, json = 0, quiet = 0;
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &model_path, "DIR", "Hugging Face model folder (default: the bundled bytelm-dev)", 0},
        {"tokens", ARG_STR, &tokens, "FILE", "raw little-endian token ids", 1},
        {"token-dtype", ARG_STR, &token_dtype, "u16|u32", "width of the ids in --tokens (default u16)", 0},
        {"seqlen", ARG_INT, &seqlen, "N", "window length in tokens (default 2048)", 0},
        {"nseq", ARG_INT, &nseq, "K", "evaluate the first K windows (default: all complete windows)", 0},
        {"batch-size", ARG_INT, &batch, "B", "windows per forward micro-batch (default 4)", 0},
        {"json", ARG_FLAG, &json, "", "print one JSON object on stdout instead of text", 0},
        {"quiet", ARG_FLAG, &quiet, "", "no progress lines on stderr", 0},
    };
    const char *usage =
        "usage: transmla eval [--model-path DIR] --tokens FILE [--seqlen N] [--nseq K]\n\n"
        "Perplexity over consecutive windows: window k is tokens k*N .. (k+1)*N-1;\n"
        "ppl = exp(mean NLL over all predicted tokens).";
    TmTokenDType dt;
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0], usage) || token_dtype_parse(token_dtype, &dt))
        return cli_fail();

    Model m;
    if (model_load(&m, model_path)) return cli_fail();
    int32_t *ids;
    size_t n_ids;
    if (token_file_read(tokens, dt, m.cfg.vocab_size, &ids, &n_ids) || ppl_check_windows(n_ids, seqlen, &nseq)) {
        free(ids);
        model_free(&m);
        return cli_fail();
    }
    if (!json && !quiet)
        fprintf(stderr, "eval: %s (%s, %d layers, %s weights), %s: %d windows of %d tokens\n", model_path,
                m.cfg.model_type, m.cfg.n_layers, tm_dtype_name(m.w.dtype), tokens, nseq, seqlen);
    PplResult r;
    int rc = ppl_eval(&m, ids, n_ids, seqlen, nseq, batch, !json && !quiet, &r);
    free(ids);
    model_free(&m);
    if (rc) return cli_fail();
    if (json)
        printf("{\"ppl\": %.9g, \"nll\": %.9g, \"tokens\": %lld, \"predicted\": %lld, \"seconds\": %.3f, "
               "\"tokens_per_s\": %.1f}\n",
               r.ppl, r.nll, (long long)r.tokens, (long long)r.predicted, r.seconds, r.tokens_per_s);
    else
        printf("ppl %.6f  nll %.6f  tokens %lld (%lld predicted)  %.0f tokens/s  %.2f s\n", r.ppl, r.nll,
               (long long)r.tokens, (long long)r.predicted, r.tokens_per_s, r.seconds);
    return 0;
}
