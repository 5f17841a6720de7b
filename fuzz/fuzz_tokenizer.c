/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizer's vocabulary files:
 * Hugging Face vocab.json + merges.txt, and OpenAI's
 * bpe_simple_vocab_16e6.txt (plain or gzip).
 *
 * Input layout (so that one seed exercises a whole load): an input starting
 * with "#version" or the gzip magic is an OpenAI BPE file; otherwise it is
 * VOCAB "\n--merges--\n" MERGES ["\n--text--\n" TEXT].  The parts are
 * written to files in a private directory (the loaders take paths) and
 * loaded; on success the loaded tokenizer must encode TEXT (and a fixed
 * sentence) into ids that are all inside the vocabulary, start with the
 * start token and contain the end token.
 *
 * The tokenizer sources are included directly so libFuzzer instruments them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* as for the library (not set for fuzz targets) */
#endif
#include "clip/tokenizer.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void write_file(const char *name, const void *p, size_t n, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    if (fclose(f) != 0) abort();
}

static void check_encode(const cdx_tokenizer *t, const char *text, size_t len)
{
    int32_t ids[77];
    int n_untr = 0;
    if (cdx_tokenizer_encode(t, text, len, 77, ids, &n_untr) != CDX_OK) {
        if (len <= (1u << 20)) abort();   /* only over-long texts may fail */
        return;
    }
    int vs = cdx_tokenizer_vocab_size(t), saw_end = 0;
    if (ids[0] != t->sot || n_untr < 2) abort();
    for (int i = 0; i < 77; i++) {
        if (ids[i] < 0 || ids[i] >= vs) abort();
        if (ids[i] == t->eot) saw_end = 1;
    }
    if (!saw_end) abort();
}

static const uint8_t *find(const uint8_t *p, size_t n, const char *sep, size_t *at)
{
    const uint8_t *q = memmem(p, n, sep, strlen(sep));
    if (q) *at = (size_t)(q - p);
    return q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/fuzz-tok-XXXXXX");
        if (!mkdtemp(g_dir)) abort();
    }
    char p1[128], p2[128];
    cdx_tokenizer *t = NULL;
    const uint8_t *text = (const uint8_t *)"a photo of a dog, 42 cats!";
    size_t text_len = strlen((const char *)text);
    if ((size >= 8 && !memcmp(data, "#version", 8)) || (size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) {
        write_file("bpe.txt", data, size, p1, sizeof p1);
        if (cdx_tokenizer_load_bpe(p1, &t) != CDX_OK) {
            if (t) abort();
            return 0;
        }
    } else {
        size_t at;
        const uint8_t *m = find(data, size, "\n--merges--\n", &at);
        if (!m) return 0;
        size_t vocab_len = at;
        const uint8_t *merges = m + 12;
        size_t merges_len = size - vocab_len - 12;
        if (find(merges, merges_len, "\n--text--\n", &at)) {
            text = merges + at + 10;
            text_len = merges_len - at - 10;
            merges_len = at;
        }
        write_file("vocab.json", data, vocab_len, p1, sizeof p1);
        write_file("merges.txt", merges, merges_len, p2, sizeof p2);
        if (cdx_tokenizer_load_hf(p1, p2, &t) != CDX_OK) {
            if (t) abort();
            return 0;
        }
    }
    check_encode(t, (const char *)text, text_len);
    check_encode(t, "a photo of a dog", 16);
    cdx_tokenizer_free(t);
    return 0;
}
