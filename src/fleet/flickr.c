/*
 * flickr.c - `feed flickr`: a producer that pages through the Flickr REST
 * API's flickr.photos.search (JSON, nojsoncallback=1) and publishes one
 * work record per photo: the image URL and the photo's metadata (title,
 * description, tags, owner, licence, date taken, page, geo) under the
 * record id and message id "flickr:<photo id>", so a photo published twice
 * is deduplicated by the broker.
 *
 * Invariants: at most rate_per_hour API calls per hour (calls spaced evenly,
 * retries included); a failed call (no response, HTTP 429 or 5xx, a
 * Flickr "stat": "fail" with a transient code, a malformed page) is retried
 * with exponential backoff (honouring Retry-After) up to max_retries times,
 * then the feed stops with an error naming the page; photos published
 * before stay published (a rerun deduplicates them).  Every page is parsed
 * as hostile: a page that is not the one asked for, or without a photo
 * array, is malformed; a photo without a numeric id or an http(s) image URL
 * is skipped with a warning.  The API key never appears in a message.
 *
 * Workload: one call per page of up to 500 photos (Flickr returns at most
 * 4000 results per query: use --since windows for more).
 */
#include "fleet/flickr.h"
#include "fleet/bus.h"

#include "common/error.h"
#include "common/util.h"
#include "ingest/source.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLICKR_DEFAULT_ENDPOINT "https://api.flickr.com/services/rest"
#define FLICKR_PAGE_MAX_BYTES ((uint64_t)16 << 20)
#define FLICKR_TIMEOUT_S 60
#define FLICKR_TITLE_MAX 1024
#define FLICKR_DESC_MAX 16384
#define FLICKR_TAGS_MAX 128
#define FLICKR_URL_MAX 4000
#define FLICKR_EXTRAS "description,license,date_taken,owner_name,geo,tags,url_o,url_l,url_c,url_z,url_m"

cdx_flickr_params cdx_flickr_default_params(void)
{
    cdx_flickr_params p;
    memset(&p, 0, sizeof p);
    p.per_page = 100;
    p.rate_per_hour = 3600;
    p.max_retries = 6;
    p.backoff_ms = 1000;
    return p;
}

#define say(p, ...) fleet_log((p)->log, (p)->user, __VA_ARGS__)

/* ---------------------------------------------------------------- URLs */

cdx_result flickr_endpoint(const char *given, char **out)
{
    *out = NULL;
    const char *e = given && *given ? given : getenv("CLIPDEX_FLICKR_ENDPOINT");
    if (!e || !*e) e = FLICKR_DEFAULT_ENDPOINT;
    size_t n = strlen(e);
    const char *host = !strncmp(e, "http://", 7) ? e + 7 : !strncmp(e, "https://", 8) ? e + 8 : NULL;
    int ok = host && *host && *host != '/' && n <= 1024;
    for (size_t i = 0; ok && i < n; i++) ok = e[i] > ' ' && e[i] < 0x7f && e[i] != '?' && e[i] != '#';
    if (!ok) return cdx_error(CDX_ERR_INVALID_ARG, "Flickr endpoint must be an http(s) URL without query or spaces");
    if (!(*out = strdup(e))) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    return CDX_OK;
}

/* Append "&key=" + value percent-encoded (RFC 3986 unreserved kept). */
static int url_add(char *url, size_t cap, const char *key, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(url);
    int w = snprintf(url + n, cap - n, "&%s=", key);
    if (w < 0 || (size_t)w >= cap - n) return -1;
    n += (size_t)w;
    for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
        if (n + 4 >= cap) return -1;
        if ((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') || *v == '-' ||
            *v == '_' || *v == '.' || *v == '~') {
            url[n++] = (char)*v;
        } else {
            url[n++] = '%';
            url[n++] = hex[*v >> 4];
            url[n++] = hex[*v & 15];
        }
    }
    url[n] = '\0';
    return 0;
}

static cdx_result page_url(const char *endpoint, const cdx_flickr_params *p, long page, char *url, size_t cap)
{
    char num[32];
    int bad = snprintf(url, cap, "%s?method=flickr.photos.search&format=json&nojsoncallback=1&sort=date-posted-asc",
                       endpoint) >= (int)cap;
    bad = bad || url_add(url, cap, "api_key", p->api_key) || url_add(url, cap, "extras", FLICKR_EXTRAS);
    if (p->text) bad = bad || url_add(url, cap, "text", p->text);
    if (p->tags) bad = bad || url_add(url, cap, "tags", p->tags);
    if (p->user_id) bad = bad || url_add(url, cap, "user_id", p->user_id);
    if (p->since > 0) {
        snprintf(num, sizeof num, "%lld", (long long)p->since);
        bad = bad || url_add(url, cap, "min_upload_date", num);
    }
    snprintf(num, sizeof num, "%d", p->per_page);
    bad = bad || url_add(url, cap, "per_page", num);
    snprintf(num, sizeof num, "%ld", page);
    bad = bad || url_add(url, cap, "page", num);
    return bad ? cdx_error(CDX_ERR_INVALID_ARG, "Flickr query too long (search terms of at most ~2000 bytes)")
               : CDX_OK;
}

/* ---------------------------------------------------------------- pages */

/* An integer given as a JSON number or a string of digits; -1 otherwise. */
static long long json_count(const json_t *v)
{
    if (json_is_integer(v)) return json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 15 || strspn(s, "0123456789") != strlen(s)) return -1;
    return strtoll(s, NULL, 10);
}

cdx_result flickr_parse_page(const char *text, size_t len, long want_page, json_t **photos, long *pages,
                             int *retryable)
{
    *photos = NULL;
    *pages = 0;
    *retryable = 0;
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    if (!o) {
        *retryable = 1;
        return cdx_error(CDX_ERR_FORMAT, "malformed response (not JSON: %s at line %d)", je.text, je.line);
    }
    cdx_result r = CDX_OK;
    const char *stat = json_string_value(json_object_get(o, "stat"));
    json_t *ph = json_object_get(o, "photos");
    if (stat && !strcmp(stat, "fail")) {
        long long code = json_count(json_object_get(o, "code"));
        const char *msg = json_string_value(json_object_get(o, "message"));
        /* 105 service unavailable, 10 search unavailable, 0 / 429 overload
         * and rate limiting (also HTTP 429): worth another try later */
        *retryable = code == 105 || code == 10 || code == 0 || code == 429;
        r = cdx_error(CDX_ERR_NETWORK, "Flickr error %lld: %.200s", code, msg ? msg : "(no message)");
    } else if (!stat || strcmp(stat, "ok") || !json_is_object(ph)) {
        *retryable = 1;
        r = cdx_error(CDX_ERR_FORMAT, "malformed response (no \"stat\": \"ok\" with a \"photos\" object)");
    } else {
        long long page = json_count(json_object_get(ph, "page"));
        long long np = json_count(json_object_get(ph, "pages"));
        json_t *arr = json_object_get(ph, "photo");
        if (page != want_page && np >= 0 && np < want_page) {
            /* fewer pages than when the run began (photos removed): Flickr
             * answers its last page again; the results end here */
            *photos = json_array();
            *pages = (long)np;
            if (!*photos) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        } else if (page != want_page && !(np == 0 && json_array_size(arr) == 0)) {
            *retryable = 1;
            r = cdx_error(CDX_ERR_FORMAT, "malformed response (page %lld where page %ld was asked for)", page,
                          want_page);
        } else if (np < 0 || np > 1000000 || !json_is_array(arr)) {
            *retryable = 1;
            r = cdx_error(CDX_ERR_FORMAT, "malformed response (\"pages\" or the \"photo\" array missing or invalid)");
        } else {
            *photos = json_incref(arr);
            *pages = (long)np;
        }
    }
    json_decref(o);
    return r;
}

/* ---------------------------------------------------------------- photos */

/* Copy of s cut to at most max bytes at a UTF-8 character boundary. */
static json_t *text_cut(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max) {
        n = max;
        while (n && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    }
    return json_stringn(s ? s : "", n);
}

static const char *const licenses[] = {
    "All Rights Reserved", "CC BY-NC-SA 2.0", "CC BY-NC 2.0", "CC BY-NC-ND 2.0", "CC BY 2.0",
    "CC BY-SA 2.0", "CC BY-ND 2.0", "No known copyright restrictions", "United States Government Work",
    "CC0 1.0", "Public Domain Mark 1.0", "CC BY 4.0", "CC BY-SA 4.0", "CC BY-ND 4.0", "CC BY-NC 4.0",
    "CC BY-NC-SA 4.0", "CC BY-NC-ND 4.0",
};

/* "YYYY-MM-DD HH:MM:SS" as written (UTC assumed) -> unix seconds, 0 if not. */
static int64_t taken_seconds(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%d %H:%M:%S", &tm) : NULL;
    if (!end || *end || tm.tm_year < -1000) return 0;
    time_t t = timegm(&tm);
    return t > 0 ? (int64_t)t : 0;
}

/* A coordinate as a number or numeric string; 0 when absent. */
static double coord(const json_t *v)
{
    if (json_is_number(v)) return json_number_value(v);
    const char *s = json_string_value(v);
    if (!s || strlen(s) > 32) return 0;
    char *end;
    double d = strtod(s, &end);
    return end != s && !*end ? d : 0;
}

json_t *flickr_photo_record(const json_t *ph, char id_out[48], const char **why)
{
    *why = NULL;
    const char *pid = json_string_value(json_object_get(ph, "id"));
    if (!pid || !*pid || strlen(pid) > 24 || strspn(pid, "0123456789") != strlen(pid)) {
        *why = "no numeric \"id\"";
        return NULL;
    }
    const char *url = NULL;
    static const char *const sizes[] = {"url_l", "url_c", "url_z", "url_o", "url_m"};
    for (size_t i = 0; !url && i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *u = json_string_value(json_object_get(ph, sizes[i]));
        if (u && strlen(u) <= FLICKR_URL_MAX && (!strncmp(u, "http://", 7) || !strncmp(u, "https://", 8)) &&
            !strpbrk(u, " \t\r\n"))
            url = u;
    }
    if (!url) {
        *why = "no http(s) image URL (url_l, url_c, url_z, url_o, url_m)";
        return NULL;
    }
    snprintf(id_out, 48, "flickr:%s", pid);
    json_t *src = json_pack("{s:s,s:s}", "kind", "flickr", "photo_id", pid);
    if (!src) return NULL;
    json_object_set_new(src, "title", text_cut(json_string_value(json_object_get(ph, "title")), FLICKR_TITLE_MAX));
    json_t *desc = json_object_get(ph, "description");
    const char *d = json_string_value(json_is_object(desc) ? json_object_get(desc, "_content") : desc);
    json_object_set_new(src, "description", text_cut(d, FLICKR_DESC_MAX));
    json_t *tags = json_array();
    const char *t = json_string_value(json_object_get(ph, "tags"));
    for (const char *s = t ? t : ""; *s && json_array_size(tags) < FLICKR_TAGS_MAX;) {
        size_t n = strcspn(s, " ");
        if (n && n <= 256) json_array_append_new(tags, json_stringn(s, n));
        s += n;
        while (*s == ' ') s++;
    }
    json_object_set_new(src, "tags", tags);
    const char *owner = json_string_value(json_object_get(ph, "owner"));
    if (owner && *owner && strlen(owner) <= 64 &&
        strspn(owner, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@_-") == strlen(owner)) {
        json_object_set_new(src, "owner", json_string(owner));
        char page[160];
        snprintf(page, sizeof page, "https://www.flickr.com/photos/%s/%s", owner, pid);
        json_object_set_new(src, "page", json_string(page));
    }
    json_object_set_new(src, "owner_name",
                        text_cut(json_string_value(json_object_get(ph, "ownername")), FLICKR_TITLE_MAX));
    long long lic = json_count(json_object_get(ph, "license"));
    if (lic >= 0) {
        json_object_set_new(src, "license", json_integer(lic));
        if ((size_t)lic < sizeof licenses / sizeof licenses[0])
            json_object_set_new(src, "license_name", json_string(licenses[lic]));
    }
    const char *dt = json_string_value(json_object_get(ph, "datetaken"));
    if (dt && strlen(dt) < 32) {
        json_object_set_new(src, "date_taken", json_string(dt));
        int64_t ts = taken_seconds(dt);
        if (ts) json_object_set_new(src, "taken", json_integer(ts));
    }
    double lat = coord(json_object_get(ph, "latitude")), lon = coord(json_object_get(ph, "longitude"));
    if ((lat || lon) && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180)
        json_object_set_new(src, "geo", json_pack("{s:f,s:f}", "lat", lat, "lon", lon));
    return json_pack("{s:s,s:s,s:o}", "id", id_out, "url", url, "source", src);
}

/* ---------------------------------------------------------------- the feed */

typedef struct pacer {
    double interval_s;    /* between two calls */
    double next;          /* cdx_now() of the next allowed call */
} pacer;

/* Sleep until t (cdx_now seconds) in short steps; 1 when cancelled. */
static int sleep_until(double t, cdx_cancel_flag *cancel)
{
    for (double now = cdx_now(); now < t; now = cdx_now()) {
        if (cancel && atomic_load(cancel)) return 1;
        double left = t - now;
        usleep((useconds_t)((left > 0.2 ? 0.2 : left) * 1e6));
    }
    return cancel && atomic_load(cancel);
}

/* One page, retried; *photos (a new reference) and *pages on success. */
static cdx_result fetch_page(const char *endpoint, const cdx_flickr_params *p, pacer *pc, long page,
                             json_t **photos, long *pages, uint64_t *calls)
{
    char url[8192];
    cdx_result r = page_url(endpoint, p, page, url, sizeof url);
    if (r) return r;
    for (int attempt = 0;; attempt++) {
        if (sleep_until(pc->next, p->cancel)) return CDX_OK;   /* cancelled: no photos, the feed ends */
        double t = cdx_now();
        pc->next = t + pc->interval_s;
        (*calls)++;
        source_http_reply rp;
        int retryable = 0;
        long wait_s = 0;
        r = source_http_get(url, FLICKR_PAGE_MAX_BYTES, FLICKR_TIMEOUT_S, &rp);
        if (r) {
            retryable = r == CDX_ERR_NETWORK;
        } else {
            wait_s = rp.retry_after_s;
            if (rp.status == 429 || (rp.status >= 500 && rp.status <= 599)) {
                retryable = 1;
                r = cdx_error(CDX_ERR_NETWORK, "HTTP status %ld%s", rp.status,
                              rp.status == 429 ? " (rate limited)" : "");
            } else if (rp.status < 200 || rp.status > 299) {
                r = cdx_error(CDX_ERR_NETWORK, "HTTP status %ld", rp.status);
            } else {
                r = flickr_parse_page(rp.data ? rp.data : "", rp.len, page, photos, pages, &retryable);
            }
            free(rp.data);
        }
        if (!r) return CDX_OK;
        if (!retryable || attempt >= p->max_retries) {
            char what[96];
            snprintf(what, sizeof what, "Flickr page %ld (after %d attempt%s)", page, attempt + 1, attempt ? "s" : "");
            return cdx_error_prefix(r, what);
        }
        double backoff = (double)p->backoff_ms / 1000.0 * (double)(1 << (attempt < 6 ? attempt : 6));
        if (backoff > 60) backoff = 60;
        if (wait_s > backoff) backoff = wait_s > 3600 ? 3600 : (double)wait_s;
        say(p, "page %ld: %s; retrying in %.1f s", page, cdx_last_error(), backoff);
        if (pc->next < t + backoff) pc->next = t + backoff;
    }
}

static cdx_result check_params(const cdx_flickr_params *p)
{
    if (!p->api_key || !*p->api_key) return cdx_error(CDX_ERR_INVALID_ARG, "a Flickr API key is required");
    if ((p->text != NULL) + (p->tags != NULL) + (p->user_id != NULL) != 1)
        return cdx_error(CDX_ERR_INVALID_ARG, "give exactly one of text, tags, user id");
    if (p->per_page < 1 || p->per_page > 500) return cdx_error(CDX_ERR_INVALID_ARG, "per page must be 1..500");
    if (!(p->rate_per_hour >= 1 && p->rate_per_hour <= 3600000))
        return cdx_error(CDX_ERR_INVALID_ARG, "rate must be 1..3600000 calls per hour");
    if (p->max_retries < 0 || p->max_retries > 100 || p->backoff_ms < 0 || p->backoff_ms > 600000)
        return cdx_error(CDX_ERR_INVALID_ARG, "retries must be 0..100 and backoff 0..600000 ms");
    return CDX_OK;
}

/* Publish the photos of one page; *stop when max is reached. */
static cdx_result feed_photos(cdx_fleet *f, const cdx_flickr_params *p, json_t *photos, cdx_feed_stats *st,
                              int *stop)
{
    for (size_t i = 0; i < json_array_size(photos); i++) {
        if (p->max && st->published + st->duplicates >= p->max) {
            *stop = 1;
            return CDX_OK;
        }
        char id[48];
        const char *why;
        json_t *rec = flickr_photo_record(json_array_get(photos, i), id, &why);
        char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
        json_decref(rec);
        if (!text || strlen(text) > FLEET_RECORD_MAX) {
            const char *pid = json_string_value(json_object_get(json_array_get(photos, i), "id"));
            say(p, "photo %.40s skipped: %s", pid ? pid : "?", why ? why : "record too large");
            free(text);
            st->skipped++;
            continue;
        }
        int dup = 0;
        cdx_result r = fleet_publish(f, f->work_subj, text, strlen(text), id, &dup);
        free(text);
        if (r) return r;
        if (dup) st->duplicates++;
        else st->published++;
    }
    return CDX_OK;
}

cdx_result cdx_fleet_feed_flickr(cdx_fleet *f, const cdx_flickr_params *params, cdx_feed_stats *stats)
{
    if (!f || !params) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_feed_flickr: NULL argument");
    cdx_feed_stats local;
    cdx_feed_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    cdx_result r = check_params(params);
    char *endpoint = NULL;
    if (!r) r = flickr_endpoint(params->endpoint, &endpoint);
    pacer pc = {3600.0 / params->rate_per_hour, cdx_now()};
    uint64_t calls = 0;
    int stop = 0;
    for (long page = 1, pages = 1; !r && !stop && page <= pages; page++) {
        json_t *photos = NULL;
        r = fetch_page(endpoint, params, &pc, page, &photos, &pages, &calls);
        if (!r) r = feed_photos(f, params, photos, st, &stop);
        if (!r && json_array_size(photos) == 0) stop = 1;
        json_decref(photos);
    }
    say(params, "%llu API calls", (unsigned long long)calls);
    free(endpoint);
    return r;
}
