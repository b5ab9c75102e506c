/* Hugging Face tokenizer.json (model type BPE): byte-level BPE with a Split
 * regex pre-tokenizer (Llama-3, Qwen2.5) and SentencePiece-style BPE with
 * "▁" metaspace and <0xNN> byte fallback (Llama-2, Mistral, Mixtral).
 * Added/special tokens are matched in the raw text before normalization, as
 * Hugging Face's tokenizers do. Ids equal Hugging Face's (tests/test_tokenizer.c). */
#ifndef TM_IO_TOKENIZER_H
#define TM_IO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;

/* A growable id list; encode appends to it. Free ids with free(). */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} TokenIds;

/* Load DIR/tokenizer.json and, when present, DIR/tokenizer_config.json
 * (BOS/EOS, add_bos_token). Errors name the file and the field. */
int tokenizer_load(Tokenizer **out, const char *dir);
void tokenizer_free(Tokenizer *t);

/* Encode len bytes of UTF-8 text, appending ids to out. add_special adds the
 * BOS/EOS that the file's post_processor (TemplateProcessing) asks for, or
 * tokenizer_config.json's add_bos_token/add_eos_token when there is none.
 * Invalid UTF-8 fails with "invalid UTF-8 at byte N". Not thread-safe (cache). */
int tokenizer_encode(Tokenizer *t, const char *text, size_t len, int add_special, TokenIds *out);

/* Decode ids to UTF-8 text (NUL-terminated, malloc'd) with the file's decoder;
 * special tokens are kept, no clean-up of spaces. Unknown ids fail. */
int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len);

int tokenizer_vocab_size(const Tokenizer *t); /* largest id + 1 (added tokens included) */
int tokenizer_bos_id(const Tokenizer *t);     /* -1: none */
int tokenizer_eos_id(const Tokenizer *t);     /* -1: none */
/* Lower-case hex SHA-256 of the tokenizer.json bytes: names the tokenizer in token sets. */
const char *tokenizer_sha256(const Tokenizer *t);
const char *tokenizer_path(const Tokenizer *t); /* the tokenizer.json it was loaded from */

void token_ids_push(TokenIds *l, int32_t id);
void token_ids_free(TokenIds *l);

#endif
