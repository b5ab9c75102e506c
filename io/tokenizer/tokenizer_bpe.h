/* The BPE model: a word's characters become symbols that merge pairwise by
 * rank until no merge applies (Hugging Face's Word::merge_all), plus the
 * per-word cache. */
#ifndef TM_IO_TOKENIZER_BPE_H
#define TM_IO_TOKENIZER_BPE_H

#include <stdint.h>

#include "io/tokenizer/tok_bytelevel.h"
#include "io/tokenizer/tok_hash.h"
#include "io/tokenizer/tokenizer.h"

typedef struct {
    uint32_t off, n; /* ids in cache_ids */
} BpeCached;

typedef struct {
    StrMap vocab;   /* token string -> id */
    PairMap merges; /* (left id, right id) -> (rank, merged id) */
    int32_t unk_id; /* -1: none (unknown characters are dropped, as in HF) */
    int fuse_unk, byte_fallback, ignore_merges;
    int meta_cut; /* "▁" is a token and no merge is (x, "▁...") with x not ending in "▁" */
    int32_t byte_tok[256]; /* id of "<0xNN>", -1 when absent */
    ByteChar bchar[256];   /* byte-level: the character each byte stands for */
    int32_t byte_sym[256]; /* byte-level: vocab id of that character, -1 absent */

    /* scratch, reused across words (not thread-safe) */
    int32_t *sid, *sprev, *snext;
    size_t nsym, scap;
    uint64_t *heap;
    size_t nheap, hcap;
    StrBuf mapped;

    /* cache: word bytes -> ids */
    StrMap cache;
    BpeCached *cached;
    size_t ncached, cached_cap;
    int32_t *cache_ids;
    size_t ncache_ids, cache_ids_cap;
} Bpe;

void bpe_init(Bpe *m, size_t vocab_hint, size_t merges_hint);
void bpe_free(Bpe *m);
/* Fill byte_tok / bchar / byte_sym once the vocabulary is loaded. */
void bpe_finish(Bpe *m);

/* Append the ids of one pre-token. byte_level: s holds raw bytes, each
 * standing for its bytes_to_unicode character. Short words are cached. */
void bpe_word(Bpe *m, const char *s, size_t len, int byte_level, TokenIds *out);

#endif
