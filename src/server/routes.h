/*
 * routes.h - the server's route table and dispatch: matching (404 / 405
 * with Allow), the {id} path parameter, write protection (read-only mode,
 * bearer token), OPTIONS.  The table is the single list of endpoints; the
 * OpenAPI document (openapi.json) is checked against it by the tests.
 */
#ifndef CDX_SERVER_ROUTES_H
#define CDX_SERVER_ROUTES_H

#include "server.h"

enum { SRV_ROUTE_WRITE = 1 };

typedef struct srv_route {
    const char *method;    /* GET, POST, DELETE (HEAD is served by GET routes) */
    const char *pattern;   /* literal segments, "{id}", or a final "{asset}" */
    srv_handler handler;
    int flags;
} srv_route;

extern const srv_route srv_routes[];
extern const size_t srv_n_routes;
/* srv_route_names[i] = srv_routes[i].pattern (for metrics labels). */
extern const char *const srv_route_names[];

/* Find the route for method + path.  Returns its index, -1 when no route
 * has this path (404), -2 when routes exist for other methods (405; allow
 * receives them, e.g. "GET, HEAD").  *id_seg / *tail point into path. */
int srv_route_match(const char *method, const char *path, const char **id_seg,
                    size_t *id_len, const char **tail, char *allow, size_t allow_len);

/* Route and run one request.  *route receives the matched index or
 * srv_n_routes when none (for metrics).  rs is always set on return. */
void srv_dispatch(srv_ctx *s, srv_request *rq, srv_response *rs, size_t *route);

/* Constant-time check of an "Authorization: Bearer T" header. */
int srv_auth_ok(const char *authorization, const char *token);

#endif
