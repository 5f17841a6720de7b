/*
 * safetensors.c - hostile-input safetensors reader (see safetensors.h).
 *
 * The JSON header is parsed with jansson (duplicate keys rejected, integers
 * outside int64 rejected by jansson itself); everything else here is range
 * checking.  The order of checks is: file length >= 8, header length capped
 * and inside the file, JSON is an object, each entry well-typed, shape
 * product and byte size overflow-checked, offsets inside the data region,
 * size == numel * element size, then no overlap between tensors (sorted by
 * offset).  Gaps between tensors are tolerated (they are harmless and let a
 * writer align tensors); the data region may not be read past its end.
 *
 * The F16 converter is written by hand (no Debian library offers a plain C
 * half->float conversion); it is exact for all 65536 inputs and tested
 * exhaustively against ldexp() in tests/test_safetensors.c.
 */
#include "clip/safetensors.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

static const struct {
    const char *name;
    cdx_st_dtype dtype;
    size_t size;
} k_dtypes[] = {
    {"F32", CDX_ST_F32, 4},   {"F16", CDX_ST_F16, 2},   {"BF16", CDX_ST_BF16, 2},
    {"F64", CDX_ST_F64, 8},   {"I64", CDX_ST_I64, 8},   {"I32", CDX_ST_I32, 4},
    {"I16", CDX_ST_I16, 2},   {"I8", CDX_ST_I8, 1},     {"U64", CDX_ST_U64, 8},
    {"U32", CDX_ST_U32, 4},   {"U16", CDX_ST_U16, 2},   {"U8", CDX_ST_U8, 1},
    {"BOOL", CDX_ST_BOOL, 1}, {"F8_E4M3", CDX_ST_F8_E4M3, 1},
    {"F8_E5M2", CDX_ST_F8_E5M2, 1},
};
#define N_DTYPES (sizeof k_dtypes / sizeof k_dtypes[0])

const char *cdx_st_dtype_name(cdx_st_dtype d)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (k_dtypes[i].dtype == d) return k_dtypes[i].name;
    return "unknown";
}

size_t cdx_st_dtype_size(cdx_st_dtype d)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (k_dtypes[i].dtype == d) return k_dtypes[i].size;
    return 0;
}

static cdx_st_dtype dtype_from_string(const char *s)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(k_dtypes[i].name, s) == 0) return k_dtypes[i].dtype;
    return CDX_ST_UNKNOWN;
}

void cdx_st_close(cdx_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->name);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

/* A non-negative JSON integer, or -1. */
static int64_t json_nonneg(const json_t *v)
{
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x < 0 ? -1 : (int64_t)x;
}

/* Parse one header entry into *t (name already set). */
static cdx_result parse_entry(const cdx_st_file *f, const json_t *v,
                              size_t data_len, cdx_st_tensor *t)
{
    const char *fn = f->name, *tn = t->name;
    if (!json_is_object(v))
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", fn, tn);

    const json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", fn, tn);
    t->dtype = dtype_from_string(json_string_value(jd));

    const json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", fn, tn);
    size_t nd = json_array_size(js);
    if (nd > CDX_ST_MAX_DIMS)
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d supported)",
                         fn, tn, nd, CDX_ST_MAX_DIMS);
    size_t numel = 1;
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        int64_t d = json_nonneg(json_array_get(js, i));
        if (d < 0)
            return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                             fn, tn, i);
        if ((uint64_t)d > SIZE_MAX || !cdx_mul_ok(numel, (size_t)d, &numel))
            return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': element count overflows", fn, tn);
        t->shape[i] = d;
    }
    t->numel = numel;

    const json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be an array [begin, end]",
                         fn, tn);
    int64_t b = json_nonneg(json_array_get(jo, 0)), e = json_nonneg(json_array_get(jo, 1));
    if (b < 0 || e < 0)
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers",
                         fn, tn);
    if (b > e)
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld) end before they begin",
                         fn, tn, (long long)b, (long long)e);
    if ((uint64_t)e > data_len)
        return cdx_error(CDX_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld) run past the data region (%zu bytes; file truncated?)",
                         fn, tn, (long long)b, (long long)e, data_len);
    t->nbytes = (size_t)(e - b);
    t->data = f->base + f->data_start + (size_t)b;

    size_t es = cdx_st_dtype_size(t->dtype), want;
    if (es) {
        if (!cdx_mul_ok(numel, es, &want))
            return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s': byte size overflows", fn, tn);
        if (want != t->nbytes)
            return cdx_error(CDX_ERR_FORMAT,
                             "%s: tensor '%s': %zu bytes in data_offsets but shape x %s needs %zu",
                             fn, tn, t->nbytes, cdx_st_dtype_name(t->dtype), want);
    }
    return CDX_OK;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const cdx_st_tensor *x = *(const cdx_st_tensor *const *)a, *y = *(const cdx_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(((const cdx_st_tensor *)a)->name, ((const cdx_st_tensor *)b)->name);
}

static cdx_result check_overlap(const cdx_st_file *f)
{
    if (f->n_tensors < 2) return CDX_OK;
    const cdx_st_tensor **v = malloc((size_t)f->n_tensors * sizeof *v);
    if (!v) return cdx_error(CDX_ERR_NOMEM, "%s: out of memory", f->name);
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].nbytes) v[n++] = &f->tensors[i];
    qsort(v, (size_t)n, sizeof *v, cmp_by_offset);
    cdx_result r = CDX_OK;
    for (int i = 1; i < n; i++) {
        if (v[i - 1]->data + v[i - 1]->nbytes > v[i]->data) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data region",
                          f->name, v[i - 1]->name, v[i]->name);
            break;
        }
    }
    free(v);
    return r;
}

static cdx_result parse_header(cdx_st_file *f, const json_t *root, size_t data_len)
{
    if (!json_is_object(root))
        return cdx_error(CDX_ERR_FORMAT, "%s: safetensors header is not a JSON object", f->name);
    size_t n = json_object_size(root);
    if (n > CDX_ST_MAX_TENSORS)
        return cdx_error(CDX_ERR_TOO_LARGE, "%s: %zu header entries (limit %d)", f->name, n,
                         CDX_ST_MAX_TENSORS);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) return cdx_error(CDX_ERR_NOMEM, "%s: out of memory", f->name);

    const char *key;
    json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;   /* free-form, ignored */
        cdx_st_tensor *t = &f->tensors[f->n_tensors];
        t->name = strdup(key);
        if (!t->name) return cdx_error(CDX_ERR_NOMEM, "%s: out of memory", f->name);
        f->n_tensors++;
        cdx_result r = parse_entry(f, val, data_len, t);
        if (r != CDX_OK) return r;
    }
    cdx_result r = check_overlap(f);
    if (r != CDX_OK) return r;
    /* Names are unique: jansson rejected duplicate keys. */
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_by_name);
    return CDX_OK;
}

cdx_result cdx_st_parse(const void *buf, size_t len, const char *name, cdx_st_file *out)
{
    memset(out, 0, sizeof *out);
    out->name = strdup(name ? name : "(buffer)");
    if (!out->name) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    out->base = buf;
    out->len = len;

    const uint8_t *p = buf;
    cdx_result r;
    if (len < 8) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", out->name, len);
        goto fail;
    }
    uint64_t hlen;
    memcpy(&hlen, p, 8);   /* little-endian host (checked at compile time) */
    if (hlen > CDX_ST_MAX_HEADER) {
        r = cdx_error(CDX_ERR_TOO_LARGE, "%s: safetensors header length %llu exceeds the limit of %llu bytes",
                      out->name, (unsigned long long)hlen, (unsigned long long)CDX_ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > len - 8) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: safetensors header length %llu exceeds the file size %zu (truncated?)",
                      out->name, (unsigned long long)hlen, len);
        goto fail;
    }
    out->data_start = 8 + (size_t)hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        r = cdx_error(CDX_ERR_FORMAT, "%s: safetensors header is not valid JSON (line %d, column %d: %s)",
                      out->name, jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    r = parse_header(out, root, len - out->data_start);
    json_decref(root);
    if (r == CDX_OK) return CDX_OK;
fail:
    cdx_st_close(out);
    return r;
}

cdx_result cdx_st_open(const char *path, cdx_st_file *out)
{
    memset(out, 0, sizeof *out);
    int fd;
    uint64_t fsize;
    cdx_result r0 = cdx_open_regular(path, &fd, &fsize);
    if (r0 != CDX_OK) return r0;
    if (fsize < 8 || fsize > SIZE_MAX) {
        close(fd);
        return cdx_error(CDX_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file", path,
                         (unsigned long long)fsize);
    }
    size_t len = (size_t)fsize;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return cdx_error(CDX_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    cdx_result r = cdx_st_parse(map, len, path, out);
    if (r != CDX_OK) {
        munmap(map, len);
        return r;
    }
    out->map = map;
    out->map_len = len;
    return CDX_OK;
}

const cdx_st_tensor *cdx_st_find(const cdx_st_file *f, const char *name)
{
    if (!f->n_tensors) return NULL;
    cdx_st_tensor key;
    memset(&key, 0, sizeof key);
    key.name = (char *)name;
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof key, cmp_by_name);
}

float cdx_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);          /* inf / NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;                                      /* signed zero */
    } else {
        /* subnormal man * 2^-24: normalise so the leading 1 reaches bit 10 */
        uint32_t shift = 0;
        while (!(man & 0x400u)) {
            man <<= 1;
            shift++;
        }
        bits = sign | ((113u - shift) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float cdx_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

cdx_result cdx_st_to_f32(const cdx_st_file *f, const cdx_st_tensor *t, float *dst)
{
    const uint8_t *s = t->data;
    size_t n = t->numel;
    switch (t->dtype) {
    case CDX_ST_F32:
        memcpy(dst, s, n * 4);
        return CDX_OK;
    case CDX_ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = cdx_f16_to_f32(h);
        }
        return CDX_OK;
    case CDX_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = cdx_bf16_to_f32(h);
        }
        return CDX_OK;
    default:
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16",
                         f->name, t->name, cdx_st_dtype_name(t->dtype));
    }
}
