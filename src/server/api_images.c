/*
 * api_images.c - the image endpoints: metadata, original file, thumbnail,
 * upload (POST /api/images) and removal, plus the helpers shared with the
 * search handlers (api.h).
 *
 * Files are only ever found through the catalog (an id -> the absolute path
 * the library recorded); no filesystem path is built from request input.
 * Thumbnails are made with libvips (shrink-on-load) and cached as
 * DIR/thumbs/<sha256>-<size>.jpg by thumbcache.c (byte cap, LRU eviction).  If the thumbs directory cannot be created (read-only library) they
 * are made on every request instead.
 */
#include "api.h"
#include "background.h"
#include "json_util.h"
#include "thumbcache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#define THUMB_MIN 32
#define THUMB_MAX 1024
#define THUMB_DEFAULT 256

/* ------------------------------------------------------------ shared helpers */

int srv_fetch_image(srv_ctx *s, const char *url, char **data, size_t *len, srv_response *rs)
{
    cdx_http_params p = cdx_http_default_params();
    p.connect_timeout_ms = s->cfg.fetch_connect_timeout_s * 1000;
    p.timeout_ms = s->cfg.fetch_timeout_s * 1000;
    p.max_bytes = s->cfg.max_body;
    p.max_redirects = s->cfg.fetch_max_redirects;
    p.allow_private = s->cfg.allow_private_urls;
    p.require_image = 1;
    cdx_http_response resp;
    if (cdx_http_get(url, &p, &resp) == CDX_OK) {
        *data = resp.data;
        *len = resp.len;
        return 0;
    }
    const char *err = cdx_last_error();
    switch (resp.failure) {
    case CDX_HTTP_BAD_URL: srv_error(rs, 400, SRV_E_INVALID_FIELD, "image_url: %s", err); break;
    case CDX_HTTP_REFUSED:
        srv_error(rs, 400, SRV_E_URL_REFUSED, "image_url: %s (see --allow-private-urls)", err);
        break;
    case CDX_HTTP_NOT_IMAGE: srv_error(rs, 400, SRV_E_INVALID_IMAGE, "image_url: %s", err); break;
    case CDX_HTTP_TOO_LARGE: srv_error(rs, 413, SRV_E_TOO_LARGE, "image_url: %s", err); break;
    case CDX_HTTP_TIMEOUT: srv_error(rs, 504, SRV_E_URL_FETCH, "image_url: %s", err); break;
    default: srv_error(rs, 502, SRV_E_URL_FETCH, "image_url: %s", err); break;
    }
    return -1;
}

int srv_parse_multipart(const srv_request *rq, srv_part *parts, size_t *n_parts, srv_response *rs)
{
    char err[256];
    if (srv_multipart_parse(rq->content_type, rq->body ? rq->body : "", rq->body_len, parts,
                            SRV_MAX_PARTS, n_parts, err, sizeof err)) {
        srv_error(rs, 400, SRV_E_BAD_REQUEST, "%s", err);
        return -1;
    }
    return 0;
}

int srv_image_part(const srv_part *parts, size_t n, const srv_part **out, srv_response *rs)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(parts[i].name, "image") && strcmp(parts[i].name, "file")) continue;
        if (*out) {
            srv_error(rs, 400, SRV_E_BAD_REQUEST, "more than one image part in the form");
            return -1;
        }
        *out = &parts[i];
    }
    if (!*out) {
        srv_error(rs, 400, SRV_E_BAD_REQUEST, "the form has no 'image' file part");
        return -1;
    }
    if ((*out)->len == 0) {
        srv_error(rs, 400, SRV_E_INVALID_IMAGE, "the uploaded image is empty");
        return -1;
    }
    return 0;
}

json_t *srv_image_json(const cdx_image_record *rec)
{
    char file[64], thumb[64];
    snprintf(file, sizeof file, "/api/images/%lld/file", (long long)rec->id);
    snprintf(thumb, sizeof thumb, "/api/images/%lld/thumb", (long long)rec->id);
    json_t *o = json_pack("{s:I,s:o,s:s,s:I,s:I,s:i,s:i,s:s,s:I,s:s,s:s}",
                          "id", (json_int_t)rec->id, "path", srv_json_string_lossy(rec->path),
                          "sha256", rec->sha256, "size", (json_int_t)rec->size,
                          "mtime", (json_int_t)rec->mtime, "width", rec->width, "height", rec->height,
                          "format", rec->format, "added", (json_int_t)rec->added, "file", file,
                          "thumbnail", thumb);
    if (!o) return NULL;
    json_object_set_new(o, "taken", rec->taken ? json_integer(rec->taken) : json_null());
    json_object_set_new(o, "camera", rec->camera[0] ? srv_json_string_lossy(rec->camera) : json_null());
    return o;
}

void srv_image_add_ocr(cdx_library *lib, json_t *o, int64_t id, size_t max)
{
    cdx_image_text t;
    if (cdx_library_get_text(lib, id, &t) != CDX_OK) return;
    size_t n = strlen(t.ocr);
    if (n) {
        int cut = n > max;
        if (cut) {
            n = max;
            while (n && ((unsigned char)t.ocr[n] & 0xC0) == 0x80) n--;   /* UTF-8 boundary */
        }
        char *v = malloc(n + 4);
        if (v) {
            memcpy(v, t.ocr, n);
            memcpy(v + n, cut ? "..." : "", cut ? 4 : 1);
            json_object_set_new(o, "ocr", srv_json_string_lossy(v));
            free(v);
        }
    }
    cdx_image_text_free(&t);
}

void srv_image_add_source(cdx_library *lib, int64_t id, json_t *o)
{
    if (!o) return;
    cdx_image_text t;
    if (cdx_library_get_text(lib, id, &t) == CDX_OK) {
        if (*t.title) json_object_set_new(o, "title", srv_json_string_lossy(t.title));
        if (*t.description) json_object_set_new(o, "description", srv_json_string_lossy(t.description));
        if (*t.tags) {
            json_t *arr = json_array();
            for (char *line = t.tags, *nl; arr && line && *line; line = nl ? nl + 1 : NULL) {
                if ((nl = strchr(line, '\n'))) *nl = '\0';
                json_array_append_new(arr, srv_json_string_lossy(line));
            }
            json_object_set_new(o, "tags", arr);
        }
        cdx_image_text_free(&t);
    }
    char *src = NULL;
    if (cdx_library_get_source(lib, id, &src) == CDX_OK && src) {
        json_t *so = json_loads(src, 0, NULL);
        if (json_is_object(so)) json_object_set_new(o, "source", so);
        else json_decref(so);
    }
    free(src);
}

/* ------------------------------------------------------------ metadata */

static const char *const no_args[] = {NULL};

/* Look up rq->id; -1 with 404 when absent. */
static int load_record(srv_ctx *s, const srv_request *rq, cdx_image_record *rec, srv_response *rs)
{
    cdx_result r = cdx_library_get_image(s->lib, rq->id, rec);
    if (r == CDX_ERR_NOT_FOUND) {
        srv_error(rs, 404, SRV_E_NOT_FOUND, "no image with id %lld", (long long)rq->id);
        return -1;
    }
    if (r) {
        srv_error_cdx(rs, r, SRV_E_BAD_REQUEST, "image lookup");
        return -1;
    }
    return 0;
}

void api_image_get(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    if (srv_check_args(rq, no_args, rs)) return;
    cdx_image_record rec;
    if (load_record(s, rq, &rec, rs)) return;
    json_t *o = srv_image_json(&rec);
    if (o) srv_image_add_ocr(s->lib, o, rec.id, 65536);
    srv_image_add_source(s->lib, rec.id, o);
    srv_json_reply(rs, 200, o);
}

/* GET /api/images?offset=N&limit=M: catalogued images in id order. */
#define LIST_DEFAULT 100
#define LIST_MAX 1000

void api_image_list(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const char *const allowed[] = {"offset", "limit", NULL};
    if (srv_check_args(rq, allowed, rs)) return;
    long long offset = 0, limit = LIST_DEFAULT;
    for (size_t i = 0; i < rq->n_args; i++) {
        int is_off = !strcmp(rq->args[i].key, "offset");
        if (srv_parse_ll(rq->args[i].value, is_off ? 0 : 1, is_off ? INT64_MAX : LIST_MAX,
                         is_off ? &offset : &limit)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, is_off ? "'offset' must be a non-negative integer"
                                                           : "'limit' must be an integer between 1 and 1000");
            return;
        }
    }
    cdx_image_record *recs = malloc((size_t)limit * sizeof *recs);
    if (!recs) {
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "out of memory");
        return;
    }
    size_t n = 0;
    uint64_t total = 0;
    cdx_result r = cdx_library_list_images(s->lib, (uint64_t)offset, (size_t)limit, recs, &n, &total);
    if (r) {
        free(recs);
        srv_error_cdx(rs, r, SRV_E_INTERNAL, "listing images");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, srv_image_json(&recs[i]));
    free(recs);
    srv_json_reply(rs, 200, json_pack("{s:I,s:I,s:I,s:o}", "offset", (json_int_t)offset, "limit",
                                      (json_int_t)limit, "total", (json_int_t)total, "images", arr));
}

/* ------------------------------------------------------------ original file */

static const char *mime_of(const char *format)
{
    static const struct { const char *fmt, *mime; } map[] = {
        {"jpeg", "image/jpeg"}, {"jpg", "image/jpeg"}, {"png", "image/png"}, {"webp", "image/webp"},
        {"gif", "image/gif"}, {"tiff", "image/tiff"}, {"bmp", "image/bmp"}, {"heif", "image/heif"},
        {"heic", "image/heic"}, {"avif", "image/avif"}, {"jxl", "image/jxl"}, {"jp2", "image/jp2"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].fmt, format)) return map[i].mime;
    return "application/octet-stream";
}

/* Open a catalogued file: a regular file, or -1 with 404. */
static int open_original(const cdx_image_record *rec, struct stat *st, srv_response *rs)
{
    if (rec->path[0] != '/') {
        srv_error(rs, 404, SRV_E_NOT_FOUND, "image %lld was indexed from a URL; its bytes are not stored",
                  (long long)rec->id);
        return -1;
    }
    int fd = open(rec->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        if (fd >= 0) close(fd);
        srv_error(rs, 404, SRV_E_NOT_FOUND, "the file of image %lld is gone (re-index the library)",
                  (long long)rec->id);
        return -1;
    }
    return fd;
}

void api_image_file(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    if (srv_check_args(rq, no_args, rs)) return;
    cdx_image_record rec;
    if (load_record(s, rq, &rec, rs)) return;
    struct stat st;
    int fd = open_original(&rec, &st, rs);
    if (fd < 0) return;
    /* The content hash is the ETag while the file is as indexed; a changed
     * file gets a weak validator from its size and mtime instead. */
    if ((uint64_t)st.st_size == rec.size && (int64_t)st.st_mtime == rec.mtime)
        snprintf(rs->etag, sizeof rs->etag, "\"%s\"", rec.sha256);
    else
        snprintf(rs->etag, sizeof rs->etag, "W/\"%llx-%llx\"", (unsigned long long)st.st_size,
                 (unsigned long long)st.st_mtime);
    rs->cache_control = "private, max-age=3600";
    rs->content_type = mime_of(rec.format);
    if (srv_etag_match(rq->if_none_match, rs->etag)) {
        close(fd);
        rs->status = 304;
        return;
    }
    rs->fd = fd;
    rs->fd_size = (uint64_t)st.st_size;
    rs->status = 200;
}

/* ------------------------------------------------------------ thumbnails */

static int make_thumbnail(const char *path, int size, void **buf, size_t *len)
{
    VipsImage *img = NULL;
    if (vips_thumbnail(path, &img, size, "height", size, "size", VIPS_SIZE_DOWN, NULL) != 0)
        return -1;
    int r = vips_jpegsave_buffer(img, buf, len, "Q", 82, "strip", TRUE, NULL);
    g_object_unref(img);
    return r;
}

void api_image_thumb(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const char *const allowed[] = {"size", NULL};
    if (srv_check_args(rq, allowed, rs)) return;
    long long size = THUMB_DEFAULT;
    for (size_t i = 0; i < rq->n_args; i++)
        if (srv_parse_ll(rq->args[i].value, THUMB_MIN, THUMB_MAX, &size)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'size' must be an integer between %d and %d",
                      THUMB_MIN, THUMB_MAX);
            return;
        }
    cdx_image_record rec;
    if (load_record(s, rq, &rec, rs)) return;
    snprintf(rs->etag, sizeof rs->etag, "\"%s-%lld\"", rec.sha256, size);
    rs->cache_control = "private, max-age=3600";
    rs->content_type = "image/jpeg";
    if (srv_etag_match(rq->if_none_match, rs->etag)) {
        rs->status = 304;
        return;
    }
    char name[96];
    snprintf(name, sizeof name, "%s-%lld.jpg", rec.sha256, size);
    struct stat cst;
    int cfd = thumb_cache_get(s->thumbs, name, &cst);
    if (cfd >= 0) {
        rs->fd = cfd;
        rs->fd_size = (uint64_t)cst.st_size;
        rs->status = 200;
        return;
    }
    if (rec.path[0] != '/') {   /* a URL: the thumbnail its worker made, if stored */
        void *jpeg = NULL;
        size_t jlen = 0;
        if (cdx_library_get_thumbnail(s->lib, rec.id, &jpeg, &jlen) == CDX_OK) {
            rs->body = jpeg;
            rs->body_len = jlen;
            rs->status = 200;
            return;
        }
    }
    struct stat st;
    int fd = open_original(&rec, &st, rs);
    if (fd < 0) return;
    close(fd);
    void *buf = NULL;
    size_t len = 0;
    if (make_thumbnail(rec.path, (int)size, &buf, &len) != 0) {
        vips_error_clear();
        srv_error(rs, 500, SRV_E_INTERNAL, "cannot make a thumbnail of image %lld", (long long)rec.id);
        return;
    }
    thumb_cache_put(s->thumbs, name, buf, len);   /* a failed cache write only costs time */
    srv_response_free(rs);
    rs->body = malloc(len ? len : 1);
    if (!rs->body) {
        g_free(buf);
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "out of memory");
        return;
    }
    memcpy(rs->body, buf, len);
    g_free(buf);
    rs->body_len = len;
    rs->content_type = "image/jpeg";
    rs->status = 200;
}

/* ------------------------------------------------------------ writes */

static void add_bytes(srv_ctx *s, const void *data, size_t len, srv_response *rs)
{
    cdx_image_params ip = cdx_image_default_params();
    int64_t id = 0;
    int created = 0;
    cdx_result r = cdx_library_add_buffer_ex(s->lib, data, len, &ip, &id, &created);
    if (r) {
        srv_error_cdx(rs, r, SRV_E_INVALID_IMAGE, "upload");
        return;
    }
    cdx_image_record rec;
    r = cdx_library_get_image(s->lib, id, &rec);
    if (r) {
        srv_error_cdx(rs, r, SRV_E_INTERNAL, "upload");
        return;
    }
    snprintf(rs->location, sizeof rs->location, "/api/images/%lld", (long long)id);
    json_t *o = srv_image_json(&rec);
    if (o) json_object_set_new(o, "created", json_boolean(created));
    srv_json_reply(rs, created ? 201 : 200, o);
}

void api_image_add(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    if (srv_check_args(rq, no_args, rs)) return;
    if (srv_is_multipart(rq->content_type)) {
        srv_part parts[SRV_MAX_PARTS];
        size_t n = 0;
        const srv_part *img;
        if (srv_parse_multipart(rq, parts, &n, rs) || srv_image_part(parts, n, &img, rs)) return;
        for (size_t i = 0; i < n; i++)
            if (&parts[i] != img) {
                srv_error(rs, 400, SRV_E_UNKNOWN_FIELD, "unknown form field '%s'", parts[i].name);
                return;
            }
        add_bytes(s, img->data, img->len, rs);
        return;
    }
    json_t *o;
    if (srv_parse_body_object(rq, rs, &o)) {
        if (rs->status == 415)
            srv_error(rs, 415, SRV_E_MEDIA_TYPE,
                      "expected Content-Type multipart/form-data or application/json, got %.100s",
                      rq->content_type ? rq->content_type : "none");
        return;
    }
    static const char *const allowed[] = {"url", NULL};
    const char *url = NULL;
    if (srv_check_fields(o, allowed, "the request body", rs) == 0 &&
        srv_get_string(o, "url", &url, rs) >= 0) {
        if (!url) {
            srv_error(rs, 400, SRV_E_BAD_REQUEST, "give 'url' or upload a multipart 'image' part");
        } else {
            char *data;
            size_t len;
            if (srv_fetch_image(s, url, &data, &len, rs) == 0) {
                add_bytes(s, data, len, rs);
                free(data);
            }
        }
    }
    json_decref(o);
}

void api_image_delete(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    if (srv_check_args(rq, no_args, rs)) return;
    cdx_image_record *rec = malloc(sizeof *rec);   /* for the pipeline's replicas */
    if (rec && cdx_library_get_image(s->lib, rq->id, rec) != CDX_OK) {
        free(rec);
        rec = NULL;
    }
    cdx_result r = cdx_library_remove(s->lib, rq->id);
    if (!r && rec) srv_bg_deleted(s, rec);
    free(rec);
    if (r == CDX_ERR_NOT_FOUND) {
        srv_error(rs, 404, SRV_E_NOT_FOUND, "no image with id %lld", (long long)rq->id);
        return;
    }
    if (r) {
        srv_error_cdx(rs, r, SRV_E_BAD_REQUEST, "remove");
        return;
    }
    srv_json_reply(rs, 200, json_pack("{s:I,s:b}", "id", (json_int_t)rq->id, "deleted", 1));
}
