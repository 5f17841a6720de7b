/*
 * test_fetch.c - unit tests of the model cache and downloader internals:
 * repo id / revision validation (nothing may build a path outside the
 * cache), names <-> directory names, URL building, endpoint / token / cache
 * root resolution from params and environment, Content-Range and
 * X-Linked-Etag parsing,
 * completeness, listing, and cdx_model_fetch's no-network paths (a complete
 * cached model is returned without contacting the endpoint).  The HTTP side
 * is tested end to end by e2e_model_fetch.sh.
 */
#include "testutil.h"

#include "clipdex.h"
#include "fetch/cache.h"
#include "fetch/fetch.h"

#include <errno.h>
#include <unistd.h>

static char tmp_root[256];

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void rm_rf(const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: %s failed\n", cmd);
}

static void test_repo_ids(void)
{
    const char *good[] = {"openai/clip-vit-base-patch32", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                          "a/b", "_a/b_", "a.b/c.d", "Org_1/x-y.z", "0/9"};
    const char *bad[] = {"", "a", "/b", "a/", "a/b/c", "../b", "a/..", "..", "a/.", ".a/b",
                         "-a/b", "a/b-", "a/b.", "a--b/c", "a/b..c", "a/b c", "a/b\n",
                         "a/b%2F", "a\\b/c", "a/\xc3\xa9", "a//b", "a/b/",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECKF(cdx_cache_check_repo_id(good[i]) == CDX_OK, "%s: %s", good[i], cdx_last_error());
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECKF(cdx_cache_check_repo_id(bad[i]) == CDX_ERR_INVALID_ARG, "accepted '%s'", bad[i]);
    CHECK(cdx_cache_check_repo_id(NULL) == CDX_ERR_INVALID_ARG);
    /* The message shows the id with control characters neutralised. */
    cdx_cache_check_repo_id("a/\x1b[31mred");
    CHECK(strstr(cdx_last_error(), "a/?[31mred") != NULL);
    CHECK(strchr(cdx_last_error(), '\x1b') == NULL);
}

static void test_revisions(void)
{
    const char *good[] = {"main", "v1.0", "refs/pr/3", "3f2a9c0d", "release_2024-01", "a/b/c"};
    const char *bad[] = {"", "..", "../x", "a/../b", "a/..", "/main", "main/", "a//b", ".hidden",
                         "a/.b", "-x", "a/-b", "a b", "a%2Fb", "a\\b", "ma\nin", "x?y", "a#b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECKF(cdx_cache_check_revision(good[i]) == CDX_OK, "%s: %s", good[i], cdx_last_error());
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECKF(cdx_cache_check_revision(bad[i]) == CDX_ERR_INVALID_ARG, "accepted '%s'", bad[i]);
    char longrev[300];
    memset(longrev, 'a', sizeof longrev - 1);
    longrev[sizeof longrev - 1] = '\0';
    CHECK(cdx_cache_check_revision(longrev) == CDX_ERR_INVALID_ARG);

    char *e = cdx_cache_encode_revision("refs/pr/3");
    CHECK(e && !strcmp(e, "refs%2Fpr%2F3"));
    char *d = e ? cdx_cache_decode_revision(e) : NULL;
    CHECK(d && !strcmp(d, "refs/pr/3"));
    free(e);
    free(d);
    const char *bad_enc[] = {"a/b", "%2e%2e", "..", "%2F..", "x%2", "x%41", "%2Fmain", ".x", ""};
    for (size_t i = 0; i < sizeof bad_enc / sizeof *bad_enc; i++) {
        d = cdx_cache_decode_revision(bad_enc[i]);
        CHECKF(d == NULL, "decoded '%s' to '%s'", bad_enc[i], d);
        free(d);
    }
    cdx_fetch_params p = cdx_fetch_default_params();
    CHECK(!strcmp(cdx_cache_revision(&p), "main"));
    p.revision = "";
    CHECK(!strcmp(cdx_cache_revision(&p), "main"));
    p.revision = "v2";
    CHECK(!strcmp(cdx_cache_revision(&p), "v2"));
    CHECK(!strcmp(cdx_cache_revision(NULL), "main"));
}

static void test_repo_dirnames(void)
{
    char *e = cdx_cache_encode_repo_id("openai/clip-vit-base-patch32");
    CHECK(e && !strcmp(e, "openai--clip-vit-base-patch32"));
    char *d = e ? cdx_cache_decode_repo_id(e) : NULL;
    CHECK(d && !strcmp(d, "openai/clip-vit-base-patch32"));
    free(e);
    free(d);
    const char *bad[] = {"openai", "a----b", "a--", "--b", "..--b", "a--b--c", "a--.b", ".lock"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        d = cdx_cache_decode_repo_id(bad[i]);
        CHECKF(d == NULL, "decoded '%s' to '%s'", bad[i], d);
        free(d);
    }
}

/* Random names over an alphabet rich in path syntax: whatever passes
 * validation must map to exactly <root>/<x>/<y> with harmless components. */
static void test_paths_stay_inside(void)
{
    static const char alphabet[] = "aaaabbbbcc.-_/%2F\\ ";
    uint32_t seed = 12345;
    int accepted = 0;
    for (int it = 0; it < 20000; it++) {
        char repo[24], rev[12];
        for (int k = 0; k < 3; k++) {
            /* k=0: owner, k=1: name (joined with '/' most of the time), k=2: revision */
            char *s = k == 2 ? rev : k == 1 ? repo + strlen(repo) : repo;
            seed = seed * 1103515245u + 12345u;
            int n = 1 + (int)((seed >> 16) % 8);
            for (int i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                s[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
            }
            s[n] = '\0';
            if (k == 0 && (seed >> 8) % 8 != 0) memcpy(repo + n, "/", 2);
        }
        char *dir = NULL;
        if (cdx_cache_model_dir("/cache", repo, rev, &dir) != CDX_OK) {
            CHECK(dir == NULL);
            continue;
        }
        accepted++;
        int ok = !strncmp(dir, "/cache/", 7);
        const char *a = dir + 7, *slash = strchr(a, '/');
        ok = ok && slash && !strchr(slash + 1, '/') && a[0] != '.' && slash[1] != '.' &&
             slash[1] != '\0' && slash != a && !strstr(dir, "..");
        CHECKF(ok, "repo '%s' rev '%s' -> '%s'", repo, rev, dir);
        /* ... and the mapping is reversible. */
        char *name = strndup(a, (size_t)(slash - a));
        char *back_repo = name ? cdx_cache_decode_repo_id(name) : NULL;
        char *back_rev = cdx_cache_decode_revision(slash + 1);
        CHECKF(back_repo && !strcmp(back_repo, repo), "repo '%s' round trip", repo);
        CHECKF(back_rev && !strcmp(back_rev, rev), "rev '%s' round trip", rev);
        free(name);
        free(back_repo);
        free(back_rev);
        free(dir);
    }
    CHECKF(accepted > 100, "only %d random names accepted: the test is too weak", accepted);
}

static void test_urls(void)
{
    char *url = NULL;
    CHECK(cdx_fetch_file_url("https://huggingface.co", "openai/clip-vit-base-patch32", "main",
                             "config.json", &url) == CDX_OK);
    CHECK(url && !strcmp(url, "https://huggingface.co/openai/clip-vit-base-patch32/resolve/main/config.json"));
    free(url);
    CHECK(cdx_fetch_file_url("http://127.0.0.1:8080/hf", "a/b", "refs/pr/3", "model.safetensors",
                             &url) == CDX_OK);
    CHECK(url && !strcmp(url, "http://127.0.0.1:8080/hf/a/b/resolve/refs%2Fpr%2F3/model.safetensors"));
    free(url);
    CHECK(cdx_fetch_file_url("https://h", "../etc", "main", "x", &url) == CDX_ERR_INVALID_ARG);
    CHECK(url == NULL);
    CHECK(cdx_fetch_file_url("https://h", "a/b", "../../x", "x", &url) == CDX_ERR_INVALID_ARG);

    char *dir = NULL;
    CHECK(cdx_cache_model_dir("/c/models", "openai/clip", "refs/pr/1", &dir) == CDX_OK);
    CHECK(dir && !strcmp(dir, "/c/models/openai--clip/refs%2Fpr%2F1"));
    free(dir);
}

static void test_endpoint_token(void)
{
    cdx_fetch_params p = cdx_fetch_default_params();
    CHECK(p.endpoint == NULL && p.cache_dir == NULL && p.token == NULL);
    CHECK(!strcmp(p.revision, "main") && p.connect_timeout_s == 15 && p.quiet == 0);

    char *e = NULL;
    unsetenv("CLIPDEX_HF_ENDPOINT");
    CHECK(cdx_fetch_endpoint(&p, &e) == CDX_OK && e && !strcmp(e, "https://huggingface.co"));
    free(e);
    setenv("CLIPDEX_HF_ENDPOINT", "http://127.0.0.1:9/mirror//", 1);
    CHECK(cdx_fetch_endpoint(NULL, &e) == CDX_OK && e && !strcmp(e, "http://127.0.0.1:9/mirror"));
    free(e);
    p.endpoint = "https://hf-mirror.example/";
    CHECK(cdx_fetch_endpoint(&p, &e) == CDX_OK && e && !strcmp(e, "https://hf-mirror.example"));
    free(e);
    const char *bad[] = {"ftp://x", "huggingface.co", "http://", "https:///x", "http://a b",
                         "http://h/?x", "http://h/#x", "http://h\r\nX: y", "file:///etc"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p.endpoint = bad[i];
        e = NULL;
        CHECKF(cdx_fetch_endpoint(&p, &e) == CDX_ERR_INVALID_ARG && !e, "accepted '%s'", bad[i]);
        free(e);
    }
    unsetenv("CLIPDEX_HF_ENDPOINT");

    const char *t = "x";
    setenv("HF_TOKEN", "hf_abc123", 1);
    CHECK(cdx_fetch_token(NULL, &t) == CDX_OK && t && !strcmp(t, "hf_abc123"));
    p = cdx_fetch_default_params();
    p.token = "";
    CHECK(cdx_fetch_token(&p, &t) == CDX_OK && t == NULL);
    p.token = "hf_secret\r\nX-Evil: 1";
    CHECK(cdx_fetch_token(&p, &t) == CDX_ERR_INVALID_ARG);
    CHECK(strstr(cdx_last_error(), "secret") == NULL);
    unsetenv("HF_TOKEN");
    CHECK(cdx_fetch_token(NULL, &t) == CDX_OK && t == NULL);
}

static void test_content_range(void)
{
    CHECK(cdx_fetch_content_range_total("bytes 0-99/100") == 100);
    CHECK(cdx_fetch_content_range_total("bytes 5000000-16315043/16315044") == 16315044);
    CHECK(cdx_fetch_content_range_total("bytes */16315044") == 16315044);
    CHECK(cdx_fetch_content_range_total("  BYTES 1-1/2\r\n") == 2);
    const char *bad[] = {"", "bytes", "bytes 0-1/*", "bytes 5-4/10", "bytes 0-1", "items 0-1/2",
                         "bytes 0-1/2 x", "bytes -1-2/3", "bytes 0-1/99999999999999999999",
                         "bytes 0-1/-5", "bytes */"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECKF(cdx_fetch_content_range_total(bad[i]) == -1, "parsed '%s'", bad[i]);
}

static void test_etag(void)
{
    static const char hex[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    char out[65], quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", hex);
    cdx_fetch_etag_sha256(quoted, out);
    CHECK(!strcmp(out, hex));
    snprintf(quoted, sizeof quoted, "W/\"%s\"", hex);
    cdx_fetch_etag_sha256(quoted, out);
    CHECK(!strcmp(out, hex));
    cdx_fetch_etag_sha256("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", out);
    CHECK(!strcmp(out, hex));
    /* git blob ids (40 hex) of non-LFS files, junk, wrong lengths: no sha256 */
    const char *bad[] = {"\"e1a4b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3\"", "", "\"\"",
                         "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0g\"",
                         "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a089"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memcpy(out, "x", 2);
        cdx_fetch_etag_sha256(bad[i], out);
        CHECKF(out[0] == '\0', "accepted '%s'", bad[i]);
    }
}

static void test_cache_root(void)
{
    char *r = NULL;
    cdx_fetch_params p = cdx_fetch_default_params();
    p.cache_dir = "/explicit";
    setenv("CLIPDEX_HOME", "/ch", 1);
    CHECK(cdx_model_cache_root(&p, &r) == CDX_OK && r && !strcmp(r, "/explicit"));
    free(r);
    setenv("XDG_DATA_HOME", "/xdg", 1);
    CHECK(cdx_model_cache_root(NULL, &r) == CDX_OK && r && !strcmp(r, "/ch/models"));
    free(r);
    unsetenv("CLIPDEX_HOME");
    CHECK(cdx_model_cache_root(NULL, &r) == CDX_OK && r && !strcmp(r, "/xdg/clipdex/models"));
    free(r);
    setenv("XDG_DATA_HOME", "relative/ignored", 1);
    setenv("HOME", "/home/u", 1);
    CHECK(cdx_model_cache_root(NULL, &r) == CDX_OK && r &&
          !strcmp(r, "/home/u/.local/share/clipdex/models"));
    free(r);
    unsetenv("XDG_DATA_HOME");
    unsetenv("HOME");
    CHECK(cdx_model_cache_root(NULL, &r) == CDX_ERR_NOT_FOUND && r == NULL);
}

static void make_model_dir(const char *dir, int marker)
{
    CHECK(cdx_cache_mkdirs(dir) == CDX_OK);
    for (int i = 0; i < cdx_cache_n_files; i++)
        if (cdx_cache_files[i].required) write_file(dir, cdx_cache_files[i].name, "{}");
    if (marker) write_file(dir, CDX_CACHE_MARKER, "{}");
}

static int collect(const cdx_cache_entry *e, void *user)
{
    char *buf = user;
    size_t n = strlen(buf);
    snprintf(buf + n, 1024 - n, "%s@%s:%d:%llu;", e->repo_id, e->revision, e->complete,
             (unsigned long long)e->bytes);
    return 0;
}

static void test_cache_on_disk(void)
{
    char root[512], dir[700];
    snprintf(root, sizeof root, "%s/models", tmp_root);
    cdx_fetch_params p = cdx_fetch_default_params();
    p.cache_dir = root;

    /* An absent cache is an empty list. */
    char seen[1024] = "";
    CHECK(cdx_model_cache_list(&p, collect, seen) == CDX_OK && seen[0] == '\0');

    snprintf(dir, sizeof dir, "%s/zed--model/main", root);
    make_model_dir(dir, 1);
    snprintf(dir, sizeof dir, "%s/acme--clip/refs%%2Fpr%%2F2", root);
    make_model_dir(dir, 0); /* no marker: partial */
    snprintf(dir, sizeof dir, "%s/acme--clip/main", root);
    make_model_dir(dir, 1);
    write_file(dir, "model.safetensors.part", "abc");
    /* Junk the listing must skip. */
    snprintf(dir, sizeof dir, "%s/not-a-repo/main", root);
    CHECK(cdx_cache_mkdirs(dir) == CDX_OK);
    snprintf(dir, sizeof dir, "%s/a--b--c/main", root);
    CHECK(cdx_cache_mkdirs(dir) == CDX_OK);
    snprintf(dir, sizeof dir, "%s/acme--clip/..%%2Fx", root);
    CHECK(cdx_cache_mkdirs(dir) == CDX_OK);
    snprintf(dir, sizeof dir, "%s/acme--clip", root);
    write_file(dir, "stray-file", "x");

    CHECK(cdx_model_cache_list(&p, collect, seen) == CDX_OK);
    /* required files hold "{}" (2 bytes) x 5; main also has a 3-byte .part */
    CHECKF(!strcmp(seen, "acme/clip@main:1:13;acme/clip@refs/pr/2:0:10;zed/model@main:1:10;"),
           "listing: %s", seen);

    /* Completeness needs the marker and every required file. */
    char *d = NULL;
    int complete = -1;
    p.revision = "refs/pr/2";
    CHECK(cdx_model_cache_dir("acme/clip", &p, &d, &complete) == CDX_OK && complete == 0);
    free(d);
    p.revision = "main";
    CHECK(cdx_model_cache_dir("acme/clip", &p, &d, &complete) == CDX_OK && complete == 1);
    char path[800];
    snprintf(path, sizeof path, "%s/%s", d, "merges.txt");
    CHECK(unlink(path) == 0);
    CHECK(cdx_cache_dir_complete(d) == 0);
    write_file(d, "merges.txt", "{}");
    CHECK(cdx_cache_dir_complete(d) == 1);
    free(d);
    CHECK(cdx_model_cache_dir("../x", &p, &d, &complete) == CDX_ERR_INVALID_ARG && !d);

    /* A complete model is returned without any network access: the endpoint
     * is a closed port, which would fail. */
    p.endpoint = "http://127.0.0.1:1";
    p.quiet = 1;
    d = NULL;
    CHECKF(cdx_model_fetch("zed/model", &p, &d) == CDX_OK, "%s", cdx_last_error());
    snprintf(path, sizeof path, "%s/zed--model/main", root);
    CHECK(d && !strcmp(d, path));
    free(d);

    /* An incomplete one needs the network: a clear error, nothing returned,
     * and the partial download kept for the next attempt. */
    p.revision = "refs/pr/2";
    d = (char *)"sentinel";
    cdx_result r = cdx_model_fetch("acme/clip", &p, &d);
    CHECK(r == CDX_ERR_NETWORK && d == NULL);
    CHECKF(strstr(cdx_last_error(), "cannot reach http://127.0.0.1:1") != NULL, "%s",
           cdx_last_error());
    snprintf(path, sizeof path, "%s/acme--clip/refs%%2Fpr%%2F2/config.json", root);
    CHECK(access(path, F_OK) == 0);

    /* A fresh model that fails leaves no empty directory behind. */
    p.revision = NULL;
    CHECK(cdx_model_fetch("fresh/model", &p, &d) == CDX_ERR_NETWORK && d == NULL);
    snprintf(path, sizeof path, "%s/fresh--model", root);
    CHECK(access(path, F_OK) != 0 && errno == ENOENT);

    /* Bad arguments fail before touching the disk. */
    CHECK(cdx_model_fetch("a/b/../../../x", &p, &d) == CDX_ERR_INVALID_ARG && d == NULL);
    p.revision = "../../../tmp";
    CHECK(cdx_model_fetch("a/b", &p, &d) == CDX_ERR_INVALID_ARG && d == NULL);
    snprintf(path, sizeof path, "%s/a--b", root);
    CHECK(access(path, F_OK) != 0);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/cdx_test_fetch.XXXXXX");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    unsetenv("CLIPDEX_HF_ENDPOINT");
    unsetenv("HF_TOKEN");
    test_repo_ids();
    test_revisions();
    test_repo_dirnames();
    test_paths_stay_inside();
    test_urls();
    test_endpoint_token();
    test_content_range();
    test_etag();
    test_cache_root();
    test_cache_on_disk();
    rm_rf(tmp_root);
    return test_finish();
}
