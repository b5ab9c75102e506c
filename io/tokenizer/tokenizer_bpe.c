#include "io/tokenizer/tokenizer_bpe.h"

#include <stdio.h>
#include <string.h>

#include "io/utf8.h"

#define META "\xE2\x96\x81" /* U+2581, SentencePiece's space */

enum { CACHE_MAX_WORD = 256, CACHE_MAX_ENTRIES = 1 << 20, CACHE_MAX_IDS = 1 << 24 };

void bpe_init(Bpe *m, size_t vocab_hint, size_t merges_hint) {
    memset(m, 0, sizeof *m);
    strmap_init(&m->vocab, vocab_hint);
    pairmap_init(&m->merges, merges_hint);
    strmap_init(&m->cache, 1 << 14);
    m->unk_id = -1;
}

void bpe_free(Bpe *m) {
    strmap_free(&m->vocab);
    pairmap_free(&m->merges);
    strmap_free(&m->cache);
    free(m->sid);
    free(m->sprev);
    free(m->snext);
    free(m->heap);
    sb_free(&m->mapped);
    free(m->cached);
    free(m->cache_ids);
}

void bpe_finish(Bpe *m) {
    bytelevel_table(m->bchar);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_tok[b] = strmap_get(&m->vocab, name, 6);
        m->byte_sym[b] = strmap_get(&m->vocab, m->bchar[b].s, m->bchar[b].len);
    }
}

/* ---- symbols: the word's characters as ids ---- */

static void push_sym(Bpe *m, int32_t id) {
    if (m->nsym + 1 > m->scap) { /* the three arrays share one capacity */
        size_t c = m->scap, d = m->scap;
        TOK_GROW(m->sprev, c, m->nsym + 1);
        TOK_GROW(m->snext, d, m->nsym + 1);
        TOK_GROW(m->sid, m->scap, m->nsym + 1);
    }
    m->sid[m->nsym++] = id;
}

/* One character not in the vocabulary: its <0xNN> bytes, else unk. Like HF,
 * a pending unk is not flushed before byte-fallback tokens. */
static void unknown_char(Bpe *m, const char *c, size_t len, int32_t *unk_pending) {
    if (m->byte_fallback) {
        size_t k = 0;
        while (k < len && m->byte_tok[(uint8_t)c[k]] >= 0) k++;
        if (k == len) {
            for (k = 0; k < len; k++) push_sym(m, m->byte_tok[(uint8_t)c[k]]);
            return;
        }
    }
    if (m->unk_id < 0) return;
    if (*unk_pending >= 0 && !m->fuse_unk) push_sym(m, m->unk_id);
    *unk_pending = m->unk_id;
}

static void known_char(Bpe *m, int32_t id, int32_t *unk_pending) {
    if (*unk_pending >= 0) push_sym(m, *unk_pending);
    *unk_pending = -1;
    push_sym(m, id);
}

static void make_symbols(Bpe *m, const char *s, size_t len, int byte_level) {
    int32_t unk = -1;
    m->nsym = 0;
    if (byte_level) {
        for (size_t i = 0; i < len; i++) {
            uint8_t b = (uint8_t)s[i];
            if (m->byte_sym[b] >= 0) known_char(m, m->byte_sym[b], &unk);
            else unknown_char(m, m->bchar[b].s, m->bchar[b].len, &unk);
        }
    } else {
        for (size_t i = 0; i < len;) {
            size_t n = s[i] & 0x80 ? utf8_seq_len((const uint8_t *)s + i, len - i) : 1;
            if (!n) n = 1; /* input was validated; stay safe anyway */
            int32_t id = strmap_get(&m->vocab, s + i, n);
            if (id >= 0) known_char(m, id, &unk);
            else unknown_char(m, s + i, n, &unk);
            i += n;
        }
    }
    if (unk >= 0) push_sym(m, unk);
}

/* ---- merge loop: min-heap of (rank, position) over a linked symbol list ---- */

static void heap_push(Bpe *m, uint32_t rank, uint32_t pos) {
    TOK_GROW(m->heap, m->hcap, m->nheap + 1);
    uint64_t v = ((uint64_t)rank << 32) | pos;
    size_t i = m->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (m->heap[p] <= v) break;
        m->heap[i] = m->heap[p];
        i = p;
    }
    m->heap[i] = v;
}

static uint64_t heap_pop(Bpe *m) {
    uint64_t top = m->heap[0], v = m->heap[--m->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->nheap) break;
        if (c + 1 < m->nheap && m->heap[c + 1] < m->heap[c]) c++;
        if (v <= m->heap[c]) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->nheap) m->heap[i] = v;
    return top;
}

static void push_pair(Bpe *m, int32_t pos) {
    int32_t q = m->snext[pos];
    if (q < 0) return;
    const PairSlot *ps = pairmap_get(&m->merges, m->sid[pos], m->sid[q]);
    if (ps) heap_push(m, (uint32_t)ps->rank, (uint32_t)pos);
}

static void merge_all(Bpe *m) {
    int32_t *id = m->sid, *prev = m->sprev, *next = m->snext;
    m->nheap = 0;
    for (size_t i = 0; i < m->nsym; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m->nsym ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < m->nsym; i++) push_pair(m, (int32_t)i);
    while (m->nheap) {
        uint64_t top = heap_pop(m);
        int32_t p = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32);
        if (id[p] < 0 || next[p] < 0) continue;
        int32_t q = next[p];
        /* stale entry: the pair at p changed since it was pushed */
        const PairSlot *ps = pairmap_get(&m->merges, id[p], id[q]);
        if (!ps || ps->rank != rank) continue;
        id[p] = ps->id;
        id[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) push_pair(m, prev[p]);
        push_pair(m, p);
    }
}

/* ---- one word, through the cache ---- */

static void merge_word(Bpe *m, const char *s, size_t len, int byte_level, TokenIds *out) {
    make_symbols(m, s, len, byte_level);
    if (m->nsym > 1) merge_all(m);
    for (size_t i = 0; i < m->nsym; i++)
        if (m->sid[i] >= 0) token_ids_push(out, m->sid[i]);
}

typedef void (*WordFn)(Bpe *m, const char *s, size_t len, int byte_level, TokenIds *out);

static void cached(Bpe *m, const char *s, size_t len, int byte_level, TokenIds *out, WordFn fn) {
    if (len > CACHE_MAX_WORD) {
        fn(m, s, len, byte_level, out);
        return;
    }
    int32_t k = strmap_get(&m->cache, s, len);
    if (k >= 0) {
        const BpeCached *c = &m->cached[k];
        if (!c->n) return; /* a word without ids; its id arrays may still be NULL */
        TOK_GROW(out->ids, out->cap, out->n + c->n);
        memcpy(out->ids + out->n, m->cache_ids + c->off, c->n * sizeof *out->ids);
        out->n += c->n;
        return;
    }
    size_t first = out->n;
    fn(m, s, len, byte_level, out);
    size_t n = out->n - first;
    if (m->ncached >= CACHE_MAX_ENTRIES || m->ncache_ids + n > CACHE_MAX_IDS) { /* bound memory: start over */
        strmap_clear(&m->cache);
        m->ncached = m->ncache_ids = 0;
    }
    TOK_GROW(m->cached, m->cached_cap, m->ncached + 1);
    if (n) { /* a word whose symbols are all unknown (no unk, no byte fallback) has none */
        TOK_GROW(m->cache_ids, m->cache_ids_cap, m->ncache_ids + n);
        memcpy(m->cache_ids + m->ncache_ids, out->ids + first, n * sizeof *out->ids);
    }
    m->cached[m->ncached] = (BpeCached){(uint32_t)m->ncache_ids, (uint32_t)n};
    strmap_put(&m->cache, s, len, (int32_t)m->ncached);
    m->ncached++;
    m->ncache_ids += n;
}

static int is_meta(const char *s) { return !memcmp(s, META, 3); }

static void encode_word(Bpe *m, const char *s, size_t len, int byte_level, TokenIds *out) {
    if (m->ignore_merges) { /* the whole word is a token: no merging */
        const char *w = s;
        size_t wl = len;
        if (byte_level) {
            m->mapped.n = 0;
            for (size_t i = 0; i < len; i++) sb_add(&m->mapped, m->bchar[(uint8_t)s[i]].s, m->bchar[(uint8_t)s[i]].len);
            w = m->mapped.p;
            wl = m->mapped.n;
        }
        int32_t id = strmap_get(&m->vocab, w, wl);
        if (id >= 0) {
            token_ids_push(out, id);
            return;
        }
    }
    if (byte_level || !m->meta_cut) {
        merge_word(m, s, len, byte_level, out);
        return;
    }
    /* SentencePiece text is one long word; no merge joins a symbol that does
     * not end in "▁" to one that starts with it (meta_cut), so cutting before
     * each such "▁" gives the same ids, word by word, through the cache. */
    size_t start = 0;
    for (size_t i = 3; i + 3 <= len; i++)
        if (is_meta(s + i) && !is_meta(s + i - 3)) {
            if (m->ignore_merges) merge_word(m, s + start, i - start, 0, out); /* the cache holds whole words */
            else cached(m, s + start, i - start, 0, out, merge_word);
            start = i;
        }
    if (m->ignore_merges) merge_word(m, s + start, len - start, 0, out);
    else cached(m, s + start, len - start, 0, out, merge_word);
}

void bpe_word(Bpe *m, const char *s, size_t len, int byte_level, TokenIds *out) {
    cached(m, s, len, byte_level, out, encode_word);
}
