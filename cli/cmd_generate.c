#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/checked.h"
#include "io/clock.h"
#include "io/error.h"
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

int cmd_generate(int argc, char **argv) {
    const char *model_path = TRANSMLA_DEFAULT_MODEL, *prompt = NULL, *prompt_ids = NULL;
    int max_new = 64, json = 0;
    const ArgSpec specs[] = {
        {"model-path", ARG_STR, &model_path, "DIR", "model folder, GQA or DeepSeek-V3 MLA (default: bundled bytelm-dev)", 0},
        {"prompt", ARG_STR, &prompt, "TEXT", "prompt text; byte-level models only (vocab 256: a token is a byte)", 0},
        {"prompt-ids", ARG_STR, &prompt_ids, "I,J,..", "prompt as token ids, for models without a byte vocabulary", 0},
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
    if (max_new < 0) {
        tm_fail("--max-new-tokens must not be negative");
        return cli_fail();
    }
    Model m;
    if (model_load(&m, model_path)) return cli_fail();
    int byte_level = m.cfg.vocab_size == 256;
    int32_t *ids = NULL;
    int n = 0;
    if (prompt && !byte_level) {
        tm_fail("%s: --prompt needs a byte-level model (vocab_size 256, this one has %d); use --prompt-ids", model_path,
                m.cfg.vocab_size);
        model_free(&m);
        return cli_fail();
    }
    if (prompt) {
        n = (int)strlen(prompt);
        ids = mallocCheck((size_t)(n ? n : 1) * sizeof *ids);
        for (int i = 0; i < n; i++) ids[i] = (unsigned char)prompt[i];
        if (!n) {
            free(ids);
            model_free(&m);
            tm_fail("--prompt is empty");
            return cli_fail();
        }
    } else if (parse_ids(prompt_ids, m.cfg.vocab_size, &ids, &n)) {
        free(ids);
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
    const char *kind = m.cfg.arch == TM_ARCH_DEEPSEEK_V3 ? "mla-latent" : "gqa-kv";
    if (!rc && json) {
        printf("{\"prompt_tokens\": %d, \"new_tokens\": %d, \"ids\": [", n, n_out);
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? ", " : "", out[i]);
        printf("], \"cache\": \"%s\", \"cache_bytes_per_token\": %llu, \"cache_floats_per_token_per_layer\": %d, "
               "\"decode_tokens_per_s\": %.1f}\n",
               kind, (unsigned long long)per_token, st.width, n_out > 1 ? (n_out - 1) / (t2 - t1) : 0.0);
    } else if (!rc) {
        if (byte_level) {
            fwrite(prompt ? prompt : "", 1, prompt ? strlen(prompt) : 0, stdout);
            for (int i = 0; i < n_out; i++) putchar(out[i]);
            putchar('\n');
        } else {
            for (int i = 0; i < n_out; i++) printf("%s%d", i ? " " : "", out[i]);
            putchar('\n');
        }
        fprintf(stderr, "generate: %d prompt + %d new tokens; cache %s, %d floats per token per layer = %llu bytes "
                        "per token; prefill %.0f tokens/s, decode %.0f tokens/s\n",
                n, n_out, kind, st.width, (unsigned long long)per_token, n / (t1 - t0),
                n_out > 1 ? (n_out - 1) / (t2 - t1) : 0.0);
    }
    free(out);
    free(logits);
    free(ids);
    decode_free(&st, &m);
    model_free(&m);
    return rc ? cli_fail() : 0;
}
