/* The Tokenizer struct, shared by the files that load, encode and decode. */
#ifndef TM_IO_TOKENIZER_INTERNAL_H
#define TM_IO_TOKENIZER_INTERNAL_H

#include <jansson.h>

#include "io/base/str_buf.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/tokenizer_added.h"
#include "io/tokenizer/tokenizer_bpe.h"
#include "io/tokenizer/tokenizer_norm.h"
#include "io/tokenizer/tokenizer_pretok.h"

typedef struct DecStep DecStep;

typedef struct {
    DecStep *st;
    int n;
    int present; /* no decoder: HF joins the tokens with spaces */
} Decoder;

struct Tokenizer {
    char *path; /* the tokenizer.json */
    char sha256[65];
    Bpe bpe;
    Normalizer norm;
    PreTok pre;
    AddedTokens added;
    Decoder dec;
    /* id -> token string (added tokens override the vocabulary) */
    StrBuf tok_text;
    uint32_t *tok_off, *tok_len;
    uint8_t *tok_added, *tok_known;
    int vocab_size;
    int32_t bos_id, eos_id;
    TokenIds prefix, suffix; /* what add_special puts around the ids */
};

int decoder_parse(Decoder *d, const json_t *j, const char *file, const char *field);
void decoder_free(Decoder *d);

/* Read DIR/tokenizer_config.json (when present) and the post_processor. */
int tokenizer_load_specials(Tokenizer *t, const char *dir, const json_t *post);

#endif
