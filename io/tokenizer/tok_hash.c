#include "io/tokenizer/tok_hash.h"

#include <string.h>

#include "io/base/checked.h"

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Eight bytes per step; tokens are short, so this beats byte-wise FNV. */
uint64_t tok_hash_bytes(const void *s, size_t len) {
    const unsigned char *p = s;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x87c37b91114253d5ull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = (h ^ w) * 0x87c37b91114253d5ull;
    }
    return mix(h);
}

static size_t table_size(size_t expect) {
    size_t n = 64;
    while (n < 2 * expect) n *= 2;
    return n;
}

void strmap_init(StrMap *m, size_t expect) {
    memset(m, 0, sizeof *m);
    size_t n = table_size(expect);
    m->slots = callocCheck(n, sizeof *m->slots);
    m->mask = n - 1;
}

void strmap_free(StrMap *m) {
    free(m->slots);
    free(m->e);
    sb_free(&m->keys);
    memset(m, 0, sizeof *m);
}

void strmap_clear(StrMap *m) {
    memset(m->slots, 0, (m->mask + 1) * sizeof *m->slots);
    m->n = 0;
    m->keys.n = 0;
}

static size_t find_slot(const StrMap *m, const char *s, size_t len, uint64_t h) {
    size_t i = (size_t)h & m->mask;
    uint32_t hlo = (uint32_t)(h >> 32);
    for (;; i = (i + 1) & m->mask) {
        const StrSlot *sl = &m->slots[i];
        if (!sl->idx) return i;
        if (sl->hlo != hlo) continue;
        const StrEntry *e = &m->e[sl->idx - 1];
        if (e->len == len && memcmp(m->keys.p + e->off, s, len) == 0) return i;
    }
}

int32_t strmap_get(const StrMap *m, const char *s, size_t len) {
    size_t i = find_slot(m, s, len, tok_hash_bytes(s, len));
    return m->slots[i].idx ? m->e[m->slots[i].idx - 1].val : -1;
}

static void rehash(StrMap *m) {
    size_t n = (m->mask + 1) * 2;
    free(m->slots);
    m->slots = callocCheck(n, sizeof *m->slots);
    m->mask = n - 1;
    for (size_t k = 0; k < m->n; k++) {
        const StrEntry *e = &m->e[k];
        uint64_t h = tok_hash_bytes(m->keys.p + e->off, e->len);
        size_t i = find_slot(m, m->keys.p + e->off, e->len, h);
        m->slots[i].idx = (uint32_t)k + 1;
        m->slots[i].hlo = (uint32_t)(h >> 32);
    }
}

int strmap_put(StrMap *m, const char *s, size_t len, int32_t val) {
    uint64_t h = tok_hash_bytes(s, len);
    size_t i = find_slot(m, s, len, h);
    if (m->slots[i].idx) {
        m->e[m->slots[i].idx - 1].val = val;
        return 0;
    }
    TOK_GROW(m->e, m->cap, m->n + 1);
    StrEntry *e = &m->e[m->n];
    e->off = (uint32_t)m->keys.n;
    e->len = (uint32_t)len;
    e->val = val;
    sb_add(&m->keys, s, len);
    m->n++;
    m->slots[i].idx = (uint32_t)m->n;
    m->slots[i].hlo = (uint32_t)(h >> 32);
    if (2 * m->n > m->mask + 1) rehash(m);
    return 1;
}

void pairmap_init(PairMap *m, size_t expect) {
    size_t n = table_size(expect);
    m->slots = mallocCheck(n * sizeof *m->slots);
    for (size_t i = 0; i < n; i++) m->slots[i].key = UINT64_MAX;
    m->mask = n - 1;
    m->n = 0;
}

void pairmap_free(PairMap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

void pairmap_put(PairMap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & m->mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key) i = (i + 1) & m->mask;
    if (m->slots[i].key == UINT64_MAX) {
        if (2 * (m->n + 1) > m->mask + 1) { /* grow, then insert afresh */
            PairMap big;
            pairmap_init(&big, 2 * (m->n + 1));
            for (size_t k = 0; k <= m->mask; k++)
                if (m->slots[k].key != UINT64_MAX)
                    pairmap_put(&big, (int32_t)(m->slots[k].key >> 32), (int32_t)(uint32_t)m->slots[k].key,
                                m->slots[k].rank, m->slots[k].id);
            pairmap_free(m);
            *m = big;
            pairmap_put(m, a, b, rank, id);
            return;
        }
        m->n++;
    }
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].id = id;
}
