/*
 * web.h - static assets compiled into the binary: the web UI (everything
 * under web/, served at /) and the OpenAPI document (/api/openapi.json).
 *
 * scripts/embed_assets.py generates the table at build time (a C file in
 * the build directory; see CMakeLists.txt), with each file's Content-Type
 * and a strong ETag (a prefix of its sha256).  Lookups never touch the
 * filesystem, so no request path can reach a file.
 */
#ifndef CDX_SERVER_WEB_H
#define CDX_SERVER_WEB_H

#include <stddef.h>

typedef struct srv_asset {
    const char *path;          /* "/index.html", "/api/openapi.json" */
    const char *content_type;
    const char *etag;          /* quoted */
    const unsigned char *data;
    size_t len;
} srv_asset;

extern const srv_asset srv_assets[];
extern const size_t srv_n_assets;

/* The asset at path ("/" means "/index.html"), or NULL. */
const srv_asset *srv_asset_find(const char *path);

#endif
