/*
 * tokenizer.h - CLIP's byte-level BPE tokenizer, reproducing
 * clip.simple_tokenizer + clip.tokenize(truncate=True) exactly.
 *
 * Pipeline: html unescape (twice) -> strip -> collapse Unicode White_Space runs
 * to one space -> full Unicode lower-case -> CLIP's pre-tokenisation pattern
 * (tok_text.h) -> byte-to-unicode -> BPE merges by rank with "</w>" on the
 * last symbol.  Character classes and case mapping come from utf8proc.
 *
 * The handle type, cdx_tokenizer_free() and cdx_tokenizer_encode() are public
 * (clipdex.h, "standalone tokenizer"); this header adds the file loaders used
 * by the model loader.
 *
 * A loaded tokenizer is immutable and thread-safe.  Expected workload: short
 * queries (< 100 bytes) at interactive rates, captions in bulk.
 */
#ifndef CDX_CLIP_TOKENIZER_H
#define CDX_CLIP_TOKENIZER_H

#include "clipdex.h"
#include <stddef.h>
#include <stdint.h>

#define CDX_TOKEN_SOT 49406
#define CDX_TOKEN_EOT 49407

/* Hugging Face files: vocab.json (token -> id) and merges.txt. */
cdx_result cdx_tokenizer_load_hf(const char *vocab_json_path,
                                 const char *merges_txt_path,
                                 cdx_tokenizer **out);

/* OpenAI's bpe_simple_vocab_16e6.txt or .txt.gz (gzip detected from content). */
cdx_result cdx_tokenizer_load_bpe(const char *path, cdx_tokenizer **out);

/* Number of vocabulary entries (ids are 0 .. n-1). */
int cdx_tokenizer_vocab_size(const cdx_tokenizer *tok);

/* The token string of id (byte-to-unicode form, e.g. "photo</w>"), not
 * NUL-terminated; NULL when id is out of range.  For tests and debugging. */
const char *cdx_tokenizer_token(const cdx_tokenizer *tok, int id, size_t *len);

/* For tests (a plain reference BPE): the rank of merging ids a and b, with
 * the merged id in *merged, or -1 when they do not merge; and the id of a
 * byte's initial symbol (eow != 0: the "</w>" form). */
long cdx_tokenizer_merge_rank(const cdx_tokenizer *tok, int32_t a, int32_t b,
                              int32_t *merged);
int32_t cdx_tokenizer_byte_symbol(const cdx_tokenizer *tok, unsigned char b, int eow);

#endif
