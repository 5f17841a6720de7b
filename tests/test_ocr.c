/*
 * test_ocr.c - OCR with the real Tesseract on images made here: words
 * rendered by libvips in several DejaVu fonts, sizes, rotations and
 * backgrounds, three of them on plates over ../shared photos
 * (tests/ocr_render.h), plus a photo without text.
 *
 *  - languages: the installed ones pass; an unknown one is NOT_FOUND with
 *    a message listing the installed ones; malformed lists are refused;
 *  - module: every rendered image passes the text-likeness test and its
 *    word is read; the plain photo is skipped by the test;
 *  - index --ocr (cdx_library_index, ocr = 1): a keyword search for each
 *    word (in the ocr column: the file names say nothing) finds its image;
 *    info counts; the text follows a move and leaves with a removal; an
 *    unknown language fails before any work;
 *  - cdx_library_ocr on a library indexed without OCR: a cancelled run
 *    commits nothing, a full run makes the words findable, a second run has
 *    nothing to do, force reads everything again.
 */
#include "testutil.h"

#include "ocr_render.h"

#include "clipdex.h"
#include "common/util.h"
#include "image/decode.h"
#include "image/ocr.h"
#include "image/preprocess.h"

#include <stdatomic.h>
#include <unistd.h>

static char g_dir[64];
static char g_words[128];

static int read_word(ocr_engine *eng, const void *data, size_t len, const char *word, int *likely)
{
    cdx_image_params ip = cdx_image_default_params();
    cdx_pixels px;
    if (cdx_image_decode(data, len, &ip, 224, &px) != CDX_OK) return 0;
    ocr_grey g;
    int found = 0;
    if (ocr_grey_from_pixels(&px, &g) == CDX_OK) {
        *likely = ocr_text_likely(&g);
        char *text = NULL;
        if (word && ocr_engine_read(eng, &g, &text) == CDX_OK) {
            found = strcasestr(text, word) != NULL;
            if (!found) fprintf(stderr, "'%s' read as \"%s\"\n", word, text);
        }
        free(text);
        ocr_grey_free(&g);
    }
    cdx_pixels_free(&px);
    return found;
}

static void test_langs(void)
{
    CHECK(ocr_check_langs(NULL) == CDX_OK);
    CHECK(cdx_ocr_check_langs("eng") == CDX_OK);
    cdx_result r = cdx_ocr_check_langs("eng+xx9");
    CHECKF(r == CDX_ERR_NOT_FOUND && strstr(cdx_last_error(), "\"xx9\"") &&
           strstr(cdx_last_error(), "installed: ") && strstr(cdx_last_error(), "eng"),
           "%s", cdx_last_error());
    CHECK(cdx_ocr_check_langs("osd") == CDX_ERR_NOT_FOUND);
    CHECK(cdx_ocr_check_langs("../eng") == CDX_ERR_INVALID_ARG);
    CHECK(cdx_ocr_check_langs("eng+") == CDX_ERR_INVALID_ARG);
    CHECK(cdx_ocr_check_langs("eng++eng") == CDX_ERR_INVALID_ARG);
    CHECK(cdx_ocr_check_langs("a+b+c+d+e+f+g+h+i") == CDX_ERR_INVALID_ARG);
    char inst[512];
    CHECK(ocr_installed_langs(inst, sizeof inst) == CDX_OK && strstr(inst, "eng") &&
          !strstr(inst, "osd"));
}

/* Render every sample into g_words/img<i>.<ext> (names that say nothing)
 * and check the module reads each; copy the plain photo as plain.jpg. */
static void make_images(const char *shared)
{
    ocr_engine *eng = NULL;
    CHECK(ocr_engine_new("eng", &eng) == CDX_OK);
    for (size_t i = 0; i < OCR_N_SAMPLES; i++) {
        const ocr_sample *s = &OCR_SAMPLES[i];
        void *buf = NULL;
        size_t len = 0;
        CHECKF(ocr_render(s, shared, &buf, &len) == 0, "render %s: %s", s->word, vips_error_buffer());
        if (!buf) continue;
        char path[256];
        snprintf(path, sizeof path, "%s/img%zu.%s", g_words, i, s->jpeg ? "jpg" : "png");
        CHECK(cdx_write_file_atomic(path, buf, len) == CDX_OK);
        int likely = -1;
        CHECKF(read_word(eng, buf, len, s->word, &likely), "module did not read '%s'", s->word);
        CHECKF(likely == 1, "'%s' skipped by the text-likeness test", s->word);
        g_free(buf);
    }
    char src[4096], dst[256];
    snprintf(src, sizeof src, "%s/data/imagenet-sample/%s", shared, OCR_PLAIN_PHOTO);
    snprintf(dst, sizeof dst, "%s/plain.jpg", g_words);
    size_t len = 0;
    void *data = test_read_file(src, &len);
    CHECK(data && cdx_write_file_atomic(dst, data, len) == CDX_OK);
    int likely = -1;
    if (data) read_word(eng, data, len, NULL, &likely);
    CHECKF(likely == 0, "the plain photo was not skipped (%d)", likely);
    free(data);
    ocr_engine_free(eng);
}

/* Ids found by a keyword query; 1 when the best hit's path ends with tail. */
static int finds(cdx_library *lib, const char *query, const char *tail, size_t *n_out)
{
    cdx_search_params sp = cdx_search_default_params();
    cdx_hit hits[10];
    size_t n = 0;
    uint64_t total = 0;
    cdx_result r = cdx_library_search_keyword(lib, query, &sp, hits, &n, &total);
    if (n_out) *n_out = r ? 0 : n;
    if (r || !n) return 0;
    cdx_image_record rec;
    if (cdx_library_get_image(lib, hits[0].id, &rec) != CDX_OK) return 0;
    size_t lp = strlen(rec.path), lt = strlen(tail);
    return lp >= lt && !strcmp(rec.path + lp - lt, tail);
}

static cdx_library *open_lib(const char *dir, const char *model)
{
    cdx_library_params lp = cdx_library_default_params();
    lp.writable = 1;
    lp.create = 1;
    lp.model_dir = model;
    cdx_library *lib = NULL;
    CHECKF(cdx_library_open(dir, &lp, &lib) == CDX_OK, "%s", cdx_last_error());
    return lib;
}

static void sample_file(size_t i, char *buf, size_t cap)
{
    snprintf(buf, cap, "/img%zu.%s", i, OCR_SAMPLES[i].jpeg ? "jpg" : "png");
}

static void test_index_ocr(const char *model)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/lib-a", g_dir);
    cdx_library *lib = open_lib(dir, model);
    if (!lib) return;
    const char *paths[] = {g_words};
    cdx_index_params ip = cdx_index_default_params();
    cdx_index_stats st;
    /* unknown language: refused before any work */
    ip.ocr = 1;
    ip.ocr_lang = "eng+xx9";
    CHECK(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_ERR_NOT_FOUND);
    cdx_library_info info;
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.images == 0);

    ip.ocr_lang = "eng";
    CHECKF(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_OK, "%s", cdx_last_error());
    CHECKF(st.added == OCR_N_SAMPLES + 1 && st.ocr_read == OCR_N_SAMPLES && st.ocr_skipped == 1,
           "added %llu read %llu skipped %llu", (unsigned long long)st.added,
           (unsigned long long)st.ocr_read, (unsigned long long)st.ocr_skipped);
    for (size_t i = 0; i < OCR_N_SAMPLES; i++) {
        char q[64], tail[64];
        snprintf(q, sizeof q, "ocr:%s", OCR_SAMPLES[i].word);
        sample_file(i, tail, sizeof tail);
        CHECKF(finds(lib, q, tail, NULL), "keyword '%s' did not find %s", q, tail);
        CHECKF(finds(lib, OCR_SAMPLES[i].word, tail, NULL), "'%s'", OCR_SAMPLES[i].word);
    }
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK);
    CHECKF(info.ocr_images == OCR_N_SAMPLES && info.ocr_read == OCR_N_SAMPLES + 1 &&
           info.ocr_skipped == 1, "info %llu %llu %llu", (unsigned long long)info.ocr_images,
           (unsigned long long)info.ocr_read, (unsigned long long)info.ocr_skipped);

    /* a move keeps the text (same content), a removal takes it away */
    char from[256], to[256], tail[64];
    sample_file(0, tail, sizeof tail);
    snprintf(from, sizeof from, "%s%s", g_words, tail);
    snprintf(to, sizeof to, "%s/moved0.png", g_words);
    CHECK(rename(from, to) == 0);
    ip.prune = 1;
    CHECK(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_OK && st.moved == 1);
    CHECK(finds(lib, "ocr:lighthouse", "/moved0.png", NULL));
    CHECK(rename(to, from) == 0);
    CHECK(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_OK && st.moved == 1);
    CHECK(finds(lib, "ocr:lighthouse", tail, NULL));

    cdx_search_params sp = cdx_search_default_params();
    cdx_hit hits[4];
    size_t n = 0;
    CHECK(cdx_library_search_keyword(lib, "ocr:velvet", &sp, hits, &n, NULL) == CDX_OK && n == 1);
    cdx_image_text tx;
    CHECK(cdx_library_get_text(lib, hits[0].id, &tx) == CDX_OK && strcasestr(tx.ocr, "velvet"));
    cdx_image_text_free(&tx);
    CHECK(cdx_library_remove(lib, hits[0].id) == CDX_OK);
    CHECK(cdx_library_search_keyword(lib, "ocr:velvet", &sp, hits, &n, NULL) == CDX_OK && n == 0);
    cdx_library_close(lib);
}

static void test_ocr_pass(const char *model)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/lib-b", g_dir);
    cdx_library *lib = open_lib(dir, model);
    if (!lib) return;
    const char *paths[] = {g_words};
    cdx_index_params ip = cdx_index_default_params();
    cdx_index_stats st;
    CHECK(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_OK && st.added == OCR_N_SAMPLES + 1);
    size_t n = 9;
    CHECK(!finds(lib, "ocr:harbour", "", &n) && n == 0);

    cdx_ocr_params op = cdx_ocr_default_params();
    cdx_ocr_stats os;
    op.lang = "xx9";
    CHECK(cdx_library_ocr(lib, &op, &os) == CDX_ERR_NOT_FOUND);
    op.lang = NULL;
    cdx_cancel_flag stop = 1;   /* cancelled before the first image */
    op.cancel = &stop;
    CHECK(cdx_library_ocr(lib, &op, &os) == CDX_OK);
    CHECK(os.todo == OCR_N_SAMPLES + 1 && os.read == 0 && os.skipped == 0);
    cdx_library_info info;
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.ocr_read == 0);
    atomic_store(&stop, 0);
    op.n_threads = 2;
    CHECKF(cdx_library_ocr(lib, &op, &os) == CDX_OK, "%s", cdx_last_error());
    CHECKF(os.todo == OCR_N_SAMPLES + 1 && os.read == OCR_N_SAMPLES && os.skipped == 1 &&
           os.with_text == OCR_N_SAMPLES && os.failed == 0, "todo %llu read %llu skipped %llu",
           (unsigned long long)os.todo, (unsigned long long)os.read, (unsigned long long)os.skipped);
    for (size_t i = 0; i < OCR_N_SAMPLES; i++) {
        char q[64], tail[64];
        snprintf(q, sizeof q, "ocr:%s", OCR_SAMPLES[i].word);
        sample_file(i, tail, sizeof tail);
        CHECKF(finds(lib, q, tail, NULL), "after clipdex ocr: '%s'", q);
    }
    CHECK(cdx_library_ocr(lib, &op, &os) == CDX_OK && os.todo == 0 && os.read == 0);
    /* a changed file is not read: its bytes are another content */
    char p0[256], tail[64];
    sample_file(2, tail, sizeof tail);
    snprintf(p0, sizeof p0, "%s%s", g_words, tail);
    size_t len = 0;
    unsigned char *orig = test_read_file(p0, &len);
    CHECK(orig && cdx_write_file_atomic(p0, "not the same bytes", 18) == CDX_OK);
    op.force = 1;
    CHECK(cdx_library_ocr(lib, &op, &os) == CDX_OK && os.todo == OCR_N_SAMPLES + 1 &&
          os.failed == 1 && os.read == OCR_N_SAMPLES - 1);
    if (orig) CHECK(cdx_write_file_atomic(p0, orig, len) == CDX_OK);
    free(orig);
    cdx_library_close(lib);
}

int main(void)
{
    const char *shared = test_shared_dir();
    const char *model = test_fixture_dir();
    CHECK(cdx_image_init() == CDX_OK);
    if (ocr_check_langs("eng") != CDX_OK) {
        printf("SKIP: no Tesseract English data (apt-get install tesseract-ocr-eng): %s\n",
               cdx_last_error());
        return 77;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx_test_ocr_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    snprintf(g_words, sizeof g_words, "%s/words", g_dir);
    CHECK(mkdir(g_words, 0755) == 0);
    test_langs();
    make_images(shared);
    test_index_ocr(model);
    test_ocr_pass(model);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!test_failures && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish();
}
