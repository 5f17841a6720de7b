/*
 * tok_text.h - the text side of CLIP's tokenizer: everything that happens
 * before BPE, reproducing clip/simple_tokenizer.py (with ftfy = identity):
 *
 *   str = bytes.decode('utf-8', 'replace')     (clip receives a str)
 *   html.unescape(html.unescape(str)).strip()  (basic_clean)
 *   re.sub(r'\s+', ' ', s).strip()             (whitespace_clean, `regex`)
 *   s.lower()                                  (Python full lower-casing)
 *   regex.findall(<CLIP pattern>, s, IGNORECASE)
 *
 * Text is handled as arrays of Unicode code points (uint32_t), like a Python
 * str.  Character classes and simple case mappings come from utf8proc; the
 * few places where Python differs from a plain utf8proc lookup are handled
 * explicitly and commented in tok_text.c.
 *
 * Invariants: every function is pure (no global state), so it is thread-safe;
 * output lengths are bounded by the input lengths given below, so callers can
 * size buffers up front.  Workload: short queries, captions in bulk; inputs
 * are capped by the caller (tokenizer.c) at CDX_TOK_MAX_TEXT_BYTES.
 */
#ifndef CDX_CLIP_TOK_TEXT_H
#define CDX_CLIP_TOK_TEXT_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

/* Largest text (in UTF-8 bytes) the tokenizer accepts. */
#define CDX_TOK_MAX_TEXT_BYTES (1u << 20)

/* Decode UTF-8 like Python's bytes.decode('utf-8', 'replace'): every maximal
 * ill-formed subpart becomes one U+FFFD.  out must hold len code points;
 * returns the number written. */
size_t cdx_tok_utf8_decode(const char *s, size_t len, uint32_t *out);

/* Encode code points as UTF-8 (all inputs are valid scalar values here).
 * out must hold 4*n bytes; returns the number of bytes written. */
size_t cdx_tok_utf8_encode(const uint32_t *cp, size_t n, char *out);

/* Python's html.unescape(): out must hold n code points (the result is never
 * longer than the input); returns the new length. */
size_t cdx_tok_html_unescape(const uint32_t *in, size_t n, uint32_t *out);

/* The whole clean-up: decode, unescape twice, strip, collapse whitespace,
 * strip, lower-case.  On success *out (malloc'd, caller frees) holds *n_out
 * code points.  Fails with CDX_ERR_TOO_LARGE above CDX_TOK_MAX_TEXT_BYTES. */
cdx_result cdx_tok_clean(const char *text, size_t len, uint32_t **out,
                         size_t *n_out);

/* One match of CLIP's pre-tokenisation pattern. */
typedef enum cdx_tok_piece_kind {
    CDX_TOK_PIECE_WORD = 0,   /* ordinary piece: goes through BPE */
    CDX_TOK_PIECE_SOT,        /* exactly "<|startoftext|>" */
    CDX_TOK_PIECE_EOT         /* exactly "<|endoftext|>" */
} cdx_tok_piece_kind;

typedef struct cdx_tok_piece {
    size_t start, end;        /* code point range [start, end) */
    cdx_tok_piece_kind kind;
} cdx_tok_piece;

/* Find the next match at or after *pos in the cleaned text t[0..n); returns
 * 1 and advances *pos past it, or 0 when there is none. */
int cdx_tok_next_piece(const uint32_t *t, size_t n, size_t *pos,
                       cdx_tok_piece *piece);

#endif
