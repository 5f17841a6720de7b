/*
 * test_server_units.c - unit tests of the server modules that need no
 * library: the SSRF address policy and URL fetching (cdx_http_get) against
 * an in-process upstream on 127.0.0.1, Prometheus rendering (metrics.c),
 * route matching / auth (routes.c) and the embedded assets (web.c).
 */
#include "serve_testutil.h"
#include "testutil.h"

#include "server/metrics.h"
#include "server/routes.h"
#include "server/web.h"

static int pub(const char *addr)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, addr, &a->sin6_addr) != 1) return -1;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, addr, &a->sin_addr) != 1) return -1;
    }
    return cdx_http_addr_is_public((struct sockaddr *)&ss);
}

static void test_addresses(void)
{
    const char *private_[] = {
        "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.255", "127.0.0.1",
        "127.255.0.1", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.168.1.1", "192.0.0.8",
        "198.18.0.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        "::", "::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::127.0.0.1",
        "64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::", "2002:c0a8:101::1", "fc00::1", "fd12:3456::1",
        "fe80::1", "febf::1", "fec0::1", "ff02::1", "2001:db8::1", "100::1", "4000::1"};
    for (size_t i = 0; i < sizeof private_ / sizeof private_[0]; i++)
        CHECKF(pub(private_[i]) == 0, "%s should be refused", private_[i]);
    const char *public_[] = {"1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.1", "172.15.255.255",
                             "172.32.0.1", "192.169.0.1", "169.253.0.1", "223.255.255.255", "11.0.0.1",
                             "2606:4700:4700::1111", "2a00:1450:4001::1", "::ffff:8.8.8.8", "64:ff9b::808:808",
                             "2002:808:808::1"};
    for (size_t i = 0; i < sizeof public_ / sizeof public_[0]; i++)
        CHECKF(pub(public_[i]) == 1, "%s should be allowed", public_[i]);
}

/* cdx_http_get as the server calls it: the failure kind, the body in
 * *data, the message in err. */
static cdx_http_failure get(const char *u, const cdx_http_params *p, char **data, size_t *len,
                            char *err, size_t err_len)
{
    cdx_http_response resp;
    cdx_result r = cdx_http_get(u, p, &resp);
    *data = resp.data;
    *len = resp.len;
    snprintf(err, err_len, "%s", r ? cdx_last_error() : "");
    if ((r == CDX_OK) != (resp.failure == CDX_HTTP_OK)) return (cdx_http_failure)-1;
    return resp.failure;
}

static void test_fetch(void)
{
    static const char img[] = "\x89PNG\r\n\x1a\n fake image bytes";
    upstream up;
    CHECK(upstream_start(&up, img, sizeof img - 1) == 0);
    cdx_http_params p = {.connect_timeout_ms = 2000, .timeout_ms = 1000, .max_bytes = 1 << 20,
                         .max_redirects = 3, .allow_private = 1, .require_image = 1};
    char *data;
    size_t len;
    char err[512], u[256];
    struct { const char *path; cdx_http_failure want; } cases[] = {
        {"/img", CDX_HTTP_OK},
        {"/img-octet", CDX_HTTP_OK},
        {"/redir/2", CDX_HTTP_OK},      /* 3 redirects */
        {"/redir/3", CDX_HTTP_REDIRECTS}, /* 4 */
        {"/redir-ftp", CDX_HTTP_REDIRECTS},
        {"/redir-file", CDX_HTTP_REDIRECTS},
        {"/text", CDX_HTTP_NOT_IMAGE},
        {"/missing", CDX_HTTP_STATUS},
        {"/big", CDX_HTTP_TOO_LARGE},
        {"/slow?ms=2500", CDX_HTTP_TIMEOUT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(u, sizeof u, "%s%s", up.base, cases[i].path);
        cdx_http_failure st = get(u, &p, &data, &len, err, sizeof err);
        CHECKF(st == cases[i].want, "%s: %d (%s), want %d", cases[i].path, st, err, cases[i].want);
        if (st == CDX_HTTP_OK) {
            CHECK(len == sizeof img - 1 && !memcmp(data, img, len));
            free(data);
        } else {
            CHECK(data == NULL && err[0]);
        }
    }
    /* without require_image any content type is a body (eval files, feeds) */
    p.require_image = 0;
    snprintf(u, sizeof u, "%s/text", up.base);
    CHECK(get(u, &p, &data, &len, err, sizeof err) == CDX_HTTP_OK && len > 0);
    free(data);
    p.require_image = 1;
    /* SSRF: loopback refused by default, also behind a name and a redirect */
    p.allow_private = 0;
    const char *fmt[] = {"%s/img", "http://localhost:%d/img", "http://[::1]:%d/img", "http://[::ffff:127.0.0.1]:%d/img",
                         "http://0x7f000001:%d/img", "http://2130706433:%d/img", "http://127.1:%d/img"};
    for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
        if (i == 0) snprintf(u, sizeof u, fmt[i], up.base);
        else snprintf(u, sizeof u, fmt[i], up.port);
        cdx_http_failure st = get(u, &p, &data, &len, err, sizeof err);
        CHECKF(st == CDX_HTTP_REFUSED, "%s: %d (%s)", u, st, err);
    }
    /* schemes other than http(s) never reach curl */
    const char *schemes[] = {"ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://127.0.0.1/", "dict://x", "", "//x/y"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        CHECK(get(schemes[i], &p, &data, &len, err, sizeof err) == CDX_HTTP_BAD_URL);
    /* a closed port: a plain failure */
    p.allow_private = 1;
    snprintf(u, sizeof u, "http://127.0.0.1:1/img");
    CHECK(get(u, &p, &data, &len, err, sizeof err) == CDX_HTTP_FAILED);
    upstream_stop(&up);
}

static void test_metrics(void)
{
    static const char *const names[] = {"/a", "/b/{id}"};
    srv_metrics *m = srv_metrics_new(names, 2);
    srv_metrics_observe(m, 0, "GET", 200, 0.003);
    srv_metrics_observe(m, 0, "GET", 200, 0.2);
    srv_metrics_observe(m, 1, "POST", 400, 20);
    srv_metrics_observe(m, 2, "GET", 404, 0.0001);     /* unmatched */
    srv_metrics_observe(m, 99, "BREW", 418, 0.0001);   /* clamped, "other" */
    srv_metrics_embeddings(m, 0, 3);
    srv_metrics_embeddings(m, 1, 2);
    srv_metrics_in_flight(m, 1);
    srv_library_gauges g = {1, 10, 9, 12345};
    size_t len;
    char *t = srv_metrics_render(m, &g, &len);
    CHECK(t && strlen(t) == len);
    const char *want[] = {
        "clipdex_http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 2\n",
        "clipdex_http_requests_total{route=\"/b/{id}\",method=\"POST\",status=\"400\"} 1\n",
        "clipdex_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n",
        "clipdex_http_requests_total{route=\"unmatched\",method=\"other\",status=\"other\"} 1\n",
        "clipdex_http_request_duration_seconds_bucket{route=\"/a\",method=\"GET\",status=\"200\",le=\"0.001\"} 0\n",
        "clipdex_http_request_duration_seconds_bucket{route=\"/a\",method=\"GET\",status=\"200\",le=\"0.005\"} 1\n",
        "clipdex_http_request_duration_seconds_bucket{route=\"/a\",method=\"GET\",status=\"200\",le=\"0.25\"} 2\n",
        "clipdex_http_request_duration_seconds_bucket{route=\"/b/{id}\",method=\"POST\",status=\"400\",le=\"10\"} 0\n",
        "clipdex_http_request_duration_seconds_bucket{route=\"/b/{id}\",method=\"POST\",status=\"400\",le=\"+Inf\"} 1\n",
        "clipdex_http_request_duration_seconds_sum{route=\"/a\",method=\"GET\",status=\"200\"} 0.203000\n",
        "clipdex_http_request_duration_seconds_count{route=\"/a\",method=\"GET\",status=\"200\"} 2\n",
        "# TYPE clipdex_http_request_duration_seconds histogram\n",
        "clipdex_http_in_flight_requests 1\n",
        "clipdex_embeddings_total{kind=\"text\"} 3\n",
        "clipdex_embeddings_total{kind=\"image\"} 2\n",
        "clipdex_library_images 10\n", "clipdex_library_vectors 9\n", "clipdex_library_bytes 12345\n",
    };
    for (size_t i = 0; t && i < sizeof want / sizeof want[0]; i++) CHECKF(strstr(t, want[i]), "missing: %s", want[i]);
    CHECK(t && !strstr(t, "status=\"201\""));   /* empty cells are not printed */
    free(t);
    srv_metrics_free(m);
    srv_metrics_free(NULL);
}

static void test_routes(void)
{
    const char *seg, *tail;
    size_t sl;
    char allow[64];
    int r = srv_route_match("GET", "/api/images/42/thumb", &seg, &sl, &tail, allow, sizeof allow);
    CHECK(r >= 0 && !strcmp(srv_routes[r].pattern, "/api/images/{id}/thumb") && sl == 2 && !strncmp(seg, "42", 2));
    r = srv_route_match("HEAD", "/api/images/7/file", &seg, &sl, &tail, allow, sizeof allow);
    CHECK(r >= 0 && !strcmp(srv_routes[r].pattern, "/api/images/{id}/file"));
    r = srv_route_match("DELETE", "/api/images/7", &seg, &sl, &tail, allow, sizeof allow);
    CHECK(r >= 0 && (srv_routes[r].flags & SRV_ROUTE_WRITE));
    CHECK(srv_route_match("PUT", "/api/images/7", &seg, &sl, &tail, allow, sizeof allow) == -2 &&
          !strcmp(allow, "GET, HEAD, DELETE"));
    CHECK(srv_route_match("GET", "/api/images//file", &seg, &sl, &tail, allow, sizeof allow) == -1);
    CHECK(srv_route_match("GET", "/api/images/1/file/x", &seg, &sl, &tail, allow, sizeof allow) == -1);
    CHECK(srv_route_match("GET", "/api/search/", &seg, &sl, &tail, allow, sizeof allow) == -1);
    CHECK(srv_route_match("GET", "/api/unknown", &seg, &sl, &tail, allow, sizeof allow) == -1);
    CHECK(srv_route_match("GET", "/../etc/passwd", &seg, &sl, &tail, allow, sizeof allow) == -1);
    r = srv_route_match("GET", "/index.html", &seg, &sl, &tail, allow, sizeof allow);
    CHECK(r >= 0 && tail && !strcmp(tail, "/index.html"));
    r = srv_route_match("GET", "/", &seg, &sl, &tail, allow, sizeof allow);
    CHECK(r >= 0 && !strcmp(srv_routes[r].pattern, "/"));
    CHECK(srv_route_match("POST", "/api/search", &seg, &sl, &tail, allow, sizeof allow) >= 0);
    /* auth */
    CHECK(srv_auth_ok(NULL, NULL) && srv_auth_ok("whatever", ""));
    CHECK(srv_auth_ok("Bearer tok", "tok") && srv_auth_ok("bearer  tok ", "tok"));
    CHECK(!srv_auth_ok(NULL, "tok") && !srv_auth_ok("Bearer to", "tok") && !srv_auth_ok("Bearer tokk", "tok"));
    CHECK(!srv_auth_ok("Basic dG9r", "tok") && !srv_auth_ok("Bearer", "tok") && !srv_auth_ok("Bearer ", "tok"));
    /* embedded assets */
    const srv_asset *a = srv_asset_find("/");
    CHECK(a && !strcmp(a->path, "/index.html") && !strncmp(a->content_type, "text/html", 9) && a->len > 0 &&
          a->etag[0] == '"');
    a = srv_asset_find("/api/openapi.json");
    json_t *doc = a ? json_loadb((const char *)a->data, a->len, 0, NULL) : NULL;
    CHECK(doc && json_object_get(doc, "paths"));
    json_decref(doc);
    CHECK(!srv_asset_find("/nope") && !srv_asset_find("index.html") && !srv_asset_find(NULL));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_addresses();
    test_fetch();
    test_metrics();
    test_routes();
    curl_global_cleanup();
    return test_finish();
}
