/* `transmla tokenize`: text in, ids out: printed as JSON for inspection, or an
 * HDF5 token set that conversion, evaluation and training read later, so
 * cluster jobs do not re-tokenize. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/base/output_path.h"
#include "io/base/whole_file.h"
#include "io/dataset.h"
#include "io/token_set.h"
#include "io/tokenizer/tokenizer.h"

typedef struct {
    const char *tokenizer_dir, *input, *dataset, *data_path, *split, *text_field, *output;
    int ids, add_special, documents, samples, seqlen, seed, overwrite, quiet;
} TokenizeArgs;

/* What was tokenised: ids plus where each document (or sample) starts. */
typedef struct {
    TokenIds ids;
    uint64_t *offsets; /* n_docs + 1 */
    size_t n_docs;
    const char *kind;
    int add_special;
    char *sources;
} Tokenized;

static void mark_document(Tokenized *out) {
    out->offsets = realloc(out->offsets, (out->n_docs + 2) * sizeof *out->offsets);
    if (!out->offsets) tm_die("out of memory");
    out->offsets[++out->n_docs] = out->ids.n;
}

static int encode_input(Tokenizer *t, const TokenizeArgs *a, Tokenized *out) {
    char *text = NULL;
    size_t len = 0;
    if (read_whole_file(a->input, &text, &len)) return -1;
    int rc = tokenizer_encode(t, text, len, a->add_special, &out->ids);
    free(text);
    if (rc) return tm_fail_context("%s", a->input);
    out->kind = "joined";
    out->add_special = a->add_special;
    out->sources = strdup(a->input);
    mark_document(out);
    return 0;
}

/* A dataset split: joined (the perplexity protocol), one entry per document,
 * or calibration samples (the reference sampler). */
static int encode_dataset(Tokenizer *t, const TokenizeArgs *a, Tokenized *out) {
    DatasetKind kind;
    Documents docs;
    if (dataset_kind_parse(a->dataset, &kind)) return tm_fail_context("--dataset");
    if (!a->data_path) return tm_fail("--dataset %s needs --data-path", a->dataset);
    if (dataset_load(kind, a->data_path, a->split, a->text_field, &docs)) return -1;
    int rc = 0;
    out->sources = strdup(docs.sources);
    if (a->samples > 0) {
        int32_t *ids = NULL;
        int got = 0;
        rc = dataset_sample_calibration(t, &docs, a->samples, a->seqlen, (uint64_t)(unsigned)a->seed, &ids, &got);
        for (int i = 0; !rc && i < got; i++) {
            for (int j = 0; j < a->seqlen; j++) token_ids_push(&out->ids, ids[(size_t)i * a->seqlen + j]);
            mark_document(out);
        }
        free(ids);
        if (!rc && got < a->samples && !a->quiet)
            fprintf(stderr, "transmla: warning: only %d samples of %d tokens in the %s split (asked for %d)\n", got,
                    a->seqlen, a->split, a->samples);
        out->kind = "samples";
        out->add_special = 1;
    } else if (a->documents) {
        for (size_t i = 0; !rc && i < docs.n; i++) {
            rc = tokenizer_encode(t, docs.text[i], docs.len[i], a->add_special, &out->ids);
            if (rc) tm_fail_context("%s: document %zu", a->data_path, i);
            mark_document(out);
        }
        out->kind = "documents";
        out->add_special = a->add_special;
    } else {
        rc = dataset_encode_joined(t, &docs, &out->ids);
        mark_document(out);
        out->kind = "joined";
        out->add_special = 1;
    }
    documents_free(&docs);
    return rc;
}

static void print_ids(const Tokenized *tk, int nested) {
    size_t doc = 0;
    fputs(nested ? "[[" : "[", stdout);
    for (size_t i = 0; i < tk->ids.n; i++) {
        while (nested && doc + 1 < tk->n_docs && i == tk->offsets[doc + 1]) {
            fputs("], [", stdout);
            doc++;
        }
        printf(i == 0 || (nested && i == tk->offsets[doc]) ? "%d" : ", %d", tk->ids.ids[i]);
    }
    puts(nested ? "]]" : "]");
}

static int write_set(const Tokenizer *t, const TokenizeArgs *a, const Tokenized *tk) {
    TokenSet ts = {.ids = tk->ids.ids, .n = tk->ids.n, .doc_offsets = tk->offsets, .n_docs = tk->n_docs,
                   .vocab_size = tokenizer_vocab_size(t), .tokenizer = (char *)tokenizer_path(t),
                   .sources = tk->sources, .kind = (char *)tk->kind, .seqlen = a->samples > 0 ? a->seqlen : 0,
                   .add_special_tokens = tk->add_special, .seed = (uint64_t)(unsigned)a->seed};
    snprintf(ts.tokenizer_sha256, sizeof ts.tokenizer_sha256, "%s", tokenizer_sha256(t));
    return token_set_write(a->output, &ts);
}

/* Before any tokenising: never over an input, a device or a folder. */
static int check_output(const TokenizeArgs *a) {
    char tokenizer_json[4200];
    snprintf(tokenizer_json, sizeof tokenizer_json, "%s/tokenizer.json", a->tokenizer_dir ? a->tokenizer_dir : ".");
    const char *inputs[] = {a->input, a->data_path, a->tokenizer_dir, tokenizer_json};
    if (output_path_check("--output", a->output, OUT_FILE, inputs, 4)) return -1;
    struct stat st;
    if (stat(a->output, &st) == 0 && !a->overwrite)
        return tm_fail("%s: exists; pass --overwrite to replace it", a->output);
    return 0;
}

static int check_args(const TokenizeArgs *a) {
    if (!a->input == !a->dataset) return tm_fail("give --input FILE or --dataset NAME --data-path PATH (one of them)");
    if (!a->ids == !a->output) return tm_fail("give --ids (print) or --output SET.h5 (HDF5 token set), one of them");
    if (a->samples > 0 && a->seqlen < 2) return tm_fail("--samples needs --seqlen of at least 2 tokens");
    if (a->input && (a->samples || a->documents))
        return tm_fail("--samples and --documents work on a --dataset; --input is one document");
    if (a->samples && a->documents) return tm_fail("--samples and --documents exclude each other");
    return a->output ? check_output(a) : 0;
}

static int tokenize_run(const TokenizeArgs *a) {
    Tokenizer *t;
    if (check_args(a) || tokenizer_load(&t, a->tokenizer_dir)) return -1;
    Tokenized tk = {.offsets = callocCheck(1, sizeof(uint64_t))};
    double t0 = tm_now_s();
    int rc = a->input ? encode_input(t, a, &tk) : encode_dataset(t, a, &tk);
    double secs = tm_now_s() - t0;
    if (!rc && !a->quiet)
        fprintf(stderr, "tokenize: %s -> %zu tokens in %zu %s (%s), %.2f s\n", a->input ? a->input : a->data_path,
                tk.ids.n, tk.n_docs, tk.n_docs == 1 ? "document" : "documents", tk.kind, secs);
    if (!rc && a->ids) print_ids(&tk, strcmp(tk.kind, "joined") != 0);
    if (!rc && a->output) rc = write_set(t, a, &tk);
    if (!rc && a->output && !a->quiet) fprintf(stderr, "tokenize: wrote %s\n", a->output);
    token_ids_free(&tk.ids);
    free(tk.offsets);
    free(tk.sources);
    tokenizer_free(t);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    TokenizeArgs a = {.split = "test", .seed = 42};
    const ArgSpec specs[] = {
        {"tokenizer", ARG_STR, &a.tokenizer_dir, "DIR", "folder with tokenizer.json (and tokenizer_config.json)", 1},
        {"input", ARG_STR, &a.input, "FILE", "UTF-8 text file, tokenised as one document", 0},
        {"dataset", ARG_STR, &a.dataset, "NAME", "wikitext2|ptb|c4|alpaca|text|jsonl (see README: Datasets)", 0},
        {"data-path", ARG_STR, &a.data_path, "PATH", "folder or file of the --dataset", 0},
        {"split", ARG_STR, &a.split, "S", "train|validation|test (default test)", 0},
        {"text-field", ARG_STR, &a.text_field, "NAME", "field holding the text in jsonl (default text)", 0},
        {"ids", ARG_FLAG, &a.ids, "", "print the ids as one JSON array on stdout", 0},
        {"output", ARG_STR, &a.output, "SET.h5", "write an HDF5 token set", 0},
        {"overwrite", ARG_FLAG, &a.overwrite, "", "replace --output if it exists", 0},
        {"add-special-tokens", ARG_FLAG, &a.add_special, "",
         "add BOS/EOS as the tokenizer does (--input, --documents; a joined or sampled dataset always has them, as "
         "evaluation and calibration do)", 0},
        {"documents", ARG_FLAG, &a.documents, "", "tokenise each document of the split on its own (for training)", 0},
        {"samples", ARG_INT, &a.samples, "N", "draw N calibration samples as convert does (with --seqlen, --seed)", 0},
        {"seqlen", ARG_SEQLEN, &a.seqlen, "L", "tokens per calibration sample", 0},
        {"seed", ARG_INT, &a.seed, "S", "seed of the calibration sampler (default 42)", 0},
        {"quiet", ARG_FLAG, &a.quiet, "", "no progress lines on stderr", 0},
    };
    const char *usage =
        "usage: transmla tokenize --tokenizer DIR (--input FILE | --dataset NAME --data-path PATH [--split S])\n"
        "                         (--ids | --output SET.h5) [--documents | --samples N --seqlen L]\n\n"
        "Encode text with a Hugging Face tokenizer.json (BPE: byte-level or SentencePiece-style). Without\n"
        "--documents/--samples a dataset split is joined with \"\\n\\n\" and tokenised once (the perplexity\n"
        "protocol). An HDF5 token set records the tokenizer's SHA-256; commands refuse a set made by\n"
        "another tokenizer than their model's.";
    static char output[4096];
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0], usage)) return cli_fail();
    if (a.output && output_path_normalize("--output", a.output, output, sizeof output)) return cli_fail();
    if (a.output) a.output = output;
    if (tokenize_run(&a)) return cli_fail();
    return 0;
}
