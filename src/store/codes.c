/*
 * codes.c - companion files of compressed codes (see codes.h).
 *
 * Parsing is hostile-input safe: every header field is range-checked and
 * every size is computed with overflow checks before the file size is
 * compared and anything is mapped.  The data CRC is only checked by
 * codes_verify(): opening stays O(1) for multi-GB companions (the scan
 * touches every row anyway; damage it cannot see - a flipped code - costs
 * recall, not correctness, because candidates are re-scored in float32).
 */
#include "store/codes.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define HDR_BYTES 4096
#define VERSION 1
#define MAX_ROWS ((uint64_t)1 << 36)
static const char MAGIC[8] = {'C', 'D', 'X', 'C', 'O', 'D', 'E', 'S'};

/* Header field offsets. */
enum {
    H_VERSION = 8, H_KIND = 12, H_DIM = 16, H_PDIM = 20, H_CDIM = 24, H_ROTATE = 28,
    H_HAS_PROJ = 32, H_CODE_BYTES = 36, H_BLOCK_BYTES = 40, H_ID = 48, H_ROWS = 64,
    H_MODEL_BYTES = 72, H_DATA_OFFSET = 80, H_MODEL_CRC = 88, H_DATA_CRC = 92,
    H_CRC = HDR_BYTES - 4
};

struct codes_file {
    char *path;
    void *map;
    uint64_t map_bytes;
    codes_meta meta;
    uint64_t data_offset;
    uint32_t data_crc;
    dev_t dev;
    ino_t ino;
};

static uint32_t rd32(const uint8_t *h, int off) { uint32_t v; memcpy(&v, h + off, 4); return v; }
static uint64_t rd64(const uint8_t *h, int off) { uint64_t v; memcpy(&v, h + off, 8); return v; }
static void wr32(uint8_t *h, int off, uint32_t v) { memcpy(h + off, &v, 4); }
static void wr64(uint8_t *h, int off, uint64_t v) { memcpy(h + off, &v, 8); }

static uint32_t crc(uint32_t c, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {   /* zlib takes uInt lengths */
        uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = (uint32_t)crc32(c, b, step);
        b += step;
        n -= step;
    }
    return c;
}

size_t codes_block_bytes(const codes_meta *m)
{
    return CODES_BLOCK_ROWS * ((size_t)m->code_bytes + CODES_AUX_BYTES);
}

static uint64_t model_bytes(const codes_meta *m)
{
    return 4 * ((uint64_t)m->dim + (m->has_proj ? (uint64_t)m->pdim * m->dim : 0));
}

static uint64_t data_offset(const codes_meta *m)
{
    return HDR_BYTES + (model_bytes(m) + HDR_BYTES - 1) / HDR_BYTES * HDR_BYTES;
}

static uint64_t blocks_for(uint64_t rows) { return (rows + CODES_BLOCK_ROWS - 1) / CODES_BLOCK_ROWS; }

/* The geometry rules of the format; NULL when m is consistent. */
static const char *meta_problem(const codes_meta *m)
{
    if (m->kind != 1 && m->kind != 2) return "unknown code kind";
    if (m->dim < 1 || m->dim > CODES_MAX_DIM) return "dimension out of range";
    if (m->pdim < 1 || m->pdim > m->dim) return "projected dimension out of range";
    if (m->has_proj > 1 || m->rotate > 1) return "bad flags";
    if (!m->has_proj && m->pdim != m->dim) return "projected dimension without a projection";
    uint32_t cd = m->pdim;
    if (m->rotate)
        while (cd & (cd - 1)) cd += cd & -cd;
    if (m->cdim != cd) return "coded dimension inconsistent";
    uint32_t cb = m->kind == 1 ? (m->cdim + 63) / 64 * 64 : (m->cdim + 511) / 512 * 64;
    if (m->code_bytes != cb) return "code size inconsistent";
    if (m->rows > MAX_ROWS) return "row count out of range";
    return NULL;
}

static void header_build(uint8_t *h, const codes_meta *m, uint32_t model_crc, uint32_t data_crc)
{
    memset(h, 0, HDR_BYTES);
    memcpy(h, MAGIC, 8);
    wr32(h, H_VERSION, VERSION);
    wr32(h, H_KIND, m->kind);
    wr32(h, H_DIM, m->dim);
    wr32(h, H_PDIM, m->pdim);
    wr32(h, H_CDIM, m->cdim);
    wr32(h, H_ROTATE, m->rotate);
    wr32(h, H_HAS_PROJ, m->has_proj);
    wr32(h, H_CODE_BYTES, m->code_bytes);
    wr32(h, H_BLOCK_BYTES, (uint32_t)codes_block_bytes(m));
    memcpy(h + H_ID, m->source_id, CODES_ID_BYTES);
    wr64(h, H_ROWS, m->rows);
    wr64(h, H_MODEL_BYTES, model_bytes(m));
    wr64(h, H_DATA_OFFSET, data_offset(m));
    wr32(h, H_MODEL_CRC, model_crc);
    wr32(h, H_DATA_CRC, data_crc);
    wr32(h, H_CRC, crc(0, h, H_CRC));
}

/* Parse and check a header; *m filled on success. */
static cdx_result header_parse(const char *path, const uint8_t *h, codes_meta *m, uint32_t *data_crc)
{
    if (memcmp(h, MAGIC, 8)) return cdx_error(CDX_ERR_FORMAT, "%s: not a clipdex codes file", path);
    if (rd32(h, H_CRC) != crc(0, h, H_CRC))
        return cdx_error(CDX_ERR_FORMAT, "%s: header checksum mismatch", path);
    if (rd32(h, H_VERSION) != VERSION)
        return cdx_error(rd32(h, H_VERSION) > VERSION ? CDX_ERR_UNSUPPORTED : CDX_ERR_FORMAT,
                         "%s: codes format version %u (this build reads %d)", path, rd32(h, H_VERSION), VERSION);
    memset(m, 0, sizeof *m);
    m->kind = rd32(h, H_KIND);
    m->dim = rd32(h, H_DIM);
    m->pdim = rd32(h, H_PDIM);
    m->cdim = rd32(h, H_CDIM);
    m->rotate = rd32(h, H_ROTATE);
    m->has_proj = rd32(h, H_HAS_PROJ);
    m->code_bytes = rd32(h, H_CODE_BYTES);
    memcpy(m->source_id, h + H_ID, CODES_ID_BYTES);
    m->rows = rd64(h, H_ROWS);
    const char *why = meta_problem(m);
    if (!why && rd32(h, H_BLOCK_BYTES) != codes_block_bytes(m)) why = "block size inconsistent";
    if (!why && rd64(h, H_MODEL_BYTES) != model_bytes(m)) why = "model size inconsistent";
    if (!why && rd64(h, H_DATA_OFFSET) != data_offset(m)) why = "data offset inconsistent";
    if (why) return cdx_error(CDX_ERR_FORMAT, "%s: %s", path, why);
    *data_crc = rd32(h, H_DATA_CRC);
    return CDX_OK;
}

void codes_close(codes_file *cf)
{
    if (!cf) return;
    if (cf->map) munmap(cf->map, cf->map_bytes);
    free(cf->path);
    free(cf);
}

cdx_result codes_open(const char *path, codes_file **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cdx_error(errno == ENOENT ? CDX_ERR_NOT_FOUND : CDX_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    uint8_t h[HDR_BYTES];
    cdx_result r = CDX_OK;
    codes_file *cf = calloc(1, sizeof *cf);
    if (!cf) {
        close(fd);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        r = cdx_error(CDX_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    if ((uint64_t)st.st_size < HDR_BYTES || pread(fd, h, HDR_BYTES, 0) != HDR_BYTES) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: truncated header", path);
        goto fail;
    }
    if ((r = header_parse(path, h, &cf->meta, &cf->data_crc))) goto fail;
    cf->data_offset = data_offset(&cf->meta);
    uint64_t need = cf->data_offset + blocks_for(cf->meta.rows) * codes_block_bytes(&cf->meta);
    if ((uint64_t)st.st_size < need) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: %llu bytes, the header needs %llu", path,
                      (unsigned long long)st.st_size, (unsigned long long)need);
        goto fail;
    }
    cf->map_bytes = need;
    cf->map = mmap(NULL, (size_t)need, PROT_READ, MAP_SHARED, fd, 0);
    if (cf->map == MAP_FAILED) {
        cf->map = NULL;
        r = cdx_error(CDX_ERR_IO, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    if (crc(0, (const uint8_t *)cf->map + HDR_BYTES, model_bytes(&cf->meta)) != rd32(h, H_MODEL_CRC)) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: model checksum mismatch", path);
        goto fail;
    }
    cf->dev = st.st_dev;
    cf->ino = st.st_ino;
    if (!(cf->path = strdup(path))) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    close(fd);
    *out = cf;
    return CDX_OK;
fail:
    close(fd);
    codes_close(cf);
    return r;
}

const codes_meta *codes_meta_get(const codes_file *cf) { return &cf->meta; }
const float *codes_model(const codes_file *cf) { return (const float *)((const uint8_t *)cf->map + HDR_BYTES); }
const uint8_t *codes_data(const codes_file *cf) { return (const uint8_t *)cf->map + cf->data_offset; }
uint64_t codes_file_bytes(const codes_file *cf) { return cf->map_bytes; }

/* CRC of rows [r0, r1) continuing c; data points at block b0. */
static uint32_t rows_crc(uint32_t c, const codes_meta *m, const uint8_t *data, uint64_t b0,
                         uint64_t r0, uint64_t r1)
{
    size_t bb = codes_block_bytes(m), cb = m->code_bytes;
    for (uint64_t r = r0; r < r1; r++) {
        const uint8_t *blk = data + (r / CODES_BLOCK_ROWS - b0) * bb;
        c = crc(c, blk + (r % CODES_BLOCK_ROWS) * cb, cb);
        c = crc(c, blk + CODES_BLOCK_ROWS * cb + (r % CODES_BLOCK_ROWS) * CODES_AUX_BYTES, CODES_AUX_BYTES);
    }
    return c;
}

cdx_result codes_verify(const codes_file *cf)
{
    if (rows_crc(0, &cf->meta, codes_data(cf), 0, 0, cf->meta.rows) != cf->data_crc)
        return cdx_error(CDX_ERR_FORMAT, "%s: data checksum mismatch (the codes are damaged)", cf->path);
    return CDX_OK;
}

static cdx_result pwrite_all(int fd, const char *path, const void *buf, size_t n, uint64_t off)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return cdx_error(CDX_ERR_IO, "%s: write: %s", path, w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return CDX_OK;
}

static cdx_result fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) return cdx_error(CDX_ERR_INVALID_ARG, "%s: path too long", path);
    memcpy(dir, slash ? path : ".", n);
    dir[n] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return cdx_error(CDX_ERR_IO, "%s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    return rc == 0 ? CDX_OK : cdx_error(CDX_ERR_IO, "%s: fsync: %s", dir, strerror(e));
}

cdx_result codes_create(const char *path, const codes_meta *meta, const float *model,
                        const uint8_t *data)
{
    const char *why = meta_problem(meta);
    if (why) return cdx_error(CDX_ERR_INVALID_ARG, "codes_create: %s", why);
    size_t bb = codes_block_bytes(meta), cb = meta->code_bytes;
    uint64_t nb = blocks_for(meta->rows), mb = model_bytes(meta), doff = data_offset(meta);
    size_t pl = strlen(path) + 32;
    char *tmp = malloc(pl);
    uint8_t *h = calloc(1, HDR_BYTES), *last = malloc(bb), *pad = calloc(1, HDR_BYTES);
    cdx_result r = CDX_OK;
    int fd = -1;
    if (!tmp || !h || !last || !pad) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto out;
    }
    snprintf(tmp, pl, "%s.tmp.%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = cdx_error(CDX_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    uint32_t mcrc = crc(0, model, mb), dcrc = rows_crc(0, meta, data, 0, 0, meta->rows);
    header_build(h, meta, mcrc, dcrc);
    r = pwrite_all(fd, tmp, h, HDR_BYTES, 0);
    if (!r) r = pwrite_all(fd, tmp, model, mb, HDR_BYTES);
    if (!r && doff > HDR_BYTES + mb) r = pwrite_all(fd, tmp, pad, doff - HDR_BYTES - mb, HDR_BYTES + mb);
    if (!r && nb > 1) r = pwrite_all(fd, tmp, data, (nb - 1) * bb, doff);
    if (!r && nb > 0) {   /* the last block with its unused rows zeroed */
        size_t used = (size_t)(meta->rows - (nb - 1) * CODES_BLOCK_ROWS);
        memset(last, 0, bb);
        memcpy(last, data + (nb - 1) * bb, used * cb);
        memcpy(last + CODES_BLOCK_ROWS * cb, data + (nb - 1) * bb + CODES_BLOCK_ROWS * cb,
               used * CODES_AUX_BYTES);
        r = pwrite_all(fd, tmp, last, bb, doff + (nb - 1) * bb);
    }
    if (!r && fsync(fd) != 0) r = cdx_error(CDX_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !r) r = cdx_error(CDX_ERR_IO, "%s: close: %s", tmp, strerror(errno));
    fd = -1;
    if (!r && rename(tmp, path) != 0) r = cdx_error(CDX_ERR_IO, "%s: rename: %s", path, strerror(errno));
    if (!r) r = fsync_dir_of(path);
    if (r) unlink(tmp);
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(h);
    free(last);
    free(pad);
    return r;
}

cdx_result codes_append(const char *path, const codes_file *cf, uint64_t new_rows,
                        const uint8_t *blocks)
{
    const codes_meta *m = &cf->meta;
    if (new_rows < m->rows || new_rows > MAX_ROWS)
        return cdx_error(CDX_ERR_INVALID_ARG, "codes_append: bad row count");
    if (new_rows == m->rows) return CDX_OK;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    uint8_t h[HDR_BYTES];
    codes_meta now;
    uint32_t dcrc;
    cdx_result r = CDX_OK;
    if (fstat(fd, &st) != 0 || st.st_dev != cf->dev || st.st_ino != cf->ino ||
        pread(fd, h, HDR_BYTES, 0) != HDR_BYTES || header_parse(path, h, &now, &dcrc) != CDX_OK ||
        now.rows != m->rows || dcrc != cf->data_crc) {
        close(fd);
        return cdx_error(CDX_ERR_MISMATCH, "%s changed since it was opened", path);
    }
    size_t bb = codes_block_bytes(m), cb = m->code_bytes;
    uint64_t b0 = m->rows / CODES_BLOCK_ROWS, doff = cf->data_offset;
    uint64_t need = doff + blocks_for(new_rows) * bb;
    if ((uint64_t)st.st_size < need && ftruncate(fd, (off_t)need) != 0)
        r = cdx_error(CDX_ERR_IO, "%s: extend: %s", path, strerror(errno));
    for (uint64_t lo = m->rows; !r && lo < new_rows;) {
        uint64_t b = lo / CODES_BLOCK_ROWS, hi = (b + 1) * CODES_BLOCK_ROWS;
        if (hi > new_rows) hi = new_rows;
        const uint8_t *src = blocks + (b - b0) * bb;
        size_t i = (size_t)(lo % CODES_BLOCK_ROWS), n = (size_t)(hi - lo);
        r = pwrite_all(fd, path, src + i * cb, n * cb, doff + b * bb + i * cb);
        if (!r)
            r = pwrite_all(fd, path, src + CODES_BLOCK_ROWS * cb + i * CODES_AUX_BYTES, n * CODES_AUX_BYTES,
                           doff + b * bb + CODES_BLOCK_ROWS * cb + i * CODES_AUX_BYTES);
        lo = hi;
    }
    if (!r && fdatasync(fd) != 0) r = cdx_error(CDX_ERR_IO, "%s: fdatasync: %s", path, strerror(errno));
    if (!r) {
        uint32_t c = rows_crc(cf->data_crc, m, blocks, b0, m->rows, new_rows);
        codes_meta nm = *m;
        nm.rows = new_rows;
        header_build(h, &nm, rd32(h, H_MODEL_CRC), c);
        r = pwrite_all(fd, path, h, HDR_BYTES, 0);
    }
    if (!r && fdatasync(fd) != 0) r = cdx_error(CDX_ERR_IO, "%s: fdatasync: %s", path, strerror(errno));
    close(fd);
    return r;
}
