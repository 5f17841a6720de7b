/*
 * tok_text.c - text clean-up and pre-tokenisation for CLIP's tokenizer (see
 * tok_text.h for the Python pipeline reproduced here).
 *
 * Why this is hand-written: no Debian C library implements Python's
 * html.unescape (HTML5 names, legacy prefixes, Python's numeric rules) or
 * Python's str.lower()/str.strip() semantics, and a PCRE2 dependency for one
 * fixed pattern would still need the `regex` module's IGNORECASE quirks
 * reproduced by hand.  Unicode data comes from utf8proc (categories, bidi
 * classes, simple case mappings); the entity table is generated from Python
 * (scripts/gen_html_entities.py).
 *
 * Invariants: all functions are pure; buffers are sized by the caller from
 * the bounds documented in tok_text.h; inputs are capped at
 * CDX_TOK_MAX_TEXT_BYTES before any allocation.
 */
#include "clip/tok_text.h"

#include "clip/html_entities.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define REPLACEMENT_CHAR 0xFFFDu

/* ------------------------------------------------------------ UTF-8 */

size_t cdx_tok_utf8_decode(const char *s, size_t len, uint32_t *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) { out[n++] = c; i++; continue; }
        /* Unicode Table 3-7: allowed range of the second byte per lead byte;
         * later bytes are always 80..BF.  A sequence cut short by a bad byte
         * yields one U+FFFD for the bytes consumed so far (maximal subpart),
         * exactly what CPython's 'replace' handler does. */
        int need;
        unsigned lo = 0x80, hi = 0xBF;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2; cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3; cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else { out[n++] = REPLACEMENT_CHAR; i++; continue; }
        size_t j = i + 1;
        int ok = 1;
        for (int k = 0; k < need; k++, j++) {
            unsigned lo_k = k == 0 ? lo : 0x80, hi_k = k == 0 ? hi : 0xBF;
            if (j >= len || p[j] < lo_k || p[j] > hi_k) { ok = 0; break; }
            cp = (cp << 6) | (p[j] & 0x3F);
        }
        out[n++] = ok ? cp : REPLACEMENT_CHAR;
        i = j;
    }
    return n;
}

size_t cdx_tok_utf8_encode(const uint32_t *cp, size_t n, char *out)
{
    unsigned char *o = (unsigned char *)out;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c < 0x80) o[k++] = (unsigned char)c;
        else if (c < 0x800) {
            o[k++] = (unsigned char)(0xC0 | (c >> 6));
            o[k++] = (unsigned char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            o[k++] = (unsigned char)(0xE0 | (c >> 12));
            o[k++] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            o[k++] = (unsigned char)(0x80 | (c & 0x3F));
        } else {
            o[k++] = (unsigned char)(0xF0 | (c >> 18));
            o[k++] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
            o[k++] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            o[k++] = (unsigned char)(0x80 | (c & 0x3F));
        }
    }
    return k;
}

/* ------------------------------------------------------------ html.unescape */

/* Python: _charref = r'&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)' */
#define HTML_NAME_MAX 32

static int is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static int hex_value(uint32_t c)
{
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}
static int is_name_char(uint32_t c)
{
    return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' &&
           c != '&' && c != '#' && c != ';';
}

static const cdx_html_entity *entity_find(const char *key, size_t len)
{
    size_t lo = 0, hi = cdx_html5_entities_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *name = cdx_html5_entities[mid].name;
        size_t nl = strlen(name);
        int c = memcmp(key, name, len < nl ? len : nl);
        if (c == 0) c = len < nl ? -1 : len > nl ? 1 : 0;
        if (c == 0) return &cdx_html5_entities[mid];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

/* Python's numeric reference rules (html._replace_charref).  Returns the
 * number of code points written to out (0 or 1).  num is saturated at
 * 0x110000, so huge values behave like "> 0x10FFFF" (U+FFFD); note CPython
 * itself raises ValueError for decimal references longer than 4300 digits. */
static size_t numeric_ref(uint32_t num, uint32_t *out)
{
    size_t lo = 0, hi = cdx_html_invalid_charrefs_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t code = cdx_html_invalid_charrefs[mid].code;
        if (code == num) { out[0] = cdx_html_invalid_charrefs[mid].value; return 1; }
        if (code < num) lo = mid + 1; else hi = mid;
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        out[0] = REPLACEMENT_CHAR;
        return 1;
    }
    lo = 0;
    hi = cdx_html_invalid_codepoints_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t code = cdx_html_invalid_codepoints[mid];
        if (code == num) return 0;
        if (code < num) lo = mid + 1; else hi = mid;
    }
    out[0] = num;
    return 1;
}

/* Try to match a character reference at in[i] == '&'.  On a match, writes
 * the replacement to out, sets *consumed and returns the number of code
 * points written; returns (size_t)-1 when the pattern does not match. */
static size_t charref(const uint32_t *in, size_t n, size_t i, uint32_t *out,
                      size_t *consumed)
{
    size_t j = i + 1;
    if (j < n && in[j] == '#') {
        uint32_t num = 0;
        size_t k = j + 1;
        if (k < n && is_ascii_digit(in[k])) {
            for (; k < n && is_ascii_digit(in[k]); k++)
                num = num >= 0x110000 ? num : num * 10 + (in[k] - '0');
        } else if (k + 1 < n && (in[k] == 'x' || in[k] == 'X') &&
                   hex_value(in[k + 1]) >= 0) {
            for (k++; k < n && hex_value(in[k]) >= 0; k++)
                num = num >= 0x110000 ? num : num * 16 + (uint32_t)hex_value(in[k]);
        } else {
            return (size_t)-1;  /* '#' cannot start a name either */
        }
        if (k < n && in[k] == ';') k++;
        if (num > 0x110000) num = 0x110000;
        *consumed = k - i;
        return numeric_ref(num, out);
    }
    /* Named: up to 32 name characters, then an optional ';'. */
    size_t len = 0;
    while (j + len < n && len < HTML_NAME_MAX && is_name_char(in[j + len])) len++;
    if (len == 0) return (size_t)-1;
    if (j + len < n && in[j + len] == ';') len++;
    *consumed = 1 + len;
    /* The table's names are ASCII: only the ASCII prefix can ever match. */
    char key[HTML_NAME_MAX + 2];
    size_t ascii = 0;
    while (ascii < len && in[j + ascii] < 0x80) {
        key[ascii] = (char)in[j + ascii];
        ascii++;
    }
    /* Exact name first, then the longest prefix of >= 2 characters (the
     * legacy names without ';'), as Python does. */
    for (size_t x = len; x >= 2; x--) {
        if (x > ascii) continue;
        const cdx_html_entity *e = entity_find(key, x);
        if (!e) continue;
        size_t w = cdx_tok_utf8_decode(e->value, strlen(e->value), out);
        for (size_t r = x; r < len; r++) out[w++] = in[j + r];
        return w;
    }
    out[0] = '&';
    for (size_t r = 0; r < len; r++) out[1 + r] = in[j + r];
    return 1 + len;
}

size_t cdx_tok_html_unescape(const uint32_t *in, size_t n, uint32_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (in[i] == '&') {
            size_t consumed = 0;
            /* A replacement is never longer than the reference it replaces
             * (names >= 2 chars + '&' map to <= 2 code points), so writing
             * straight into out stays within n. */
            size_t w = charref(in, n, i, out + o, &consumed);
            if (w != (size_t)-1) {
                o += w;
                i += consumed;
                continue;
            }
        }
        out[o++] = in[i++];
    }
    return o;
}

/* ------------------------------------------------------------ character classes */

static int cat_of(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c); }

static int is_letter(uint32_t c)
{
    int k = cat_of(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static int is_number(uint32_t c)
{
    int k = cat_of(c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

/* `regex` \s = the Unicode White_Space property, which utf8proc does not
 * expose: it is exactly the separators (Zs, Zl, Zp) plus the controls
 * U+0009..U+000D and U+0085.  (U+001C..U+001F are NOT in it: they are
 * neither collapsed nor skipped by the pattern; only strip() removes them.) */
static int is_white_space(uint32_t c)
{
    if ((c >= 0x09 && c <= 0x0D) || c == 0x85) return 1;
    int k = cat_of(c);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL ||
           k == UTF8PROC_CATEGORY_ZP;
}

/* Python str.isspace() (used by strip()): bidi class WS, B or S, or Zs. */
static int is_py_space(uint32_t c)
{
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)c);
    return p->category == UTF8PROC_CATEGORY_ZS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* Unicode "Cased" (Lowercase or Uppercase or Lt), for Python's Final_Sigma
 * rule.  utf8proc has no derived properties; letters with a case mapping or
 * a cased category cover everything except the Other_Lowercase /
 * Other_Uppercase characters without mappings; the ones that are not Lm
 * (Lm is case-ignorable, which Final_Sigma checks first) are listed. */
static int is_cased(uint32_t c)
{
    int k = cat_of(c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL ||
        k == UTF8PROC_CATEGORY_LT)
        return 1;
    utf8proc_int32_t s = (utf8proc_int32_t)c;
    if (utf8proc_tolower(s) != s || utf8proc_toupper(s) != s ||
        utf8proc_totitle(s) != s)
        return 1;
    return c == 0xAA || c == 0xBA ||                    /* ª º (Lo) */
           (c >= 0x1F130 && c <= 0x1F149) ||            /* squared A..Z */
           (c >= 0x1F150 && c <= 0x1F169) ||            /* negative circled A..Z */
           (c >= 0x1F170 && c <= 0x1F189);              /* negative squared A..Z */
}

/* Unicode "Case_Ignorable": Mn, Me, Cf, Lm, Sk, or Word_Break MidLetter /
 * MidNumLet / Single_Quote (those 17 characters are listed: utf8proc has no
 * word-break property). */
static int is_case_ignorable(uint32_t c)
{
    int k = cat_of(c);
    if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME ||
        k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_LM ||
        k == UTF8PROC_CATEGORY_SK)
        return 1;
    static const uint32_t word_break_mid[] = {
        0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024,
        0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof word_break_mid / sizeof word_break_mid[0]; i++)
        if (word_break_mid[i] == c) return 1;
    return 0;
}

/* CPython's handle_capital_sigma(): U+03A3 lowers to final U+03C2 when
 * preceded by a cased letter and not followed by one (case-ignorable
 * characters skipped in both directions). */
static int final_sigma(const uint32_t *t, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && is_case_ignorable(t[j - 1])) j--;
    if (j == 0 || !is_cased(t[j - 1])) return 0;
    j = i + 1;
    while (j < n && is_case_ignorable(t[j])) j++;
    return j == n || !is_cased(t[j]);
}

/* Python str.lower(): the simple lowercase mapping (utf8proc) except where
 * Python applies SpecialCasing.txt: U+0130 has the only unconditional
 * multi-character lowercase (i + U+0307), and capital sigma is context
 * dependent (Final_Sigma).  out must hold 2n code points. */
static size_t py_lower(const uint32_t *in, size_t n, uint32_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c == 0x130) { out[o++] = 'i'; out[o++] = 0x307; }
        else if (c == 0x3A3) out[o++] = final_sigma(in, n, i) ? 0x3C2 : 0x3C3;
        else if (c < 0x80) out[o++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        else out[o++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    }
    return o;
}

/* strip() then re.sub(r'\s+', ' ') then strip(), from in to out (<= n). */
static size_t clean_whitespace(const uint32_t *in, size_t n, uint32_t *out)
{
    size_t a = 0, b = n;
    while (a < b && is_py_space(in[a])) a++;
    while (b > a && is_py_space(in[b - 1])) b--;
    size_t o = 0;
    for (size_t i = a; i < b;) {
        if (is_white_space(in[i])) {
            while (i < b && is_white_space(in[i])) i++;
            out[o++] = ' ';
        } else {
            out[o++] = in[i++];
        }
    }
    a = 0;
    while (a < o && is_py_space(out[a])) a++;
    while (o > a && is_py_space(out[o - 1])) o--;
    if (a > 0) memmove(out, out + a, (o - a) * sizeof *out);
    return o - a;
}

cdx_result cdx_tok_clean(const char *text, size_t len, uint32_t **out,
                         size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (len > CDX_TOK_MAX_TEXT_BYTES)
        return cdx_error(CDX_ERR_TOO_LARGE,
                         "text of %zu bytes exceeds the tokenizer limit of %u bytes",
                         len, CDX_TOK_MAX_TEXT_BYTES);
    /* Two buffers of 2*len+1 code points: decode <= len, unescape and
     * whitespace clean-up never grow, lower() at most doubles. */
    size_t cap = 2 * len + 1;
    uint32_t *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return cdx_error(CDX_ERR_NOMEM, "out of memory cleaning a %zu-byte text", len);
    }
    size_t n = cdx_tok_utf8_decode(text, len, a);
    n = cdx_tok_html_unescape(a, n, b);
    n = cdx_tok_html_unescape(b, n, a);
    n = clean_whitespace(a, n, b);
    n = py_lower(b, n, a);
    free(b);
    *out = a;
    *n_out = n;
    return CDX_OK;
}

/* ------------------------------------------------------------ pre-tokeniser */

/* The pattern is compiled with IGNORECASE; after lower() only one non-ASCII
 * character case-folds onto a pattern letter: U+017F LONG S -> 's' (the
 * `regex` module matches "'\u017f" as "'s" and "<|\u017ftartoftext|>" as the
 * special alternative, which then is NOT the special token but plain BPE). */
static int ci_eq(uint32_t c, char p)
{
    if (c == (unsigned char)p) return 1;
    if (p >= 'a' && p <= 'z' && c == (uint32_t)(p - 32)) return 1;
    return p == 's' && c == 0x17F;
}

/* Length of a case-insensitive match of lit at t[i..], or 0; *exact = 1 when
 * every character matched literally. */
static size_t match_lit(const uint32_t *t, size_t n, size_t i, const char *lit,
                        int *exact)
{
    size_t l = strlen(lit);
    if (n - i < l) return 0;
    int ex = 1;
    for (size_t k = 0; k < l; k++) {
        if (!ci_eq(t[i + k], lit[k])) return 0;
        if (t[i + k] != (unsigned char)lit[k]) ex = 0;
    }
    if (exact) *exact = ex;
    return l;
}

/* [^\s\p{L}\p{N}] under IGNORECASE: the `regex` module also excludes
 * U+0345 (COMBINING GREEK YPOGEGRAMMENI, whose case variants are letters),
 * so U+0345 matches no alternative and is skipped like white space. */
static int is_other(uint32_t c)
{
    return c != 0x345 && !is_white_space(c) && !is_letter(c) && !is_number(c);
}

int cdx_tok_next_piece(const uint32_t *t, size_t n, size_t *pos,
                       cdx_tok_piece *piece)
{
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t i = *pos; i < n; i++) {
        size_t len = 0;
        int exact = 0;
        piece->kind = CDX_TOK_PIECE_WORD;
        if (t[i] == '<') {
            if ((len = match_lit(t, n, i, "<|startoftext|>", &exact)) && exact)
                piece->kind = CDX_TOK_PIECE_SOT;
            else if (!len && (len = match_lit(t, n, i, "<|endoftext|>", &exact)) && exact)
                piece->kind = CDX_TOK_PIECE_EOT;
        }
        if (!len && t[i] == '\'')
            for (size_t k = 0; k < 7 && !len; k++)
                len = match_lit(t, n, i, contractions[k], NULL);
        if (!len) {
            size_t j = i;
            if (is_letter(t[i])) {
                while (j < n && is_letter(t[j])) j++;
            } else if (is_number(t[i])) {
                j = i + 1;
            } else if (is_other(t[i])) {
                while (j < n && is_other(t[j])) j++;
            }
            len = j - i;
        }
        if (len) {
            piece->start = i;
            piece->end = i + len;
            *pos = i + len;
            return 1;
        }
    }
    *pos = n;
    return 0;
}
