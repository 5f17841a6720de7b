/*
 * ann_file.c - reading and writing DIR/ann.cdxi (see ann_file.h).
 *
 * Every length read from the file is checked against the file size before
 * anything is allocated for it; loading makes two passes (list sizes first,
 * so every list is allocated once at its exact size, then the payloads).
 */
#include "search/ann_file.h"

#include "common/error.h"
#include "store/vecfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR_BYTES 128
#define HDR_CRC_AT 124
#define SEG_BYTES 32
#define SEG_CRC_AT 28
#define SEG_MAGIC 0x47455341u   /* "ASEG" */
#define VERSION 1
static const char MAGIC[8] = {'C', 'D', 'X', 'I', 'V', 'F', '1', 0};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static cdx_result write_all(int fd, const void *buf, size_t len, const char *path)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return cdx_error(CDX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return CDX_OK;
}

static cdx_result read_at(int fd, void *buf, size_t len, uint64_t off, const char *path)
{
    char *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return cdx_error(CDX_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (n == 0) return cdx_error(CDX_ERR_FORMAT, "%s: unexpected end of file", path);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return CDX_OK;
}

static size_t payload_bytes(size_t n, int dim)
{
    return n * (2 * sizeof(uint32_t) + ann_ivf_code_bytes(dim));
}

/* ---------------------------------------------------------------- writing */

struct ann_file_writer {
    char *path, *tmp;
    int fd;
    int dim;
};

/* The segment header + payload of seg in one buffer. */
static cdx_result segment_bytes(const ann_segment *seg, int dim, uint8_t **out, size_t *len)
{
    size_t pb = payload_bytes(seg->n, dim), cb = ann_ivf_code_bytes(dim);
    uint8_t *b = malloc(SEG_BYTES + pb);
    if (!b) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    uint8_t *pl = b + SEG_BYTES;
    memcpy(pl, seg->lists, seg->n * 4);
    memcpy(pl + seg->n * 4, seg->scales, seg->n * 4);
    memcpy(pl + seg->n * 8, seg->codes, seg->n * cb);
    memset(b, 0, SEG_BYTES);
    put32(b, SEG_MAGIC);
    put32(b + 4, (uint32_t)seg->n);
    put64(b + 8, seg->first);
    put32(b + 16, vecfile_crc32c(pl, pb));
    put32(b + SEG_CRC_AT, vecfile_crc32c(b, SEG_CRC_AT));
    *out = b;
    *len = SEG_BYTES + pb;
    return CDX_OK;
}

static cdx_result fsync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cdx_result r = CDX_OK;
    if (fd < 0 || fsync(fd) != 0) r = cdx_error(CDX_ERR_IO, "%s: fsync of the directory failed: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    free(copy);
    return r;
}

cdx_result ann_file_create(const char *path, const ann_file_header *h, const ann_ivf *ix,
                           ann_file_writer **out)
{
    ann_file_writer *w = calloc(1, sizeof *w);
    size_t pl = strlen(path);
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(pl + 8))) {
        if (w) free(w->path);
        free(w);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    snprintf(w->tmp, pl + 8, "%s.tmp", path);
    w->dim = h->dim;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        cdx_result r = cdx_error(CDX_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        ann_file_abort(w);
        return r;
    }
    size_t cbytes = (size_t)h->nlist * h->dim * sizeof(float);
    uint8_t hdr[HDR_BYTES] = {0};
    memcpy(hdr, MAGIC, 8);
    put32(hdr + 8, VERSION);
    put32(hdr + 12, (uint32_t)h->dim);
    put32(hdr + 16, (uint32_t)h->nlist);
    put32(hdr + 20, (uint32_t)ann_ivf_code_bytes(h->dim));
    put64(hdr + 24, h->trained_rows);
    memcpy(hdr + 32, h->vec_id, ANN_FILE_ID_BYTES);
    put32(hdr + 48, vecfile_crc32c(ann_ivf_centroids(ix), cbytes));
    put32(hdr + HDR_CRC_AT, vecfile_crc32c(hdr, HDR_CRC_AT));
    cdx_result r = write_all(w->fd, hdr, sizeof hdr, w->tmp);
    if (!r) r = write_all(w->fd, ann_ivf_centroids(ix), cbytes, w->tmp);
    if (r) {
        ann_file_abort(w);
        return r;
    }
    *out = w;
    return CDX_OK;
}

cdx_result ann_file_write_segment(ann_file_writer *w, const ann_segment *seg)
{
    uint8_t *b;
    size_t len;
    cdx_result r = segment_bytes(seg, w->dim, &b, &len);
    if (r) return r;
    r = write_all(w->fd, b, len, w->tmp);
    free(b);
    return r;
}

cdx_result ann_file_commit(ann_file_writer *w)
{
    cdx_result r = CDX_OK;
    if (fsync(w->fd) != 0) r = cdx_error(CDX_ERR_IO, "%s: fsync failed: %s", w->tmp, strerror(errno));
    if (close(w->fd) != 0 && !r) r = cdx_error(CDX_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
    w->fd = -1;
    if (!r && rename(w->tmp, w->path) != 0)
        r = cdx_error(CDX_ERR_IO, "%s: rename failed: %s", w->path, strerror(errno));
    if (!r) r = fsync_dir(w->path);
    if (r) unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
    return r;
}

void ann_file_abort(ann_file_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
}

cdx_result ann_file_append(const char *path, uint64_t valid_bytes, const ann_segment *seg,
                           int dim, uint64_t *new_bytes)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return cdx_error(CDX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *b = NULL;
    size_t len = 0;
    cdx_result r = segment_bytes(seg, dim, &b, &len);
    if (!r && ftruncate(fd, (off_t)valid_bytes) != 0)
        r = cdx_error(CDX_ERR_IO, "%s: truncate failed: %s", path, strerror(errno));
    if (!r && lseek(fd, (off_t)valid_bytes, SEEK_SET) < 0)
        r = cdx_error(CDX_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
    if (!r) r = write_all(fd, b, len, path);
    if (!r && fdatasync(fd) != 0) r = cdx_error(CDX_ERR_IO, "%s: fdatasync failed: %s", path, strerror(errno));
    close(fd);
    free(b);
    if (!r) *new_bytes = valid_bytes + len;
    return r;
}

/* ---------------------------------------------------------------- loading */

/* Header and centroids; *ix is a new empty index. */
static cdx_result load_head(int fd, const char *path, uint64_t size, int dim, ann_file_header *h,
                            ann_ivf **ix)
{
    uint8_t hdr[HDR_BYTES];
    if (size < HDR_BYTES) return cdx_error(CDX_ERR_FORMAT, "%s: too short for an index header", path);
    cdx_result r = read_at(fd, hdr, sizeof hdr, 0, path);
    if (r) return r;
    if (memcmp(hdr, MAGIC, 8)) return cdx_error(CDX_ERR_FORMAT, "%s: not a clipdex ANN index (bad magic)", path);
    if (get32(hdr + HDR_CRC_AT) != vecfile_crc32c(hdr, HDR_CRC_AT))
        return cdx_error(CDX_ERR_FORMAT, "%s: header checksum mismatch", path);
    if (get32(hdr + 8) != VERSION)
        return cdx_error(CDX_ERR_FORMAT, "%s: index version %u is not supported", path, get32(hdr + 8));
    uint32_t d = get32(hdr + 12), nl = get32(hdr + 16);
    if ((int)d != dim || get32(hdr + 20) != ann_ivf_code_bytes(dim))
        return cdx_error(CDX_ERR_FORMAT, "%s: index has dim %u, the library %d", path, d, dim);
    if (nl < 1 || nl > ANN_IVF_MAX_LISTS)
        return cdx_error(CDX_ERR_FORMAT, "%s: bad list count %u", path, nl);
    size_t cbytes = (size_t)nl * d * sizeof(float);
    if (size - HDR_BYTES < cbytes) return cdx_error(CDX_ERR_FORMAT, "%s: centroids are truncated", path);
    h->dim = (int)d;
    h->nlist = (int)nl;
    h->trained_rows = get64(hdr + 24);
    memcpy(h->vec_id, hdr + 32, ANN_FILE_ID_BYTES);
    float *c = malloc(cbytes);
    if (!c) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    r = read_at(fd, c, cbytes, HDR_BYTES, path);
    if (!r && vecfile_crc32c(c, cbytes) != get32(hdr + 48))
        r = cdx_error(CDX_ERR_FORMAT, "%s: centroid checksum mismatch", path);
    if (!r) r = ann_ivf_from_centroids((int)d, (int)nl, c, ix);
    free(c);
    return r;
}

/* Segment header at off: n and first, or nonzero when it is not usable. */
static int seg_head(int fd, uint64_t off, uint64_t size, int dim, uint64_t expect_first,
                    size_t *n, uint32_t *crc)
{
    uint8_t sh[SEG_BYTES];
    if (size - off < SEG_BYTES || read_at(fd, sh, sizeof sh, off, "") != CDX_OK) return -1;
    if (get32(sh) != SEG_MAGIC || get32(sh + SEG_CRC_AT) != vecfile_crc32c(sh, SEG_CRC_AT)) return -1;
    uint32_t cnt = get32(sh + 4);
    if (cnt == 0 || cnt > ANN_FILE_SEGMENT || get64(sh + 8) != expect_first) return -1;
    if (size - off - SEG_BYTES < payload_bytes(cnt, dim)) return -1;
    *n = cnt;
    *crc = get32(sh + 16);
    return 0;
}

cdx_result ann_file_load(const char *path, int dim, ann_file_header *h, ann_ivf **out,
                         ann_file_report *rep)
{
    memset(rep, 0, sizeof *rep);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return cdx_error(CDX_ERR_NOT_FOUND, "%s does not exist", path);
        return cdx_error(CDX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    ann_ivf *ix = NULL;
    uint64_t *extra = NULL;
    uint8_t *buf = NULL;
    cdx_result r = fstat(fd, &st) == 0 ? CDX_OK : cdx_error(CDX_ERR_IO, "%s: stat failed", path);
    uint64_t size = (uint64_t)st.st_size;
    if (!r) r = load_head(fd, path, size, dim, h, &ix);
    if (r) goto done;
    rep->file_bytes = size;
    uint64_t start = HDR_BYTES + (uint64_t)h->nlist * dim * sizeof(float);
    extra = calloc((size_t)h->nlist, sizeof *extra);
    buf = malloc(ANN_FILE_SEGMENT * sizeof(uint32_t));
    if (!extra || !buf) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* pass 1: list sizes from the headers and list arrays */
    uint64_t off = start, first = 0;
    size_t n;
    uint32_t crc;
    while (off < size && seg_head(fd, off, size, dim, first, &n, &crc) == 0) {
        if (read_at(fd, buf, n * 4, off + SEG_BYTES, path) != CDX_OK) break;
        const uint32_t *ls = (const uint32_t *)buf;
        for (size_t i = 0; i < n; i++)
            if (ls[i] < (uint32_t)h->nlist) extra[ls[i]]++;
        off += SEG_BYTES + payload_bytes(n, dim);
        first += n;
    }
    if ((r = ann_ivf_reserve(ix, extra))) goto done;
    /* pass 2: verified payloads */
    free(buf);
    buf = malloc(payload_bytes(ANN_FILE_SEGMENT, dim));
    if (!buf) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    off = start;
    first = 0;
    while (off < size && seg_head(fd, off, size, dim, first, &n, &crc) == 0) {
        size_t pb = payload_bytes(n, dim);
        if (read_at(fd, buf, pb, off + SEG_BYTES, path) != CDX_OK || vecfile_crc32c(buf, pb) != crc) break;
        ann_segment seg = {first, n, (uint32_t *)buf, (float *)(buf + n * 4), (int8_t *)(buf + n * 8)};
        if (ann_ivf_insert(ix, &seg) != CDX_OK) break;   /* bad list number or scale */
        off += SEG_BYTES + pb;
        first += n;
    }
    cdx_error_clear();
    rep->rows = ann_ivf_count(ix);
    rep->valid_bytes = off;
    rep->tail_dropped = off < size;
done:
    close(fd);
    free(extra);
    free(buf);
    if (r) {
        ann_ivf_free(ix);
        return r;
    }
    *out = ix;
    return CDX_OK;
}
