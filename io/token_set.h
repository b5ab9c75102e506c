/* HDF5 token sets: ids tokenised once (by `transmla tokenize`) and read by
 * every job after. One file:
 *   /tokens       uint16 or uint32 ids, chunked and deflate-compressed
 *   /doc_offsets  uint64, n_documents + 1 entries (document i is
 *                 tokens[doc_offsets[i] .. doc_offsets[i+1]))
 *   attributes on /: format = "transmla-token-set", version, tokenizer_sha256,
 *   tokenizer (path), sources, dtype, n_tokens, n_documents, vocab_size,
 *   add_special_tokens, kind ("joined" | "documents" | "samples"), seqlen
 *   (samples: every document is one sample of seqlen ids), seed. */
#ifndef TM_IO_TOKEN_SET_H
#define TM_IO_TOKEN_SET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *ids;
    size_t n;
    uint64_t *doc_offsets; /* n_docs + 1 entries */
    size_t n_docs;
    int vocab_size;        /* the tokenizer's; picks uint16 when <= 65536 */
    char tokenizer_sha256[65];
    char *tokenizer;       /* path of the tokenizer.json (informational) */
    char *sources;         /* input files, one per line */
    char *kind;            /* "joined", "documents" or "samples" */
    int seqlen;            /* samples: ids per sample; else 0 */
    int add_special_tokens;
    uint64_t seed;
} TokenSet;

/* Is path an HDF5 file (by its signature)? 0 also when it cannot be read. */
int token_set_is_hdf5(const char *path);

/* Write to path via path.tmp-PID, renamed when complete; nothing is left
 * behind on failure. */
int token_set_write(const char *path, const TokenSet *ts);

/* Read a whole token set; errors name the file and the dataset/attribute. */
int token_set_read(const char *path, TokenSet *out);
void token_set_free(TokenSet *ts);

#endif
