/*
 * fuzz_request_json.c - libFuzzer target for the server's request parsing:
 * the JSON bodies of POST /api/search (text, image_url, image_base64,
 * image_id, vector, parts with weights, filters, mode, k/offset/min_score),
 * /text_search, /image_search, /search/images and POST /api/images, and the
 * query strings of GET /api/search and /text_search.  The real handlers
 * run (src/server/api_search.c, api_images.c, json_util.c, included so
 * libFuzzer instruments them) on a server context without a library: every
 * request that gets past validation reaches a library call that refuses
 * the NULL handle, and URL fetching is replaced by a refusal (no network).
 *
 * Input: the first byte picks the endpoint, the rest is the body (POST,
 * Content-Type application/json) or the query string (GET, split on '&'
 * and '=', not URL-decoded).  Every answer must have a status in 200..599,
 * and every error a JSON body {"error": {"code": string, "message":
 * non-empty string}}.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clipdex.h"

#include <stdlib.h>
#include <string.h>

/* No network in a fuzzer: the handlers' one HTTP call (cdx_http_get) is
 * renamed to a stub that refuses every URL as the SSRF check would. */
static cdx_result fuzz_http_get(const char *url, const cdx_http_params *p, cdx_http_response *out)
{
    (void)url, (void)p;
    memset(out, 0, sizeof *out);
    out->failure = CDX_HTTP_REFUSED;
    return cdx_set_error(CDX_ERR_NETWORK, "URL fetching is off in the fuzzer");
}
#define cdx_http_get fuzz_http_get

#include "server/json_util.c"
#include "server/api_images.c"
#include "server/api_search.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_response(const srv_response *rs)
{
    if (rs->status < 200 || rs->status > 599) abort();
    if (rs->status < 400) return;
    if (!rs->body) abort();
    json_t *j = json_loadb(rs->body, rs->body_len, 0, NULL);
    json_t *e = j ? json_object_get(j, "error") : NULL;
    json_t *c = e ? json_object_get(e, "code") : NULL, *m = e ? json_object_get(e, "message") : NULL;
    if (!json_is_string(c) || !json_is_string(m) || !json_string_length(m)) abort();
    json_decref(j);
}

/* GET: split "k=v&k=v" into rq->args (in place, in a NUL-terminated copy). */
static void split_query(char *q, srv_request *rq)
{
    for (char *kv = q; kv && *kv && rq->n_args < SRV_MAX_ARGS;) {
        char *amp = strchr(kv, '&');
        if (amp) *amp = '\0';
        char *eq = strchr(kv, '=');
        if (eq) *eq = '\0';
        rq->args[rq->n_args].key = kv;
        rq->args[rq->n_args].value = eq ? eq + 1 : "";
        rq->n_args++;
        kv = amp ? amp + 1 : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const srv_handler post[] = {api_search_post, api_text_search_post, api_image_search_post,
                                       api_search_images_post, api_image_add};
    static const srv_handler get[] = {api_search_get, api_text_search_get};
    if (size < 1) return 0;
    unsigned pick = data[0] % 8;
    char *body = malloc(size);   /* size - 1 bytes + NUL */
    if (!body) return 0;
    memcpy(body, data + 1, size - 1);
    body[size - 1] = '\0';

    srv_ctx s;
    memset(&s, 0, sizeof s);
    srv_config_defaults(&s.cfg);
    s.cfg.max_body = 1 << 20;
    s.dim = 8;
    srv_request rq;
    memset(&rq, 0, sizeof rq);
    srv_response rs;
    srv_response_init(&rs);
    if (pick < 5 || pick == 7) {
        rq.method = "POST";
        rq.path = "/api/search";
        rq.content_type = "application/json";
        rq.body = body;
        rq.body_len = size - 1;
        post[pick == 7 ? 0 : pick](&s, &rq, &rs);
    } else {
        rq.method = "GET";
        rq.path = "/api/search";
        split_query(body, &rq);
        get[pick - 5](&s, &rq, &rs);
    }
    check_response(&rs);
    srv_response_free(&rs);
    free(body);
    return 0;
}
