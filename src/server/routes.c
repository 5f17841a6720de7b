/*
 * routes.c - the route table and dispatch (see routes.h).  A linear scan of
 * ~20 patterns per request is cheaper than anything cleverer.
 */
#include "routes.h"

#include "json_util.h"
#include "web.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ROUTES(X) \
    X("GET", "/api/search", api_search_get, 0) \
    X("POST", "/api/search", api_search_post, 0) \
    X("GET", "/text_search", api_text_search_get, 0) \
    X("POST", "/text_search", api_text_search_post, 0) \
    X("POST", "/image_search", api_image_search_post, 0) \
    X("POST", "/search/images", api_search_images_post, 0) \
    X("POST", "/api/images", api_image_add, SRV_ROUTE_WRITE) \
    X("GET", "/api/images", api_image_list, 0) \
    X("GET", "/api/images/{id}", api_image_get, 0) \
    X("DELETE", "/api/images/{id}", api_image_delete, SRV_ROUTE_WRITE) \
    X("GET", "/api/images/{id}/file", api_image_file, 0) \
    X("GET", "/api/images/{id}/thumb", api_image_thumb, 0) \
    X("GET", "/api/health", api_health, 0) \
    X("GET", "/api/stats", api_stats, 0) \
    X("GET", "/metrics", api_metrics, 0) \
    X("GET", "/api/openapi.json", api_openapi, 0) \
    X("GET", "/api/dupes", api_dupes_get, 0) \
    X("GET", "/api/reindex", api_reindex_get, 0) \
    X("POST", "/api/reindex", api_reindex_post, SRV_ROUTE_WRITE) \
    X("GET", "/", api_web, 0) \
    X("GET", "/{asset}", api_web, 0)

#define AS_ROUTE(m, p, h, f) {m, p, h, f},
#define AS_NAME(m, p, h, f) p,
const srv_route srv_routes[] = {ROUTES(AS_ROUTE)};
const size_t srv_n_routes = sizeof srv_routes / sizeof srv_routes[0];
const char *const srv_route_names[] = {ROUTES(AS_NAME)};

/* Match path against pattern segment by segment. */
static int pattern_match(const char *pat, const char *path, const char **id_seg, size_t *id_len,
                         const char **tail)
{
    const char *p = pat, *s = path;
    while (*p && *s) {
        if (*p != '{') {
            if (*p != *s) return 0;
            p++;
            s++;
            continue;
        }
        const char *close = strchr(p, '}');
        if (!close) return 0;
        if (!strncmp(p, "{asset}", 7)) {
            /* the rest of the path, only when it names an embedded asset and
             * is not under /api/ */
            if (!strncmp(path, "/api/", 5) || s == path) return 0;
            if (!srv_asset_find(s - 1)) return 0;  /* with its leading '/' */
            *tail = s - 1;
            return 1;
        }
        const char *end = strchr(s, '/');
        if (!end) end = s + strlen(s);
        if (end == s) return 0;
        *id_seg = s;
        *id_len = (size_t)(end - s);
        p = close + 1;
        s = end;
    }
    return *p == '\0' && *s == '\0';
}

int srv_route_match(const char *method, const char *path, const char **id_seg,
                    size_t *id_len, const char **tail, char *allow, size_t allow_len)
{
    int found_path = 0;
    const char *m = strcmp(method, "HEAD") ? method : "GET";
    if (allow_len) allow[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < srv_n_routes; i++) {
        const char *seg = NULL, *t = NULL;
        size_t sl = 0;
        if (!pattern_match(srv_routes[i].pattern, path, &seg, &sl, &t)) continue;
        if (!strcmp(srv_routes[i].method, m)) {
            *id_seg = seg;
            *id_len = sl;
            *tail = t;
            return (int)i;
        }
        if (!strstr(allow, srv_routes[i].method)) {
            const char *extra = !strcmp(srv_routes[i].method, "GET") ? ", HEAD" : "";
            int w = snprintf(allow + used, allow_len - used, "%s%s%s", found_path ? ", " : "",
                             srv_routes[i].method, extra);
            if (w > 0 && (size_t)w < allow_len - used) used += (size_t)w;
        }
        found_path = 1;
    }
    return found_path ? -2 : -1;
}

int srv_auth_ok(const char *authorization, const char *token)
{
    if (!token || !*token) return 1;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return 0;
    const char *given = authorization + 7;
    while (*given == ' ') given++;
    size_t gl = strlen(given), tl = strlen(token);
    while (gl && given[gl - 1] == ' ') gl--;
    /* Compare in constant time over the token's length. */
    int diff = gl != tl;
    diff |= CRYPTO_memcmp(given, token, gl < tl ? gl : tl) != 0;
    return !diff;
}

void srv_dispatch(srv_ctx *s, srv_request *rq, srv_response *rs, size_t *route)
{
    *route = srv_n_routes;
    const char *seg = NULL, *tail = NULL;
    size_t seg_len = 0;
    int is_options = !strcmp(rq->method, "OPTIONS");
    int r = srv_route_match(is_options ? "\x01" : rq->method, rq->path, &seg, &seg_len, &tail,
                            rs->allow, sizeof rs->allow);
    if (r == -1) {
        srv_error(rs, 404, SRV_E_NOT_FOUND, "no route for %.200s", rq->path);
        return;
    }
    if (r == -2) {
        if (is_options) {
            /* CORS preflight or capability probe: the Allow header says it. */
            size_t n = strlen(rs->allow);
            snprintf(rs->allow + n, sizeof rs->allow - n, ", OPTIONS");
            rs->status = 204;
            return;
        }
        srv_error(rs, 405, SRV_E_METHOD, "method %.16s is not allowed on %.200s (allowed: %s)",
                  rq->method, rq->path, rs->allow);
        return;
    }
    *route = (size_t)r;
    const srv_route *rt = &srv_routes[r];
    if (rt->flags & SRV_ROUTE_WRITE) {
        if (s->cfg.read_only) {
            srv_error(rs, 403, SRV_E_FORBIDDEN, "the server is read-only (--read-only)");
            return;
        }
        if (!srv_auth_ok(rq->authorization, s->cfg.token)) {
            rs->www_authenticate = 1;
            srv_error(rs, 401, SRV_E_UNAUTHORIZED, "%s",
                      rq->authorization ? "invalid bearer token"
                                        : "this endpoint needs 'Authorization: Bearer TOKEN'");
            return;
        }
    }
    if (rq->too_many_args) {
        srv_error(rs, 400, SRV_E_BAD_REQUEST, "more than %d query parameters", SRV_MAX_ARGS);
        return;
    }
    /* A read-only server follows a reindex switch made by another process:
     * new queries use the library's new model (docs/models.md). */
    if (s->cfg.read_only && cdx_library_sync_model(s->lib, NULL) != CDX_OK) {
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "%s", cdx_last_error());
        return;
    }
    rq->tail = tail;
    rq->id = 0;
    if (seg) {
        char buf[24];
        long long id;
        if (seg_len >= sizeof buf) {
            srv_error(rs, 400, SRV_E_BAD_REQUEST, "image id must be a positive integer");
            return;
        }
        memcpy(buf, seg, seg_len);
        buf[seg_len] = '\0';
        if (srv_parse_ll(buf, 1, INT64_MAX, &id) != 0) {
            srv_error(rs, 400, SRV_E_BAD_REQUEST, "image id must be a positive integer, got '%s'", buf);
            return;
        }
        rq->id = id;
    }
    rt->handler(s, rq, rs);
    if (!rs->status) srv_error(rs, 500, SRV_E_INTERNAL, "handler produced no response");
}
