/*
 * test_image_text.c - descriptive text read from image files for the
 * full-text index (cdx_image_read_exif's text and keywords): EXIF ASCII and
 * XP (UCS-2) tags, IPTC-IIM in a Photoshop APP13 block, XMP properties as
 * elements, lists and attributes with entities; and hostile metadata
 * (truncated IPTC lengths, unterminated XMP, control bytes, Latin-1) that
 * must give clean UTF-8 or nothing, never a crash.  Images are made here
 * with libvips.
 */
#include "image/decode.h"
#include "testutil.h"

#include <vips/vips.h>

/* A 16x16 JPEG carrying the given metadata (NULL = none). */
static void *make_jpeg(const char *desc, const char *xpkeywords, const void *iptc, size_t iptc_len,
                       const char *xmp, size_t *len)
{
    VipsImage *black = NULL, *im = NULL;
    void *buf = NULL;
    CHECK(vips_black(&black, 16, 16, "bands", 3, NULL) == 0);
    CHECK(vips_cast(black, &im, VIPS_FORMAT_UCHAR, NULL) == 0);
    if (desc) vips_image_set_string(im, "exif-ifd0-ImageDescription", desc);
    if (xpkeywords) vips_image_set_string(im, "exif-ifd0-XPKeywords", xpkeywords);
    if (desc) vips_image_set_string(im, "exif-ifd0-Artist", "Jane Doe");
    if (iptc) vips_image_set_blob_copy(im, VIPS_META_IPTC_NAME, iptc, iptc_len);
    if (xmp) vips_image_set_blob_copy(im, VIPS_META_XMP_NAME, xmp, strlen(xmp));
    CHECK(vips_jpegsave_buffer(im, &buf, len, NULL) == 0);
    g_object_unref(black);
    g_object_unref(im);
    return buf;
}

/* IIM dataset 2:ds = v appended at d[*n]. */
static void iim(uint8_t *d, size_t *n, int ds, const char *v)
{
    size_t l = strlen(v);
    d[(*n)++] = 0x1c;
    d[(*n)++] = 2;
    d[(*n)++] = (uint8_t)ds;
    d[(*n)++] = (uint8_t)(l >> 8);
    d[(*n)++] = (uint8_t)l;
    memcpy(d + *n, v, l);
    *n += l;
}

/* A Photoshop APP13 payload wrapping IIM data as resource 0x0404. */
static size_t photoshop(uint8_t *out, const uint8_t *iimd, size_t n)
{
    size_t k = 0;
    memcpy(out, "Photoshop 3.0", 14);
    k = 14;
    memcpy(out + k, "8BIM\x04\x04\x00\x00", 8);   /* id 0x0404, empty name + pad */
    k += 8;
    out[k++] = (uint8_t)(n >> 24);
    out[k++] = (uint8_t)(n >> 16);
    out[k++] = (uint8_t)(n >> 8);
    out[k++] = (uint8_t)n;
    memcpy(out + k, iimd, n);
    k += n;
    if (n % 2) out[k++] = 0;
    return k;
}

static int has_line(const char *list, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = list; (p = strstr(p, line)); p++)
        if ((p == list || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

static void read_ok(const void *data, size_t len, cdx_image_exif *ex)
{
    cdx_result r = cdx_image_read_exif(data, len, ex);
    CHECKF(r == CDX_OK, "%s", cdx_last_error());
}

int main(void)
{
    CHECK(cdx_image_init() == CDX_OK);
    cdx_image_exif ex;

    /* EXIF: description (kept whole even with " (" inside), artist, XP keywords */
    size_t len = 0;
    void *jpg = make_jpeg("Pier (west side) at dusk", "beach;holiday; beach ;", NULL, 0, NULL, &len);
    read_ok(jpg, len, &ex);
    CHECKF(has_line(ex.text, "Pier (west side) at dusk") && has_line(ex.text, "Jane Doe"), "%s", ex.text);
    CHECKF(!strcmp(ex.keywords, "beach\nholiday\n"), "[%s]", ex.keywords);
    g_free(jpg);

    /* IPTC in APP13: title, caption, keywords, city, country; Latin-1 caption */
    uint8_t d[512], app13[600];
    size_t n = 0;
    iim(d, &n, 5, "Harbour");
    iim(d, &n, 120, "Boats at caf\xe9 quay");
    iim(d, &n, 25, "boats");
    iim(d, &n, 25, "sea");
    iim(d, &n, 90, "Brighton");
    iim(d, &n, 101, "United Kingdom");
    size_t an = photoshop(app13, d, n);
    jpg = make_jpeg(NULL, NULL, app13, an, NULL, &len);
    read_ok(jpg, len, &ex);
    CHECKF(has_line(ex.text, "Harbour") && has_line(ex.text, "Boats at caf\xc3\xa9 quay") &&
           has_line(ex.text, "Brighton") && has_line(ex.text, "United Kingdom"), "%s", ex.text);
    CHECKF(!strcmp(ex.keywords, "boats\nsea\n"), "[%s]", ex.keywords);
    g_free(jpg);

    /* hostile IPTC: a dataset longer than the block, then garbage */
    n = 0;
    iim(d, &n, 5, "Fine");
    d[n++] = 0x1c; d[n++] = 2; d[n++] = 120; d[n++] = 0x7f; d[n++] = 0xff;   /* 32767 bytes claimed */
    memcpy(d + n, "short", 5);
    n += 5;
    an = photoshop(app13, d, n);
    jpg = make_jpeg(NULL, NULL, app13, an, NULL, &len);
    read_ok(jpg, len, &ex);
    CHECKF(!strcmp(ex.text, "Fine\n") && !ex.keywords[0], "[%s]", ex.text);
    g_free(jpg);

    /* XMP: elements with rdf:li lists, attributes, entities, control bytes */
    const char *xmp =
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        "<rdf:Description rdf:about='' photoshop:City=\"S&#xE3;o Paulo\" photoshop:Country='Brazil'>"
        "<dc:title><rdf:Alt><rdf:li xml:lang='x-default'>Evening &amp; rain</rdf:li></rdf:Alt></dc:title>"
        "<dc:description>A\x01wet\tstreet</dc:description>"
        "<dc:subject><rdf:Bag><rdf:li>street</rdf:li><rdf:li>night &lt;city&gt;</rdf:li></rdf:Bag></dc:subject>"
        "<dc:titleish>not a title</dc:titleish>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>";
    jpg = make_jpeg(NULL, NULL, NULL, 0, xmp, &len);
    read_ok(jpg, len, &ex);
    CHECKF(has_line(ex.text, "Evening & rain") && has_line(ex.text, "A wet street") &&
           has_line(ex.text, "S\xc3\xa3o Paulo") && has_line(ex.text, "Brazil") &&
           !strstr(ex.text, "not a title"), "%s", ex.text);
    CHECKF(!strcmp(ex.keywords, "street\nnight <city>\n"), "[%s]", ex.keywords);
    g_free(jpg);

    /* XMP cut in the middle of an element: what is complete, nothing else */
    jpg = make_jpeg(NULL, NULL, NULL, 0,
                    "<rdf:Description photoshop:City='Oslo'><dc:subject><rdf:Bag><rdf:li>snow", &len);
    read_ok(jpg, len, &ex);
    CHECKF(!strcmp(ex.text, "Oslo\n") && !ex.keywords[0], "[%s] [%s]", ex.text, ex.keywords);
    g_free(jpg);

    /* no metadata at all: empty text */
    jpg = make_jpeg(NULL, NULL, NULL, 0, NULL, &len);
    read_ok(jpg, len, &ex);
    CHECK(!ex.text[0] && !ex.keywords[0]);
    g_free(jpg);

    return test_finish();
}
