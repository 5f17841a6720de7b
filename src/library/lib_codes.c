/*
 * lib_codes.c - companion code files of a library (see lib_codes.h).
 *
 * Models (CFG below): int8 codes of the centred vectors (no projection, no
 * rotation: measured as accurate as the rotated variant); bit codes of the
 * centred vectors after the fixed random rotation (without it, sign codes
 * of CLIP-like anisotropic data lose most of their recall, see
 * docs/search.md); pca8: int8 codes of the top dim/4 principal components.
 * The mean (and the PCA axes) are fitted on evenly spaced sample rows when
 * a companion is (re)built and kept for its appends.
 */
#include "library/lib_codes.h"
#include "common/error.h"
#include "common/util.h"
#include "search/qscan.h"
#include "search/quant.h"
#include "store/codes.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define FIT_SAMPLES 100000
#define PCA_FIT_SAMPLES 50000
#define CHUNK_ROWS ((uint64_t)1 << 20)   /* rows encoded per write (default) */
#define N_KINDS (CDX_SCAN_LAST + 1)

/* What each compressed scan stores, and its default re-scoring depth
 * (docs/search.md has the measurements behind them). */
static const struct scan_cfg {
    const char *name, *file;
    quant_kind kind;
    int rotate, pca;
    size_t rescore;
} CFG[N_KINDS] = {
    [CDX_SCAN_F32] = {"f32", NULL, 0, 0, 0, 0},
    [CDX_SCAN_INT8] = {"int8", "codes-int8.cdxc", QUANT_I8, 0, 0, 4},
    [CDX_SCAN_BIT] = {"bit", "codes-bit.cdxc", QUANT_BIT, 1, 0, 40},
    [CDX_SCAN_PCA8] = {"pca8", "codes-pca8.cdxc", QUANT_I8, 0, 1, 10},
};

/* PCA companions keep a quarter of the dimensions (at least 16). */
static int pca_dim(int dim)
{
    int p = dim / 4;
    return p < 16 ? (dim < 16 ? dim : 16) : p;
}

typedef struct snap {
    codes_file *cf;
    quant_model *m;
    qcodes_view view;
    uint8_t fid[LIB_CODES_ID_BYTES];
    int refs;
} snap;

struct lib_codes {
    char *dir;
    char *path[N_KINDS];
    char *lock_path;
    pthread_mutex_t mu;
    snap *cur[N_KINDS];
    uint64_t chunk_rows;
};

const char *cdx_scan_name(int scan)
{
    return scan >= 0 && scan < N_KINDS ? CFG[scan].name : NULL;
}

int cdx_scan_parse(const char *name)
{
    if (!name) return -1;
    for (int s = 0; s < N_KINDS; s++)
        if (!strcmp(name, cdx_scan_name(s))) return s;
    return -1;
}

static void snap_release(snap *s)
{
    if (!s || --s->refs > 0) return;
    codes_close(s->cf);
    quant_model_free(s->m);
    free(s);
}

void lib_codes_free(lib_codes *lc)
{
    if (!lc) return;
    for (int k = 0; k < N_KINDS; k++) {
        snap_release(lc->cur[k]);
        free(lc->path[k]);
    }
    free(lc->lock_path);
    free(lc->dir);
    pthread_mutex_destroy(&lc->mu);
    free(lc);
}

cdx_result lib_codes_new(const char *dir, lib_codes **out)
{
    lib_codes *lc = calloc(1, sizeof *lc);
    if (!lc) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&lc->mu, NULL);
    lc->chunk_rows = CHUNK_ROWS;
    lc->dir = strdup(dir);
    int ok = lc->dir != NULL;
    for (int s = CDX_SCAN_INT8; s < N_KINDS; s++) ok &= (lc->path[s] = cdx_path_join(dir, CFG[s].file)) != NULL;
    lc->lock_path = cdx_path_join(dir, "codes.lock");
    if (!ok || !lc->lock_path) {
        lib_codes_free(lc);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    *out = lc;
    return CDX_OK;
}

static cdx_result check_scan(int scan)
{
    if (scan < CDX_SCAN_INT8 || scan > CDX_SCAN_LAST)
        return cdx_error(CDX_ERR_INVALID_ARG, "scan %d is not a compressed scan (int8, bit or pca8)", scan);
    return CDX_OK;
}

/* The companion as a snapshot, when it exists, parses and was made from
 * the file fid with the expected model; *s = NULL otherwise. */
static cdx_result load(const lib_codes *lc, int scan, int dim, const uint8_t *fid, snap **out)
{
    *out = NULL;
    codes_file *cf;
    cdx_result r = codes_open(lc->path[scan], &cf);
    if (r == CDX_ERR_NOT_FOUND || r == CDX_ERR_FORMAT || r == CDX_ERR_UNSUPPORTED) {
        cdx_error_clear();
        return CDX_OK;      /* rebuilt by the caller */
    }
    if (r) return r;
    const codes_meta *mt = codes_meta_get(cf);
    const struct scan_cfg *cfg = &CFG[scan];
    int pdim = cfg->pca ? pca_dim(dim) : dim;
    if (mt->kind != cfg->kind || (int)mt->dim != dim || memcmp(mt->source_id, fid, LIB_CODES_ID_BYTES) ||
        (int)mt->rotate != cfg->rotate || (int)mt->pdim != pdim || (int)mt->has_proj != (pdim < dim)) {
        codes_close(cf);
        return CDX_OK;      /* stale: another vector file or model */
    }
    snap *s = calloc(1, sizeof *s);
    if (!s) {
        codes_close(cf);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    const float *model = codes_model(cf);
    r = quant_model_new((int)mt->dim, (int)mt->pdim, (int)mt->rotate, model,
                        mt->has_proj ? model + mt->dim : NULL, &s->m);
    if (r) {
        codes_close(cf);
        free(s);
        cdx_error_clear();
        return CDX_OK;      /* non-finite model: rebuild */
    }
    s->cf = cf;
    s->refs = 1;
    memcpy(s->fid, fid, LIB_CODES_ID_BYTES);
    qcodes_view v = {cfg->kind, codes_data(cf), mt->rows, mt->code_bytes, codes_block_bytes(mt)};
    s->view = v;
    *out = s;
    return CDX_OK;
}

/* Encode rows [r0, r1) into fresh blocks starting at block r0/64. */
static cdx_result encode(const quant_model *m, int scan, const cdx_rows *src, uint64_t r0, uint64_t r1,
                         uint8_t **out)
{
    size_t cb = quant_code_bytes(CFG[scan].kind, m->cdim), bb = QSCAN_BLOCK * (cb + sizeof(quant_aux));
    uint64_t nb = (r1 + QSCAN_BLOCK - 1) / QSCAN_BLOCK - r0 / QSCAN_BLOCK;
    size_t bytes;
    if (!cdx_mul_ok((size_t)nb, bb, &bytes)) return cdx_error(CDX_ERR_TOO_LARGE, "codes too large");
    uint8_t *buf = calloc(bytes ? bytes : 1, 1);
    if (!buf) return cdx_error(CDX_ERR_NOMEM, "out of memory for %zu bytes of codes", bytes);
    cdx_result r = qcodes_encode_rows(m, CFG[scan].kind, src, r0, r1, buf);
    if (r) {
        free(buf);
        return r;
    }
    *out = buf;
    return CDX_OK;
}

/* Append rows [from, src->count) to the companion (made with m), in
 * chunks of chunk_rows so memory stays bounded on 10^7-row libraries; each
 * chunk is durable before the next (a crash leaves a valid shorter file). */
static cdx_result extend(const lib_codes *lc, int scan, const quant_model *m, const cdx_rows *src,
                         uint64_t from)
{
    cdx_result r = CDX_OK;
    while (!r && from < src->count) {
        uint64_t to = from + lc->chunk_rows < src->count ? from + lc->chunk_rows : src->count;
        uint8_t *buf = NULL;
        codes_file *cf = NULL;
        r = encode(m, scan, src, from, to, &buf);
        if (!r) r = codes_open(lc->path[scan], &cf);
        if (!r && codes_meta_get(cf)->rows != from)
            r = cdx_error(CDX_ERR_MISMATCH, "%s changed while being extended", lc->path[scan]);
        if (!r) r = codes_append(lc->path[scan], cf, to, buf);
        codes_close(cf);
        free(buf);
        from = to;
    }
    return r;
}

static cdx_result rebuild(const lib_codes *lc, int scan, const cdx_rows *src, const uint8_t *fid)
{
    quant_model *m = NULL;
    uint8_t *buf = NULL;
    const struct scan_cfg *cfg = &CFG[scan];
    cdx_result r = quant_model_fit(src, cfg->pca ? PCA_FIT_SAMPLES : FIT_SAMPLES,
                                   cfg->pca ? pca_dim(src->dim) : 0, cfg->rotate, &m);
    uint64_t first = src->count < lc->chunk_rows ? src->count : lc->chunk_rows;
    if (!r) r = encode(m, scan, src, 0, first, &buf);
    if (!r) {
        codes_meta mt;
        memset(&mt, 0, sizeof mt);
        mt.kind = (uint32_t)cfg->kind;
        mt.dim = (uint32_t)m->dim;
        mt.pdim = (uint32_t)m->pdim;
        mt.cdim = (uint32_t)m->cdim;
        mt.rotate = (uint32_t)m->rotate;
        mt.has_proj = m->proj != NULL;
        mt.code_bytes = (uint32_t)quant_code_bytes(cfg->kind, m->cdim);
        memcpy(mt.source_id, fid, LIB_CODES_ID_BYTES);
        mt.rows = first;
        /* the model as stored: mean, then the projection */
        size_t nm = (size_t)m->dim + (m->proj ? (size_t)m->pdim * (size_t)m->dim : 0);
        float *model = malloc(nm * sizeof *model);
        if (!model) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        if (model) {
            memcpy(model, m->mean, (size_t)m->dim * sizeof *model);
            if (m->proj) memcpy(model + m->dim, m->proj, (nm - (size_t)m->dim) * sizeof *model);
            r = codes_create(lc->path[scan], &mt, model, buf);
            free(model);
        }
    }
    free(buf);
    if (!r) r = extend(lc, scan, m, src, first);
    quant_model_free(m);
    return r;
}

/* Under lc->mu: make lc->cur[scan] cover at least the rows of src.  A
 * companion of the same file id with more rows is ahead, not stale (another
 * handle saw newer vectors; rows are append-only until compaction, which
 * changes the file id): searches use its first src->count rows. */
static cdx_result update_locked(lib_codes *lc, int scan, const cdx_rows *src, const uint8_t *fid,
                                int verify)
{
    snap *c = lc->cur[scan];
    if (!verify && c && !memcmp(c->fid, fid, LIB_CODES_ID_BYTES) && c->view.count >= src->count) return CDX_OK;
    if (src->count == 0) return cdx_error(CDX_ERR_INVALID_ARG, "no vectors to code");
    int lfd = open(lc->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) return cdx_error(CDX_ERR_IO, "%s: %s (companion codes need a writable library directory "
                                  "to be built)", lc->lock_path, strerror(errno));
    if (flock(lfd, LOCK_EX) != 0) {
        close(lfd);
        return cdx_error(CDX_ERR_IO, "%s: flock: %s", lc->lock_path, strerror(errno));
    }
    snap *s = NULL;
    cdx_result r = load(lc, scan, src->dim, fid, &s);
    if (!r && s && verify && codes_verify(s->cf) != CDX_OK) {   /* damaged data: rebuild */
        cdx_error_clear();
        snap_release(s);
        s = NULL;
    }
    if (!r && s && s->view.count < src->count) {   /* extend */
        r = extend(lc, scan, s->m, src, s->view.count);
        snap_release(s);
        s = NULL;
        if (!r) r = load(lc, scan, src->dim, fid, &s);
        if (r || !s || s->view.count < src->count) {   /* append failed: rebuild */
            cdx_error_clear();
            snap_release(s);
            s = NULL;
            r = CDX_OK;
        }
    }
    if (!r && !s) {
        r = rebuild(lc, scan, src, fid);
        if (!r) r = load(lc, scan, src->dim, fid, &s);
        if (!r && (!s || s->view.count < src->count))
            r = cdx_error(CDX_ERR_INTERNAL, "%s: rebuilt companion does not load", lc->path[scan]);
    }
    close(lfd);   /* releases the flock */
    if (r) {
        snap_release(s);
        return r;
    }
    snap_release(lc->cur[scan]);
    lc->cur[scan] = s;
    return CDX_OK;
}

cdx_result lib_codes_update(lib_codes *lc, int scan, const cdx_rows *src, const uint8_t fid[LIB_CODES_ID_BYTES],
                            int verify)
{
    cdx_result r = check_scan(scan);
    if (r) return r;
    pthread_mutex_lock(&lc->mu);
    r = update_locked(lc, scan, src, fid, verify);
    pthread_mutex_unlock(&lc->mu);
    return r;
}

cdx_result lib_codes_search(lib_codes *lc, int scan, size_t rescore, const cdx_rows *src,
                            const uint8_t fid[LIB_CODES_ID_BYTES], const float *query,
                            const topk_params *tp, topk_hit *hits, size_t *n_hits)
{
    cdx_result r = check_scan(scan);
    if (r) return r;
    pthread_mutex_lock(&lc->mu);
    r = update_locked(lc, scan, src, fid, 0);
    snap *s = r ? NULL : lc->cur[scan];
    if (s) s->refs++;
    pthread_mutex_unlock(&lc->mu);
    if (r) return r;
    qscan_params qp = qscan_default_params();
    qp.topk = *tp;
    qp.rescore = rescore ? rescore : CFG[scan].rescore;
    qcodes_view v = s->view;
    v.count = src->count;   /* the snapshot may be ahead of this view */
    r = qscan_search(&v, s->m, src, query, 1, &qp, hits, n_hits);
    pthread_mutex_lock(&lc->mu);
    snap_release(s);
    pthread_mutex_unlock(&lc->mu);
    return r;
}

void lib_codes_set_chunk_rows(lib_codes *lc, uint64_t rows)
{
    lc->chunk_rows = rows ? rows : CHUNK_ROWS;
}

int lib_codes_exists(lib_codes *lc, int scan)
{
    return check_scan(scan) == CDX_OK && access(lc->path[scan], F_OK) == 0;
}

cdx_result lib_codes_info(lib_codes *lc, int scan, uint64_t rows, const uint8_t fid[LIB_CODES_ID_BYTES],
                          int verify, cdx_codes_info *info)
{
    cdx_result r = check_scan(scan);
    if (r) return r;
    memset(info, 0, sizeof *info);
    info->scan = scan;
    snprintf(info->path, sizeof info->path, "%s", lc->path[scan]);
    codes_file *cf;
    r = codes_open(lc->path[scan], &cf);
    if (r == CDX_ERR_NOT_FOUND) {
        cdx_error_clear();
        return CDX_OK;
    }
    if (r == CDX_ERR_FORMAT || r == CDX_ERR_UNSUPPORTED) {
        info->damaged = 1;
        return CDX_OK;     /* the message stays in cdx_last_error() */
    }
    if (r) return r;
    const codes_meta *mt = codes_meta_get(cf);
    info->present = 1;
    info->rows = mt->rows;
    info->file_bytes = codes_file_bytes(cf);
    info->bytes_per_image = mt->code_bytes + CODES_AUX_BYTES;
    info->coded_dim = (int)mt->cdim;
    info->fresh = !memcmp(mt->source_id, fid, LIB_CODES_ID_BYTES) && mt->rows >= rows;
    if (verify && codes_verify(cf) != CDX_OK) info->damaged = 1;
    codes_close(cf);
    return CDX_OK;
}
