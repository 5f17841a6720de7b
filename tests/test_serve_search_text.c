/*
 * test_serve_search_text.c - keyword, hybrid and combined search over HTTP
 * (docs/server.md, docs/search.md) on a real `clipdex serve` child: mode
 * and tag parameters in the query string and JSON, weighted "parts", the
 * default mode, and clear 400s for bad input (malformed FTS5 syntax,
 * unknown mode, keyword_weight out of range, bad parts) - never a 500.
 */
#include "clipdex.h"
#include "serve_testutil.h"
#include "testutil.h"

#include <vips/vips.h>

static char lib_dir[256];
static char A[128];
static int64_t tagged_id;

static void build_library(const char *formats)
{
    snprintf(lib_dir, sizeof lib_dir, "/tmp/cdx-serve-text-XXXXXX");
    if (!mkdtemp(lib_dir)) exit(1);
    char img[300];
    snprintf(img, sizeof img, "%s/lighthouse.jpg", lib_dir);
    VipsImage *black = NULL;
    CHECK(vips_black(&black, 32, 32, "bands", 3, NULL) == 0);
    vips_image_set_string(black, "exif-ifd0-ImageDescription", "Lighthouse at dawn");
    vips_image_set_string(black, "exif-ifd0-XPKeywords", "coast;Morning");
    CHECK(vips_jpegsave(black, img, NULL) == 0);
    g_object_unref(black);
    strncat(lib_dir, "/lib", sizeof lib_dir - strlen(lib_dir) - 1);
    cdx_library *lib = test_create_library(lib_dir, 2);
    cdx_index_params ip = cdx_index_default_params();
    cdx_index_stats st;
    const char *paths[] = {formats, img};
    CHECK(cdx_library_index(lib, paths, 2, &ip, &st) == CDX_OK && st.added == 11);
    CHECK(cdx_library_find(lib, img, &tagged_id) == CDX_OK);
    cdx_library_close(lib);
}

/* GET/POST and expect status; returns the parsed body (caller decrefs). */
static json_t *call(const char *method, const char *path, const char *body, long want)
{
    char url[2048];
    snprintf(url, sizeof url, "%s%s", A, path);
    http_resp r = body ? http_json(method, url, body, NULL) : http_get(url, NULL);
    CHECKF(r.status == want, "%s %s %s: %ld %.300s", method, path, body ? body : "", r.status,
           r.body ? r.body : "");
    json_t *j = http_body_json(&r);
    http_free(&r);
    return j;
}

static void expect_400(const char *method, const char *path, const char *body, const char *msg)
{
    json_t *j = call(method, path, body, 400);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    CHECKF(m && strstr(m, msg), "%s %s: message %s (want ...%s...)", path, body ? body : "", m ? m : "(none)", msg);
    json_decref(j);
}

static const char *mode_of(json_t *j) { return json_string_value(json_object_get(j, "mode")); }

static int64_t first_id(json_t *j)
{
    return json_integer_value(json_object_get(json_array_get(json_object_get(j, "results"), 0), "id"));
}

static void ids(json_t *j, char *out, size_t n)
{
    json_t *res = json_object_get(j, "results");
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(res) && k + 24 < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%lld,", (long long)json_integer_value(json_object_get(json_array_get(res, i), "id")));
}

int main(void)
{
    static char formats[1024];
    snprintf(formats, sizeof formats, "%s/data/formats", test_shared_dir());
    test_fixture_dir();
    if (VIPS_INIT("test")) return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    atexit(kill_children);
    build_library(formats);
    static child ca;
    const char *args[] = {"--library", lib_dir, "--read-only", "--threads", "2", "--access-log", "off", NULL};
    if (child_start(&ca, args, NULL, NULL, 0)) {
        fprintf(stderr, "cannot start the server\n");
        return 1;
    }
    snprintf(A, sizeof A, "%s", ca.url);

    /* keyword mode: FTS5 syntax over names and embedded metadata */
    json_t *j = call("GET", "/api/search?q=lighthouse&mode=keyword", NULL, 200);
    CHECK(!strcmp(mode_of(j), "keyword") && json_integer_value(json_object_get(j, "total")) == 1 &&
          first_id(j) == tagged_id);
    json_decref(j);
    j = call("GET", "/api/search?q=%22at+dawn%22+AND+coas*&mode=keyword", NULL, 200);
    CHECK(first_id(j) == tagged_id);
    json_decref(j);
    j = call("POST", "/api/search", "{\"text\": \"horse OR camera\", \"mode\": \"keyword\", \"k\": 5}", 200);
    CHECK(json_array_size(json_object_get(j, "results")) == 2);
    json_decref(j);
    /* default mode: hybrid (the library has text); explicit semantic */
    j = call("GET", "/api/search?q=lighthouse", NULL, 200);
    CHECK(!strcmp(mode_of(j), "hybrid") && first_id(j) == tagged_id);
    json_decref(j);
    j = call("GET", "/api/search?q=lighthouse&mode=semantic&k=11", NULL, 200);
    CHECK(!strcmp(mode_of(j), "semantic"));
    json_decref(j);
    j = call("GET", "/api/search?image_id=1", NULL, 200);   /* no words: semantic */
    CHECK(!strcmp(mode_of(j), "semantic"));
    json_decref(j);
    /* tag filter: embedded keywords, case-insensitive, in every mode */
    j = call("GET", "/api/search?q=a+photo&tag=MORNING&mode=semantic", NULL, 200);
    CHECK(json_integer_value(json_object_get(j, "total")) == 1 && first_id(j) == tagged_id);
    json_decref(j);
    j = call("POST", "/api/search", "{\"text\": \"horse\", \"filters\": {\"tag\": \"coast\"}}", 200);
    CHECK(first_id(j) == tagged_id && json_array_size(json_object_get(j, "results")) == 1);
    json_decref(j);

    /* combined queries: one part of weight 1 = the plain query */
    char a[512], b[512];
    j = call("POST", "/api/search", "{\"text\": \"a red horse\", \"mode\": \"semantic\", \"k\": 11}", 200);
    ids(j, a, sizeof a);
    json_decref(j);
    j = call("POST", "/api/search", "{\"parts\": [{\"text\": \"a red horse\"}], \"mode\": \"semantic\", \"k\": 11}", 200);
    ids(j, b, sizeof b);
    CHECKF(!strcmp(a, b), "%s vs %s", a, b);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "query"), "type")), "parts"));
    json_decref(j);
    j = call("POST", "/api/search", "{\"parts\": [{\"image_id\": 1, \"weight\": 1}, {\"text\": \"night\", \"weight\": -0.5},"
             " {\"text\": \"lighthouse\", \"weight\": 0.3}], \"k\": 3}", 200);
    CHECK(!strcmp(mode_of(j), "hybrid") && json_array_size(json_object_get(j, "results")) == 3);
    json_decref(j);

    /* bad input: clear 400s */
    expect_400("GET", "/api/search?q=%22lighthouse&mode=keyword", NULL, "is not valid");
    expect_400("GET", "/api/search?q=lighthouse+AND&mode=keyword", NULL, "syntax error");
    expect_400("GET", "/api/search?q=nocol:x&mode=keyword", NULL, "is not valid");
    expect_400("GET", "/api/search?q=x&mode=fuzzy", NULL, "'mode' must be semantic, keyword or hybrid");
    expect_400("GET", "/api/search?q=x&keyword_weight=1.5", NULL, "keyword_weight");
    expect_400("GET", "/api/search?image_id=1&mode=keyword", NULL, "takes a text query");
    expect_400("GET", "/api/search?image_id=1&mode=hybrid", NULL, "needs a text");
    expect_400("POST", "/api/search", "{\"parts\": []}", "1 to 16 parts");
    expect_400("POST", "/api/search", "{\"parts\": {\"text\": \"x\"}}", "1 to 16 parts");
    expect_400("POST", "/api/search", "{\"parts\": [{\"text\": \"x\", \"weight\": 0}]}", "must not be 0");
    expect_400("POST", "/api/search", "{\"parts\": [{\"text\": \"x\", \"weight\": 11}]}", "weight");
    expect_400("POST", "/api/search", "{\"parts\": [{\"text\": \"x\", \"image_id\": 1}]}", "exactly one of");
    expect_400("POST", "/api/search", "{\"parts\": [{\"colour\": \"red\"}]}", "colour");
    expect_400("POST", "/api/search", "{\"parts\": [{\"vector\": [1, 2]}]}", "array of 64 numbers");
    expect_400("POST", "/api/search", "{\"parts\": [{\"text\": \"x\"}, {\"text\": \"x\", \"weight\": -1}]}", "cancel out");
    expect_400("POST", "/api/search", "{\"parts\": [{\"text\": \"x\"}], \"text\": \"y\"}", "exactly one query");
    expect_400("POST", "/api/search", "{\"text\": \"x\", \"filters\": {\"tag\": 3}}", "tag");
    expect_400("POST", "/api/search", "{\"text\": \"x\", \"mode\": \"keyword\", \"parts\": [{\"text\": \"x\"}]}", "exactly one query");
    json_t *e = call("POST", "/api/search", "{\"parts\": [{\"image_id\": 999}]}", 404);
    json_decref(e);

    CHECK(child_stop(&ca, 20) == 0);
    char cmd[600];
    *strrchr(lib_dir, '/') = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", lib_dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    curl_global_cleanup();
    return test_finish();
}
