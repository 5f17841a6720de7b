/*
 * ocr_pass.c - see ocr_pass.h.  Workload: ~0.1-1 s of Tesseract per image
 * that passes the text-likeness test, a few ms for the rest; pages of
 * PAGE contents keep memory bounded and commits frequent.
 */
#include "ingest/ocr_pass.h"

#include "common/error.h"
#include "common/util.h"
#include "image/decode.h"
#include "image/ocr.h"
#include "ingest/source.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE 32
#define FILE_MAX ((uint64_t)256 << 20)   /* as index's default max_file_bytes */

typedef struct res {
    int state;        /* 0 not done, 1 read, 2 skipped, 3 failed */
    char *text;
} res;

typedef struct pass {
    const cdx_ocr_params *p;
    const char *lang;
    catalog_ocr_job jobs[PAGE];
    res out[PAGE];
    size_t n;
    atomic_size_t next, done;
} pass;

static int cancelled(const cdx_ocr_params *p)
{
    return p->cancel && atomic_load_explicit(p->cancel, memory_order_relaxed);
}

static void read_one(pass *ps, ocr_engine *eng, size_t i)
{
    const catalog_ocr_job *j = &ps->jobs[i];
    res *o = &ps->out[i];
    o->state = 3;
    if (!eng || strstr(j->path, "://")) return;   /* no engine; URLs are not fetched again */
    void *data = NULL;
    size_t len = 0;
    if (source_read_file(j->path, FILE_MAX, &data, &len) != CDX_OK) {
        cdx_error_clear();
        return;
    }
    uint8_t raw[32];
    char hex[65];
    source_sha256(data, len, raw, hex);
    cdx_pixels px;
    if (strcmp(hex, j->sha256) || cdx_image_decode(data, len, &ps->p->image, 224, &px) != CDX_OK) {
        cdx_error_clear();   /* changed since indexing, or not decodable */
        free(data);
        return;
    }
    free(data);
    ocr_grey g;
    if (ocr_grey_from_pixels(&px, &g) == CDX_OK) {
        if (!ocr_text_likely(&g)) o->state = 2;
        else if (ocr_engine_read(eng, &g, &o->text) == CDX_OK) o->state = 1;
        ocr_grey_free(&g);
    }
    cdx_error_clear();
    cdx_pixels_free(&px);
}

static void *reader(void *arg)
{
    pass *ps = arg;
    ocr_engine *eng = NULL;
    if (ocr_engine_new(ps->lang, &eng) != CDX_OK) cdx_error_clear();
    for (;;) {
        if (cancelled(ps->p)) break;
        size_t i = atomic_fetch_add(&ps->next, 1);
        if (i >= ps->n) break;
        read_one(ps, eng, i);
        atomic_fetch_add(&ps->done, 1);
    }
    ocr_engine_free(eng);
    return NULL;
}

static void report(const cdx_ocr_params *p, cdx_ocr_stats *st, double t0, double *last, int force)
{
    double now = cdx_now();
    if (!p->progress || (!force && now - *last < 0.5)) return;
    st->seconds = now - t0;
    *last = now;
    p->progress(p->user, st);
}

/* Commit the finished results of a page in one transaction. */
static cdx_result commit_page(catalog *cat, pass *ps, cdx_ocr_stats *st)
{
    cdx_result e = catalog_begin(cat);
    for (size_t i = 0; i < ps->n && !e; i++)
        if (ps->out[i].state == 1 || ps->out[i].state == 2)
            e = catalog_content_set_ocr_read(cat, ps->jobs[i].sha256, ps->out[i].text, ps->lang,
                                             ps->out[i].state == 2);
    if (!e) e = catalog_commit(cat);
    if (e) {
        catalog_rollback(cat);
        return e;
    }
    for (size_t i = 0; i < ps->n; i++) {
        res *o = &ps->out[i];
        if (o->state == 1) {
            st->read++;
            if (o->text && *o->text) st->with_text++;
        }
        if (o->state == 2) st->skipped++;
        if (o->state == 3) st->failed++;
    }
    return CDX_OK;
}

cdx_result ocr_pass_run(catalog *cat, const cdx_ocr_params *p, cdx_ocr_stats *st)
{
    memset(st, 0, sizeof *st);
    const char *lang = p->lang && *p->lang ? p->lang : "eng";
    cdx_result e = ocr_check_langs(lang);
    if (e) return e;
    double t0 = cdx_now(), last = 0;
    e = catalog_ocr_todo_count(cat, lang, p->force, &st->todo);
    if (e) return e;
    int nt = p->n_threads > 0 ? p->n_threads : cdx_cpu_count();
    if (nt > 64) nt = 64;
    pass *ps = calloc(1, sizeof *ps);
    pthread_t *tids = calloc((size_t)nt, sizeof *tids);
    if (!ps || !tids) {
        free(ps);
        free(tids);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    ps->p = p;
    ps->lang = lang;
    char after[65] = "";
    report(p, st, t0, &last, 1);
    while (!e && !cancelled(p)) {
        e = catalog_ocr_todo(cat, lang, p->force, after, PAGE, ps->jobs, &ps->n);
        if (e || ps->n == 0) break;
        snprintf(after, sizeof after, "%s", ps->jobs[ps->n - 1].sha256);
        memset(ps->out, 0, sizeof ps->out);
        atomic_store(&ps->next, 0);
        atomic_store(&ps->done, 0);
        int started = 0;
        for (int i = 0; i < nt && (size_t)i < ps->n; i++)
            if (pthread_create(&tids[i], NULL, reader, ps) == 0) started++;
        if (!started) e = cdx_error(CDX_ERR_INTERNAL, "cannot start OCR threads");
        while (started && atomic_load(&ps->done) < ps->n && !cancelled(p)) {
            usleep(50000);
            report(p, st, t0, &last, 0);
        }
        for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
        if (!e) e = commit_page(cat, ps, st);
        for (size_t i = 0; i < ps->n; i++) {
            free(ps->jobs[i].path);
            free(ps->out[i].text);
        }
        ps->n = 0;
        report(p, st, t0, &last, 0);
    }
    st->seconds = cdx_now() - t0;
    report(p, st, t0, &last, 1);
    free(ps);
    free(tids);
    return e;
}
