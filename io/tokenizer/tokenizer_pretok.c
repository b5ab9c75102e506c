#include "io/tokenizer/tokenizer_pretok.h"

#include <string.h>

#include "io/base/error.h"
#include "io/tokenizer/tokenizer_regex.h"

enum { PT_SPLIT, PT_BYTELEVEL, PT_METASPACE };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { PREPEND_NEVER, PREPEND_ALWAYS, PREPEND_FIRST };

struct PtStep {
    int kind;
    TokRegex *re; /* Split pattern; ByteLevel's GPT-2 regex when use_regex */
    int behavior, invert;
    int add_prefix_space;
    char rep[8]; /* Metaspace replacement character */
    size_t rep_len;
    int prepend, split;
};

static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int bool_or(const json_t *j, const char *key, int dflt) {
    const json_t *v = json_object_get(j, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int parse_split(PtStep *st, const json_t *j, const char *file, const char *field) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *b = json_string_value(json_object_get(j, "behavior"));
    st->kind = PT_SPLIT;
    st->behavior = -1;
    for (int i = 0; b && i < 5; i++)
        if (!strcmp(b, names[i])) st->behavior = i;
    if (st->behavior < 0) return tm_fail("%s: %s.behavior: missing or unknown", file, field);
    st->invert = bool_or(j, "invert", 0);
    return tok_pattern_parse(json_object_get(j, "pattern"), file, field, &st->re);
}

static int parse_metaspace(PtStep *st, const json_t *j, const char *file, const char *field) {
    const char *rep = json_string_value(json_object_get(j, "replacement"));
    const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
    st->kind = PT_METASPACE;
    if (!rep) rep = "\xE2\x96\x81";
    st->rep_len = strlen(rep);
    if (!st->rep_len || st->rep_len >= sizeof st->rep) return tm_fail("%s: %s.replacement: not one character", file, field);
    memcpy(st->rep, rep, st->rep_len);
    st->split = bool_or(j, "split", 1);
    st->prepend = bool_or(j, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER; /* older files */
    if (scheme) {
        if (!strcmp(scheme, "always")) st->prepend = PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first")) st->prepend = PREPEND_FIRST;
        else if (!strcmp(scheme, "never")) st->prepend = PREPEND_NEVER;
        else return tm_fail("%s: %s.prepend_scheme '%s': expected always, first or never", file, field, scheme);
    }
    return 0;
}

static int parse_step(PreTok *p, PtStep *st, const json_t *j, const char *file, const char *field) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type) return tm_fail("%s: %s.type: missing or not a string", file, field);
    if (p->byte_level) return tm_fail("%s: %s: nothing may follow a ByteLevel pre-tokenizer", file, field);
    if (!strcmp(type, "Split")) return parse_split(st, j, file, field);
    if (!strcmp(type, "Metaspace")) return parse_metaspace(st, j, file, field);
    if (!strcmp(type, "ByteLevel")) {
        st->kind = PT_BYTELEVEL;
        st->add_prefix_space = bool_or(j, "add_prefix_space", 0);
        p->byte_level = 1;
        if (!bool_or(j, "use_regex", 1)) return 0;
        st->re = tok_regex_compile(GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0, file, field);
        return st->re ? 0 : -1;
    }
    return tm_fail("%s: %s.type '%s': pre-tokenizer not supported", file, field, type);
}

int pretok_parse(PreTok *p, const json_t *j, const char *file, const char *field) {
    memset(p, 0, sizeof *p);
    if (!j || json_is_null(j)) return 0;
    if (!json_is_object(j)) return tm_fail("%s: %s: not an object", file, field);
    const char *type = json_string_value(json_object_get(j, "type"));
    int seq = type && !strcmp(type, "Sequence");
    const json_t *list = json_object_get(j, "pretokenizers");
    if (seq && !json_is_array(list)) return tm_fail("%s: %s.pretokenizers: missing or not an array", file, field);
    size_t n = seq ? json_array_size(list) : 1;
    p->st = callocCheck(n ? n : 1, sizeof *p->st);
    for (size_t i = 0; i < n; i++) {
        char sub[128];
        if (seq) snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", field, i);
        else snprintf(sub, sizeof sub, "%s", field);
        p->n++;
        if (parse_step(p, &p->st[i], seq ? json_array_get(list, i) : j, file, sub)) return -1;
    }
    return 0;
}

void pretok_free(PreTok *p) {
    for (int i = 0; i < p->n; i++) tok_regex_free(p->st[i].re);
    free(p->st);
    for (int k = 0; k < 2; k++) {
        sb_free(&p->buf[k].text);
        free(p->buf[k].sp);
    }
    free(p->marks);
    sb_free(&p->scratch);
    memset(p, 0, sizeof *p);
}

static void add_piece(Pieces *out, const char *s, size_t len) {
    if (!len) return;
    TOK_GROW(out->sp, out->cap, out->n + 1);
    out->sp[out->n++] = (Span){out->text.n, len};
    sb_add(&out->text, s, len);
}

static void add_mark(PreTok *p, size_t b, size_t e, int match) {
    TOK_GROW(p->marks, p->marks_cap, p->nmarks + 1);
    p->marks[p->nmarks++] = (Mark){b, e, match};
}

/* Hugging Face's SplitDelimiterBehavior, over the marks of one piece. */
static void emit_marks(PreTok *p, const char *s, int behavior, Pieces *out) {
    Mark *m = p->marks;
    size_t n = p->nmarks, k = 0;
    int prev = 0;
    if (behavior == B_MERGED_NEXT) { /* HF folds from the right */
        for (size_t i = n; i-- > 0;) {
            if (m[i].match && !prev && k) m[n - k].b = m[i].b;
            else m[n - ++k] = m[i];
            prev = m[i].match;
        }
        m += n - k;
    } else {
        for (size_t i = 0; i < n; i++) {
            int merge = behavior == B_MERGED_PREV ? (m[i].match && !prev) : behavior == B_CONTIGUOUS && m[i].match == prev;
            if (merge && k) m[k - 1].e = m[i].e;
            else m[k++] = m[i];
            prev = m[i].match;
        }
    }
    for (size_t i = 0; i < k; i++)
        if (!(behavior == B_REMOVED && m[i].match)) add_piece(out, s + m[i].b, m[i].e - m[i].b);
}

static int regex_marks(PreTok *p, TokRegex *re, int invert, const char *s, size_t len) {
    size_t pos = 0, b, e;
    int rc;
    p->nmarks = 0;
    while ((rc = tok_regex_find(re, s, len, pos, &b, &e)) == 1) {
        if (b > pos) add_mark(p, pos, b, invert);
        add_mark(p, b, e, !invert);
        pos = e;
    }
    if (rc < 0) return -1;
    if (pos < len) add_mark(p, pos, len, invert);
    return 0;
}

/* Isolated, the common case, streams pieces without marks. */
static int split_isolated(TokRegex *re, const char *s, size_t len, Pieces *out) {
    size_t pos = 0, b, e;
    int rc;
    while ((rc = tok_regex_find(re, s, len, pos, &b, &e)) == 1) {
        add_piece(out, s + pos, b - pos);
        add_piece(out, s + b, e - b);
        pos = e;
    }
    if (rc < 0) return -1;
    add_piece(out, s + pos, len - pos);
    return 0;
}

static void metaspace(PreTok *p, const PtStep *st, const char *s, size_t len, int first, Pieces *out) {
    StrBuf *t = &p->scratch;
    t->n = 0;
    int starts = len && (s[0] == ' ' || (len >= st->rep_len && !memcmp(s, st->rep, st->rep_len)));
    if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && first)))
        sb_add(t, st->rep, st->rep_len);
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ') sb_add(t, st->rep, st->rep_len);
        else sb_addc(t, s[i]);
    if (!st->split) {
        add_piece(out, t->p, t->n);
        return;
    }
    p->nmarks = 0;
    size_t pos = 0;
    for (size_t i = 0; i + st->rep_len <= t->n;) {
        if (memcmp(t->p + i, st->rep, st->rep_len)) {
            i++;
            continue;
        }
        if (i > pos) add_mark(p, pos, i, 0);
        add_mark(p, i, i + st->rep_len, 1);
        pos = i += st->rep_len;
    }
    if (pos < t->n) add_mark(p, pos, t->n, 0);
    emit_marks(p, t->p, B_MERGED_NEXT, out);
}

static int run_step(PreTok *p, const PtStep *st, const char *s, size_t len, int first, Pieces *out) {
    switch (st->kind) {
    case PT_SPLIT:
        if (st->behavior == B_ISOLATED) return split_isolated(st->re, s, len, out);
        if (regex_marks(p, st->re, st->invert, s, len)) return -1;
        emit_marks(p, s, st->behavior, out);
        return 0;
    case PT_METASPACE: metaspace(p, st, s, len, first, out); return 0;
    case PT_BYTELEVEL:
        if (st->add_prefix_space && len && s[0] != ' ') {
            StrBuf *t = &p->scratch;
            t->n = 0;
            sb_addc(t, ' ');
            sb_add(t, s, len);
            s = t->p;
            len = t->n;
        }
        if (!st->re) {
            add_piece(out, s, len);
            return 0;
        }
        return split_isolated(st->re, s, len, out);
    }
    return 0;
}

int pretok_apply(PreTok *p, const char *s, size_t len, int at_start, const Pieces **out) {
    Pieces *in = NULL;
    int which = 0;
    for (int i = 0; i < p->n; i++) {
        const PtStep *st = &p->st[i];
        if (st->kind == PT_BYTELEVEL && !st->add_prefix_space && !st->re) continue; /* maps bytes only: BPE does that */
        Pieces *o = &p->buf[which];
        o->n = 0;
        o->text.n = 0;
        if (!in) {
            if (run_step(p, st, s, len, at_start, o)) return -1;
        } else {
            for (size_t k = 0; k < in->n; k++)
                if (run_step(p, st, in->text.p + in->sp[k].off, in->sp[k].len, at_start && k == 0, o)) return -1;
        }
        in = o;
        which ^= 1;
    }
    if (!in) { /* no pre-tokenizer: the whole text is one piece */
        in = &p->buf[0];
        in->n = 0;
        in->text.n = 0;
        add_piece(in, s, len);
    }
    *out = in;
    return 0;
}
