/*
 * test_fleet.c - the parts of the fleet that need no broker: pipeline URL
 * validation (bad URLs refused before any connection; an unreachable
 * broker is CDX_ERR_NETWORK), and cdx_library_add_vectors, the commit path
 * of `index --from`, on a clip-tiny library: records with the images'
 * sha256 are added once, adding them again changes nothing, a wrong model
 * fingerprint, a bad sha256 or a zero vector commit nothing, a read-only
 * handle is refused, the stored vector is the normalised input, and a
 * local `index` of the same files afterwards finds them unchanged.
 * The streaming itself is tested end to end by tests/e2e_fleet.sh.
 */
#include "clipdex.h"
#include "ingest/source.h"
#include "testutil.h"

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

int main(void)
{
    test_urls();
    test_add_vectors(test_shared_dir());
    return test_finish();
}
