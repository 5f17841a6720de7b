/*
 * web.c - serving the embedded assets (see web.h): the UI at / and the
 * OpenAPI document.  Caching: ETag + "Cache-Control: no-cache" (revalidate
 * every time; a 304 costs one small round trip), because asset names carry
 * no content hash.
 */
#include "web.h"

#include "json_util.h"
#include "server.h"

#include <stdio.h>
#include <string.h>

const srv_asset *srv_asset_find(const char *path)
{
    if (!path) return NULL;
    if (!strcmp(path, "/")) path = "/index.html";
    for (size_t i = 0; i < srv_n_assets; i++)
        if (!strcmp(srv_assets[i].path, path)) return &srv_assets[i];
    return NULL;
}

static void serve_asset(const srv_asset *a, const srv_request *rq, srv_response *rs)
{
    snprintf(rs->etag, sizeof rs->etag, "%s", a->etag);
    rs->cache_control = "no-cache";
    if (srv_etag_match(rq->if_none_match, a->etag)) {
        rs->status = 304;
        return;
    }
    srv_response_free(rs);
    rs->body = (char *)a->data;
    rs->body_len = a->len;
    rs->body_static = 1;
    rs->content_type = a->content_type;
    rs->status = 200;
}

void api_web(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    (void)s;
    const srv_asset *a = srv_asset_find(rq->tail ? rq->tail : rq->path);
    if (!a) {
        srv_error(rs, 404, SRV_E_NOT_FOUND, "no such page");
        return;
    }
    serve_asset(a, rq, rs);
}

void api_openapi(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    (void)s;
    const srv_asset *a = srv_asset_find("/api/openapi.json");
    if (!a) {
        srv_error(rs, 500, SRV_E_INTERNAL, "the OpenAPI document is not compiled in");
        return;
    }
    serve_asset(a, rq, rs);
}
