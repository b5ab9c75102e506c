#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/tokenizer/tokenizer.h"
#include "model/decode.h"

/* "1,2,3" -> ids; every id below vocab. */
static int parse_ids(const char *s, int vocab, int32_t **ids, int *n) {
    int cap = 16;
    *ids = mallocCheck((size_t)cap * sizeof **ids);
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v >= vocab) return tm_fail("--prompt-ids: '%s' is not a token id below vocab_size %d", s, vocab);
        if (*n == cap) *ids = realloc(*ids, (size_t)(cap *= 2) * sizeof **ids);
        (*ids)[(*n)++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return tm_fail("--prompt-ids: expected comma-separated integers");
    }
    return *n ? 0 : tm_fail("--prompt-ids is empty");
}

/* The model's own tokenizer.json when the folder has one (NULL otherwise). */
static int load_model_tokenizer(const char *model_path, Tokenizer **t) {
    char path[4096];
    struct stat st;
    *t = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", model_path);
    return stat(path, &st) == 0 ? tokenizer_load(t, model_path) : 0;
}

/* Prompt text to ids: the tokenizer's (with its BOS), or bytes for a
 * byte-vocabulary model without tokenizer files. */
static int encode_prompt(Tokenizer *t, const Model *m, const char *model_path, const char *prompt, int32_t **ids,
                         int *n) {
    size_t len = strlen(prompt);
    if (!len) return tm_fail("--prompt is empty");
    if (t) {
        TokenIds l = {0};
        if (tokenizer_encode(t, prompt, len, 1, &l)) {
            token_ids_free(&l);
            return tm_fail_context("--prompt");
        }
        for (size_t i = 0; i < l.n; i++)
            if (l.ids[i] >= m->cfg.vocab_size) {
                token_ids_free(&l);
                return tm_fail("%s: the tokenizer gives id %d, outside the model's vocab_size %d", model_path,
                               l.ids[i], m->cfg.vocab_size);
            }
        *ids = l.ids;
        *n = (int)l.n;
        return 0;
    }
    if (m->cfg.vocab_size != 256)
        return tm_fail("%s: no tokenizer.json, and --prompt without one needs a byte-level model (vocab_size 256, "
                       "this one has %d); use --prompt-ids", model_path, m->cfg.vocab_size);
    *ids = mallocCheck(len * sizeof **ids);
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)prompt[i];
    *n = (int)len;
    return 0;
}

/* The continuation as text (tokenizer or bytes), else as ids. */
static void print_continuation(const Tokenizer *t, const Model *m, const char *prompt, const int32_t *out, int n_out) {
    char *text = NULL;
    size_t len = 0;
    if (t && tokenizer_decode(t, out, (size_t)n_out, &text, &len) == 0) {
        printf("%s%s\n", prompt ? prompt : "", text);
    } else if (!t && m->cfg.vocab_size == 256) {
        fputs(prompt ? prompt : "", stdout);
        for (int i = 0; i < n_out; i++) putchar(out[i]);
        putchar('\n');
    } else {
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? " " : "", out[i]);
        putchar('\n');
    }
    free(text);
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = TRANSMLA_DEFAULT_MODEL, *prompt = NULL, *prompt_ids = NULL;
    int max_new = 64, json = 0;
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &model_path, "DIR", "model folder, GQA or DeepSeek-V3 MLA (default: bundled bytelm-dev)", 0},
        {"prompt", ARG_STR, &prompt, "TEXT",
         "prompt text, encoded by the model's tokenizer.json (with its BOS); without one, bytes for vocab-256 models", 0},
        {"prompt-ids", ARG_STR, &prompt_ids, "I,J,..", "prompt as token ids", 0},
        {"max-new-tokens", ARG_INT, &max_new, "N", "tokens to generate greedily (default 64)", 0},
        {"json", ARG_FLAG, &json, "", "print one JSON object instead of text", 0},
    };
    if (args_parse(argc, argv, specs, sizeof specs / sizeof specs[0],
                   "usage: transmla generate [--model-path DIR] (--prompt TEXT | --prompt-ids I,J,..) [--max-new-tokens N]\n\n"
                   "Greedy decoding with a KV cache; MLA models cache only the latent (absorbed form)."))
        return cli_fail();
    if (!prompt == !prompt_ids) {
        tm_fail("give exactly one of --prompt and --prompt-ids");
        return cli_fail();
    }
    Model m;
    if (model_load(&m, model_path)) return cli_fail();
    Tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int n = 0;
    if (load_model_tokenizer(model_path, &tok) ||
        (prompt ? encode_prompt(tok, &m, model_path, prompt, &ids, &n) : parse_ids(prompt_ids, m.cfg.vocab_size, &ids, &n))) {
        free(ids);
        tokenizer_free(tok);
        model_free(&m);
        return cli_fail();
    }
    DecodeState st;
    decode_init(&st, &m, n + max_new);
    float *logits = mallocCheck((size_t)m.cfg.vocab_size * sizeof *logits);
    int32_t *out = mallocCheck((size_t)(max_new ? max_new : 1) * sizeof *out);
    int n_out = 0, rc = 0;
    double t0 = tm_now_s();
    for (int i = 0; i < n && !rc; i++) rc = decode_step(&m, &st, ids[i], logits);
    double t1 = tm_now_s();
    while (!rc && n_out < max_new) {
        int best = 0;
        for (int v = 1; v < m.cfg.vocab_size; v++)
            if (logits[v] > logits[best]) best = v;
        out[n_out++] = best;
        if (best == m.cfg.eos_token_id) break;
        if (n_out < max_new) rc = decode_step(&m, &st, best, logits);
    }
    double t2 = tm_now_s();
    uint64_t per_token = decode_cache_bytes_per_token(&st, &m);
    const char *kind = hf_config_is_mla(&m.cfg) ? "mla-latent" : "gqa-kv";
    if (!rc && json) {
        printf("{\"prompt_tokens\": %d, \"new_tokens\": %d, \"ids\": [", n, n_out);
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? ", " : "", out[i]);
        printf("], \"cache\": \"%s\", \"cache_bytes_per_token\": %llu, \"cache_floats_per_token_per_layer\": %d, "
               "\"decode_tokens_per_s\": %.1f}\n",
               kind, (unsigned long long)per_token, st.width, n_out > 1 ? (n_out - 1) / (t2 - t1) : 0.0);
    } else if (!rc) {
        print_continuation(tok, &m, prompt, out, n_out);
        fprintf(stderr, "generate: %d prompt + %d new tokens; cache %s, %d floats per token per layer = %llu bytes "
                        "per token; prefill %.0f tokens/s, decode %.0f tokens/s\n",
                n, n_out, kind, st.width, (unsigned long long)per_token, n / (t1 - t0),
                n_out > 1 ? (n_out - 1) / (t2 - t1) : 0.0);
    }
    free(out);
    free(logits);
    free(ids);
    tokenizer_free(tok);
    decode_free(&st, &m);
    model_free(&m);
    return rc ? cli_fail() : 0;
}
