#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/token_flags.h"
#include "dist/topology.h"
#include "io/base/error.h"
#include "io/token_source.h"
#include "model/model.h"
#include "model/ppl.h"
#include "pipeline/stage_device.h"
#include "pipeline/stream.h"

/* The perplexity convert reports, computed the same way (pipeline/stream.h):
 * under mpirun the ranks share the windows as data-parallel replicas. */
static int evaluate(const char *model_path, const TokenSource *src, int seqlen, int nseq, int batch, int device,
                    int gpu_fp32, int json, int quiet) {
    Topology t;
    if (dist_agree(MPI_COMM_WORLD, topology_init(&t, 1))) return -1;
    TokenSource warned = *src;
    warned.warn = t.rank == 0; /* one copy of each warning */
    Model m = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = model_load(&m, model_path);
    if (!rc && (token_source_stream(&warned, model_path, m.cfg.vocab_size, &ids, &n_ids) ||
                ppl_check_windows(n_ids, seqlen, &nseq)))
        rc = -1;
    if (dist_agree(MPI_COMM_WORLD, rc)) {
        if (m.w.layers) model_free(&m);
        free(ids);
        topology_free(&t);
        return -1;
    }
    int talk = !json && !quiet && t.rank == 0;
    if (talk)
        fprintf(stderr, "eval: %s (%s, %d layers, %s weights), %s: %d windows of %d tokens\n", model_path,
                m.cfg.model_type, m.cfg.n_layers, tm_dtype_name(m.w.dtype), token_source_describe(src), nseq, seqlen);
    PipeJob job = {.ids = ids, .seqlen = seqlen, .nseq = nseq, .batch = batch, .score = 1, .label = talk ? "eval" : NULL,
                   .device = device, .gpu_fp32 = gpu_fp32};
    PipeResult r;
    rc = pipeline_run(&t, &m, &job, &r);
    if (!rc && ppl_check_finite(r.ppl, r.nll, r.predicted)) rc = tm_fail_context("%s", model_path);
    if (!rc && t.rank == 0) {
        if (json)
            printf("{\"ppl\": %.9g, \"nll\": %.9g, \"tokens\": %lld, \"predicted\": %lld, \"seconds\": %.3f, "
                   "\"tokens_per_s\": %.1f}\n",
                   r.ppl, r.nll, (long long)r.tokens, (long long)r.predicted, r.seconds, r.tokens_per_s);
        else
            printf("ppl %.6f  nll %.6f  tokens %lld (%lld predicted)  %.0f tokens/s  %.2f s\n", r.ppl, r.nll,
                   (long long)r.tokens, (long long)r.predicted, r.tokens_per_s, r.seconds);
    }
    free(ids);
    model_free(&m);
    topology_free(&t);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *model_path = TRANSMLA_DEFAULT_MODEL, *token_dtype = "u16", *text_field = NULL, *device = "cpu";
    TokenFlags flags = {.split = "test"};
    int seqlen = 2048, nseq = 0, batch = 4, json = 0, quiet = 0, gpu_fp32 = 0;
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &model_path, "DIR", "Hugging Face model folder (default: the bundled bytelm-dev)", 0},
        {"tokens", ARG_STR, &flags.tokens, "FILE", "token ids: an HDF5 token set (transmla tokenize) or raw ids", 0},
        {"token-dtype", ARG_STR, &token_dtype, "u16|u32", "width of raw ids in --tokens (default u16)", 0},
        {"dataset", ARG_STR, &flags.dataset, "NAME",
         "text dataset wikitext2|ptb|c4|alpaca|text|jsonl, encoded with the model's tokenizer", 0},
        {"data-path", ARG_STR, &flags.data_path, "PATH", "folder or file of the --dataset", 0},
        {"split", ARG_STR, &flags.split, "S", "split evaluated: train|validation|test (default test)", 0},
        {"text-field", ARG_STR, &text_field, "NAME", "field holding the text in jsonl datasets (default text)", 0},
        {"seqlen", ARG_SEQLEN, &seqlen, "N", "window length in tokens (default 2048)", 0},
        {"ppl-seqlen", ARG_SEQLEN, &seqlen, "N", "same as --seqlen", 0},
        {"nseq", ARG_INT, &nseq, "K", "evaluate the first K windows (default: all complete windows)", 0},
        {"batch-size", ARG_POS_INT, &batch, "B", "windows per forward micro-batch (default 4)", 0},
        {"device", ARG_STR, &device, "cpu|cuda",
         "where the layers and the head run (default cpu); cuda: one GPU per rank (local rank mod GPUs), "
         "bf16 GEMMs with fp32 accumulation", 0},
        {"gpu-fp32", ARG_FLAG, &gpu_fp32, "", "with --device cuda: fp32 GEMMs and attention (the CPU's results)", 0},
        {"json", ARG_FLAG, &json, "", "print one JSON object on stdout instead of text", 0},
        {"quiet", ARG_FLAG, &quiet, "", "no progress lines on stderr", 0},
    };
    const char *usage =
        "usage: transmla eval [--model-path DIR] (--tokens FILE | --dataset NAME --data-path PATH) [--seqlen N]\n\n"
        "Perplexity over consecutive windows: window k is tokens k*N .. (k+1)*N-1 of the stream (a dataset's\n"
        "split is joined with \"\\n\\n\" and tokenised once); ppl = exp(mean NLL over all predicted tokens).";
    TmTokenDType dt;
    TokenSource src;
    int present;
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0], usage) || token_dtype_parse(token_dtype, &dt) ||
        token_flags_resolve("", &flags, text_field, dt, &src, &present))
        return cli_fail();
    if (!present) {
        tm_fail("no tokens to evaluate: give --tokens FILE or --dataset NAME --data-path PATH");
        return cli_fail();
    }
    int dev = device_parse(device);
    if (dev < 0 || stage_device_check(dev)) return cli_fail();
    dist_init(&argc, &argv);
    int rc = evaluate(model_path, &src, seqlen, nseq, batch, dev, gpu_fp32, json, quiet);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rc && rank == 0) cli_fail();
    dist_finalize();
    return rc ? 1 : 0;
}
