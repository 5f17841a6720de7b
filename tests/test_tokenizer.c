/*
 * test_tokenizer.c - CLIP BPE tokenizer against the reference fixtures.
 *
 * - all 252 fixture texts: ids (exact), n_untruncated (cases.json) and the
 *   BPE token strings, via vocab.json + merges.txt, via OpenAI's format
 *   (merges.txt gzip'd, plain, and as two gzip members) and via load_dir;
 * - text clean-up, pre-tokenisation and UTF-8 replacement against values
 *   computed with Python 3.11 html / regex / bytes.decode('utf-8','replace');
 * - the heap BPE against a plain quadratic reference on long random words;
 * - truncation edge cases, limits and hostile vocabulary/merges files.
 */
#include "clip/tok_text.h"
#include "clip/tokenizer.h"
#include "testutil.h"

#include <jansson.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define N_CASES 252
#define CTX 77

typedef struct text_case {
    char *text;
    size_t len;
    int n_untruncated;
    json_t *bpe_tokens;
} text_case;

static text_case cases[N_CASES];
static int32_t *expected_ids;
static char tmpdir[256];

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static json_t *cases_root;

static void load_cases(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/expected/tokenizer_texts.hexlines", test_fixture_dir());
    size_t len = 0;
    char *hex = test_read_file(path, &len);
    if (!hex) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    size_t line = 0;
    for (size_t i = 0; i < len && line < N_CASES; line++) {
        size_t j = i;
        while (j < len && hex[j] != '\n') j++;
        text_case *c = &cases[line];
        c->text = malloc((j - i) / 2 + 1);
        c->len = 0;
        for (size_t k = i; k + 1 < j; k += 2)
            c->text[c->len++] = (char)(hexval(hex[k]) * 16 + hexval(hex[k + 1]));
        c->text[c->len] = '\0';
        i = j + 1;
    }
    free(hex);
    if (line != N_CASES) { fprintf(stderr, "%s: %zu lines\n", path, line); exit(1); }
    expected_ids = test_load_array("expected/tokenizer_ids.i32", (size_t)N_CASES * CTX);

    snprintf(path, sizeof path, "%s/expected/cases.json", test_fixture_dir());
    json_error_t err;
    cases_root = json_load_file(path, 0, &err);
    if (!cases_root) { fprintf(stderr, "%s: %s\n", path, err.text); exit(1); }
    json_t *arr = json_object_get(json_object_get(cases_root, "tokenizer"), "cases");
    if (json_array_size(arr) != N_CASES) { fprintf(stderr, "cases.json: bad tokenizer.cases\n"); exit(1); }
    for (int i = 0; i < N_CASES; i++) {
        json_t *c = json_array_get(arr, (size_t)i);
        json_t *hx = json_object_get(c, "utf8_hex");
        CHECKF(json_is_string(hx) && strlen(json_string_value(hx)) == 2 * cases[i].len,
               "case %d: hexlines and cases.json disagree", i);
        cases[i].n_untruncated = (int)json_integer_value(json_object_get(c, "n_tokens_untruncated"));
        cases[i].bpe_tokens = json_object_get(c, "bpe_tokens");
    }
}

static void print_row(const char *label, const int32_t *row)
{
    fprintf(stderr, "  %s:", label);
    for (int k = 0; k < CTX; k++) fprintf(stderr, " %d", row[k]);
    fputc('\n', stderr);
}

/* All fixture cases through tok; returns the number of mismatching cases. */
static int check_fixture(const cdx_tokenizer *tok, const char *label, int check_strings)
{
    int bad = 0;
    for (int i = 0; i < N_CASES; i++) {
        int32_t ids[CTX];
        int n = -1;
        cdx_result r = cdx_tokenizer_encode(tok, cases[i].text, cases[i].len, CTX, ids, &n);
        const int32_t *want = expected_ids + (size_t)i * CTX;
        int ok = r == CDX_OK && memcmp(ids, want, sizeof ids) == 0 && n == cases[i].n_untruncated;
        if (ok && check_strings) {
            /* bpe_tokens holds the strings of ids[1 .. min(n-2, CTX-2)] */
            size_t nt = json_array_size(cases[i].bpe_tokens);
            ok = nt == (size_t)(n - 2 < CTX - 2 ? n - 2 : CTX - 2);
            for (size_t k = 0; ok && k < nt; k++) {
                size_t tl = 0;
                const char *ts = cdx_tokenizer_token(tok, ids[k + 1], &tl);
                const char *ws = json_string_value(json_array_get(cases[i].bpe_tokens, k));
                ok = ts && ws && strlen(ws) == tl && memcmp(ts, ws, tl) == 0;
            }
        }
        if (!ok) {
            bad++;
            fprintf(stderr, "[%s] case %d mismatch: text \"%s\" (result %s %s), "
                    "n_untruncated got %d want %d\n", label, i, cases[i].text,
                    cdx_result_str(r), r == CDX_OK ? "" : cdx_last_error(), n,
                    cases[i].n_untruncated);
            print_row("want", want);
            print_row("got ", ids);
        }
    }
    CHECKF(bad == 0, "[%s] %d of %d cases differ", label, bad, N_CASES);
    return bad;
}

static char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) { perror(path); exit(1); }
    fclose(f);
}

static void write_gz(const char *path, const char *data, size_t len, int members)
{
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    size_t half = members > 1 ? len / 2 : len;
    const char *part[2] = {data, data + half};
    size_t plen[2] = {half, len - half};
    for (int m = 0; m < members; m++) {
        uLong cap = compressBound(plen[m]) + 64;
        unsigned char *out = malloc(cap);
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
        zs.next_in = (Bytef *)(uintptr_t)part[m];
        zs.avail_in = (uInt)plen[m];
        zs.next_out = out;
        zs.avail_out = (uInt)cap;
        if (deflate(&zs, Z_FINISH) != Z_STREAM_END) { fprintf(stderr, "deflate failed\n"); exit(1); }
        fwrite(out, 1, zs.total_out, f);
        deflateEnd(&zs);
        free(out);
    }
    fclose(f);
}

/* ---------------------------------------------------------------- loaders */

static void test_openai_format(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/merges.txt", test_fixture_dir());
    size_t len = 0;
    char *merges = test_read_file(path, &len);
    CHECK(merges != NULL);
    if (!merges) return;

    const char *gz = tmp_path("bpe_simple_vocab_16e6.txt.gz");
    write_gz(gz, merges, len, 1);
    cdx_tokenizer *tok = NULL;
    cdx_result r = cdx_tokenizer_load_bpe(gz, &tok);
    CHECKF(r == CDX_OK, "load_bpe(gz): %s", cdx_last_error());
    if (tok) {
        CHECK(cdx_tokenizer_vocab_size(tok) == 49408);
        check_fixture(tok, "bpe.gz", 1);
    }
    cdx_tokenizer_free(tok);

    /* load_dir falls back to the OpenAI file when vocab.json is absent. */
    tok = NULL;
    r = cdx_tokenizer_load_dir(tmpdir, &tok);
    CHECKF(r == CDX_OK, "load_dir(openai): %s", cdx_last_error());
    if (tok) check_fixture(tok, "dir/bpe.gz", 0);
    cdx_tokenizer_free(tok);
    unlink(gz);

    const char *two = tmp_path("two_members.gz");
    write_gz(two, merges, len, 2);
    tok = NULL;
    r = cdx_tokenizer_load_bpe(two, &tok);
    CHECKF(r == CDX_OK, "load_bpe(2 gzip members): %s", cdx_last_error());
    if (tok) check_fixture(tok, "bpe.gz x2", 0);
    cdx_tokenizer_free(tok);
    unlink(two);

    const char *plain = tmp_path("bpe_plain.txt");
    write_file(plain, merges, len);
    tok = NULL;
    r = cdx_tokenizer_load_bpe(plain, &tok);
    CHECKF(r == CDX_OK, "load_bpe(plain): %s", cdx_last_error());
    if (tok) check_fixture(tok, "bpe.txt", 0);
    cdx_tokenizer_free(tok);
    unlink(plain);

    /* Only the first 48894 merges count: extra lines are ignored. */
    size_t big_len = len + 64;
    char *big = malloc(big_len);
    memcpy(big, merges, len);
    size_t extra = (size_t)snprintf(big + len, 64, "%sq z\nthis line is not a merge\n",
                                    merges[len - 1] == '\n' ? "" : "\n");
    const char *bigp = tmp_path("bpe_big.txt");
    write_file(bigp, big, len + extra);
    tok = NULL;
    r = cdx_tokenizer_load_bpe(bigp, &tok);
    CHECKF(r == CDX_OK, "load_bpe(extra lines): %s", cdx_last_error());
    if (tok) CHECK(cdx_tokenizer_vocab_size(tok) == 49408);
    cdx_tokenizer_free(tok);
    unlink(bigp);

    /* Truncated gzip data is an error, not a short vocabulary. */
    write_gz(gz, merges, len, 1);
    size_t gl = 0;
    char *g = test_read_file(gz, &gl);
    write_file(gz, g, gl / 2);
    tok = NULL;
    r = cdx_tokenizer_load_bpe(gz, &tok);
    CHECKF(r == CDX_ERR_FORMAT && tok == NULL, "truncated gz: %s", cdx_result_str(r));
    g[gl / 2] ^= 0x55;  /* corrupt the deflate stream */
    write_file(gz, g, gl);
    r = cdx_tokenizer_load_bpe(gz, &tok);
    CHECKF(r != CDX_OK && tok == NULL, "corrupt gz accepted");
    unlink(gz);
    free(g);
    free(big);
    free(merges);
}

/* A file pair expected to be rejected; the message must mention a file. */
static void expect_bad_hf(const char *label, const char *vocab, const char *merges)
{
    const char *vp = tmp_path("bad_vocab.json"), *mp = tmp_path("bad_merges.txt");
    write_file(vp, vocab, strlen(vocab));
    write_file(mp, merges, strlen(merges));
    cdx_tokenizer *tok = NULL;
    cdx_result r = cdx_tokenizer_load_hf(vp, mp, &tok);
    CHECKF(r != CDX_OK && tok == NULL, "%s: accepted", label);
    CHECKF(strstr(cdx_last_error(), "bad_") != NULL, "%s: message lacks the file name: %s",
           label, cdx_last_error());
    cdx_tokenizer_free(tok);
    unlink(vp);
    unlink(mp);
}

/* A tiny but complete vocabulary: the 512 byte symbols, "ab", "ab</w>",
 * specials; merges "a b" and "a b</w>".  Written as JSON with \u escapes. */
static char *mini_vocab(const char *extra)
{
    size_t cap = 65536, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{");
    int printable_next = 256, id = 0;
    for (int pass = 0; pass < 2; pass++) {
        printable_next = 256;
        for (int b = 0; b < 256; b++) {
            int pr = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            int cp = pr ? b : printable_next++;
            n += (size_t)snprintf(s + n, cap - n, "\"\\u%04x%s\": %d, ", cp,
                                  pass ? "</w>" : "", id++);
        }
    }
    n += (size_t)snprintf(s + n, cap - n, "\"ab\": %d, \"ab</w>\": %d, \"<|startoftext|>\": %d, "
                          "\"<|endoftext|>\": %d%s}", id, id + 1, id + 2, id + 3, extra);
    return s;
}

static void test_hostile_files(void)
{
    const char *merges_ok = "#version: 0.2\na b\na b</w>\n";
    char *v = mini_vocab("");
    /* the mini vocabulary itself loads and tokenises */
    const char *vp = tmp_path("mini_vocab.json"), *mp = tmp_path("mini_merges.txt");
    write_file(vp, v, strlen(v));
    write_file(mp, merges_ok, strlen(merges_ok));
    cdx_tokenizer *tok = NULL;
    cdx_result r = cdx_tokenizer_load_hf(vp, mp, &tok);
    CHECKF(r == CDX_OK, "mini vocab: %s", cdx_last_error());
    if (tok) {
        int32_t ids[6];
        int n = 0;
        CHECK(cdx_tokenizer_encode(tok, "ab abab", 7, 6, ids, &n) == CDX_OK);
        /* "ab" -> ab</w>; "abab" -> ab, ab</w> */
        CHECK(n == 5 && ids[0] == 514 && ids[1] == 513 && ids[2] == 512 && ids[3] == 513 &&
              ids[4] == 515 && ids[5] == 0);
    }
    cdx_tokenizer_free(tok);
    unlink(vp);
    unlink(mp);

    expect_bad_hf("bad JSON", "{\"a\": 1,", merges_ok);
    expect_bad_hf("not an object", "[1, 2]", merges_ok);
    expect_bad_hf("empty object", "{}", merges_ok);
    expect_bad_hf("string id", "{\"a\": \"1\"}", merges_ok);
    char *t = mini_vocab(", \"zz\": 99999");
    expect_bad_hf("id out of range", t, merges_ok);
    free(t);
    t = mini_vocab(", \"zz\": -1");
    expect_bad_hf("negative id", t, merges_ok);
    free(t);
    t = mini_vocab(", \"zz\": 3");
    expect_bad_hf("duplicate id", t, merges_ok);
    free(t);
    t = mini_vocab(", \"ab\": 520");
    expect_bad_hf("duplicate token", t, merges_ok);
    free(t);
    /* vocab.json is read by a parser of its own (tokenizer.c): escapes
     * decode (a key spelled with \u escapes or a surrogate pair collides
     * with the same key written plainly), malformed JSON is refused */
    t = mini_vocab(", \"\\u0061\\u0062\" : 516");
    expect_bad_hf("\\u escapes decode", t, merges_ok);
    CHECKF(strstr(cdx_last_error(), "\"ab\" appears twice") != NULL, "%s", cdx_last_error());
    free(t);
    t = mini_vocab(", \"x\\ud83d\\ude00\": 516, \"x\xf0\x9f\x98\x80\": 517");
    expect_bad_hf("surrogate pair decodes", t, merges_ok);
    CHECKF(strstr(cdx_last_error(), "appears twice") != NULL, "%s", cdx_last_error());
    free(t);
    t = mini_vocab(", \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"\t:\r\n516 ");
    {   /* every escape, whitespace everywhere: accepted */
        const char *vp2 = tmp_path("esc_vocab.json"), *mp2 = tmp_path("esc_merges.txt");
        write_file(vp2, t, strlen(t));
        write_file(mp2, merges_ok, strlen(merges_ok));
        cdx_tokenizer *tk = NULL;
        CHECKF(cdx_tokenizer_load_hf(vp2, mp2, &tk) == CDX_OK && tk && cdx_tokenizer_vocab_size(tk) == 517,
               "escapes: %s", cdx_last_error());
        cdx_tokenizer_free(tk);
        unlink(vp2);
        unlink(mp2);
    }
    free(t);
    static const char *const bad_json[][2] = {
        {"float id", ", \"zz\": 516.5"},       {"exponent id", ", \"zz\": 5e2"},
        {"trailing comma", ", \"zz\": 516,"},  {"lone low surrogate", ", \"\\udc00\": 516"},
        {"unpaired high surrogate", ", \"\\ud83dx\": 516"}, {"NUL escape", ", \"a\\u0000\": 516"},
        {"unknown escape", ", \"a\\x\": 516"},  {"short \\u", ", \"a\\u12\": 516"},
        {"control character", ", \"a\nb\": 516"}, {"invalid UTF-8 key", ", \"a\xff\": 516"},
        {"missing colon", ", \"zz\" 516"},     {"unterminated key", ", \"zz"},
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        t = mini_vocab(bad_json[i][1]);
        expect_bad_hf(bad_json[i][0], t, merges_ok);
        free(t);
    }
    t = mini_vocab("");
    {
        size_t L = strlen(t);
        char *g = malloc(L + 3);
        snprintf(g, L + 3, "%s x", t);
        expect_bad_hf("text after the object", g, merges_ok);
        free(g);
    }
    free(t);
    expect_bad_hf("missing byte symbols", "{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1}", "");
    expect_bad_hf("merge of unknown symbol", v, "#version: 0.2\na q9\n");
    expect_bad_hf("merge result not in vocab", v, "#version: 0.2\nb c\n");
    expect_bad_hf("one field", v, "#version: 0.2\nab\n");
    expect_bad_hf("three fields", v, "#version: 0.2\na b c\n");
    expect_bad_hf("two spaces", v, "#version: 0.2\na  b\n");
    expect_bad_hf("tab", v, "#version: 0.2\na\tb\n");
    expect_bad_hf("blank line inside", v, "#version: 0.2\na b\n\na b</w>\n");
    expect_bad_hf("duplicate merge", v, "#version: 0.2\na b\na b\n");
    expect_bad_hf("invalid UTF-8", v, "#version: 0.2\na \xff\n");
    {
        /* missing merges file */
        const char *vp2 = tmp_path("bad_vocab.json");
        write_file(vp2, v, strlen(v));
        cdx_tokenizer *t2 = NULL;
        CHECK(cdx_tokenizer_load_hf(vp2, tmp_path("bad_nonexistent.txt"), &t2) == CDX_ERR_NOT_FOUND);
        CHECK(t2 == NULL);
        unlink(vp2);
    }
    free(v);

    /* OpenAI format: header required, bad lines rejected. */
    const char *bp = tmp_path("bad_bpe.txt");
    static const char *const bad_bpe[] = {"a b\n", "#version: 0.2\na b c\n", "", "\x1f\x8b\x08garbage"};
    for (size_t i = 0; i < sizeof bad_bpe / sizeof bad_bpe[0]; i++) {
        write_file(bp, bad_bpe[i], strlen(bad_bpe[i]));
        tok = NULL;
        r = cdx_tokenizer_load_bpe(bp, &tok);
        CHECKF(r != CDX_OK && tok == NULL, "bad bpe file %zu accepted", i);
        CHECKF(strstr(cdx_last_error(), "bad_bpe") != NULL, "bad bpe %zu: %s", i, cdx_last_error());
    }
    unlink(bp);

    tok = NULL;
    r = cdx_tokenizer_load_dir("/nonexistent/clipdex-model", &tok);
    CHECK(r == CDX_ERR_NOT_FOUND && tok == NULL);
    CHECK(strstr(cdx_last_error(), "/nonexistent/clipdex-model") != NULL);
    r = cdx_tokenizer_load_dir(tmpdir, &tok);   /* empty directory */
    CHECK(r == CDX_ERR_NOT_FOUND && tok == NULL);
}

/* ---------------------------------------------------------------- text */

static void test_clean(void)
{
    /* input -> Python: html.unescape x2, strip, regex \s+ -> ' ', strip, lower */
    static const char *const cl[][2] = {
        {"&amp;amp;", "&"},
        {"&ampx;", "&x;"},
        {"&AMP", "&"},
        {"&#65;&#x42;&#X43", "abc"},
        {"&#0;", "\357\277\275"},
        {"&#128;&#x81;", "\342\202\254\302\201"},
        {"&#xD800;", "\357\277\275"},
        {"&#1114112;", "\357\277\275"},
        {"&#99999999999999999999;", "\357\277\275"},
        {"&#1;x", "x"},
        {"&#12;", ""},
        {"&notin;&notit;", "\342\210\211\302\254it;"},
        {"&nbspx", "x"},
        {"&lt&gt", "<>"},
        {"&#;", "&#;"},
        {"&#x;", "&#x;"},
        {"&;", "&;"},
        {"&aacutex", "\303\241x"},
        {"&&amp;", "&&"},
        {"&amp\303\251", "&\303\251"},
        {"a&bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb;", "a&bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb;"},
        {"&NotNestedGreaterGreater;", "\342\252\242\314\270"},
        {"&amp\015", "&"},
        {"x\034y", "x\034y"},
        {"\034 a \037", "a"},
        {"a\302\205b", "a b"},
        {"\304\260STANBUL", "i\314\207stanbul"},
        {"\316\237\316\224\316\245\316\243\316\243\316\225\316\245\316\243",
         "\316\277\316\264\317\205\317\203\317\203\316\265\317\205\317\202"},
        {"\316\243", "\317\203"},
        {"a\316\243", "a\317\202"},
        {"a\316\243b", "a\317\203b"},
        {"a\316\243'", "a\317\202'"},
        {"a\316\243\314\201", "a\317\202\314\201"},
        {"\302\252\316\243", "\302\252\317\202"},
        {"\303\205\342\204\252", "\303\245k"},
        {"\307\205", "\307\206"},
    };
    for (size_t i = 0; i < sizeof cl / sizeof cl[0]; i++) {
        uint32_t *cp = NULL;
        size_t n = 0;
        cdx_result r = cdx_tok_clean(cl[i][0], strlen(cl[i][0]), &cp, &n);
        char buf[512] = {0};
        if (r == CDX_OK && n < 100) cdx_tok_utf8_encode(cp, n, buf);
        CHECKF(r == CDX_OK && strcmp(buf, cl[i][1]) == 0, "clean(\"%s\") = \"%s\", want \"%s\"",
               cl[i][0], buf, cl[i][1]);
        free(cp);
    }
}

static void test_pieces(void)
{
    /* regex.findall(CLIP pattern, clean(text), IGNORECASE), '|'-joined */
    static const char *const pc[][2] = {
        {"'\305\277", "'\305\277"},
        {"<|\305\277tartoftext|>", "<|\305\277tartoftext|>"},
        {"a\315\205b", "a|b"},
        {"x\034y", "x|\034|y"},
        {"don't", "don|'t"},
        {"''s", "''|s"},
        {"a1b22", "a|1|b|2|2"},
        {"\302\275!?", "\302\275|!?"},
        {"we'LL it'S", "we|'ll|it|'s"},
        {"<|endoftext|>x<|startoftext|>", "<|endoftext|>|x|<|startoftext|>"},
    };
    for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
        uint32_t *cp = NULL;
        size_t n = 0, pos = 0;
        CHECK(cdx_tok_clean(pc[i][0], strlen(pc[i][0]), &cp, &n) == CDX_OK);
        char buf[512] = {0};
        size_t bl = 0;
        cdx_tok_piece p;
        while (cdx_tok_next_piece(cp, n, &pos, &p) && bl < 400) {
            if (bl) buf[bl++] = '|';
            bl += cdx_tok_utf8_encode(cp + p.start, p.end - p.start, buf + bl);
        }
        CHECKF(strcmp(buf, pc[i][1]) == 0, "pieces(\"%s\") = \"%s\", want \"%s\"", pc[i][0],
               buf, pc[i][1]);
        free(cp);
    }
}

static void test_utf8_replace(const cdx_tokenizer *tok)
{
    /* bytes.decode('utf-8', 'replace') */
    static const struct { const char *in; size_t len; uint32_t want[6]; size_t n; } dc[] = {
        {"caf\xe9", 4, {'c', 'a', 'f', 0xFFFD}, 4},
        {"\xed\xa0\x80", 3, {0xFFFD, 0xFFFD, 0xFFFD}, 3},
        {"\xf0\x90\x80", 3, {0xFFFD}, 1},
        {"\xe2\x82\x41", 3, {0xFFFD, 'A'}, 2},
        {"\xc0\xaf", 2, {0xFFFD, 0xFFFD}, 2},
        {"\xf4\x90\x80\x80", 4, {0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD}, 4},
        {"\xf8", 1, {0xFFFD}, 1},
        {"\xe0\x80\x80", 3, {0xFFFD, 0xFFFD, 0xFFFD}, 3},
        {"\xf0\x9f\x98", 3, {0xFFFD}, 1},
        {"\xf0\x9f\x98\x80", 4, {0x1F600}, 1},
        {"a\0b", 3, {'a', 0, 'b'}, 3},
    };
    for (size_t i = 0; i < sizeof dc / sizeof dc[0]; i++) {
        uint32_t out[8];
        size_t n = cdx_tok_utf8_decode(dc[i].in, dc[i].len, out);
        CHECKF(n == dc[i].n && memcmp(out, dc[i].want, n * sizeof *out) == 0,
               "utf8 decode case %zu", i);
    }
    /* The tokenizer sees invalid bytes as U+FFFD. */
    int32_t a[CTX], b[CTX];
    CHECK(cdx_tokenizer_encode(tok, "caf\xe9 \xed\xa0\x80", 8, CTX, a, NULL) == CDX_OK);
    const char *rep = "caf\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";
    CHECK(cdx_tokenizer_encode(tok, rep, strlen(rep), CTX, b, NULL) == CDX_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

/* ---------------------------------------------------------------- BPE */

/* Plain SimpleTokenizer.bpe(): find the lowest-ranked pair, merge all its
 * occurrences left to right, repeat.  Quadratic; the obvious reference. */
static size_t naive_bpe(const cdx_tokenizer *tok, const unsigned char *b, size_t len,
                        int32_t *w)
{
    size_t n = len;
    for (size_t i = 0; i < len; i++) w[i] = cdx_tokenizer_byte_symbol(tok, b[i], i + 1 == len);
    for (;;) {
        long best = -1;
        int32_t first = 0, second = 0, merged = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t m;
            long rk = cdx_tokenizer_merge_rank(tok, w[i], w[i + 1], &m);
            if (rk >= 0 && (best < 0 || rk < best)) {
                best = rk; first = w[i]; second = w[i + 1]; merged = m;
            }
        }
        if (best < 0) break;
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && w[i] == first && w[i + 1] == second) { w[o++] = merged; i += 2; }
            else w[o++] = w[i++];
        }
        n = o;
    }
    return n;
}

static void test_bpe_reference(const cdx_tokenizer *tok)
{
    uint64_t seed = 12345;
    static const char *const alphabets[] = {"a", "ab", "aeinrst", "xkcdq", "abcdefghijklmnopqrstuvwxyz"};
    size_t cap = 20000;
    unsigned char *word = malloc(cap + 1);
    int32_t *ref = malloc(cap * sizeof *ref), *got = malloc((cap + 2) * sizeof *got);
    int bad = 0;
    for (int trial = 0; trial < 60; trial++) {
        const char *al = alphabets[trial % 5];
        size_t al_n = strlen(al);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = 1 + (size_t)(seed >> 33) % (trial < 50 ? 300 : cap);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            word[i] = (unsigned char)al[(seed >> 33) % al_n];
        }
        size_t nr = naive_bpe(tok, word, len, ref);
        int n = 0;
        cdx_result r = cdx_tokenizer_encode(tok, (const char *)word, len, (int)(cap + 2), got, &n);
        int ok = r == CDX_OK && (size_t)n == nr + 2 &&
                 memcmp(got + 1, ref, nr * sizeof *ref) == 0;
        if (!ok && bad++ < 3)
            fprintf(stderr, "BPE differs from the reference on a %zu-byte word over \"%s\" "
                    "(%d vs %zu tokens)\n", len, al, n, nr + 2);
    }
    CHECKF(bad == 0, "%d words differ from the reference BPE", bad);
    free(word);
    free(ref);
    free(got);
}

static void test_truncation_and_limits(const cdx_tokenizer *tok)
{
    int32_t ids[CTX];
    int n = 0;
    /* "a photo" = sot, a, photo, eot: ctx 2 -> [sot, eot], ctx 1 -> [eot] */
    CHECK(cdx_tokenizer_encode(tok, "a photo", 7, 4, ids, &n) == CDX_OK && n == 4);
    int32_t a_id = ids[1];
    CHECK(cdx_tokenizer_encode(tok, "a photo", 7, 2, ids, &n) == CDX_OK);
    CHECK(n == 4 && ids[0] == CDX_TOKEN_SOT && ids[1] == CDX_TOKEN_EOT);
    CHECK(cdx_tokenizer_encode(tok, "a photo", 7, 1, ids, &n) == CDX_OK);
    CHECK(n == 4 && ids[0] == CDX_TOKEN_EOT);
    CHECK(cdx_tokenizer_encode(tok, "a photo", 7, 3, ids, &n) == CDX_OK);
    CHECK(ids[0] == CDX_TOKEN_SOT && ids[1] == a_id && ids[2] == CDX_TOKEN_EOT);
    CHECK(cdx_tokenizer_encode(tok, "x", 1, 0, ids, &n) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_tokenizer_encode(tok, NULL, 0, CTX, ids, &n) == CDX_OK && n == 2);
    CHECK(cdx_tokenizer_encode(tok, NULL, 3, CTX, ids, &n) == CDX_ERR_INVALID_ARG);

    /* 1 MiB is accepted (one long word), one byte more is refused. */
    size_t big = CDX_TOK_MAX_TEXT_BYTES;
    char *s = malloc(big + 1);
    for (size_t i = 0; i < big; i++) s[i] = "abcdefgh"[(i * 7 + i / 5) % 8];
    double t0 = (double)clock();
    CHECKF(cdx_tokenizer_encode(tok, s, big, CTX, ids, &n) == CDX_OK, "1 MiB word: %s",
           cdx_last_error());
    CHECK(n > CTX && ids[CTX - 1] == CDX_TOKEN_EOT);
    printf("1 MiB single word: %d tokens in %.2f s\n", n, ((double)clock() - t0) / CLOCKS_PER_SEC);
    /* many short words: n_untruncated counts all of them */
    for (size_t i = 0; i < big; i++) s[i] = (i % 2) ? ' ' : 'a';
    CHECK(cdx_tokenizer_encode(tok, s, big, CTX, ids, &n) == CDX_OK && n == (int)(big / 2 + 2));
    CHECK(cdx_tokenizer_encode(tok, s, big + 1, CTX, ids, &n) == CDX_ERR_TOO_LARGE);
    free(s);
}

int main(void)
{
    load_cases();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cdx_test_tok_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }

    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", test_fixture_dir());
    snprintf(merges, sizeof merges, "%s/merges.txt", test_fixture_dir());
    cdx_tokenizer *tok = NULL;
    cdx_result r = cdx_tokenizer_load_hf(vocab, merges, &tok);
    CHECKF(r == CDX_OK, "load_hf: %s", cdx_last_error());
    if (!tok) return test_finish();
    CHECK(cdx_tokenizer_vocab_size(tok) == 49408);
    check_fixture(tok, "hf", 1);

    cdx_tokenizer *dtok = NULL;
    CHECKF(cdx_tokenizer_load_dir(test_fixture_dir(), &dtok) == CDX_OK, "load_dir: %s",
           cdx_last_error());
    if (dtok) check_fixture(dtok, "dir", 0);
    cdx_tokenizer_free(dtok);

    test_openai_format();
    test_hostile_files();
    test_clean();
    test_pieces();
    test_utf8_replace(tok);
    test_bpe_reference(tok);
    test_truncation_and_limits(tok);

    cdx_tokenizer_free(tok);
    cdx_tokenizer_free(NULL);
    for (int i = 0; i < N_CASES; i++) free(cases[i].text);
    free(expected_ids);
    json_decref(cases_root);
    rmdir(tmpdir);
    return test_finish();
}
