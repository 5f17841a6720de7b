/*
 * npy.c - .npy reader and writer (see npy.h for what is accepted).
 *
 * The header dict is parsed with a small cursor over a bounded buffer: no
 * value is trusted until it has been range-checked, the dict must hold each
 * of the three keys exactly once and nothing else, and the data size
 * N*D*itemsize is computed with overflow checks and compared with the file
 * size before anything is mapped or read.
 */
#include "store/npy.h"

#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPY_MAX_DIM 16384
#define NPY_MAX_ROWS ((uint64_t)1 << 40)

/* ---------------------------------------------------------------- header */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string (single or double quotes, no escapes) into out. */
static int read_str(cursor *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap) return 0;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    out[n] = '\0';
    return 1;
}

static int read_uint(cursor *c, uint64_t *v)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
    uint64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return 0;
        x = x * 10 + (uint64_t)(*c->p++ - '0');
    }
    if (c->p < c->end && *c->p == 'L') c->p++;   /* Python 2 long suffix */
    *v = x;
    return 1;
}

static int read_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n)) return 0;
    c->p += n;
    return 1;
}

/* (a,) or (a, b) with an optional trailing comma. */
static int read_shape(cursor *c, uint64_t *dims, int *nd)
{
    if (!eat(c, '(')) return 0;
    *nd = 0;
    while (!eat(c, ')')) {
        if (*nd == 2 || !read_uint(c, &dims[*nd])) return 0;
        (*nd)++;
        if (!eat(c, ',')) {
            if (!eat(c, ')')) return 0;
            break;
        }
    }
    return 1;
}

cdx_result npy_parse_header(const char *name, const uint8_t *buf, size_t len,
                            uint64_t file_size, npy_file *out, size_t *data_offset)
{
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6))
        return cdx_error(CDX_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    int major = buf[6], minor = buf[7];
    size_t hlen, pre;
    if (major == 1 && minor == 0) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        pre = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (len < 12) return cdx_error(CDX_ERR_FORMAT, "%s: truncated .npy header", name);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        pre = 12;
    } else {
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: .npy version %d.%d is not supported (1.0, 2.0, 3.0 are)",
                         name, major, minor);
    }
    if (hlen > NPY_MAX_HEADER)
        return cdx_error(CDX_ERR_FORMAT, "%s: .npy header of %zu bytes is implausibly large", name, hlen);
    if (pre + hlen > len || pre + hlen > file_size)
        return cdx_error(CDX_ERR_FORMAT, "%s: truncated .npy header (%zu bytes announced)", name, hlen);
    cursor c = {(const char *)buf + pre, (const char *)buf + pre + hlen};
    for (const char *q = c.p; q < c.end; q++)
        if ((unsigned char)*q < 0x20 && *q != '\n' && *q != '\t' && *q != '\r')
            return cdx_error(CDX_ERR_FORMAT, "%s: .npy header has a control byte", name);
    char descr[16] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0, nd = 0;
    uint64_t dims[2] = {0, 0};
    if (!eat(&c, '{')) goto bad;
    while (!eat(&c, '}')) {
        char key[32];
        if (!read_str(&c, key, sizeof key) || !eat(&c, ':')) goto bad;
        if (!strcmp(key, "descr") && !have_descr) {
            if (!read_str(&c, descr, sizeof descr)) goto bad;
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order") && !have_order) {
            if (read_word(&c, "False")) fortran = 0;
            else if (read_word(&c, "True")) fortran = 1;
            else goto bad;
            have_order = 1;
        } else if (!strcmp(key, "shape") && !have_shape) {
            if (!read_shape(&c, dims, &nd)) goto bad;
            have_shape = 1;
        } else {
            return cdx_error(CDX_ERR_FORMAT, "%s: .npy header has an unexpected or repeated key '%s'",
                             name, key);
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) goto bad;
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end) goto bad;
    if (!have_descr || !have_order || !have_shape)
        return cdx_error(CDX_ERR_FORMAT, "%s: .npy header lacks %s", name,
                         !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
    if (!strcmp(descr, "<f4")) out->itemsize = 4;
    else if (!strcmp(descr, "<f2")) out->itemsize = 2;
    else
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: dtype '%s' is not supported (float32 '<f4' or "
                         "float16 '<f2' are)", name, descr);
    if (fortran)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: Fortran-order arrays are not supported "
                         "(save with numpy.ascontiguousarray)", name);
    if (nd == 1) {
        out->one_d = 1;
        dims[1] = dims[0];
        dims[0] = 1;
    } else if (nd != 2) {
        return cdx_error(CDX_ERR_FORMAT, "%s: shape has %d dimensions; expected (N, D) or (D,)", name, nd);
    }
    if (dims[1] < 1 || dims[1] > NPY_MAX_DIM)
        return cdx_error(CDX_ERR_FORMAT, "%s: vector dimension %llu is out of range (1..%d)", name,
                         (unsigned long long)dims[1], NPY_MAX_DIM);
    if (dims[0] > NPY_MAX_ROWS)
        return cdx_error(CDX_ERR_TOO_LARGE, "%s: %llu rows is too many", name, (unsigned long long)dims[0]);
    uint64_t bytes = dims[0] * dims[1] * (uint64_t)out->itemsize;   /* < 2^40 * 2^14 * 4 */
    uint64_t off = pre + hlen;
    if (off + bytes != file_size)
        return cdx_error(CDX_ERR_FORMAT, "%s: shape (%llu, %llu) of %s needs %llu data bytes but the "
                         "file has %llu after its header", name, (unsigned long long)dims[0],
                         (unsigned long long)dims[1], descr, (unsigned long long)bytes,
                         (unsigned long long)(file_size - off));
    out->rows = dims[0];
    out->dim = (int)dims[1];
    *data_offset = (size_t)off;
    return CDX_OK;
bad:
    return cdx_error(CDX_ERR_FORMAT, "%s: malformed .npy header dict near offset %zu", name,
                     (size_t)(c.p - (const char *)buf));
}

cdx_result npy_open(const char *path, npy_file *out)
{
    memset(out, 0, sizeof *out);
    int fd;
    uint64_t size;
    cdx_result r = cdx_open_regular(path, &fd, &size);
    if (r) return r;
    if (size > SIZE_MAX / 2) {
        close(fd);
        return cdx_error(CDX_ERR_TOO_LARGE, "%s: file too large", path);
    }
    void *m = size ? mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    int e = errno;
    close(fd);
    if (size == 0) return cdx_error(CDX_ERR_FORMAT, "%s: empty file, not a .npy file", path);
    if (m == MAP_FAILED) return cdx_error(CDX_ERR_IO, "%s: mmap: %s", path, strerror(e));
    size_t off = 0;
    size_t hl = size < 12 + NPY_MAX_HEADER ? (size_t)size : 12 + NPY_MAX_HEADER;
    r = npy_parse_header(path, m, hl, size, out, &off);
    if (r) {
        munmap(m, (size_t)size);
        return r;
    }
    out->map = m;
    out->map_len = (size_t)size;
    out->data = out->map + off;
    madvise(m, (size_t)size, MADV_SEQUENTIAL);
    return CDX_OK;
}

void npy_close(npy_file *f)
{
    if (f && f->map) munmap((void *)f->map, f->map_len);
    if (f) memset(f, 0, sizeof *f);
}

float npy_half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 1024), exp - 25);
    return sign ? -v : v;
}

void npy_row(const npy_file *f, uint64_t r, float *out)
{
    const uint8_t *p = f->data + r * (uint64_t)f->dim * (uint64_t)f->itemsize;
    if (f->itemsize == 4) {
        memcpy(out, p, (size_t)f->dim * 4);   /* little-endian host (x86-64) */
        return;
    }
    for (int i = 0; i < f->dim; i++)
        out[i] = npy_half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
}

/* ---------------------------------------------------------------- writer */

#define SHAPE_WIDTH 20   /* digits reserved for N in the header */
#define HEADER_LEN 128   /* total header bytes (multiple of 64) */

struct npy_writer {
    FILE *f;
    char *path, *tmp;
    int dim;
    uint64_t rows;
};

static cdx_result write_header(npy_writer *w)
{
    char h[HEADER_LEN + 1];
    int n = snprintf(h + 10, sizeof h - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (%*llu, %d), }",
                     SHAPE_WIDTH, (unsigned long long)w->rows, w->dim);
    if (n < 0 || n + 10 >= HEADER_LEN) return cdx_error(CDX_ERR_INTERNAL, "npy header too long");
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (char)(HEADER_LEN - 10);
    h[9] = 0;
    memset(h + 10 + n, ' ', (size_t)(HEADER_LEN - 10 - n));
    h[HEADER_LEN - 1] = '\n';
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, HEADER_LEN, w->f) != HEADER_LEN)
        return cdx_error(CDX_ERR_IO, "%s: write: %s", w->tmp, strerror(errno));
    return CDX_OK;
}

cdx_result npy_writer_open(const char *path, int dim, npy_writer **out)
{
    *out = NULL;
    npy_writer *w = calloc(1, sizeof *w);
    size_t pl = strlen(path) + 16;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(pl))) {
        if (w) free(w->path);
        free(w);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    snprintf(w->tmp, pl, "%s.tmp.%d", path, (int)getpid());
    w->dim = dim;
    w->f = fopen(w->tmp, "wbe");
    cdx_result r = w->f ? write_header(w) : cdx_error(CDX_ERR_IO, "%s: %s", w->tmp, strerror(errno));
    if (r) {
        npy_writer_abort(w);
        return r;
    }
    *out = w;
    return CDX_OK;
}

cdx_result npy_writer_rows(npy_writer *w, const float *rows, size_t n)
{
    if (n && fwrite(rows, sizeof(float) * (size_t)w->dim, n, w->f) != n)
        return cdx_error(CDX_ERR_IO, "%s: write: %s", w->tmp, strerror(errno));
    w->rows += n;
    return CDX_OK;
}

cdx_result npy_writer_finish(npy_writer *w)
{
    cdx_result r = write_header(w);
    if (!r && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0))
        r = cdx_error(CDX_ERR_IO, "%s: %s", w->tmp, strerror(errno));
    if (fclose(w->f) != 0 && !r) r = cdx_error(CDX_ERR_IO, "%s: close: %s", w->tmp, strerror(errno));
    w->f = NULL;
    if (!r && rename(w->tmp, w->path) != 0)
        r = cdx_error(CDX_ERR_IO, "%s: rename: %s", w->path, strerror(errno));
    if (r) unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
    return r;
}

void npy_writer_abort(npy_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
}
