/*
 * tokenizer.c - CLIP's byte-level BPE: vocabulary loading (Hugging Face
 * vocab.json + merges.txt, or OpenAI's bpe_simple_vocab_16e6.txt[.gz]) and
 * encoding exactly like clip.tokenize(texts, context_length, truncate=True).
 *
 * Text clean-up and pre-tokenisation live in tok_text.c.  Here each piece is
 * turned into byte symbols (the byte-to-unicode alphabet of GPT-2/CLIP, kept
 * as vocabulary ids), the last one carrying "</w>", and merged by rank.
 *
 * BPE semantics (simple_tokenizer.SimpleTokenizer.bpe): repeatedly take the
 * lowest-ranked adjacent pair present and merge ALL its non-overlapping
 * occurrences left to right, then re-evaluate.  Implemented with a linked
 * list of symbols and a min-heap of (rank, position): each round pops every
 * entry of the current rank (in position order), merges the still-valid ones
 * and only then pushes the pairs the merges created, so a lower-ranked new
 * pair can never jump ahead of the round as it cannot in Python.  Cost is
 * O(n log n) per piece, so megabyte-long words stay cheap.
 *
 * Both file formats are hostile input: sizes are capped before reading,
 * every id and line is checked, and the vocabulary must be consistent (all
 * 512 byte symbols, both special tokens and every merge's parts and result
 * present; no duplicate tokens, ids or merges) so that encoding can never
 * meet an unknown symbol.
 *
 * Invariants: a loaded cdx_tokenizer is immutable; encode allocates its own
 * scratch per call, so concurrent calls are safe.
 */
#include "clip/tokenizer.h"

#include "clip/tok_text.h"
#include "common/error.h"
#include "common/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <zlib.h>

#define VOCAB_JSON_MAX_BYTES (64u << 20)
#define MERGES_MAX_BYTES (64u << 20)
#define BPE_FILE_MAX_BYTES (64u << 20)      /* compressed or plain */
#define BPE_INFLATED_MAX_BYTES (64u << 20)
#define VOCAB_MAX_ENTRIES (1u << 22)
#define TOKEN_MAX_BYTES 4096u
/* SimpleTokenizer keeps merges[1 : 49152-256-2+1] of the OpenAI file. */
#define OPENAI_N_MERGES (49152 - 256 - 2)
#define CONTEXT_MAX (1 << 20)

typedef struct span {
    const char *s;
    size_t len;
} span;

typedef struct merge_slot {
    uint64_t key;      /* (left id << 32) | right id; EMPTY_KEY when free */
    uint32_t rank;
    int32_t result;    /* id of left+right */
} merge_slot;
#define EMPTY_KEY UINT64_MAX

struct cdx_tokenizer {
    int n_vocab;
    char *arena;              /* every token string, concatenated */
    size_t *tok_off;          /* [n_vocab] offsets into arena */
    uint32_t *tok_len;        /* [n_vocab] */
    int32_t byte_id[256];     /* id of the byte's symbol */
    int32_t byte_eow_id[256]; /* id of the byte's symbol + "</w>" */
    int32_t sot, eot;
    merge_slot *merges;       /* open addressing, power-of-two capacity */
    size_t merge_mask;
    size_t n_merges;
};

/* ------------------------------------------------------------ byte alphabet */

/* GPT-2/CLIP bytes_to_unicode(): printable Latin-1 bytes stand for
 * themselves, the other 68 bytes map to U+0100.. in increasing byte order.
 * order[] receives the bytes in the dict's insertion order (printable ones
 * first), which is the order of the first 256 ids in SimpleTokenizer. */
static void byte_alphabet(uint32_t cp[256], int order[256])
{
    int printable[256] = {0}, k = 0;
    for (int b = 0; b < 256; b++)
        printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    for (int b = 0; b < 256; b++)
        if (printable[b]) { cp[b] = (uint32_t)b; order[k++] = b; }
    uint32_t next = 256;
    for (int b = 0; b < 256; b++)
        if (!printable[b]) { cp[b] = next++; order[k++] = b; }
}

/* ------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (size_t i = 0; i < len; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static const merge_slot *merge_find(const cdx_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & t->merge_mask;
    for (;; i = (i + 1) & t->merge_mask) {
        const merge_slot *s = &t->merges[i];
        if (s->key == key) return s;
        if (s->key == EMPTY_KEY) return NULL;
    }
}

/* String -> id map over the tokenizer's arena, used while loading. */
typedef struct strmap {
    int32_t *slot;   /* id or -1 */
    size_t mask;
    const cdx_tokenizer *t;
} strmap;

static int32_t strmap_get(const strmap *m, const char *s, size_t len)
{
    for (size_t i = hash_bytes(s, len) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slot[i];
        if (id < 0) return -1;
        if (m->t->tok_len[id] == len && memcmp(m->t->arena + m->t->tok_off[id], s, len) == 0)
            return id;
    }
}

/* ------------------------------------------------------------ building */

void cdx_tokenizer_free(cdx_tokenizer *tok)
{
    if (!tok) return;
    free(tok->arena);
    free(tok->tok_off);
    free(tok->tok_len);
    free(tok->merges);
    free(tok);
}

int cdx_tokenizer_vocab_size(const cdx_tokenizer *tok) { return tok->n_vocab; }

const char *cdx_tokenizer_token(const cdx_tokenizer *tok, int id, size_t *len)
{
    if (id < 0 || id >= tok->n_vocab) return NULL;
    *len = tok->tok_len[id];
    return tok->arena + tok->tok_off[id];
}

long cdx_tokenizer_merge_rank(const cdx_tokenizer *tok, int32_t a, int32_t b,
                              int32_t *merged)
{
    if (a < 0 || b < 0) return -1;
    const merge_slot *m = merge_find(tok, a, b);
    if (!m) return -1;
    if (merged) *merged = m->result;
    return (long)m->rank;
}

int32_t cdx_tokenizer_byte_symbol(const cdx_tokenizer *tok, unsigned char b, int eow)
{
    return eow ? tok->byte_eow_id[b] : tok->byte_id[b];
}

/* Build a tokenizer from vocab[id] strings and merges[2*r], [2*r+1] (rank
 * r).  what names the source in error messages. */
static cdx_result tok_build(const char *what, const span *vocab, size_t n_vocab,
                            const span *merges, size_t n_merges, cdx_tokenizer **out)
{
    *out = NULL;
    if (n_vocab == 0 || n_vocab > VOCAB_MAX_ENTRIES)
        return cdx_error(CDX_ERR_FORMAT, "%s: vocabulary of %zu entries (must be 1..%u)",
                         what, n_vocab, VOCAB_MAX_ENTRIES);
    cdx_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return cdx_error(CDX_ERR_NOMEM, "%s: out of memory", what);
    cdx_result r = CDX_OK;
    strmap map = {NULL, 0, t};
    size_t total = 0;
    for (size_t i = 0; i < n_vocab; i++) {
        if (vocab[i].len == 0 || vocab[i].len > TOKEN_MAX_BYTES) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: token id %zu has length %zu (must be 1..%u)",
                          what, i, vocab[i].len, TOKEN_MAX_BYTES);
            goto fail;
        }
        total += vocab[i].len;   /* <= 2^22 * 4096: no overflow */
    }
    t->n_vocab = (int)n_vocab;
    t->arena = malloc(total + 1);
    t->tok_off = malloc(n_vocab * sizeof *t->tok_off);
    t->tok_len = malloc(n_vocab * sizeof *t->tok_len);
    size_t map_cap = pow2_at_least(2 * n_vocab);
    map.slot = malloc(map_cap * sizeof *map.slot);
    size_t merge_cap = pow2_at_least(2 * n_merges);
    t->merges = malloc(merge_cap * sizeof *t->merges);
    if (!t->arena || !t->tok_off || !t->tok_len || !map.slot || !t->merges) {
        r = cdx_error(CDX_ERR_NOMEM, "%s: out of memory building the vocabulary", what);
        goto fail;
    }
    map.mask = map_cap - 1;
    memset(map.slot, 0xff, map_cap * sizeof *map.slot);
    t->merge_mask = merge_cap - 1;
    for (size_t i = 0; i < merge_cap; i++) t->merges[i].key = EMPTY_KEY;

    size_t off = 0;
    for (size_t i = 0; i < n_vocab; i++) {
        memcpy(t->arena + off, vocab[i].s, vocab[i].len);
        t->tok_off[i] = off;
        t->tok_len[i] = (uint32_t)vocab[i].len;
        off += vocab[i].len;
        if (strmap_get(&map, vocab[i].s, vocab[i].len) >= 0) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: token \"%.*s\" appears twice", what,
                          (int)(vocab[i].len > 64 ? 64 : vocab[i].len), vocab[i].s);
            goto fail;
        }
        size_t h = hash_bytes(vocab[i].s, vocab[i].len) & map.mask;
        while (map.slot[h] >= 0) h = (h + 1) & map.mask;
        map.slot[h] = (int32_t)i;
    }
    t->arena[total] = '\0';

    /* The 256 byte symbols and their end-of-word forms. */
    uint32_t cp[256];
    int order[256];
    byte_alphabet(cp, order);
    for (int b = 0; b < 256; b++) {
        char buf[8];
        size_t l = cdx_tok_utf8_encode(&cp[b], 1, buf);
        memcpy(buf + l, "</w>", 4);
        t->byte_id[b] = strmap_get(&map, buf, l);
        t->byte_eow_id[b] = strmap_get(&map, buf, l + 4);
        if (t->byte_id[b] < 0 || t->byte_eow_id[b] < 0) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: the symbol for byte 0x%02X (\"%.*s\" or "
                          "\"%.*s\") is missing from the vocabulary", what, b,
                          (int)l, buf, (int)l + 4, buf);
            goto fail;
        }
    }
    t->sot = strmap_get(&map, "<|startoftext|>", 15);
    t->eot = strmap_get(&map, "<|endoftext|>", 13);
    if (t->sot < 0 || t->eot < 0) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: the vocabulary lacks %s", what,
                      t->sot < 0 ? "<|startoftext|>" : "<|endoftext|>");
        goto fail;
    }

    for (size_t m = 0; m < n_merges; m++) {
        const span *a = &merges[2 * m], *b = &merges[2 * m + 1];
        int32_t ia = strmap_get(&map, a->s, a->len), ib = strmap_get(&map, b->s, b->len);
        int32_t iab = -1;
        char joined[2 * TOKEN_MAX_BYTES];
        if (ia >= 0 && ib >= 0 && a->len + b->len <= sizeof joined) {
            memcpy(joined, a->s, a->len);
            memcpy(joined + a->len, b->s, b->len);
            iab = strmap_get(&map, joined, a->len + b->len);
        }
        if (iab < 0) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: merge %zu (\"%.*s %.*s\"): %s is not in the "
                          "vocabulary", what, m + 1, (int)(a->len > 64 ? 64 : a->len), a->s,
                          (int)(b->len > 64 ? 64 : b->len), b->s,
                          ia < 0 ? "the left symbol" : ib < 0 ? "the right symbol" : "the merged token");
            goto fail;
        }
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & t->merge_mask;
        while (t->merges[i].key != EMPTY_KEY && t->merges[i].key != key)
            i = (i + 1) & t->merge_mask;
        if (t->merges[i].key == key) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: merge %zu (\"%.*s %.*s\") duplicates merge %u",
                          what, m + 1, (int)(a->len > 64 ? 64 : a->len), a->s,
                          (int)(b->len > 64 ? 64 : b->len), b->s, t->merges[i].rank + 1);
            goto fail;
        }
        t->merges[i].key = key;
        t->merges[i].rank = (uint32_t)m;
        t->merges[i].result = iab;
    }
    t->n_merges = n_merges;
    free(map.slot);
    *out = t;
    return CDX_OK;
fail:
    free(map.slot);
    cdx_tokenizer_free(t);
    return r;
}

/* ------------------------------------------------------------ merges text */

/* Parse merge lines from text[0..len) starting at line index first_line
 * (0-based line numbers in messages are shown 1-based), at most max_merges
 * of them.  A blank line is only allowed at the very end. */
static cdx_result parse_merges(const char *path, const char *text, size_t len,
                               const char *p, size_t max_merges, span **out, size_t *n_out,
                               size_t line_no)
{
    *out = NULL;
    *n_out = 0;
    const char *end = text + len;
    size_t cap = 0;
    for (const char *q = p; q < end; q++) cap += *q == '\n';
    cap += 1;
    if (cap > max_merges) cap = max_merges;
    span *m = malloc((cap ? cap : 1) * 2 * sizeof *m);
    if (!m) return cdx_error(CDX_ERR_NOMEM, "%s: out of memory", path);
    size_t n = 0;
    while (p < end && n < max_merges) {
        line_no++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *le = eol;
        if (le > p && le[-1] == '\r') le--;
        if (le == p) {
            /* blank: fine only if nothing but blank lines follows */
            const char *q = eol;
            while (q < end && (*q == '\n' || *q == '\r')) q++;
            if (q == end) break;
            free(m);
            return cdx_error(CDX_ERR_FORMAT, "%s: line %zu: blank line", path, line_no);
        }
        const char *sp = memchr(p, ' ', (size_t)(le - p));
        int ok = sp && sp > p && sp + 1 < le && !memchr(sp + 1, ' ', (size_t)(le - sp - 1));
        for (const char *q = p; ok && q < le; q++)
            if (*q == '\t' || *q == '\0' || *q == '\r') ok = 0;
        if (!ok) {
            free(m);
            return cdx_error(CDX_ERR_FORMAT, "%s: line %zu: expected two symbols separated "
                             "by one space", path, line_no);
        }
        m[2 * n] = (span){p, (size_t)(sp - p)};
        m[2 * n + 1] = (span){sp + 1, (size_t)(le - sp - 1)};
        n++;
        p = eol < end ? eol + 1 : end;
    }
    *out = m;
    *n_out = n;
    return CDX_OK;
}

static int valid_utf8(const char *s, size_t len)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    while (len > 0) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p, (utf8proc_ssize_t)len, &c);
        if (k <= 0) return 0;
        p += k;
        len -= (size_t)k;
    }
    return 1;
}

/* ------------------------------------------------------------ HF loader */

/* vocab.json is one flat JSON object {"token": id, ...} of ~50k entries.
 * A general JSON parser (jansson: a hash table and an allocation per key)
 * took ~60 % of a warm one-shot `clipdex search` (docs/engine.md
 * "Start-up"), so this reads exactly that shape, decoding every key in
 * place (an escape never decodes longer than it is written) into the
 * file's own buffer.  Strict JSON: escapes \" \\ \/ \b \f \n \r \t
 * \uXXXX (surrogate pairs joined; lone surrogates and \u0000 rejected),
 * no control characters in strings, keys valid UTF-8, ids plain integers;
 * whitespace anywhere JSON allows it.  Duplicate keys are rejected by
 * tok_build ("appears twice"), reused ids below. */

typedef struct vocab_entry {
    span key;
    long long id;
} vocab_entry;

typedef struct vj_cursor {
    char *p, *end, *base;
    const char *path;
} vj_cursor;

static cdx_result vj_fail(const vj_cursor *c, const char *msg)
{
    int line = 1, col = 1;
    for (const char *q = c->base; q < c->p && q < c->end; q++) {
        if (*q == '\n') line++, col = 1;
        else col++;
    }
    return cdx_error(CDX_ERR_FORMAT, "%s: line %d column %d: %s", c->path, line, col, msg);
}

static void vj_ws(vj_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
              : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v * 16 + (uint32_t)d;
    }
    *out = v;
    return 1;
}

static char *put_utf8(char *w, uint32_t cp)
{
    if (cp < 0x80) *w++ = (char)cp;
    else if (cp < 0x800) {
        *w++ = (char)(0xC0 | (cp >> 6));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* A string at c->p (the opening quote), decoded in place into *out. */
static cdx_result vj_key(vj_cursor *c, span *out)
{
    if (c->p >= c->end || *c->p != '"') return vj_fail(c, "expected a string key");
    char *r = ++c->p, *w = r, *start = r;
    for (;;) {
        if (r >= c->end) return c->p = r, vj_fail(c, "unterminated string");
        unsigned char ch = (unsigned char)*r;
        if (ch == '"') break;
        if (ch < 0x20) return c->p = r, vj_fail(c, "control character in a string");
        if (ch != '\\') {
            *w++ = *r++;
            continue;
        }
        if (r + 1 >= c->end) return c->p = r, vj_fail(c, "unterminated escape");
        char e = r[1];
        r += 2;
        static const char esc[] = "\"\\/bfnrt", repl[] = "\"\\/\b\f\n\r\t";
        const char *simple = e ? strchr(esc, e) : NULL;
        if (simple) {
            *w++ = repl[simple - esc];
            continue;
        }
        uint32_t cp, lo;
        if (e != 'u' || c->end - r < 4 || !hex4(r, &cp)) return c->p = r - 2, vj_fail(c, "invalid escape");
        r += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {   /* a high surrogate needs its low half */
            if (c->end - r < 6 || r[0] != '\\' || r[1] != 'u' || !hex4(r + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return c->p = r - 6, vj_fail(c, "unpaired surrogate escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            r += 6;
        } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
            return c->p = r - 6, vj_fail(c, cp ? "unpaired surrogate escape" : "\\u0000 in a key");
        }
        w = put_utf8(w, cp);
    }
    c->p = r + 1;
    *out = (span){start, (size_t)(w - start)};
    if (!valid_utf8(start, out->len)) return vj_fail(c, "key is not valid UTF-8");
    return CDX_OK;
}

/* An integer id (no fraction or exponent) into *id, saturated at +-2^62. */
static cdx_result vj_id(vj_cursor *c, const span *key, long long *id)
{
    char *q = c->p;
    int neg = q < c->end && *q == '-';
    q += neg;
    long long v = 0;
    const char *digits = q;
    while (q < c->end && *q >= '0' && *q <= '9') {
        if (v < (1LL << 62)) v = v * 10 + (*q - '0');
        q++;
    }
    if (q == digits || (q < c->end && (*q == '.' || *q == 'e' || *q == 'E')))
        return cdx_error(CDX_ERR_FORMAT, "%s: token \"%.*s\": id is not an integer", c->path,
                         (int)(key->len > 64 ? 64 : key->len), key->s);
    c->p = q;
    *id = neg ? -v : v;
    return CDX_OK;
}

/* Every (key, id) of the object in buf, keys decoded in place; *out
 * malloc'd (n <= VOCAB_MAX_ENTRIES). */
static cdx_result parse_vocab_json(const char *path, char *buf, size_t len, vocab_entry **out, size_t *n_out)
{
    vj_cursor c = {buf, buf + len, buf, path};
    vocab_entry *v = NULL;
    size_t n = 0, cap = 0;
    cdx_result r = CDX_OK;
    vj_ws(&c);
    if (c.p >= c.end || *c.p != '{') r = cdx_error(CDX_ERR_FORMAT, "%s: expected a JSON object {token: id}", path);
    else c.p++;
    vj_ws(&c);
    int more = !r && c.p < c.end && *c.p != '}';
    while (!r && more) {
        span key;
        long long id = 0;
        vj_ws(&c);
        if ((r = vj_key(&c, &key))) break;
        vj_ws(&c);
        if (c.p >= c.end || *c.p != ':') { r = vj_fail(&c, "expected ':'"); break; }
        c.p++;
        vj_ws(&c);
        if ((r = vj_id(&c, &key, &id))) break;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 65536;
            vocab_entry *g = n >= VOCAB_MAX_ENTRIES ? NULL : realloc(v, nc * sizeof *v);
            if (!g) {
                r = n >= VOCAB_MAX_ENTRIES ? cdx_error(CDX_ERR_FORMAT, "%s: more than %u entries", path, VOCAB_MAX_ENTRIES)
                                           : cdx_error(CDX_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            v = g;
            cap = nc;
        }
        v[n++] = (vocab_entry){key, id};
        vj_ws(&c);
        if (c.p < c.end && *c.p == ',') c.p++;
        else more = 0;
    }
    if (!r) {
        vj_ws(&c);
        if (c.p >= c.end || *c.p != '}') r = vj_fail(&c, "expected ',' or '}'");
        else {
            c.p++;
            vj_ws(&c);
            if (c.p != c.end) r = vj_fail(&c, "end of file expected");
        }
    }
    if (r) {
        free(v);
        return r;
    }
    *out = v;
    *n_out = n;
    return CDX_OK;
}

cdx_result cdx_tokenizer_load_hf(const char *vocab_json_path, const char *merges_txt_path,
                                 cdx_tokenizer **out)
{
    *out = NULL;
    char *jbuf = NULL, *mbuf = NULL;
    size_t jlen = 0, mlen = 0, n = 0;
    span *vocab = NULL, *merges = NULL;
    vocab_entry *ent = NULL;
    cdx_result r = cdx_read_file(vocab_json_path, VOCAB_JSON_MAX_BYTES, &jbuf, &jlen);
    if (r != CDX_OK) goto done;
    if ((r = parse_vocab_json(vocab_json_path, jbuf, jlen, &ent, &n)) != CDX_OK) goto done;
    if (n == 0 || n > VOCAB_MAX_ENTRIES) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: %zu entries (must be 1..%u)", vocab_json_path, n,
                      VOCAB_MAX_ENTRIES);
        goto done;
    }
    vocab = calloc(n, sizeof *vocab);
    if (!vocab) { r = cdx_error(CDX_ERR_NOMEM, "%s: out of memory", vocab_json_path); goto done; }
    for (size_t i = 0; i < n; i++) {
        const span *key = &ent[i].key;
        long long id = ent[i].id;
        if (id < 0 || (size_t)id >= n) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: token \"%.*s\": id %lld out of range [0, %zu)",
                          vocab_json_path, (int)(key->len > 64 ? 64 : key->len), key->s, id, n);
            goto done;
        }
        if (vocab[id].s) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: id %lld is used by two tokens", vocab_json_path, id);
            goto done;
        }
        vocab[id] = *key;
    }
    r = cdx_read_file(merges_txt_path, MERGES_MAX_BYTES, &mbuf, &mlen);
    if (r != CDX_OK) goto done;
    if (!valid_utf8(mbuf, mlen)) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: not valid UTF-8", merges_txt_path);
        goto done;
    }
    /* Skip the "#version: 0.2" header like the HF tokenizers do. */
    const char *p = mbuf;
    size_t line0 = 0;
    if (mlen >= 8 && memcmp(mbuf, "#version", 8) == 0) {
        const char *nl = memchr(mbuf, '\n', mlen);
        p = nl ? nl + 1 : mbuf + mlen;
        line0 = 1;
    }
    size_t n_merges = 0;
    r = parse_merges(merges_txt_path, mbuf, mlen, p, VOCAB_MAX_ENTRIES, &merges, &n_merges, line0);
    if (r != CDX_OK) goto done;
    char what[600];
    snprintf(what, sizeof what, "%s + %s", vocab_json_path, merges_txt_path);
    r = tok_build(what, vocab, n, merges, n_merges, out);
done:
    free(ent);
    free(vocab);
    free(merges);
    free(jbuf);
    free(mbuf);
    return r;
}

/* ------------------------------------------------------------ OpenAI loader */

/* gunzip (all members) into a malloc'd NUL-terminated buffer, capped. */
static cdx_result gunzip(const char *path, const char *in, size_t in_len, char **out,
                         size_t *out_len)
{
    *out = NULL;
    size_t cap = in_len * 4 + 1024, n = 0;
    if (cap > BPE_INFLATED_MAX_BYTES) cap = BPE_INFLATED_MAX_BYTES;
    char *buf = malloc(cap + 1);
    if (!buf) return cdx_error(CDX_ERR_NOMEM, "%s: out of memory", path);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        return cdx_error(CDX_ERR_INTERNAL, "%s: zlib initialisation failed", path);
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)in_len;   /* in_len <= BPE_FILE_MAX_BYTES < 4 GiB */
    cdx_result r = CDX_OK;
    for (;;) {
        if (n == cap) {
            if (cap >= BPE_INFLATED_MAX_BYTES) {
                r = cdx_error(CDX_ERR_TOO_LARGE, "%s: decompresses to more than %u bytes",
                              path, BPE_INFLATED_MAX_BYTES);
                break;
            }
            size_t nc = cap * 2 > BPE_INFLATED_MAX_BYTES ? BPE_INFLATED_MAX_BYTES : cap * 2;
            char *nb = realloc(buf, nc + 1);
            if (!nb) { r = cdx_error(CDX_ERR_NOMEM, "%s: out of memory", path); break; }
            buf = nb;
            cap = nc;
        }
        zs.next_out = (Bytef *)buf + n;
        zs.avail_out = (uInt)(cap - n);
        int zr = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (zr == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            inflateReset(&zs);   /* another gzip member follows */
            continue;
        }
        if (zr == Z_BUF_ERROR && zs.avail_in == 0) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: truncated gzip data", path);
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: corrupt gzip data (%s)", path,
                          zs.msg ? zs.msg : "inflate failed");
            break;
        }
    }
    inflateEnd(&zs);
    if (r != CDX_OK) { free(buf); return r; }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return CDX_OK;
}

cdx_result cdx_tokenizer_load_bpe(const char *path, cdx_tokenizer **out)
{
    *out = NULL;
    char *raw = NULL, *text = NULL, *joined = NULL;
    size_t raw_len = 0, len = 0;
    span *merges = NULL, *vocab = NULL;
    cdx_result r = cdx_read_file(path, BPE_FILE_MAX_BYTES, &raw, &raw_len);
    if (r != CDX_OK) return r;
    if (raw_len >= 2 && (unsigned char)raw[0] == 0x1f && (unsigned char)raw[1] == 0x8b) {
        r = gunzip(path, raw, raw_len, &text, &len);
        free(raw);
        if (r != CDX_OK) return r;
    } else {
        text = raw;
        len = raw_len;
    }
    if (!valid_utf8(text, len)) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: not valid UTF-8", path);
        goto done;
    }
    /* SimpleTokenizer: lines[1 : 49152-256-2+1]; line 0 is the header. */
    if (len < 8 || memcmp(text, "#version", 8) != 0) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: expected a \"#version\" header line", path);
        goto done;
    }
    const char *nl = memchr(text, '\n', len);
    size_t n_merges = 0;
    r = parse_merges(path, text, len, nl ? nl + 1 : text + len, OPENAI_N_MERGES, &merges,
                     &n_merges, 1);
    if (r != CDX_OK) goto done;
    /* vocab = byte symbols, byte symbols + "</w>", merged pairs, specials */
    size_t n_vocab = 512 + n_merges + 2, jl = 0;
    vocab = malloc(n_vocab * sizeof *vocab);
    joined = malloc(512 * 8 + 2 * len + 32);
    if (!vocab || !joined) { r = cdx_error(CDX_ERR_NOMEM, "%s: out of memory", path); goto done; }
    uint32_t cp[256];
    int order[256];
    byte_alphabet(cp, order);
    for (int k = 0; k < 512; k++) {
        size_t l = cdx_tok_utf8_encode(&cp[order[k % 256]], 1, joined + jl);
        if (k >= 256) { memcpy(joined + jl + l, "</w>", 4); l += 4; }
        vocab[k] = (span){joined + jl, l};
        jl += l;
    }
    for (size_t m = 0; m < n_merges; m++) {
        const span *a = &merges[2 * m], *b = &merges[2 * m + 1];
        memcpy(joined + jl, a->s, a->len);
        memcpy(joined + jl + a->len, b->s, b->len);
        vocab[512 + m] = (span){joined + jl, a->len + b->len};
        jl += a->len + b->len;
    }
    vocab[512 + n_merges] = (span){"<|startoftext|>", 15};
    vocab[513 + n_merges] = (span){"<|endoftext|>", 13};
    r = tok_build(path, vocab, n_vocab, merges, n_merges, out);
done:
    free(vocab);
    free(joined);
    free(merges);
    free(text);
    return r;
}

/* ------------------------------------------------------------ directory */

cdx_result cdx_tokenizer_load_dir(const char *model_dir, cdx_tokenizer **out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_tokenizer_load_dir: out is NULL");
    *out = NULL;
    if (!model_dir) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_tokenizer_load_dir: no directory");
    struct stat st;
    if (stat(model_dir, &st) != 0)
        return cdx_error(CDX_ERR_NOT_FOUND, "%s: model directory does not exist", model_dir);
    if (!S_ISDIR(st.st_mode))
        return cdx_error(CDX_ERR_INVALID_ARG, "%s: not a directory", model_dir);
    static const char *const bpe_names[] = {"bpe_simple_vocab_16e6.txt.gz",
                                            "bpe_simple_vocab_16e6.txt"};
    char *vocab = cdx_path_join(model_dir, "vocab.json");
    char *merges = cdx_path_join(model_dir, "merges.txt");
    cdx_result r;
    if (!vocab || !merges) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    } else if (stat(vocab, &st) == 0) {
        r = cdx_tokenizer_load_hf(vocab, merges, out);
    } else {
        r = cdx_error(CDX_ERR_NOT_FOUND, "%s: no vocab.json + merges.txt (nor %s)", model_dir,
                      bpe_names[0]);
        for (size_t i = 0; i < 2; i++) {
            char *p = cdx_path_join(model_dir, bpe_names[i]);
            int found = p && stat(p, &st) == 0;
            if (found) r = cdx_tokenizer_load_bpe(p, out);
            free(p);
            if (found) break;
        }
    }
    free(vocab);
    free(merges);
    return r;
}

/* ------------------------------------------------------------ encoding */

/* Scratch for BPE over one piece, grown to the longest piece of a text. */
typedef struct bpe_work {
    int32_t *sym;      /* symbol id per node, -1 once merged away */
    int32_t *next, *prev;
    uint64_t *heap;    /* (rank << 32) | node, min-heap */
    uint32_t *round;   /* nodes popped in the current round */
    size_t cap;        /* nodes */
} bpe_work;

static void bpe_work_free(bpe_work *w)
{
    free(w->sym);
    free(w->next);
    free(w->prev);
    free(w->heap);
    free(w->round);
}

static int bpe_work_reserve(bpe_work *w, size_t n)
{
    if (n <= w->cap) return 1;
    bpe_work_free(w);
    memset(w, 0, sizeof *w);
    w->sym = malloc(n * sizeof *w->sym);
    w->next = malloc(n * sizeof *w->next);
    w->prev = malloc(n * sizeof *w->prev);
    w->heap = malloc(3 * n * sizeof *w->heap);  /* n initial + 2 per merge */
    w->round = malloc(n * sizeof *w->round);
    if (!w->sym || !w->next || !w->prev || !w->heap || !w->round) return 0;
    w->cap = n;
    return 1;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

static void push_pair(const cdx_tokenizer *t, bpe_work *w, size_t *hn, int32_t i)
{
    if (i < 0 || w->next[i] < 0) return;
    const merge_slot *m = merge_find(t, w->sym[i], w->sym[w->next[i]]);
    if (m) heap_push(w->heap, hn, ((uint64_t)m->rank << 32) | (uint32_t)i);
}

/* Output sink: keeps the first ctx ids, counts all. */
typedef struct id_sink {
    int32_t *ids;
    size_t ctx, count;
} id_sink;

static void sink_put(id_sink *s, int32_t id)
{
    if (s->count < s->ctx) s->ids[s->count] = id;
    s->count++;
}

/* BPE over the bytes of one piece; w has room for len nodes. */
static void bpe_piece(const cdx_tokenizer *t, bpe_work *w, const unsigned char *b, size_t len,
                      id_sink *out)
{
    for (size_t i = 0; i < len; i++) {
        w->sym[i] = i + 1 < len ? t->byte_id[b[i]] : t->byte_eow_id[b[i]];
        w->next[i] = i + 1 < len ? (int32_t)(i + 1) : -1;
        w->prev[i] = (int32_t)i - 1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < len; i++) push_pair(t, w, &hn, (int32_t)i);
    while (hn > 0) {
        uint32_t rank = (uint32_t)(w->heap[0] >> 32);
        size_t nr = 0;
        while (hn > 0 && (uint32_t)(w->heap[0] >> 32) == rank)
            w->round[nr++] = (uint32_t)heap_pop(w->heap, &hn);
        size_t merged = 0;
        for (size_t k = 0; k < nr; k++) {   /* positions ascend: left to right */
            int32_t i = (int32_t)w->round[k];
            int32_t j = w->next[i];
            if (w->sym[i] < 0 || j < 0) continue;
            const merge_slot *m = merge_find(t, w->sym[i], w->sym[j]);
            if (!m || m->rank != rank) continue;   /* stale entry */
            w->sym[i] = m->result;
            w->sym[j] = -1;
            w->next[i] = w->next[j];
            if (w->next[j] >= 0) w->prev[w->next[j]] = i;
            w->round[merged++] = (uint32_t)i;
        }
        for (size_t k = 0; k < merged; k++) {
            int32_t i = (int32_t)w->round[k];
            if (w->sym[i] < 0) continue;
            push_pair(t, w, &hn, w->prev[i]);
            push_pair(t, w, &hn, i);
        }
    }
    for (int32_t i = 0; i >= 0; i = w->next[i]) sink_put(out, w->sym[i]);
}

cdx_result cdx_tokenizer_encode(const cdx_tokenizer *tok, const char *text, size_t len,
                                int context_length, int32_t *ids, int *n_untruncated)
{
    if (n_untruncated) *n_untruncated = 0;
    if (!tok || !ids || (!text && len > 0))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_tokenizer_encode: NULL argument");
    if (context_length < 1 || context_length > CONTEXT_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "context length %d out of range [1, %d]",
                         context_length, CONTEXT_MAX);
    uint32_t *cps = NULL;
    size_t n = 0;
    cdx_result r = cdx_tok_clean(text ? text : "", len, &cps, &n);
    if (r != CDX_OK) return r;
    /* UTF-8 of the cleaned text: <= 4 bytes per code point. */
    unsigned char *bytes = malloc(4 * n + 1);
    bpe_work w;
    memset(&w, 0, sizeof w);
    if (!bytes) { r = cdx_error(CDX_ERR_NOMEM, "out of memory tokenising"); goto done; }
    id_sink sink = {ids, (size_t)context_length, 0};
    sink_put(&sink, tok->sot);
    size_t pos = 0;
    cdx_tok_piece piece;
    while (cdx_tok_next_piece(cps, n, &pos, &piece)) {
        if (piece.kind == CDX_TOK_PIECE_SOT) { sink_put(&sink, tok->sot); continue; }
        if (piece.kind == CDX_TOK_PIECE_EOT) { sink_put(&sink, tok->eot); continue; }
        size_t bl = cdx_tok_utf8_encode(cps + piece.start, piece.end - piece.start,
                                        (char *)bytes);
        if (!bpe_work_reserve(&w, bl)) {
            r = cdx_error(CDX_ERR_NOMEM, "out of memory tokenising a %zu-byte word", bl);
            goto done;
        }
        bpe_piece(tok, &w, bytes, bl, &sink);
    }
    sink_put(&sink, tok->eot);
    if (sink.count > sink.ctx) ids[sink.ctx - 1] = tok->eot;
    for (size_t i = sink.count; i < sink.ctx; i++) ids[i] = 0;
    if (n_untruncated) *n_untruncated = sink.count > INT32_MAX ? INT32_MAX : (int)sink.count;
done:
    bpe_work_free(&w);
    free(bytes);
    free(cps);
    return r;
}
