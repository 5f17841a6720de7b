/*
 * test_fleet.c - the parts of the fleet that need no broker: pipeline URL
 * validation (bad URLs refused before any connection; an unreachable
 * broker is CDX_ERR_NETWORK), and cdx_library_add_vectors, the commit path
 * of `index --from`, on a clip-tiny library: records with the images'
 * sha256 are added once, adding them again changes nothing, a wrong model
 * fingerprint, a bad sha256 or a zero vector commit nothing, a read-only
 * handle is refused, the stored vector is the normalised input, and a
 * local `index` of the same files afterwards finds them unchanged.
 * feed flickr's parsing of hostile search pages and photos (flickr.h) and
 * cdx_library_set_sources (source metadata, the source record and the
 * thumbnail of an image; invalid records write nothing).
 * The streaming itself is tested end to end by tests/e2e_fleet.sh and
 * tests/e2e_flickr.sh.
 */
#include "clipdex.h"
#include "fleet/flickr.h"
#include "ingest/source.h"
#include "testutil.h"

#include <jansson.h>

#include <sys/stat.h>
#include <unistd.h>

static void test_urls(void)
{
    const char *bad[] = {"http://127.0.0.1:4222/x", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222/",
                         "nats:///x", "nats://127.0.0.1:4222/Upper", "nats://127.0.0.1:4222/a.b",
                         "nats://127.0.0.1:4222/a/b",
                         "nats://127.0.0.1:4222/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cdx_fleet *f = (cdx_fleet *)1;
        CHECKF(cdx_fleet_open(bad[i], NULL, &f) == CDX_ERR_INVALID_ARG, "%s", bad[i]);
        CHECK(f == NULL);
    }
    cdx_fleet_params p = cdx_fleet_default_params();
    p.timeout_ms = 1000;
    cdx_fleet *f = NULL;
    CHECK(cdx_fleet_open("nats://127.0.0.1:1/x", &p, &f) == CDX_ERR_NETWORK);
    CHECK(f == NULL);
    CHECK(strlen(cdx_last_error()) > 0);
    cdx_fleet_close(NULL);
}

#define NIMG 3

/* cdx_library_set_sources on a library holding path. */
static void test_sources(cdx_library *lib, const char *path)
{
    static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9};
    const char *tags[] = {"zebrafinch", "bird"};
    cdx_source_record sr;
    memset(&sr, 0, sizeof sr);
    sr.path = path;
    sr.meta.title = "A quokkaesque title";
    sr.meta.description = "seen at dawn";
    sr.meta.tags = tags;
    sr.meta.n_tags = 2;
    sr.source_json = "{\"kind\":\"flickr\",\"owner_name\":\"Jo\",\"license_name\":\"CC BY 2.0\"}";
    sr.thumbnail = jpeg;
    sr.thumbnail_len = sizeof jpeg;
    int64_t id = 0;
    CHECK(cdx_library_find(lib, path, &id) == CDX_OK);
    /* invalid records write nothing, not even the valid ones beside them */
    cdx_source_record two[2] = {sr, sr};
    two[1].source_json = "[1]";
    size_t applied = 9;
    CHECK(cdx_library_set_sources(lib, two, 2, &applied) == CDX_ERR_INVALID_ARG && applied == 0);
    two[1] = sr;
    two[1].thumbnail = "GIF89a";
    two[1].thumbnail_len = 6;
    CHECK(cdx_library_set_sources(lib, two, 2, NULL) == CDX_ERR_INVALID_ARG);
    two[1] = sr;
    two[1].meta.title = "bell\a";
    CHECK(cdx_library_set_sources(lib, two, 2, NULL) == CDX_ERR_INVALID_ARG);
    char *json = (char *)1;
    CHECK(cdx_library_get_source(lib, id, &json) == CDX_OK && json == NULL);
    void *jp = NULL;
    size_t jl = 0;
    CHECK(cdx_library_get_thumbnail(lib, id, &jp, &jl) == CDX_ERR_NOT_FOUND);
    /* stored: text (full-text indexed), record, thumbnail; unknown paths skipped */
    two[1] = sr;
    two[1].path = "https://example.com/not-catalogued.jpg";
    CHECK(cdx_library_set_sources(lib, two, 2, &applied) == CDX_OK && applied == 1);
    CHECK(cdx_library_get_source(lib, id, &json) == CDX_OK && json && !strcmp(json, sr.source_json));
    free(json);
    CHECK(cdx_library_get_thumbnail(lib, id, &jp, &jl) == CDX_OK && jl == sizeof jpeg && !memcmp(jp, jpeg, jl));
    free(jp);
    cdx_image_text t;
    CHECK(cdx_library_get_text(lib, id, &t) == CDX_OK);
    CHECK(!strcmp(t.title, "A quokkaesque title") && !strcmp(t.tags, "zebrafinch\nbird"));
    cdx_image_text_free(&t);
    cdx_search_params p = cdx_search_default_params();
    cdx_hit hits[4];
    size_t n = 0;
    uint64_t total = 0;
    CHECK(cdx_library_search_keyword(lib, "quokkaesque", &p, hits, &n, &total) == CDX_OK);
    CHECK(n == 1 && hits[0].id == id);
    CHECK(cdx_library_search_keyword(lib, "tags:zebrafinch", &p, hits, &n, &total) == CDX_OK);
    CHECK(n == 1 && hits[0].id == id);
    /* a record without source JSON removes the stored one, keeps the thumbnail */
    sr.source_json = NULL;
    sr.thumbnail = NULL;
    CHECK(cdx_library_set_sources(lib, &sr, 1, NULL) == CDX_OK);
    CHECK(cdx_library_get_source(lib, id, &json) == CDX_OK && json == NULL);
    CHECK(cdx_library_get_thumbnail(lib, id, &jp, &jl) == CDX_OK);
    free(jp);
    /* a thumbnail alone keeps the text */
    cdx_source_record th;
    memset(&th, 0, sizeof th);
    th.path = path;
    th.thumbnail = jpeg;
    th.thumbnail_len = sizeof jpeg;
    CHECK(cdx_library_set_sources(lib, &th, 1, &applied) == CDX_OK && applied == 1);
    CHECK(cdx_library_get_text(lib, id, &t) == CDX_OK && !strcmp(t.title, "A quokkaesque title"));
    cdx_image_text_free(&t);
    CHECK(cdx_library_set_sources(NULL, &sr, 1, NULL) == CDX_ERR_INVALID_ARG);
}

static void test_add_vectors(const char *shared)
{
    char dir[] = "/tmp/test_fleet_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char libdir[600];
    snprintf(libdir, sizeof libdir, "%s/lib", dir);
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = test_fixture_dir();
    lp.create = 1;
    lp.writable = 1;
    lp.n_threads = 1;
    cdx_library *lib = NULL;
    CHECK(cdx_library_open(libdir, &lp, &lib) == CDX_OK);
    if (!lib) return;
    cdx_library_info li;
    CHECK(cdx_library_get_info(lib, &li) == CDX_OK);
    const char *names[NIMG] = {"astronaut.png", "coffee.png", "rocket.jpg"};
    cdx_image_record recs[NIMG];
    float *vecs = calloc((size_t)NIMG * (size_t)li.dim, sizeof *vecs);
    for (int i = 0; i < NIMG; i++) {
        memset(&recs[i], 0, sizeof recs[i]);
        snprintf(recs[i].path, sizeof recs[i].path, "%s/data/formats/%s", shared, names[i]);
        size_t len = 0;
        void *data = test_read_file(recs[i].path, &len);
        CHECK(data != NULL);
        uint8_t raw[32];
        source_sha256(data, len, raw, recs[i].sha256);
        struct stat st;
        CHECK(stat(recs[i].path, &st) == 0);
        recs[i].size = (uint64_t)st.st_size;
        recs[i].mtime = (int64_t)st.st_mtime;
        recs[i].width = 10;
        recs[i].height = 20;
        snprintf(recs[i].format, sizeof recs[i].format, "png");
        CHECK(cdx_library_embed_image_file(lib, recs[i].path, vecs + i * li.dim) == CDX_OK);
        for (int d = 0; d < li.dim; d++) vecs[i * li.dim + d] *= 3.0f;   /* normalised on the way in */
        free(data);
    }
    /* refused inputs change nothing */
    CHECK(cdx_library_add_vectors(lib, recs, vecs, NIMG, "00deadbeef", NULL) == CDX_ERR_MISMATCH);
    cdx_image_record bad = recs[0];
    snprintf(bad.sha256, sizeof bad.sha256, "xyz");
    CHECK(cdx_library_add_vectors(lib, &bad, vecs, 1, NULL, NULL) == CDX_ERR_FORMAT);
    float *zero = calloc((size_t)li.dim, sizeof *zero);
    CHECK(cdx_library_add_vectors(lib, recs, zero, 1, NULL, NULL) == CDX_ERR_FORMAT);
    free(zero);
    CHECK(cdx_library_add_vectors(NULL, recs, vecs, 1, NULL, NULL) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_library_get_info(lib, &li) == CDX_OK);
    CHECK(li.images == 0);
    /* added once, then unchanged */
    cdx_import_stats st;
    memset(&st, 0, sizeof st);
    CHECK(cdx_library_add_vectors(lib, recs, vecs, NIMG, li.model_fingerprint, &st) == CDX_OK);
    CHECK(st.added == NIMG && st.unchanged == 0);
    memset(&st, 0, sizeof st);
    CHECK(cdx_library_add_vectors(lib, recs, vecs, NIMG, li.model_fingerprint, &st) == CDX_OK);
    CHECK(st.added == 0 && st.unchanged == NIMG);
    CHECK(cdx_library_get_info(lib, &li) == CDX_OK);
    CHECK(li.images == NIMG && li.vectors == NIMG);
    /* stored: the record and the normalised vector */
    int64_t id = 0;
    CHECK(cdx_library_find(lib, recs[1].path, &id) == CDX_OK);
    cdx_image_record got;
    CHECK(cdx_library_get_image(lib, id, &got) == CDX_OK);
    CHECK(!strcmp(got.sha256, recs[1].sha256) && got.width == 10 && got.height == 20);
    float *v = calloc((size_t)li.dim, sizeof *v);
    CHECK(cdx_library_get_vector(lib, id, v) == CDX_OK);
    double err = 0;
    for (int d = 0; d < li.dim; d++) err = fmax(err, fabs(v[d] - vecs[li.dim + d] / 3.0f));
    CHECKF(err < 1e-5, "max abs error %g", err);
    free(v);
    test_sources(lib, recs[1].path);
    /* a local index of the same files finds them catalogued already */
    const char *paths[NIMG] = {recs[0].path, recs[1].path, recs[2].path};
    cdx_index_params ip = cdx_index_default_params();
    cdx_index_stats is;
    CHECK(cdx_library_index(lib, paths, NIMG, &ip, &is) == CDX_OK);
    CHECKF(is.unchanged == NIMG && is.added == 0, "unchanged %llu added %llu", (unsigned long long)is.unchanged,
           (unsigned long long)is.added);
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
    cdx_library_close(lib);
    /* read-only handles are refused */
    lp.create = 0;
    lp.writable = 0;
    lp.load_model = 0;
    CHECK(cdx_library_open(libdir, &lp, &lib) == CDX_OK);
    CHECK(cdx_library_add_vectors(lib, recs, vecs, 1, NULL, NULL) == CDX_ERR_INVALID_ARG);
    cdx_library_close(lib);
    free(vecs);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_flickr_page(void)
{
    struct { const char *text; int ok, retryable; long pages; size_t n; } cases[] = {
        {"{\"photos\":{\"page\":2,\"pages\":\"3\",\"photo\":[{\"id\":\"1\"},{\"id\":\"2\"}]},\"stat\":\"ok\"}", 1, 0, 3, 2},
        {"{\"photos\":{\"page\":\"2\",\"pages\":3,\"photo\":[]},\"stat\":\"ok\"}", 1, 0, 3, 0},
        {"{\"photos\":{\"page\":1,\"pages\":0,\"photo\":[]},\"stat\":\"ok\"}", 1, 0, 0, 0},
        {"{\"stat\":\"fail\",\"code\":100,\"message\":\"Invalid API Key\"}", 0, 0, 0, 0},
        {"{\"stat\":\"fail\",\"code\":105,\"message\":\"Service currently unavailable\"}", 0, 1, 0, 0},
        {"{\"photos\":{\"page\":2,\"pages\":3,\"photo\":[{\"id", 0, 1, 0, 0},
        {"", 0, 1, 0, 0},
        {"[1,2]", 0, 1, 0, 0},
        {"{\"photos\":{\"page\":3,\"pages\":3,\"photo\":[]},\"stat\":\"ok\"}", 0, 1, 0, 0},
        /* the result set shrank to one page: Flickr repeats page 1, the run ends */
        {"{\"photos\":{\"page\":1,\"pages\":1,\"photo\":[{\"id\":\"1\"}]},\"stat\":\"ok\"}", 1, 0, 1, 0},
        {"{\"photos\":{\"page\":2,\"pages\":3,\"photo\":{}},\"stat\":\"ok\"}", 0, 1, 0, 0},
        {"{\"photos\":{\"page\":2,\"pages\":-1,\"photo\":[]},\"stat\":\"ok\"}", 0, 1, 0, 0},
        {"{\"photos\":{\"page\":2,\"pages\":3,\"photo\":[]}}", 0, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *photos = NULL;
        long pages = -5;
        int retryable = -1;
        cdx_result r = flickr_parse_page(cases[i].text, strlen(cases[i].text), 2, &photos, &pages, &retryable);
        CHECKF((r == CDX_OK) == cases[i].ok, "case %zu: %s", i, cdx_last_error());
        if (cases[i].ok) {
            CHECKF(pages == cases[i].pages && json_array_size(photos) == cases[i].n, "case %zu", i);
        } else {
            CHECKF(photos == NULL && retryable == cases[i].retryable, "case %zu: retryable %d", i, retryable);
            CHECK(strlen(cdx_last_error()) > 0);
        }
        json_decref(photos);
    }
    /* the page count only when the photos are empty on page 1 of 0 */
    json_t *photos = NULL;
    long pages;
    int rt;
    const char *zero = "{\"photos\":{\"page\":1,\"pages\":0,\"photo\":[]},\"stat\":\"ok\"}";
    CHECK(flickr_parse_page(zero, strlen(zero), 1, &photos, &pages, &rt) == CDX_OK && pages == 0);
    json_decref(photos);
}

static void test_flickr_photo(void)
{
    const char *text =
        "{\"id\":\"53012345678\",\"owner\":\"12345678@N00\",\"title\":\"Red fox\",\"license\":\"4\","
        "\"description\":{\"_content\":\"In the snow\"},\"datetaken\":\"2021-02-03 04:05:06\","
        "\"ownername\":\"Jo\",\"tags\":\"fox  snow winter\",\"latitude\":\"45.5\",\"longitude\":-73.25,"
        "\"url_m\":\"https://live.staticflickr.com/m.jpg\",\"url_l\":\"https://live.staticflickr.com/l.jpg\"}";
    json_t *ph = json_loads(text, 0, NULL);
    CHECK(ph != NULL);
    char id[48];
    const char *why = "x";
    json_t *rec = flickr_photo_record(ph, id, &why);
    CHECK(rec != NULL && why == NULL);
    CHECK(!strcmp(id, "flickr:53012345678"));
    CHECK(!strcmp(json_string_value(json_object_get(rec, "url")), "https://live.staticflickr.com/l.jpg"));
    json_t *s = json_object_get(rec, "source");
    CHECK(!strcmp(json_string_value(json_object_get(s, "title")), "Red fox"));
    CHECK(!strcmp(json_string_value(json_object_get(s, "description")), "In the snow"));
    CHECK(json_array_size(json_object_get(s, "tags")) == 3);
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(s, "tags"), 1)), "snow"));
    CHECK(!strcmp(json_string_value(json_object_get(s, "page")), "https://www.flickr.com/photos/12345678@N00/53012345678"));
    CHECK(!strcmp(json_string_value(json_object_get(s, "license_name")), "CC BY 2.0"));
    CHECK(json_integer_value(json_object_get(s, "taken")) == 1612325106);
    json_t *geo = json_object_get(s, "geo");
    CHECK(json_real_value(json_object_get(geo, "lat")) == 45.5 && json_real_value(json_object_get(geo, "lon")) == -73.25);
    json_decref(rec);
    /* hostile fields: bad owner (no page), unknown licence, no geo, a title cut at a character */
    char title[3001];
    for (int i = 0; i < 1500; i++) memcpy(title + 2 * i, "\xc3\xa9", 2);   /* 1500 x e-acute */
    title[3000] = '\0';
    json_t *jt = json_string(title);
    CHECK(jt != NULL);
    json_object_set_new(ph, "title", jt);
    json_object_set_new(ph, "owner", json_string("a/b?c"));
    json_object_set_new(ph, "license", json_integer(99));
    json_object_set_new(ph, "latitude", json_string("0"));
    json_object_set_new(ph, "longitude", json_string("0"));
    rec = flickr_photo_record(ph, id, &why);
    CHECK(rec != NULL);
    s = json_object_get(rec, "source");
    CHECK(!json_object_get(s, "page") && !json_object_get(s, "owner") && !json_object_get(s, "license_name"));
    CHECK(json_integer_value(json_object_get(s, "license")) == 99 && !json_object_get(s, "geo"));
    const char *t = json_string_value(json_object_get(s, "title"));
    CHECKF(t && strlen(t) <= 1024 && strlen(t) % 2 == 0, "title of %zu bytes", t ? strlen(t) : 0);
    json_decref(rec);
    /* unusable photos */
    const char *bad[] = {"{\"id\":\"12a\",\"url_l\":\"https://x/y.jpg\"}", "{\"url_l\":\"https://x/y.jpg\"}",
                         "{\"id\":\"1\"}", "{\"id\":\"1\",\"url_l\":\"javascript:alert(1)\"}",
                         "{\"id\":\"1\",\"url_l\":\"https://x/a b.jpg\"}", "{\"id\":7}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *b = json_loads(bad[i], 0, NULL);
        why = NULL;
        CHECKF(flickr_photo_record(b, id, &why) == NULL && why != NULL, "%s", bad[i]);
        json_decref(b);
    }
    json_decref(ph);
    /* endpoints */
    char *ep = NULL;
    CHECK(flickr_endpoint("http://127.0.0.1:9/services/rest", &ep) == CDX_OK && !strcmp(ep, "http://127.0.0.1:9/services/rest"));
    free(ep);
    const char *bad_ep[] = {"ftp://x/rest", "http://", "http:///x", "https://x/rest?a=b", "https://x/a b"};
    for (size_t i = 0; i < sizeof bad_ep / sizeof *bad_ep; i++)
        CHECKF(flickr_endpoint(bad_ep[i], &ep) == CDX_ERR_INVALID_ARG && ep == NULL, "%s", bad_ep[i]);
    setenv("CLIPDEX_FLICKR_ENDPOINT", "http://localhost:1/rest", 1);
    CHECK(flickr_endpoint(NULL, &ep) == CDX_OK && !strcmp(ep, "http://localhost:1/rest"));
    free(ep);
    unsetenv("CLIPDEX_FLICKR_ENDPOINT");
    CHECK(flickr_endpoint(NULL, &ep) == CDX_OK && !strcmp(ep, "https://api.flickr.com/services/rest"));
    free(ep);
}

int main(void)
{
    test_urls();
    test_flickr_page();
    test_flickr_photo();
    test_add_vectors(test_shared_dir());
    return test_finish();
}
