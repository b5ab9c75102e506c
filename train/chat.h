/* Chat data for fine-tuning: SmolTalk-style JSONL (or JSONL.gz), one
 * conversation per line as {"messages": [{"role": ..., "content": ...}, ...]},
 * rendered with the model's chat template, tokenized, with labels on the
 * assistant turns only, and packed into training rows. */
#ifndef TM_TRAIN_CHAT_H
#define TM_TRAIN_CHAT_H

#include "io/tokenizer/tokenizer.h"
#include "train/rows.h"

typedef enum {
    TM_CHAT_CHATML,  /* Qwen: <|im_start|>role\ncontent<|im_end|>\n */
    TM_CHAT_LLAMA3,  /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    TM_CHAT_INST,    /* Llama-2 / Mistral: <s>[INST] user [/INST] assistant</s> */
} ChatTemplate;

/* "chatml", "llama3", "llama2", "mistral" (the last two are TM_CHAT_INST);
 * "auto" or NULL: from DIR/tokenizer_config.json's chat_template. Errors name
 * the file or the flag. */
int chat_template_resolve(const char *name, const char *model_dir, ChatTemplate *out);
const char *chat_template_name(ChatTemplate t);

/* Render one conversation into d: template text tokenized piece by piece,
 * the assistant's content and its end-of-turn marker flagged as labels.
 * roles: system, user, assistant. */
int chat_render(Tokenizer *tok, ChatTemplate t, const char *const *roles, const char *const *contents, int n_msgs,
                TrainDoc *d);

/* Read every conversation of path (.jsonl or .jsonl.gz), render it and pack
 * it into r (train_rows_init'd by the caller with T). Bad lines are errors
 * naming the file, line and field. */
int chat_load_rows(const char *path, Tokenizer *tok, ChatTemplate t, TrainRows *r);

#endif
