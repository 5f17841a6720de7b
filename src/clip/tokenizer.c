/* tokenizer.c - TEMPORARY placeholder; the real BPE tokenizer replaces it. */
#include "clip/tokenizer.h"
#include "common/error.h"
cdx_result cdx_tokenizer_load_hf(const char *v, const char *m, cdx_tokenizer **out)
{ (void)v; (void)m; *out = NULL; return cdx_error(CDX_ERR_UNSUPPORTED, "tokenizer not built yet"); }
cdx_result cdx_tokenizer_load_bpe(const char *p, cdx_tokenizer **out)
{ (void)p; *out = NULL; return cdx_error(CDX_ERR_UNSUPPORTED, "tokenizer not built yet"); }
void cdx_tokenizer_free(cdx_tokenizer *t) { (void)t; }
cdx_result cdx_tokenizer_encode(const cdx_tokenizer *t, const char *s, size_t n, int c, int32_t *ids, int *u)
{ (void)t; (void)s; (void)n; (void)c; (void)ids; (void)u; return cdx_error(CDX_ERR_UNSUPPORTED, "tokenizer not built yet"); }
