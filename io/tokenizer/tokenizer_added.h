/* Added tokens of tokenizer.json (special or not): found in the text before
 * the model sees it, leftmost-longest like Hugging Face's aho-corasick
 * matcher, with their lstrip / rstrip / single_word flags. A byte trie whose
 * root is a 256-entry table keeps the scan cheap. */
#ifndef TM_IO_TOKENIZER_ADDED_H
#define TM_IO_TOKENIZER_ADDED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} AddedToken;

typedef struct {
    int32_t child, sibling; /* first child and next sibling node, -1 none */
    int32_t tok;            /* token ending here, -1 none */
    uint8_t byte;
} TrieNode;

typedef struct {
    int32_t root[256]; /* node for each first byte, -1 none */
    TrieNode *nodes;
    size_t n, cap;
} Trie;

typedef struct {
    AddedToken *tok;
    size_t n;
    Trie raw;  /* normalized=false: matched in the raw text */
    Trie norm; /* normalized=true: matched in normalized text */
    size_t nnorm;
} AddedTokens;

int added_parse(AddedTokens *a, const json_t *list, const char *file);
void added_free(AddedTokens *a);
/* Insert token k into the trie for its kind; text is its (normalized) content. */
void added_index(AddedTokens *a, size_t k, const char *text, size_t len);

/* The next match in s[from..len) of the raw (norm = 0) or normalized trie:
 * 1 with the span to replace [*b, *e) (lstrip/rstrip included) and the
 * token index; 0 when none. */
int added_find(const AddedTokens *a, int norm, const char *s, size_t len, size_t from, size_t *b, size_t *e, size_t *k);

#endif
