/*
 * test_server_parsers.c - unit tests of the server's input parsers, no
 * network: strict base64 (base64.c), multipart/form-data (multipart.c),
 * JSON/field validation, times, UTF-8 and ETag matching (json_util.c).
 */
#include "testutil.h"

#include "server/base64.h"
#include "server/json_util.h"
#include "server/multipart.h"

static int b64(const char *s, const char *want, size_t want_len)
{
    unsigned char *out;
    size_t n;
    char err[128];
    int r = srv_base64_decode(s, strlen(s), 1 << 20, &out, &n, err, sizeof err);
    if (r) return want ? 0 : 1;
    int ok = want && n == want_len && !memcmp(out, want, n);
    free(out);
    return ok;
}

static void test_base64(void)
{
    CHECK(b64("aGVsbG8=", "hello", 5));
    CHECK(b64("aGVsbG8h", "hello!", 6));
    CHECK(b64("aGk=", "hi", 2));
    CHECK(b64("YQ==", "a", 1));
    CHECK(b64("aGVs\nbG8h\r\n", "hello!", 6));           /* wrapped lines */
    CHECK(b64("data:image/png;base64,aGk=", "hi", 2));
    CHECK(b64("DATA:;base64,aGk=", "hi", 2));
    CHECK(b64("AAEC/w==", "\x00\x01\x02\xff", 4));
    CHECK(b64("+/+/", "\xfb\xff\xbf", 3));
    /* refused */
    CHECK(b64("", NULL, 0));
    CHECK(b64("   ", NULL, 0));
    CHECK(b64("aGVsbG8", NULL, 0));        /* unpadded */
    CHECK(b64("aGk", NULL, 0));
    CHECK(b64("aGk==", NULL, 0));          /* length */
    CHECK(b64("a===", NULL, 0));           /* 3 pads */
    CHECK(b64("aG=k", NULL, 0));           /* data after padding */
    CHECK(b64("YQ==YQ==", NULL, 0));
    CHECK(b64("aGVsbG8-", NULL, 0));       /* URL-safe */
    CHECK(b64("aGVsbG8_", NULL, 0));
    CHECK(b64("aGVs*G8h", NULL, 0));
    CHECK(b64("data:image/png,aGk=", NULL, 0));
    CHECK(b64("data:image/png;base64", NULL, 0));
    /* size cap before allocation of the output */
    unsigned char *out;
    size_t n;
    char err[128];
    CHECK(srv_base64_decode("aGVsbG8h", 8, 5, &out, &n, err, sizeof err) != 0 && strstr(err, "limit"));
    CHECK(srv_base64_decode("aGVsbG8h", 8, 6, &out, &n, err, sizeof err) == 0 && n == 6);
    free(out);
}

static const char *CT = "multipart/form-data; boundary=----b0undary";

static int mp(const char *body, srv_part *parts, size_t *n)
{
    char err[256];
    return srv_multipart_parse(CT, body, strlen(body), parts, 4, n, err, sizeof err);
}

static void test_multipart(void)
{
    srv_part p[4];
    size_t n;
    const char *ok =
        "------b0undary\r\n"
        "Content-Disposition: form-data; name=\"image\"; filename=\"a \\\"b\\\".png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
        "\x89PNG\r\n--not-a-boundary\r\n\x00zz\r\n"
        "------b0undary\r\n"
        "content-disposition: form-data; name=k\r\n\r\n"
        "5\r\n"
        "------b0undary--\r\nepilogue";
    char err[256];
    /* the body has a NUL inside the image: pass its real length */
    const char *nul = memchr(ok, '\0', 200);
    size_t len = (size_t)(nul - ok) + 1 + strlen(nul + 1);
    CHECK(srv_multipart_parse(CT, ok, len, p, 4, &n, err, sizeof err) == 0);
    CHECKF(n == 2, "%zu parts: %s", n, err);
    CHECK(!strcmp(p[0].name, "image") && p[0].has_filename && !strcmp(p[0].filename, "a \"b\".png"));
    CHECK(!strcmp(p[0].content_type, "image/png"));
    CHECK(p[0].len == 27 && !memcmp(p[0].data, "\x89PNG\r\n--not-a-boundary\r\n\x00zz", 27));
    CHECK(!strcmp(p[1].name, "k") && !p[1].has_filename && p[1].len == 1 && p[1].data[0] == '5');
    /* preamble and quoted boundary */
    const char *q = "preamble\r\n--xy\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--xy--";
    CHECK(srv_multipart_parse("multipart/form-data; charset=utf-8; boundary=\"xy\"", q, strlen(q), p, 4, &n, err,
                              sizeof err) == 0 && n == 1 && p[0].len == 1);
    /* an empty part value */
    const char *e = "------b0undary\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n------b0undary--";
    CHECK(mp(e, p, &n) == 0 && n == 1 && p[0].len == 0);
    /* refused */
    const char *bad[] = {
        "",
        "no boundary at all",
        "------b0undary\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
        "------b0undary\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n------b0undary",
        "------b0undary\r\nContent-Type: text/plain\r\n\r\n1\r\n------b0undary--",
        "------b0undary\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n------b0undary--",
        "------b0undary\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\n1\r\n------b0undary--",
        "------b0undary\r\nContent-Disposition: form-data; name=\"unterminated\r\n\r\n1\r\n------b0undary--",
        "------b0undary\r\n\r\n1\r\n------b0undary--",
        "------b0undaryX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n------b0undary--",
        "------b0undary\r\nno colon here\r\n\r\n1\r\n------b0undary--",
        "------b0undary\r\nContent-Disposition: form-data; name=\"a\"\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECKF(mp(bad[i], p, &n) != 0, "bad[%zu] accepted", i);
    /* part count cap */
    char many[2048] = "";
    for (int i = 0; i < 5; i++)
        strncat(many, "------b0undary\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n", sizeof many - strlen(many) - 1);
    strncat(many, "------b0undary--", sizeof many - strlen(many) - 1);
    CHECK(mp(many, p, &n) != 0);
    /* name length cap */
    char longname[400];
    snprintf(longname, sizeof longname, "------b0undary\r\nContent-Disposition: form-data; name=\"%0100d\"\r\n\r\nx\r\n------b0undary--", 0);
    CHECK(mp(longname, p, &n) != 0);
    /* Content-Type checks */
    CHECK(srv_is_multipart("multipart/form-data; boundary=a"));
    CHECK(srv_is_multipart("Multipart/Form-Data;boundary=a"));
    CHECK(!srv_is_multipart("multipart/form-datax"));
    CHECK(!srv_is_multipart("application/json"));
    CHECK(!srv_is_multipart(NULL));
    CHECK(srv_multipart_parse("multipart/form-data", "x", 1, p, 4, &n, err, sizeof err) != 0);
    char b71[128];
    snprintf(b71, sizeof b71, "multipart/form-data; boundary=%071d", 0);
    CHECK(srv_multipart_parse(b71, "x", 1, p, 4, &n, err, sizeof err) != 0);
}

static int code_is(srv_response *rs, int status, const char *code)
{
    json_t *j = json_loadb(rs->body, rs->body_len, 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    int ok = rs->status == status && c && !strcmp(c, code) && m && *m;
    json_decref(j);
    return ok;
}

static void test_json(void)
{
    srv_response rs;
    srv_response_init(&rs);
    srv_request rq;
    memset(&rq, 0, sizeof rq);
    rq.content_type = "application/json; charset=utf-8";
    rq.body = "{\"a\": 1, \"s\": \"x\", \"f\": 0.5, \"o\": {}}";
    rq.body_len = strlen(rq.body);
    json_t *o;
    CHECK(srv_parse_body_object(&rq, &rs, &o) == 0);
    static const char *const allowed[] = {"a", "s", "f", "o", NULL};
    static const char *const fewer[] = {"a", "s", NULL};
    CHECK(srv_check_fields(o, allowed, "body", &rs) == 0);
    CHECK(srv_check_fields(o, fewer, "body", &rs) == -1 && code_is(&rs, 400, "unknown_field"));
    CHECK(strstr(rs.body, "'f'") || strstr(rs.body, "'o'"));
    long long ll = 0;
    double d = 0;
    const char *str = NULL;
    CHECK(srv_get_int(o, "a", 0, 5, &ll, &rs) == 1 && ll == 1);
    CHECK(srv_get_int(o, "a", 2, 5, &ll, &rs) == -1 && code_is(&rs, 400, "invalid_field"));
    CHECK(srv_get_int(o, "f", 0, 5, &ll, &rs) == -1 && strstr(rs.body, "'f'"));
    CHECK(srv_get_int(o, "missing", 0, 5, &ll, &rs) == 0);
    CHECK(srv_get_number(o, "f", 0, 1, &d, &rs) == 1 && d == 0.5);
    CHECK(srv_get_number(o, "a", 0, 1, &d, &rs) == 1 && d == 1);
    CHECK(srv_get_number(o, "s", 0, 1, &d, &rs) == -1);
    CHECK(srv_get_string(o, "s", &str, &rs) == 1 && !strcmp(str, "x"));
    CHECK(srv_get_string(o, "a", &str, &rs) == -1 && code_is(&rs, 400, "invalid_field"));
    json_decref(o);
    const char *bad[] = {"", "{", "[]", "\"x\"", "{\"a\":1,\"a\":2}", "{\"a\":1} x", "nul"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rq.body = bad[i];
        rq.body_len = strlen(bad[i]);
        CHECKF(srv_parse_body_object(&rq, &rs, &o) == -1 && code_is(&rs, 400, "invalid_json"), "%s", bad[i]);
    }
    rq.content_type = "text/json";
    rq.body = "{}";
    rq.body_len = 2;
    CHECK(srv_parse_body_object(&rq, &rs, &o) == -1 && code_is(&rs, 415, "unsupported_media_type"));
    rq.content_type = NULL;
    CHECK(srv_parse_body_object(&rq, &rs, &o) == -1 && rs.status == 415);
    srv_response_free(&rs);

    /* strict number parsing of query values */
    CHECK(srv_parse_ll("10", 1, 100, &ll) == 0 && ll == 10);
    const char *bad_ll[] = {"", " 1", "+1", "1 ", "1x", "0x10", "101", "0", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_ll / sizeof bad_ll[0]; i++) CHECKF(srv_parse_ll(bad_ll[i], 1, 100, &ll), "%s", bad_ll[i]);
    CHECK(srv_parse_double("-0.25", -1, 1, &d) == 0 && d == -0.25);
    CHECK(srv_parse_double("nan", -1, 1, &d) && srv_parse_double("1.5", -1, 1, &d) && srv_parse_double("", -1, 1, &d));
    int64_t t;
    CHECK(srv_parse_time("0", &t) == 0 && t == 0);
    CHECK(srv_parse_time("2024-05-01", &t) == 0 && t == 1714521600);
    CHECK(srv_parse_time("2024-05-01T12:30:00Z", &t) == 0 && t == 1714566600);
    CHECK(srv_parse_time("2024-05-01 12:30:00", &t) == 0 && t == 1714566600);
    const char *bad_t[] = {"", "2024-", "2024-13-01", "2024-02-30", "2024-05-01T25:00:00", "2024-05-01T", "1969-12-31",
                           "2024-05-01Z1", "-5", "yesterday", "2024-5-1"};
    for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++) CHECKF(srv_parse_time(bad_t[i], &t), "%s", bad_t[i]);

    /* UTF-8 */
    CHECK(srv_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    const char *bad_u[] = {"\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80"};
    for (size_t i = 0; i < sizeof bad_u / sizeof bad_u[0]; i++) CHECKF(!srv_utf8_valid(bad_u[i], strlen(bad_u[i])), "utf8 %zu", i);
    CHECK(!srv_utf8_valid("a\0b", 3));
    json_t *js = srv_json_string_lossy("caf\xe9.jpg");
    CHECK(js && !strcmp(json_string_value(js), "caf\xef\xbf\xbd.jpg"));
    json_decref(js);

    /* errors are JSON with code and message, even with hostile text */
    srv_response_init(&rs);
    srv_error(&rs, 404, SRV_E_NOT_FOUND, "no route for %s", "/x\"\n\xff");
    CHECK(code_is(&rs, 404, "not_found"));
    srv_response_free(&rs);

    /* ETags */
    CHECK(srv_etag_match("\"abc\"", "\"abc\""));
    CHECK(srv_etag_match("\"x\", \"abc\"", "\"abc\""));
    CHECK(srv_etag_match("W/\"abc\"", "\"abc\""));
    CHECK(srv_etag_match("*", "\"abc\""));
    CHECK(!srv_etag_match("\"abcd\"", "\"abc\""));
    CHECK(!srv_etag_match("\"ab\"", "\"abc\""));
    CHECK(!srv_etag_match(NULL, "\"abc\""));
    CHECK(!srv_etag_match("", "\"abc\""));
}

int main(void)
{
    test_base64();
    test_multipart();
    test_json();
    return test_finish();
}
