/*
 * test_safetensors.c - the safetensors reader on hand-built buffers: a valid
 * file with every kind of entry, then one hostile variant per check in
 * safetensors.c (each must fail cleanly and name the file/tensor), the mmap
 * path, and exhaustive F16/BF16 -> F32 conversion against ldexp().
 * Needs no fixtures.
 */
#include "testutil.h"

#include "clip/safetensors.h"

#include <stdint.h>
#include <unistd.h>

/* [u64 header length][header][data_len bytes 0,1,2,...]; *hlen_override
 * (if given) replaces the stored header length. */
static uint8_t *mk(const char *hdr, size_t data_len, const uint64_t *hlen_override, size_t *len)
{
    size_t n = strlen(hdr);
    *len = 8 + n + data_len;
    uint8_t *b = malloc(*len);
    uint64_t h = hlen_override ? *hlen_override : n;
    memcpy(b, &h, 8);
    memcpy(b + 8, hdr, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (uint8_t)i;
    return b;
}

/* Parse must fail with `want` and a message containing `needle`. */
static void bad_hlen(const char *hdr, size_t data_len, const uint64_t *hlen, cdx_result want,
                     const char *needle)
{
    size_t len;
    uint8_t *b = mk(hdr, data_len, hlen, &len);
    cdx_st_file f;
    cdx_result r = cdx_st_parse(b, len, "x.safetensors", &f);
    CHECKF(r == want, "header %s: got %s want %s (%s)", hdr, cdx_result_str(r), cdx_result_str(want),
           cdx_last_error());
    CHECKF(strstr(cdx_last_error(), needle) != NULL, "header %s: message '%s' lacks '%s'", hdr,
           cdx_last_error(), needle);
    CHECKF(strncmp(cdx_last_error(), "x.safetensors: ", 15) == 0, "message '%s' does not name the file",
           cdx_last_error());
    CHECK(f.n_tensors == 0 && f.tensors == NULL && f.name == NULL);
    cdx_st_close(&f);
    free(b);
}

static void bad(const char *hdr, size_t data_len, const char *needle)
{
    bad_hlen(hdr, data_len, NULL, CDX_ERR_FORMAT, needle);
}

static void test_valid(void)
{
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\",\"x\":[1,2]},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[32,34]},"
        "\"a.position_ids\":{\"dtype\":\"I64\",\"shape\":[1,2],\"data_offsets\":[34,50]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[50,50]},"
        "\"q\":{\"dtype\":\"Q4_K\",\"shape\":[7],\"data_offsets\":[52,55]}}  ";
    size_t len;
    uint8_t *b = mk(hdr, 56, NULL, &len);
    cdx_st_file f;
    cdx_result r = cdx_st_parse(b, len, "ok.safetensors", &f);
    CHECKF(r == CDX_OK, "%s", cdx_last_error());
    if (r) {
        free(b);
        return;
    }
    CHECK(f.n_tensors == 6);
    for (int i = 1; i < f.n_tensors; i++) CHECK(strcmp(f.tensors[i - 1].name, f.tensors[i].name) < 0);
    CHECK(f.data_start == 8 + strlen(hdr));
    CHECK(cdx_st_find(&f, "__metadata__") == NULL);
    CHECK(cdx_st_find(&f, "nope") == NULL);
    CHECK(cdx_st_find(&f, "") == NULL);

    const cdx_st_tensor *w = cdx_st_find(&f, "w");
    CHECK(w && w->dtype == CDX_ST_F32 && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3);
    CHECK(w && w->numel == 6 && w->nbytes == 24 && w->data == b + f.data_start);
    float out[8];
    CHECK(w && cdx_st_to_f32(&f, w, out) == CDX_OK && memcmp(out, b + f.data_start, 24) == 0);

    const cdx_st_tensor *h = cdx_st_find(&f, "h");
    CHECK(h && h->dtype == CDX_ST_F16 && h->numel == 4 && h->data == b + f.data_start + 24);
    if (h && cdx_st_to_f32(&f, h, out) == CDX_OK) {
        /* bytes 24,25 -> 0x1918 etc. */
        CHECK(out[0] == cdx_f16_to_f32(0x1918) && out[3] == cdx_f16_to_f32(0x1f1e));
    }
    const cdx_st_tensor *s = cdx_st_find(&f, "s");
    CHECK(s && s->ndim == 0 && s->numel == 1 && s->nbytes == 2);
    CHECK(s && cdx_st_to_f32(&f, s, out) == CDX_OK && out[0] == cdx_bf16_to_f32(0x2120));

    const cdx_st_tensor *p = cdx_st_find(&f, "a.position_ids");
    CHECK(p && p->dtype == CDX_ST_I64 && p->numel == 2 && p->nbytes == 16);
    CHECK(p && cdx_st_to_f32(&f, p, out) == CDX_ERR_UNSUPPORTED);
    CHECK(strstr(cdx_last_error(), "'a.position_ids' has dtype I64") != NULL);

    const cdx_st_tensor *e = cdx_st_find(&f, "e");
    CHECK(e && e->numel == 0 && e->nbytes == 0 && cdx_st_to_f32(&f, e, out) == CDX_OK);

    const cdx_st_tensor *q = cdx_st_find(&f, "q");   /* unknown dtype: kept, size unchecked */
    CHECK(q && q->dtype == CDX_ST_UNKNOWN && q->nbytes == 3);
    CHECK(q && cdx_st_to_f32(&f, q, out) == CDX_ERR_UNSUPPORTED);
    cdx_st_close(&f);
    cdx_st_close(&f);   /* idempotent */
    free(b);

    /* an empty header is a valid (empty) file */
    b = mk("{}", 0, NULL, &len);
    CHECK(cdx_st_parse(b, len, "empty", &f) == CDX_OK && f.n_tensors == 0 && cdx_st_find(&f, "w") == NULL);
    cdx_st_close(&f);
    free(b);
}

static void test_hostile(void)
{
    size_t len;
    cdx_st_file f;
    /* too short for the length field */
    CHECK(cdx_st_parse("", 0, "x.safetensors", &f) == CDX_ERR_FORMAT && strstr(cdx_last_error(), "too short"));
    CHECK(cdx_st_parse("\x02\0\0\0\0\0\0", 7, "x.safetensors", &f) == CDX_ERR_FORMAT);

    /* header length: beyond the file, overflowing, above the cap */
    bad_hlen("{}", 0, &(uint64_t){3}, CDX_ERR_FORMAT, "exceeds the file size");
    bad_hlen("{}", 10, &(uint64_t){13}, CDX_ERR_FORMAT, "exceeds the file size");
    bad_hlen("{}", 0, &(uint64_t){~(uint64_t)0}, CDX_ERR_TOO_LARGE, "exceeds the limit");
    bad_hlen("{}", 0, &(uint64_t){~(uint64_t)0 - 7}, CDX_ERR_TOO_LARGE, "exceeds the limit");
    bad_hlen("{}", 0, &(uint64_t){CDX_ST_MAX_HEADER + 1}, CDX_ERR_TOO_LARGE, "exceeds the limit");
    bad_hlen("{}", 0, &(uint64_t){1}, CDX_ERR_FORMAT, "not valid JSON");   /* "{" */
    bad_hlen("{}", 0, &(uint64_t){0}, CDX_ERR_FORMAT, "not valid JSON");

    /* JSON level */
    bad("{abc", 0, "not valid JSON");
    bad("{} x", 0, "not valid JSON");
    bad("[]", 0, "not a JSON object");
    bad("\"str\"", 0, "not valid JSON");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate");
    bad("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid JSON");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4, "not valid JSON");

    /* entry level: each message names the tensor */
    bad("{\"t1\":3}", 0, "tensor 't1': header entry is not an object");
    bad("{\"t1\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 't1': missing or non-string \"dtype\"");
    bad("{\"t1\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "non-string \"dtype\"");
    bad("{\"t1\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 't1': missing or non-array \"shape\"");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "non-array \"shape\"");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "tensor 't1': shape[0] is not a non-negative integer");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,4]}}", 4, "shape[1] is not");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape[0] is not");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "tensor 't1': 9 dimensions");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4,
        "tensor 't1': element count overflows");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4,
        "tensor 't1': byte size overflows");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 't1': \"data_offsets\" must be");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}}", 4, "\"data_offsets\" must be");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "\"data_offsets\" must be");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "not non-negative integers");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4, "not non-negative integers");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "tensor 't1': data_offsets [8, 4) end before");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 3, "tensor 't1': data_offsets [0, 4) run past the data region (3 bytes");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775803,9223372036854775807]}}", 4,
        "run past the data region");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
        "tensor 't1': 4 bytes in data_offsets but shape x F32 needs 8");
    bad("{\"t1\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "shape x BF16 needs 6");
    bad("{\"t1\":{\"dtype\":\"I64\",\"shape\":[1,77],\"data_offsets\":[0,600]}}", 600, "shape x I64 needs 616");

    /* overlap (in either header order), also of a tensor contained in another */
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"t2\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensors 't1' and 't2' overlap");
    bad("{\"t2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
        "\"t1\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "overlap");
    bad("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"t2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlap");

    /* gaps and zero-sized tensors at shared offsets are fine */
    uint8_t *b = mk("{\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"t0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                    "\"t2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 16, NULL, &len);
    CHECKF(cdx_st_parse(b, len, "gap", &f) == CDX_OK && f.n_tensors == 3, "%s", cdx_last_error());
    cdx_st_close(&f);
    free(b);
}

static void test_open(void)
{
    cdx_st_file f;
    CHECK(cdx_st_open("/nonexistent/x.safetensors", &f) == CDX_ERR_NOT_FOUND);
    CHECK(strstr(cdx_last_error(), "/nonexistent/x.safetensors") != NULL);
    CHECK(cdx_st_open("/tmp", &f) == CDX_ERR_IO && strstr(cdx_last_error(), "not a regular file"));

    char path[] = "/tmp/cdx_test_st_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(cdx_st_open(path, &f) == CDX_ERR_FORMAT && strstr(cdx_last_error(), "too short"));  /* empty */
    size_t len;
    uint8_t *b = mk("{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, NULL, &len);
    CHECK(write(fd, b, len) == (ssize_t)len);
    CHECK(cdx_st_open(path, &f) == CDX_OK && f.map != NULL && f.map_len == len && f.n_tensors == 1);
    const cdx_st_tensor *t = cdx_st_find(&f, "t");
    CHECK(t && memcmp(t->data, b + len - 4, 4) == 0);
    CHECK(strcmp(f.name, path) == 0);
    cdx_st_close(&f);
    CHECK(ftruncate(fd, (off_t)len - 1) == 0);   /* now truncated */
    CHECK(cdx_st_open(path, &f) == CDX_ERR_FORMAT && strstr(cdx_last_error(), "tensor 't'") &&
          strstr(cdx_last_error(), path));
    close(fd);
    unlink(path);
    free(b);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_conversions(void)
{
    int bad_f16 = 0, bad_bf16 = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        float got = cdx_f16_to_f32((uint16_t)h);
        if (e == 31 && m) {   /* NaN: quiet/signalling payload and sign kept */
            if (bits_of(got) != (((uint32_t)s << 31) | 0x7f800000u | ((uint32_t)m << 13))) bad_f16++;
            continue;
        }
        double v = e == 31 ? INFINITY : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
        float want = (float)(s ? -v : v);
        if (bits_of(got) != bits_of(want)) bad_f16++;   /* also checks the sign of zero */
        uint32_t bw = (uint32_t)h << 16;
        if (bits_of(cdx_bf16_to_f32((uint16_t)h)) != bw) bad_bf16++;
    }
    CHECKF(bad_f16 == 0, "%d F16 values converted wrongly", bad_f16);
    CHECKF(bad_bf16 == 0, "%d BF16 values converted wrongly", bad_bf16);
    CHECK(cdx_f16_to_f32(0x0001) == 5.9604644775390625e-08f);   /* smallest subnormal */
    CHECK(cdx_f16_to_f32(0x03ff) == 6.097555160522461e-05f);    /* largest subnormal */
    CHECK(cdx_f16_to_f32(0x0400) == 6.103515625e-05f);          /* smallest normal */
    CHECK(cdx_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(cdx_f16_to_f32(0x3c00) == 1.0f && cdx_f16_to_f32(0xc000) == -2.0f);
    CHECK(isinf(cdx_f16_to_f32(0x7c00)) && cdx_f16_to_f32(0xfc00) < 0);
    CHECK(isnan(cdx_f16_to_f32(0x7e00)) && isnan(cdx_f16_to_f32(0xfc01)));
    CHECK(signbit(cdx_f16_to_f32(0x8000)) && cdx_f16_to_f32(0x8000) == 0.0f);
    CHECK(cdx_bf16_to_f32(0x3f80) == 1.0f && cdx_bf16_to_f32(0x4049) == 3.140625f);
}

static void test_names(void)
{
    CHECK(strcmp(cdx_st_dtype_name(CDX_ST_BF16), "BF16") == 0);
    CHECK(strcmp(cdx_st_dtype_name(CDX_ST_UNKNOWN), "unknown") == 0);
    CHECK(cdx_st_dtype_size(CDX_ST_F32) == 4 && cdx_st_dtype_size(CDX_ST_I64) == 8 &&
          cdx_st_dtype_size(CDX_ST_UNKNOWN) == 0);
}

int main(void)
{
    test_valid();
    test_hostile();
    test_open();
    test_conversions();
    test_names();
    return test_finish();
}
