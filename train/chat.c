/* Chat data: templates, label masks and the JSONL reader; see chat.h.
 *
 * The three templates are the Jinja chat_template strings of the models'
 * tokenizer_config.json, written out for the roles system/user/assistant
 * (tests/ref/chat_expected.py renders them independently and tests/chat.cmake
 * compares):
 *
 *  chatml  (Qwen3's template, tools and reasoning aside)
 *      each message: "<|im_start|>" ROLE "\n" CONTENT "<|im_end|>\n"
 *      No default system message: Qwen3's template adds none. (Qwen2.5's
 *      template does add "You are Qwen, created by Alibaba Cloud. You are a
 *      helpful assistant." when the first message is not a system one; we do
 *      not, so a Qwen2.5 model is fine-tuned on what the data says.)
 *      Qwen3's template also puts an empty "<think>\n\n</think>\n\n" in front
 *      of the final assistant turn (the one after the last user message) and
 *      strips that turn's leading "\n"s; neither is done here: SmolTalk has no reasoning, and the other
 *      turns of the same conversation never get it.
 *  llama3  (Llama-3's template)
 *      "<|begin_of_text|>", then each message:
 *      "<|start_header_id|>" ROLE "<|end_header_id|>\n\n" trim(CONTENT) "<|eot_id|>"
 *      trim is Jinja's (Python's str.strip: Unicode white space). The
 *      template's trailing generation prompt ("<|start_header_id|>assistant
 *      <|end_header_id|>\n\n", emitted unconditionally by this template) is a
 *      prompt for the next turn and is not part of a training document.
 *  inst    (Mistral-7B-Instruct's template; also used for "llama2")
 *      "<s>", then "[INST] " USER " [/INST]" and ASSISTANT "</s>" alternating,
 *      user first. A system message may only come first; it is put in front
 *      of the first user message as SYSTEM "\n\n" USER, as Mistral's later
 *      templates do (the first one refused system messages). Anything else
 *      (two user turns in a row, a late system message) is an error, as the
 *      template's raise_exception is. Llama-2's own <<SYS>> and per-turn <s>
 *      are not reproduced.
 *
 * Labels: the assistant's content and its end-of-turn marker (<|im_end|>,
 * <|eot_id|>, </s>); nothing else. Text is tokenized in pieces: every run of
 * non-label text is one piece, every assistant content + marker another, so
 * the label boundary is a token boundary. The BPE of a piece alone may differ
 * from that of the whole rendered string at the boundary (e.g. Mistral's
 * SentencePiece puts "▁" in front of every piece, so "[/INST]Hello" becomes
 * "[/INST]" "▁Hello"): that is what TRL-style masking (tokenizing prompt and
 * completion apart) does and what the model sees when it generates a reply. */
#include "train/chat.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/line_reader.h"
#include "io/base/str_buf.h"
#include "io/utf8.h"

/* ---------- template names ---------- */

const char *chat_template_name(ChatTemplate t) {
    switch (t) {
    case TM_CHAT_CHATML: return "chatml";
    case TM_CHAT_LLAMA3: return "llama3";
    case TM_CHAT_INST: return "inst";
    }
    return "?";
}

/* The Jinja string of a tokenizer_config.json: a string, or a list of
 * {name, template} of which "default" is the chat one. NULL when absent. */
static const char *config_template(const json_t *cfg) {
    const json_t *t = json_object_get(cfg, "chat_template");
    if (json_is_string(t)) return json_string_value(t);
    if (json_is_array(t)) {
        size_t i;
        const json_t *e;
        json_array_foreach(t, i, e) {
            const json_t *name = json_object_get(e, "name");
            const json_t *tmpl = json_object_get(e, "template");
            if (json_is_string(name) && json_is_string(tmpl) && !strcmp(json_string_value(name), "default"))
                return json_string_value(tmpl);
        }
    }
    return NULL;
}

int chat_template_resolve(const char *name, const char *model_dir, ChatTemplate *out) {
    if (name && strcmp(name, "auto") != 0) {
        if (!strcmp(name, "chatml")) *out = TM_CHAT_CHATML;
        else if (!strcmp(name, "llama3")) *out = TM_CHAT_LLAMA3;
        else if (!strcmp(name, "llama2") || !strcmp(name, "mistral") || !strcmp(name, "inst")) *out = TM_CHAT_INST;
        else return tm_fail("--chat-template: unknown template '%s' (auto, chatml, llama3, llama2, mistral)", name);
        return 0;
    }
    if (!model_dir) return tm_fail("--chat-template auto needs the model folder (its tokenizer_config.json)");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    json_error_t e; /* model_max_length is often 1e30 written as an integer: read numbers as reals */
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
    if (!cfg) return tm_fail("%s: not valid JSON (%s, line %d); or pass --chat-template", path, e.text, e.line);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return tm_fail("%s: top level is not a JSON object", path);
    }
    const char *tmpl = config_template(cfg);
    int rc = 0;
    if (!tmpl)
        rc = tm_fail("%s: field 'chat_template' missing: cannot detect the chat format; pass --chat-template "
                     "chatml|llama3|llama2|mistral",
                     path);
    else if (strstr(tmpl, "<|im_start|>")) *out = TM_CHAT_CHATML;
    else if (strstr(tmpl, "<|start_header_id|>")) *out = TM_CHAT_LLAMA3;
    else if (strstr(tmpl, "[INST]")) *out = TM_CHAT_INST;
    else
        rc = tm_fail("%s: field 'chat_template' matches no known format (no <|im_start|>, <|start_header_id|> or "
                     "[INST]); pass --chat-template chatml|llama3|llama2|mistral",
                     path);
    json_decref(cfg);
    return rc;
}

/* ---------- rendering ---------- */

/* Python's str.isspace: Unicode White_Space plus the separators 0x1c..0x1f. */
static int py_space(uint32_t cp) { return utf8_is_space(cp) || (cp >= 0x1c && cp <= 0x1f); }

/* Jinja's trim (str.strip()) of valid UTF-8: [*b, *e) is what stays. */
static void py_strip(const char *s, size_t n, size_t *b, size_t *e) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, &cp);
        if (!py_space(cp)) break;
        i += k;
    }
    size_t end = i, j = i;
    while (j < n) {
        uint32_t cp;
        size_t k = utf8_decode(s + j, &cp);
        j += k;
        if (!py_space(cp)) end = j;
    }
    *b = i;
    *e = end;
}

/* Tokenize the pending text as one piece with the given label flag. */
static int flush(Tokenizer *tok, StrBuf *t, int label, TokenIds *scratch, TrainDoc *d) {
    if (t->n == 0) return 0;
    scratch->n = 0;
    if (tokenizer_encode(tok, t->p, t->n, 0, scratch) < 0) return -1;
    for (size_t i = 0; i < scratch->n; i++) train_doc_push(d, scratch->ids[i], label);
    t->n = 0;
    return 0;
}

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

static int role_of(const char *role, int i) {
    if (!strcmp(role, "system")) return ROLE_SYSTEM;
    if (!strcmp(role, "user")) return ROLE_USER;
    if (!strcmp(role, "assistant")) return ROLE_ASSISTANT;
    return tm_fail("field 'messages[%d].role': unknown role '%.40s' (system, user, assistant)", i, role);
}

/* An assistant turn: the prompt so far goes in unlabelled, then the reply
 * with its end-of-turn marker, labelled. */
static int assistant_turn(Tokenizer *tok, StrBuf *prompt, StrBuf *reply, const char *c, size_t n, const char *end,
                          TokenIds *scratch, TrainDoc *d) {
    int rc = flush(tok, prompt, 0, scratch, d);
    sb_add(reply, c, n);
    sb_adds(reply, end);
    return rc ? rc : flush(tok, reply, 1, scratch, d);
}

int chat_render(Tokenizer *tok, ChatTemplate t, const char *const *roles, const char *const *contents, int n_msgs,
                TrainDoc *d) {
    StrBuf prompt = {0}, reply = {0};
    TokenIds scratch = {0};
    int rc = 0;
    int first = 0; /* inst: index after the optional system message */
    if (t == TM_CHAT_LLAMA3) sb_adds(&prompt, "<|begin_of_text|>");
    if (t == TM_CHAT_INST) {
        sb_adds(&prompt, "<s>");
        if (n_msgs > 0 && !strcmp(roles[0], "system")) first = 1;
    }
    for (int i = 0; i < n_msgs && rc == 0; i++) {
        int role = role_of(roles[i], i);
        if (role < 0) {
            rc = -1;
            break;
        }
        const char *c = contents[i];
        size_t cn = strlen(c);
        switch (t) {
        case TM_CHAT_CHATML:
            sb_adds(&prompt, "<|im_start|>");
            sb_adds(&prompt, roles[i]);
            sb_adds(&prompt, "\n");
            if (role == ROLE_ASSISTANT) {
                rc = assistant_turn(tok, &prompt, &reply, c, cn, "<|im_end|>", &scratch, d);
                sb_adds(&prompt, "\n");
            } else {
                sb_add(&prompt, c, cn);
                sb_adds(&prompt, "<|im_end|>\n");
            }
            break;
        case TM_CHAT_LLAMA3: {
            size_t b, e;
            py_strip(c, cn, &b, &e);
            sb_adds(&prompt, "<|start_header_id|>");
            sb_adds(&prompt, roles[i]);
            sb_adds(&prompt, "<|end_header_id|>\n\n");
            if (role == ROLE_ASSISTANT) {
                rc = assistant_turn(tok, &prompt, &reply, c + b, e - b, "<|eot_id|>", &scratch, d);
            } else {
                sb_add(&prompt, c + b, e - b);
                sb_adds(&prompt, "<|eot_id|>");
            }
            break;
        }
        case TM_CHAT_INST: {
            if (i == 0 && first) break; /* the system message goes with the first user turn */
            int want = (i - first) % 2 == 0 ? ROLE_USER : ROLE_ASSISTANT;
            if (role != want) {
                rc = tm_fail("field 'messages[%d].role': '%s' where the %s template needs '%s' (after an optional "
                             "first system message, user and assistant turns alternate, user first)",
                             i, roles[i], chat_template_name(t), want == ROLE_USER ? "user" : "assistant");
                break;
            }
            if (role == ROLE_USER) {
                sb_adds(&prompt, "[INST] ");
                if (i == first && first) {
                    sb_adds(&prompt, contents[0]);
                    sb_adds(&prompt, "\n\n");
                }
                sb_add(&prompt, c, cn);
                sb_adds(&prompt, " [/INST]");
            } else {
                rc = assistant_turn(tok, &prompt, &reply, c, cn, "</s>", &scratch, d);
            }
            break;
        }
        }
    }
    if (rc == 0) rc = flush(tok, &prompt, 0, &scratch, d);
    free(prompt.p);
    free(reply.p);
    token_ids_free(&scratch);
    return rc;
}

/* ---------- JSONL ---------- */

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* The messages of one parsed line; 1: has an assistant turn, 0: none, -1: error. */
static int line_messages(const json_t *j, const char ***roles, const char ***contents, int *n) {
    if (!json_is_object(j)) return tm_fail("expected a JSON object with field 'messages'");
    const json_t *msgs = json_object_get(j, "messages");
    if (!msgs) return tm_fail("field 'messages' missing (expected a list of {\"role\", \"content\"})");
    if (!json_is_array(msgs)) return tm_fail("field 'messages' is not a list");
    size_t m = json_array_size(msgs);
    if (m > 1000000) return tm_fail("field 'messages' has %zu entries (at most 1000000)", m);
    *roles = mallocCheck((m ? m : 1) * sizeof **roles);
    *contents = mallocCheck((m ? m : 1) * sizeof **contents);
    *n = (int)m;
    int has_assistant = 0;
    for (size_t i = 0; i < m; i++) {
        const json_t *msg = json_array_get(msgs, i);
        if (!json_is_object(msg)) return tm_fail("field 'messages[%zu]' is not an object", i);
        const json_t *role = json_object_get(msg, "role");
        const json_t *content = json_object_get(msg, "content");
        if (!json_is_string(role)) return tm_fail("field 'messages[%zu].role' %s", i, role ? "is not a string" : "missing");
        if (!json_is_string(content))
            return tm_fail("field 'messages[%zu].content' %s", i, content ? "is not a string" : "missing");
        (*roles)[i] = json_string_value(role);
        (*contents)[i] = json_string_value(content);
        if (role_of((*roles)[i], (int)i) < 0) return -1;
        if (!strcmp((*roles)[i], "assistant")) has_assistant = 1;
    }
    return has_assistant;
}

int chat_load_rows(const char *path, Tokenizer *tok, ChatTemplate t, TrainRows *r) {
    LineReader *lr;
    if (line_reader_open(&lr, path) < 0) return -1;
    int32_t pad = tokenizer_eos_id(tok);
    if (pad < 0) pad = 0;
    TrainDoc doc = {0};
    const char *line;
    size_t len;
    int rc = 0, got;
    while ((got = line_reader_next(lr, &line, &len)) > 0) {
        if (blank(line, len)) continue;
        size_t lineno = line_reader_lineno(lr);
        json_error_t err;
        json_t *j = json_loadb(line, len, 0, &err);
        if (!j) {
            rc = tm_fail("%s:%zu: invalid JSON at column %d: %s", path, lineno, err.column, err.text);
            break;
        }
        const char **roles = NULL, **contents = NULL;
        int n = 0;
        int has = line_messages(j, &roles, &contents, &n);
        if (has == 1) {
            doc.n = 0;
            if (chat_render(tok, t, roles, contents, n, &doc) < 0) has = -1;
            else train_rows_add_doc(r, &doc, pad);
        } else if (has == 0) {
            r->n_skipped++;
        }
        free(roles);
        free(contents);
        json_decref(j);
        if (has < 0) {
            rc = tm_fail_context("%s:%zu", path, lineno);
            break;
        }
    }
    if (got < 0) rc = -1;
    if (rc == 0) train_rows_finish(r, pad);
    train_doc_free(&doc);
    line_reader_close(lr);
    return rc;
}
