/*
 * tokenizer.h - CLIP's byte-level BPE tokenizer, reproducing
 * clip.simple_tokenizer + clip.tokenize(truncate=True) exactly.
 *
 * Pipeline: html unescape (twice) -> strip -> collapse Unicode White_Space runs
 * to one space -> full Unicode lower-case -> CLIP's pre-tokenisation pattern
 * -> byte-to-unicode -> BPE merges by rank with "</w>" on the last symbol.
 * Character classes and case mapping come from utf8proc.
 *
 * A loaded tokenizer is immutable and thread-safe.  Expected workload: short
 * queries (< 100 bytes) at interactive rates, captions in bulk.
 */
#ifndef CDX_CLIP_TOKENIZER_H
#define CDX_CLIP_TOKENIZER_H

#include "clipdex.h"
#include <stddef.h>
#include <stdint.h>

typedef struct cdx_tokenizer cdx_tokenizer;

#define CDX_TOKEN_SOT 49406
#define CDX_TOKEN_EOT 49407

/* Hugging Face files: vocab.json (token -> id) and merges.txt. */
cdx_result cdx_tokenizer_load_hf(const char *vocab_json_path,
                                 const char *merges_txt_path,
                                 cdx_tokenizer **out);

/* OpenAI's bpe_simple_vocab_16e6.txt or .txt.gz (gzip detected from content). */
cdx_result cdx_tokenizer_load_bpe(const char *path, cdx_tokenizer **out);

void cdx_tokenizer_free(cdx_tokenizer *tok);

/* Tokenise like clip.tokenize(text, context_length, truncate=True): writes
 * exactly context_length ids.  *n_untruncated (may be NULL) = count of ids
 * before truncation incl. start and end. */
cdx_result cdx_tokenizer_encode(const cdx_tokenizer *tok, const char *text,
                                size_t len, int context_length, int32_t *ids,
                                int *n_untruncated);

#endif
