/*
 * test_eval_parse.c - the evaluation input parsers on valid and hostile
 * input: query files (JSONL and CSV), labels CSV (with and without a
 * header), prompt templates (JSON list/object, text), captions JSON, --k
 * lists, the CSV reader (quotes, CRLF, embedded newlines), and random bytes
 * through every parser (no crash, clean error).  Errors must name the file
 * and line.
 */
#include "eval/captions.h"
#include "eval/evutil.h"
#include "eval/labels.h"
#include "eval/queries.h"
#include "eval/zeroshot.h"
#include "testutil.h"

#include <stdint.h>

static int has(const char *needle)
{
    return strstr(cdx_last_error(), needle) != NULL;
}

#define CHECK_ERR(expr, needle) do { cdx_result r_ = (expr); \
    CHECKF(r_ != CDX_OK && has(needle), "%s: got %d '%s', want error with '%s'", #expr, r_, \
           cdx_last_error(), needle); } while (0)

static cdx_result qparse(const char *name, const char *text, ev_query_set *s)
{
    return ev_queries_parse(name, text, strlen(text), s);
}

static void test_jsonl(void)
{
    const char *f =
        "{\"text\": \"a dog\", \"relevant\": [3, \"img/a.jpg\", \"17\"]}\n"
        "\n"
        "  \r\n"
        "{\"image\": \"q.png\", \"label\": \"cat\", \"grades\": {\"img/b.jpg\": 2, \"5\": 0.5}, \"id\": 9}\r\n"
        "{\"image_id\": 42, \"id\": \"x\"}";
    ev_query_set s;
    CHECK(qparse("dir/q.jsonl", f, &s) == CDX_OK);
    CHECK(s.n == 3);
    CHECK(!strcmp(s.base, "dir") && !strcmp(s.name, "dir/q.jsonl"));
    if (s.n == 3) {
        ev_query *a = &s.q[0], *b = &s.q[1], *c = &s.q[2];
        CHECK(a->line == 1 && a->kind == EV_QUERY_TEXT && !strcmp(a->input, "a dog"));
        CHECK(a->n_refs == 3);
        CHECK(a->refs[0].path == NULL && a->refs[0].id == 3 && a->refs[0].grade == 1);
        CHECK(a->refs[1].path && !strcmp(a->refs[1].path, "img/a.jpg"));
        CHECK(a->refs[2].path == NULL && a->refs[2].id == 17);  /* all-digit string = id */
        CHECK(b->line == 4 && b->kind == EV_QUERY_IMAGE && !strcmp(b->input, "q.png"));
        CHECK(b->label && !strcmp(b->label, "cat") && b->qid && !strcmp(b->qid, "9"));
        CHECK(b->n_refs == 2 && b->refs[0].explicit_grade && b->refs[0].grade == 2);
        CHECK(b->refs[1].id == 5 && b->refs[1].grade == 0.5);
        CHECK(c->line == 5 && c->kind == EV_QUERY_IMAGE_ID && c->image_id == 42);
        CHECK(!strcmp(c->qid, "x") && c->n_refs == 0);
    }
    ev_query_set_free(&s);
    ev_query_set_free(NULL);

    /* hostile / wrong inputs: each names the file and the line */
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n", &s), "q.jsonl:2: invalid JSON");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\"}\n\n{\"txt\": \"a\"}\n", &s), "q.jsonl:3: unknown field \"txt\"");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"image_id\": 1}", &s), "q.jsonl:1: a query needs exactly one");
    CHECK_ERR(qparse("q.jsonl", "{\"relevant\": [1]}", &s), "exactly one");
    /* found by fuzz_eval_queries: the first input string leaked */
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"image\": \"b.jpg\"}", &s), "exactly one");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"relevant\": [0]}", &s), "\"relevant\"[0]");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"grades\": {\"0\": 1}}", &s), "not an image id");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"\"}", &s), "\"text\" is empty");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": 5}", &s), "\"text\" must be a string");
    CHECK_ERR(qparse("q.jsonl", "{\"image_id\": -1}", &s), "\"image_id\" must be an integer >= 1");
    CHECK_ERR(qparse("q.jsonl", "{\"image_id\": 1.5}", &s), "\"image_id\" must be an integer");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"relevant\": 3}", &s), "\"relevant\" must be an array");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"relevant\": [-2]}", &s), "\"relevant\"[0]");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"relevant\": [\"\"]}", &s), "empty path");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"grades\": {\"x\": -1}}", &s), "finite number >= 0");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"grades\": {\"x\": \"2\"}}", &s), "must be a number");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"grades\": [1]}", &s), "\"grades\" must be an object");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"text\": \"b\"}", &s), "q.jsonl:1: invalid JSON");
    CHECK_ERR(qparse("q.jsonl", "[1, 2]", &s), "expected a JSON object");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\\u0000b\"}", &s), "invalid JSON");
    CHECK_ERR(qparse("q.jsonl", "\n \n", &s), "no queries");
    CHECK_ERR(qparse("q.jsonl", "{\"text\": \"a\", \"label\": null}", &s), "\"label\" must be a string");
    /* a line over the cap */
    size_t big = EV_MAX_LINE_BYTES + 16;
    char *b = malloc(big + 1);
    memset(b, ' ', big);
    b[0] = '{';
    b[big] = '\0';
    CHECK_ERR(ev_queries_parse("q.jsonl", b, big, &s), "q.jsonl:1: line longer than");
    free(b);
    /* deep nesting is rejected by jansson, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 16);
    size_t n = 0;
    n += (size_t)snprintf(deep, 16, "{\"text\":");
    for (size_t i = 0; i < depth; i++) deep[n++] = '[';
    deep[n] = '\0';
    CHECK(ev_queries_parse("q.jsonl", deep, n, &s) != CDX_OK);
    free(deep);
}

static void test_csv_queries(void)
{
    const char *f =
        "id,text,image,image_id,relevant,label,grades\r\n"
        "q1,\"a dog, running\",,,1; a.jpg ;2,,\r\n"
        "q2,,b.png,,,cat,\"a.jpg=2; 7=0\"\r\n"
        "\r\n"
        "q3,,,12,,,\r\n";
    ev_query_set s;
    CHECK(qparse("x/q.csv", f, &s) == CDX_OK);
    CHECK(s.n == 3);
    if (s.n == 3) {
        CHECK(s.q[0].line == 2 && !strcmp(s.q[0].input, "a dog, running") && !strcmp(s.q[0].qid, "q1"));
        CHECK(s.q[0].n_refs == 3 && s.q[0].refs[0].id == 1 && !strcmp(s.q[0].refs[1].path, "a.jpg")
              && s.q[0].refs[2].id == 2);
        CHECK(s.q[1].kind == EV_QUERY_IMAGE && !strcmp(s.q[1].label, "cat") && s.q[1].n_refs == 2);
        CHECK(s.q[1].refs[0].grade == 2 && s.q[1].refs[0].explicit_grade && s.q[1].refs[1].id == 7
              && s.q[1].refs[1].grade == 0);
        CHECK(s.q[2].line == 5 && s.q[2].kind == EV_QUERY_IMAGE_ID && s.q[2].image_id == 12);
    }
    ev_query_set_free(&s);
    /* a file not ending in .csv is detected by its first byte */
    CHECK(qparse("q.txt", "text,relevant\nhello,3\n", &s) == CDX_OK && s.n == 1);
    ev_query_set_free(&s);
    CHECK_ERR(qparse("q.csv", "text,relevnt\na,1\n", &s), "q.csv:1: unknown column \"relevnt\"");
    CHECK_ERR(qparse("q.csv", "text,text\na,b\n", &s), "appears twice");
    CHECK_ERR(qparse("q.csv", "label,relevant\na,1\n", &s), "names none of text");
    CHECK_ERR(qparse("q.csv", "text,image\na,b\n", &s), "q.csv:2: a query needs exactly one");
    CHECK_ERR(qparse("q.csv", "text,relevant\na\n", &s), "q.csv:2: row has 1 columns");
    CHECK_ERR(qparse("q.csv", "image_id\nx1\n", &s), "q.csv:2: image_id \"x1\"");
    CHECK_ERR(qparse("q.csv", "text,grades\na,b=x\n", &s), "grade of \"b\" is not a number");
    CHECK_ERR(qparse("q.csv", "text,grades\na,b\n", &s), "not key=grade");
    CHECK_ERR(qparse("q.csv", "text,grades\na,b=-3\n", &s), "finite number >= 0");
    CHECK_ERR(qparse("q.csv", "text\n\"unterminated\n", &s), "q.csv:2: unterminated quoted field");
    CHECK_ERR(qparse("q.csv", "text\n\"a\"b\n", &s), "text after a closing quote");
    CHECK_ERR(qparse("q.csv", "text\na\"b\n", &s), "quote inside an unquoted field");
}

static void test_csv_reader(void)
{
    /* quoted newline: the next row's line number accounts for it */
    const char *d = "\xEF\xBB\xBF" "a,\"b\nc\",\"d\"\"e\"\r\n\nf,,\n";
    ev_csv c;
    ev_csv_init(&c, "t.csv", d, strlen(d));
    CHECK(ev_csv_next(&c) == 1 && c.line == 1 && c.n_fields == 3);
    CHECK(!strcmp(c.field[0], "a") && !strcmp(c.field[1], "b\nc") && !strcmp(c.field[2], "d\"e"));
    CHECK(ev_csv_next(&c) == 1 && c.line == 4 && c.n_fields == 3);
    CHECK(!strcmp(c.field[0], "f") && !strcmp(c.field[1], "") && !strcmp(c.field[2], ""));
    CHECK(ev_csv_next(&c) == 0);
    ev_csv_free(&c);
    /* too many fields, NUL byte */
    char many[3 * EV_MAX_CSV_FIELDS + 8];
    size_t n = 0;
    for (int i = 0; i <= EV_MAX_CSV_FIELDS; i++) many[n++] = 'x', many[n++] = ',';
    many[n++] = '\n';
    ev_csv_init(&c, "t.csv", many, n);
    CHECK(ev_csv_next(&c) < 0 && has("more than"));
    ev_csv_free(&c);
    const char nul[] = "a,b\0c\n";
    ev_csv_init(&c, "t.csv", nul, sizeof nul - 1);
    CHECK(ev_csv_next(&c) < 0 && has("NUL byte"));
    ev_csv_free(&c);
}

static void test_labels(void)
{
    ev_labels l;
    const char *plain = "a.jpg,dog\nsub/b.jpg,\"cat, black\"\n";
    CHECK(ev_labels_parse("d/l.csv", plain, strlen(plain), NULL, &l) == CDX_OK);
    CHECK(l.n == 2 && !strcmp(l.base, "d") && !strcmp(l.e[1].path, "sub/b.jpg")
          && !strcmp(l.e[1].label, "cat, black") && l.e[1].line == 2);
    ev_labels_free(&l);
    /* a manifest with a header: pick the column */
    const char *man = "path,wnid,class_index,clip_classname\nn1.JPEG,n1,0,tench\nn2.JPEG,n2,2,great white shark\n";
    CHECK(ev_labels_parse("m.csv", man, strlen(man), "clip_classname", &l) == CDX_OK);
    CHECK(l.n == 2 && !strcmp(l.e[1].label, "great white shark") && !strcmp(l.e[0].path, "n1.JPEG"));
    CHECK(!strcmp(l.base, "."));
    ev_labels_free(&l);
    const char *hdr = "label,path\ndog,a.jpg\n";
    CHECK(ev_labels_parse("l.csv", hdr, strlen(hdr), NULL, &l) == CDX_OK && l.n == 1
          && !strcmp(l.e[0].path, "a.jpg") && !strcmp(l.e[0].label, "dog"));
    ev_labels_free(&l);
    CHECK_ERR(ev_labels_parse("m.csv", man, strlen(man), "nope", &l), "m.csv:1: the header has no column named \"nope\"");
    CHECK_ERR(ev_labels_parse("l.csv", plain, strlen(plain), "x", &l), "no header row");
    CHECK_ERR(ev_labels_parse("l.csv", "a.jpg\n", 6, NULL, &l), "l.csv:1: expected at least 2 columns");
    CHECK_ERR(ev_labels_parse("l.csv", "a.jpg,dog\n,cat\n", 15, NULL, &l), "l.csv:2: empty path");
    CHECK_ERR(ev_labels_parse("l.csv", "a.jpg,\n", 7, NULL, &l), "l.csv:1: empty label");
    CHECK_ERR(ev_labels_parse("l.csv", "a.jpg,\"x\n", 9, NULL, &l), "unterminated");
    ev_labels_free(NULL);
}

static void test_templates(void)
{
    ev_templates t;
    const char *obj = "{\"classes\": [\"a\"], \"templates\": [\"a photo of a {}.\", \"{} and {}\"]}";
    CHECK(ev_templates_parse("t.json", obj, strlen(obj), &t) == CDX_OK && t.n == 2);
    if (t.n == 2) {
        char *f = ev_template_fill(t.t[1], "dog");
        CHECK(f && !strcmp(f, "dog and dog"));
        free(f);
        f = ev_template_fill(t.t[0], "great white shark");
        CHECK(f && !strcmp(f, "a photo of a great white shark."));
        free(f);
    }
    ev_templates_free(&t);
    const char *arr = " [\"itap of a {}.\"]";
    CHECK(ev_templates_parse("t.json", arr, strlen(arr), &t) == CDX_OK && t.n == 1);
    ev_templates_free(&t);
    const char *txt = "a photo of a {}.\r\n\na {} in the wild\n";
    CHECK(ev_templates_parse("t.txt", txt, strlen(txt), &t) == CDX_OK && t.n == 2
          && !strcmp(t.t[0], "a photo of a {}.") && !strcmp(t.t[1], "a {} in the wild"));
    ev_templates_free(&t);
    CHECK_ERR(ev_templates_parse("t.txt", "ok {}\nno hole\n", 14, &t), "t.txt: line 2: template has no \"{}\"");
    CHECK_ERR(ev_templates_parse("t.json", "[\"{}\", 3]", 9, &t), "templates[1] is not a string");
    CHECK_ERR(ev_templates_parse("t.json", "[\"{}\", \"x\"]", 11, &t), "templates[1]: template has no");
    CHECK_ERR(ev_templates_parse("t.json", "{\"classes\": []}", 15, &t), "\"templates\" array");
    CHECK_ERR(ev_templates_parse("t.json", "[]", 2, &t), "no templates");
    CHECK_ERR(ev_templates_parse("t.json", "[\"{}\"", 5, &t), "invalid JSON");
    CHECK_ERR(ev_templates_parse("t.txt", "\n\n", 2, &t), "no templates");
    char *f = ev_template_fill("no hole", "x");
    CHECK(f && !strcmp(f, "no hole"));
    free(f);
}

static void test_captions(void)
{
    ev_captions c;
    const char *ok = "{\"val2017/1.jpg\": [\"a cat\", \"a cat on a mat\"], \"b.jpg\": [\"x\"]}";
    CHECK(ev_captions_parse("d/c.json", ok, strlen(ok), &c) == CDX_OK);
    CHECK(c.n == 2 && c.n_caps == 3 && !strcmp(c.base, "d"));
    if (c.n == 2) {
        CHECK(!strcmp(c.im[0].key, "val2017/1.jpg") && c.im[0].n_caps == 2
              && !strcmp(c.im[0].caps[1], "a cat on a mat"));
        CHECK(!strcmp(c.im[1].key, "b.jpg") && c.im[1].n_caps == 1);
    }
    ev_captions_free(&c);
    CHECK_ERR(ev_captions_parse("c.json", "[1]", 3, &c), "expected an object");
    CHECK_ERR(ev_captions_parse("c.json", "{}", 2, &c), "no images");
    CHECK_ERR(ev_captions_parse("c.json", "{\"a\": \"x\"}", 10, &c), "\"a\": expected an array");
    CHECK_ERR(ev_captions_parse("c.json", "{\"a\": []}", 9, &c), "\"a\": no captions");
    CHECK_ERR(ev_captions_parse("c.json", "{\"a\": [\"x\", 2]}", 15, &c), "\"a\"[1]: expected a non-empty string");
    CHECK_ERR(ev_captions_parse("c.json", "{\"a\": [\"\"]}", 11, &c), "\"a\"[0]");
    CHECK_ERR(ev_captions_parse("c.json", "{\"\": [\"x\"]}", 11, &c), "empty image key");
    CHECK_ERR(ev_captions_parse("c.json", "{\"a\": [\"x\"], \"a\": [\"y\"]}", 24, &c), "invalid JSON");
    CHECK_ERR(ev_captions_parse("c.json", "{\"a\": [\"x\"]", 11, &c), "c.json:1:");
    ev_captions_free(NULL);
}

static void test_ks(void)
{
    size_t ks[EV_MAX_KS];
    int n = 0;
    CHECK(ev_parse_ks("10,1,5,5", ks, &n) == 0 && n == 3 && ks[0] == 1 && ks[1] == 5 && ks[2] == 10);
    CHECK(ev_parse_ks("10000", ks, &n) == 0 && n == 1);
    CHECK(ev_parse_ks("", ks, &n) != 0);
    CHECK(ev_parse_ks("0", ks, &n) != 0);
    CHECK(ev_parse_ks("10001", ks, &n) != 0);
    CHECK(ev_parse_ks("1,", ks, &n) != 0);
    CHECK(ev_parse_ks("1,,2", ks, &n) != 0);
    CHECK(ev_parse_ks("-1", ks, &n) != 0);
    CHECK(ev_parse_ks("1 ,2", ks, &n) != 0);
    CHECK(ev_parse_ks("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", ks, &n) == 0 && n == 16);
    CHECK(ev_parse_ks("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", ks, &n) != 0);
    int64_t id;
    CHECK(ev_parse_id("0", &id) != 0);   /* library ids start at 1 */
    CHECK(ev_parse_id("123", &id) == 0 && id == 123);
    CHECK(ev_parse_id("12a", &id) != 0 && ev_parse_id("", &id) != 0 && ev_parse_id("+1", &id) != 0);
    CHECK(ev_parse_id("99999999999999999999999", &id) != 0);
}

/* Random and mutated bytes through every parser: never a crash (ASan/UBSan
 * in CI), and a message whenever a parser refuses. */
static void test_garbage(void)
{
    static const char *const seeds[] = {
        "{\"text\": \"a\", \"relevant\": [1, \"x\"], \"grades\": {\"1\": 2}}\n",
        "text,relevant,grades\n\"a\",1;2,x=1\n",
        "path,label\na.jpg,dog\n",
        "{\"templates\": [\"a {}\"]}",
        "{\"a.jpg\": [\"x\", \"y\"]}",
    };
    uint64_t st = 0x9E3779B97F4A7C15ull;
    char buf[256];
    for (int it = 0; it < 3000; it++) {
        const char *seed = seeds[it % 5];
        size_t n = strlen(seed);
        memcpy(buf, seed, n);
        for (int m = 0; m < 1 + it % 4; m++) { /* flip, insert or truncate */
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            size_t pos = (size_t)(st % n);
            int op = (int)((st >> 20) % 3);
            if (op == 0) buf[pos] = (char)(st >> 32);
            else if (op == 1 && n < sizeof buf - 1) {
                memmove(buf + pos + 1, buf + pos, n - pos);
                buf[pos] = "{}[],\"\\:;=\n\r0 "[(st >> 40) % 15];
                n++;
            } else n = pos + 1;
        }
        ev_query_set qs;
        ev_labels l;
        ev_templates t;
        ev_captions c;
        cdx_set_error(CDX_OK, "%s", "");
        if (ev_queries_parse("g.jsonl", buf, n, &qs) == CDX_OK) ev_query_set_free(&qs);
        else CHECK(*cdx_last_error());
        if (ev_queries_parse("g.csv", buf, n, &qs) == CDX_OK) ev_query_set_free(&qs);
        if (ev_labels_parse("g.csv", buf, n, NULL, &l) == CDX_OK) ev_labels_free(&l);
        if (ev_templates_parse("g.txt", buf, n, &t) == CDX_OK) ev_templates_free(&t);
        if (ev_captions_parse("g.json", buf, n, &c) == CDX_OK) ev_captions_free(&c);
    }
}

int main(void)
{
    test_jsonl();
    test_csv_queries();
    test_csv_reader();
    test_labels();
    test_templates();
    test_captions();
    test_ks();
    test_garbage();
    return test_finish();
}
