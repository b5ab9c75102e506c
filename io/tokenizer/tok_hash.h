/* Open-addressing hash maps for the tokenizer: byte strings to int32 (the
 * vocabulary, the BPE word cache) and id pairs to merges. Linear probing at a
 * load factor of at most 1/2; nothing is ever deleted, only cleared. */
#ifndef TM_IO_TOK_HASH_H
#define TM_IO_TOK_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "io/base/str_buf.h"

uint64_t tok_hash_bytes(const void *s, size_t len);

typedef struct {
    uint32_t idx;  /* entry index + 1; 0 = empty */
    uint32_t hlo;  /* low hash bits: most misses end here without touching keys */
} StrSlot;

typedef struct {
    uint32_t off, len; /* key bytes in keys */
    int32_t val;
} StrEntry;

typedef struct {
    StrSlot *slots;
    size_t mask;
    StrEntry *e;
    size_t n, cap;
    StrBuf keys;
} StrMap;

void strmap_init(StrMap *m, size_t expect);
void strmap_free(StrMap *m);
void strmap_clear(StrMap *m);
/* The value, or -1 when absent. */
int32_t strmap_get(const StrMap *m, const char *s, size_t len);
/* Insert or replace; returns 1 when the key is new. */
int strmap_put(StrMap *m, const char *s, size_t len, int32_t val);

typedef struct {
    uint64_t key; /* (a << 32) | b; UINT64_MAX = empty */
    int32_t rank, id;
} PairSlot;

typedef struct {
    PairSlot *slots;
    size_t mask, n;
} PairMap;

void pairmap_init(PairMap *m, size_t expect);
void pairmap_free(PairMap *m);
/* Insert or replace (a later duplicate merge wins, as in Hugging Face). */
void pairmap_put(PairMap *m, int32_t a, int32_t b, int32_t rank, int32_t id);

static inline const PairSlot *pairmap_get(const PairMap *m, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        const PairSlot *s = &m->slots[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

#endif
