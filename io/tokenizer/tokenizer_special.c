/* What add_special puts around the ids (the post_processor, else
 * tokenizer_config.json's add_bos_token / add_eos_token), and the BOS/EOS
 * ids that tokenizer_config.json names. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/error.h"
#include "io/json_util.h"
#include "io/tokenizer/tokenizer_internal.h"

/* An added token first, then the vocabulary; -1 when neither has it. */
static int32_t token_id(const Tokenizer *t, const char *s) {
    size_t len = strlen(s);
    for (size_t i = 0; i < t->added.n; i++)
        if (t->added.tok[i].len == len && !memcmp(t->added.tok[i].content, s, len)) return t->added.tok[i].id;
    return strmap_get(&t->bpe.vocab, s, len);
}

/* bos_token / eos_token: a string, {"content": ...}, or null. */
static int config_token(const Tokenizer *t, const json_t *cfg, const char *key, const char *file, int32_t *id) {
    const json_t *v = json_object_get(cfg, key);
    *id = -1;
    if (!v || json_is_null(v)) return 0;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return tm_fail("%s: %s: not a string or {\"content\": string}", file, key);
    *id = token_id(t, json_string_value(v));
    if (*id < 0) return tm_fail("%s: %s '%s': not a token of %s", file, key, json_string_value(v), t->path);
    return 0;
}

static int template_single(Tokenizer *t, const json_t *post, const char *file) {
    const json_t *single = json_object_get(post, "single"), *specials = json_object_get(post, "special_tokens");
    if (!json_is_array(single)) return tm_fail("%s: post_processor.single: missing or not an array", file);
    int before = 1;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *item = json_array_get(single, i);
        const json_t *seq = json_object_get(item, "Sequence"), *sp = json_object_get(item, "SpecialToken");
        if (seq) {
            if (!before) return tm_fail("%s: post_processor.single: more than one sequence", file);
            before = 0;
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        if (!name) return tm_fail("%s: post_processor.single[%zu]: neither Sequence nor SpecialToken", file, i);
        const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(ids))
            return tm_fail("%s: post_processor.special_tokens['%s'].ids: missing or not an array", file, name);
        for (size_t k = 0; k < json_array_size(ids); k++) {
            const json_t *id = json_array_get(ids, k);
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= t->vocab_size)
                return tm_fail("%s: post_processor.special_tokens['%s'].ids[%zu]: not a token id", file, name, k);
            token_ids_push(before ? &t->prefix : &t->suffix, (int32_t)json_integer_value(id));
        }
    }
    if (before) return tm_fail("%s: post_processor.single: no $A sequence", file);
    return 0;
}

/* Bert/Roberta: [cls] $A [sep], each given as [token, id]. */
static int cls_sep(Tokenizer *t, const json_t *post, const char *file) {
    const char *keys[2] = {"cls", "sep"};
    for (int k = 0; k < 2; k++) {
        const json_t *v = json_array_get(json_object_get(post, keys[k]), 1);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= t->vocab_size)
            return tm_fail("%s: post_processor.%s: not a [token, id] pair", file, keys[k]);
        token_ids_push(k ? &t->suffix : &t->prefix, (int32_t)json_integer_value(v));
    }
    return 0;
}

static int parse_post(Tokenizer *t, const json_t *post, const char *file) {
    const char *type = json_string_value(json_object_get(post, "type"));
    if (!type) return tm_fail("%s: post_processor.type: missing or not a string", file);
    if (!strcmp(type, "ByteLevel")) return 0; /* it only trims offsets */
    if (!strcmp(type, "TemplateProcessing")) return template_single(t, post, file);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) return cls_sep(t, post, file);
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(post, "processors");
        if (!json_is_array(list)) return tm_fail("%s: post_processor.processors: missing or not an array", file);
        for (size_t i = 0; i < json_array_size(list); i++) {
            const json_t *p = json_array_get(list, i);
            const char *t2 = json_string_value(json_object_get(p, "type"));
            if (t2 && !strcmp(t2, "Sequence")) return tm_fail("%s: post_processor: nested Sequence not supported", file);
            if (parse_post(t, p, file)) return -1;
        }
        return 0;
    }
    return tm_fail("%s: post_processor.type '%s': not supported", file, type);
}

int tokenizer_load_specials(Tokenizer *t, const char *dir, const json_t *post) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    struct stat st;
    json_t *cfg = NULL;
    if (stat(path, &st) == 0) { /* model_max_length is often 1e30 written as an integer: read numbers as reals */
        json_error_t e;
        cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
        if (!cfg) return tm_fail("%s: not valid JSON (%s, line %d)", path, e.text, e.line);
        if (!json_is_object(cfg)) {
            json_decref(cfg);
            return tm_fail("%s: top level is not a JSON object", path);
        }
    }
    int add_bos = 0, add_eos = 0, rc = 0;
    if (cfg)
        rc = config_token(t, cfg, "bos_token", path, &t->bos_id) || config_token(t, cfg, "eos_token", path, &t->eos_id) ||
             tm_json_bool_or(path, cfg, "add_bos_token", 0, &add_bos) ||
             tm_json_bool_or(path, cfg, "add_eos_token", 0, &add_eos);
    json_decref(cfg);
    if (rc) return -1;
    if (post && !json_is_null(post)) {
        if (!json_is_object(post)) return tm_fail("%s: post_processor: not an object", t->path);
        return parse_post(t, post, t->path);
    }
    if (add_bos && t->bos_id >= 0) token_ids_push(&t->prefix, t->bos_id);
    if (add_eos && t->eos_id >= 0) token_ids_push(&t->suffix, t->eos_id);
    return 0;
}
