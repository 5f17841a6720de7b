/*
 * cmd_search.c - `clipdex search`: exact search of a library by text, by an
 * image (file or URL) or by an indexed example (--like ID|PATH), with
 * filters, or by vectors computed elsewhere (--vector FILE: one query from a
 * .npy or raw float32 file; --vectors FILE.npy: many queries searched in one
 * scan).  Text prints "rank score id path" lines; --json prints
 *   {"results": [{"rank", "score", "id", "path"}, ...], "total", "took_ms"}
 * and --vectors prints one such object per query and line, with "query": i.
 * Keyword and hybrid modes and combined queries (parts with weights, --not):
 * docs/search.md; their JSON adds "mode".
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define URL_MAX_BYTES ((size_t)64 << 20)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex search [--library DIR] [-k N] [--offset N] [--min-score S] [--json]\n"
            "                      [--path-prefix P] [--after DATE] [--before DATE] [--format F]\n"
            "                      [--scan f32|int8|bit|pca8] [--rescore N] [--exact | --probes N]\n"
            "                      [--mode semantic|keyword|hybrid] [--tag T] [--keyword-weight W]\n"
            "                      [--text TEXT]... [--not TEXT]... [--weights W1,W2,...]\n"
            "                      (TEXT | --image FILE|URL | --like ID|PATH)... |\n"
            "                      --vector FILE | --vectors FILE.npy\n"
            "                      [--precision fp32|int8|bf16|auto]\n\n"
            "  --vector FILE   query by a vector computed elsewhere: a .npy (float32/float16,\n"
            "                  shape (D,) or (1, D)) or raw little-endian float32 (.f32);\n"
            "                  normalised before the search\n"
            "  --vectors FILE  many queries from a .npy [N, D], searched in one scan; prints\n"
            "                  one JSON line per query: {\"query\": i, \"results\", \"total\"}\n"
            "  -k N            results (default 10, max 10000)\n"
            "  --offset N      skip the first N results (pagination)\n"
            "  --min-score S   only results with cosine similarity >= S\n"
            "  --path-prefix P only paths starting with P (plain prefix, no wildcards)\n"
            "  --after DATE    taken (EXIF) or else modified on/after DATE\n"
            "  --before DATE   ... strictly before DATE (YYYY-MM-DD or ISO 8601; UTC)\n"
            "  --format F      only images of format F (jpeg, png, webp, gif, tiff, ...)\n"
            "  --scan S        f32 (default): exact float32 scan; int8 / bit / pca8: scan\n"
            "                  compressed codes (built on first use), re-score the best\n"
            "                  candidates in float32 (scores exact; rarely a true result\n"
            "                  is missed; docs/search.md)\n"
            "  --rescore N     compressed scans: re-score (offset+k)*N candidates\n"
            "                  (default int8 4, bit 40, pca8 10; max 1000)\n"
            "  --exact         score every vector (default: the approximate index on\n"
            "                  libraries of 10000+ vectors; docs/search.md)\n"
            "  --probes N      approximate index: lists scanned, 1..65536 (more = better\n"
            "                  recall, slower; default lists/5, at most 4 sqrt(lists))\n"
            "  --json          JSON output (\"approximate\": whether the index answered)\n"
            "  --mode M        semantic (CLIP), keyword (full-text index, FTS5 syntax:\n"
            "                  \"a phrase\", pref*, AND, OR, NOT, title:word) or hybrid (both,\n"
            "                  fused); default hybrid when the library has text, else semantic\n"
            "  --tag T         only images with tag or embedded keyword T\n"
            "  --keyword-weight W  hybrid: weight of the keyword ranking, 0..1 (default 0.5)\n"
            "  --text TEXT     another text part of a combined query (e.g. with --like)\n"
            "  --not TEXT      a text part with weight -1 (\"beach\" --not \"people\")\n"
            "  --weights LIST  one weight per part (TEXT, --image, --like, --text, --not in\n"
            "                  command-line order); the query is the normalised weighted sum\n"
            "                  of the parts' normalised embeddings (docs/search.md)\n"
            "  --precision P   precision of the query encoders: fp32 (default), int8, bf16\n"
            "                  or auto (docs/engine.md); best the library's own (info)\n");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int embed_url(cdx_library *lib, const char *url, float *q)
{
    /* The user named this URL on their own command line: private and
     * loopback addresses are theirs to use. */
    cdx_http_params p = cdx_http_default_params();
    p.max_bytes = URL_MAX_BYTES;
    p.allow_private = 1;
    cdx_http_response resp;
    cdx_result r = cdx_http_get(url, &p, &resp);
    if (r) return cli_fail("downloading", r);
    r = cdx_library_embed_image_buffer(lib, resp.data, resp.len, q);
    free(resp.data);
    return r ? cli_fail(url, r) : 0;
}

static int make_query(cdx_library *lib, const char *text, const char *image, const char *like,
                      float *q)
{
    cdx_result r;
    if (text) {
        r = cdx_library_embed_text(lib, text, q);
        return r ? cli_fail("embedding the query text", r) : 0;
    }
    if (image) {
        if (!strncmp(image, "http://", 7) || !strncmp(image, "https://", 8))
            return embed_url(lib, image, q);
        r = cdx_library_embed_image_file(lib, image, q);
        return r ? cli_fail("embedding the query image", r) : 0;
    }
    long v;
    int64_t id;
    if (cli_parse_int(like, 1, 0x7fffffffffffffffL, &v) == 0) id = v;
    else if ((r = cdx_library_find(lib, like, &id)) != CDX_OK) return cli_fail("--like", r);
    r = cdx_library_get_vector(lib, id, q);
    return r ? cli_fail("--like", r) : 0;
}

/* ", "title": ..., "tags": [...], "source": {...}" of an image that has
 * source metadata (feed flickr, the API); nothing otherwise. */
static void print_source(cdx_library *lib, int64_t id)
{
    cdx_image_text t;
    if (cdx_library_get_text(lib, id, &t) == CDX_OK) {
        if (*t.title) {
            fputs(", \"title\": ", stdout);
            cli_print_json_string(stdout, t.title);
        }
        if (*t.tags) {
            fputs(", \"tags\": [", stdout);
            for (char *line = t.tags, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                if ((nl = strchr(line, '\n'))) *nl = '\0';
                if (line != t.tags) fputs(", ", stdout);
                cli_print_json_string(stdout, line);
            }
            putchar(']');
        }
        cdx_image_text_free(&t);
    }
    char *src = NULL;
    if (cdx_library_get_source(lib, id, &src) == CDX_OK && src) {
        json_t *o = json_loads(src, 0, NULL);
        char *d = json_is_object(o) ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (d) printf(", \"source\": %s", d);
        free(d);
        json_decref(o);
    }
    free(src);
}

/* Results of one query: text lines, or one JSON object (query >= 0 adds
 * "query": query, for --vectors; mode, when not NULL, "mode"). */
static void print_results(cdx_library *lib, const cdx_hit *hits, size_t n, const cdx_search_params *sp,
                          int json, long query, uint64_t total, double took, const char *mode)
{
    if (json && query >= 0) printf("{\"query\": %ld, \"results\": [", query);
    else if (json) fputs("{\"results\": [", stdout);
    for (size_t i = 0; i < n; i++) {
        cdx_image_record rec;
        if (cdx_library_get_image(lib, hits[i].id, &rec) != CDX_OK) snprintf(rec.path, sizeof rec.path, "?");
        if (json) {
            printf("%s{\"rank\": %zu, \"score\": %.6f, \"id\": %lld, \"path\": ", i ? ", " : "",
                   sp->offset + i + 1, (double)hits[i].score, (long long)hits[i].id);
            cli_print_json_string(stdout, rec.path);
            print_source(lib, hits[i].id);
            putchar('}');
        } else {
            printf("%4zu  %.4f  %6lld  %s\n", sp->offset + i + 1, (double)hits[i].score,
                   (long long)hits[i].id, rec.path);
        }
    }
    if (json) printf("], \"total\": %llu%s%s%s, \"took_ms\": %.1f, \"approximate\": %s}\n",
                     (unsigned long long)total, mode ? ", \"mode\": \"" : "", mode ? mode : "",
                     mode ? "\"" : "", took, sp->info && sp->info->approximate ? "true" : "false");
}

/* --vectors FILE: normalise every query, search them CDX_SEARCH_MAX_QUERIES
 * at a time, one JSON line each. */
static int search_many(cdx_library *lib, const char *file, int dim, const cdx_search_params *sp)
{
    float *q = NULL;
    size_t nq = 0;
    cdx_result r = cdx_vectors_read(file, dim, &q, &nq);
    if (r) return cli_fail("--vectors", r);
    for (size_t i = 0; i < nq; i++)
        if ((r = cdx_vector_normalize(q + i * (size_t)dim, dim))) {
            fprintf(stderr, "clipdex: error: --vectors: query %zu: %s\n", i, cdx_last_error());
            free(q);
            return 1;
        }
    size_t chunk = nq < CDX_SEARCH_MAX_QUERIES ? nq : CDX_SEARCH_MAX_QUERIES;
    cdx_hit *hits = calloc((chunk ? chunk : 1) * sp->k, sizeof *hits);
    size_t *n = calloc(chunk ? chunk : 1, sizeof *n);
    uint64_t *totals = calloc(chunk ? chunk : 1, sizeof *totals);
    int rc = 0;
    if (!hits || !n || !totals) rc = cli_fail("out of memory", CDX_ERR_NOMEM);
    for (size_t b = 0; !rc && b < nq; b += chunk) {
        size_t m = nq - b < chunk ? nq - b : chunk;
        double t0 = now_ms();
        r = cdx_library_search_vectors(lib, q + b * (size_t)dim, m, sp, hits, n, totals);
        double took = (now_ms() - t0) / (double)m;
        if (r) {
            rc = cli_fail("searching", r);
            break;
        }
        for (size_t i = 0; i < m; i++)
            print_results(lib, hits + i * sp->k, n[i], sp, 1, (long)(b + i), totals[i], took, NULL);
    }
    free(q);
    free(hits);
    free(n);
    free(totals);
    if (!rc && fflush(stdout)) rc = 1;
    return rc;
}

/* ---- combined queries and search modes (fts branch; docs/search.md) ------ */

#define PARTS_MAX 16

typedef struct query_part {
    char kind;           /* 't' text, 'i' image, 'l' like */
    const char *arg;
    float weight;
} query_part;

typedef struct fts_opts {
    query_part parts[PARTS_MAX];
    int n_parts;
    const char *mode, *weights;
    int keyword_only_ok;        /* only TEXT given (keyword mode possible) */
    char *words;                /* hybrid: the texts of positive text parts */
} fts_opts;

static int add_part(fts_opts *o, char kind, const char *arg, float weight)
{
    if (o->n_parts == PARTS_MAX)
        return cli_usage_error("search", "at most %d query parts", PARTS_MAX);
    o->parts[o->n_parts++] = (query_part){kind, arg, weight};
    return 0;
}

/* Options of this block: 1 consumed (i advanced), 0 not ours, 2 usage error. */
static int fts_option(fts_opts *o, cdx_search_params *sp, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (*i + 1 >= argc) return 0;
    const char *v = argv[*i + 1];
    if (!strcmp(a, "--mode")) o->mode = v;
    else if (!strcmp(a, "--tag")) sp->tag = v;
    else if (!strcmp(a, "--weights")) o->weights = v;
    else if (!strcmp(a, "--text")) { if (add_part(o, 't', v, 1.0f)) return 2; }
    else if (!strcmp(a, "--not")) { if (add_part(o, 't', v, -1.0f)) return 2; }
    else if (!strcmp(a, "--keyword-weight")) {
        char *end;
        double d = strtod(v, &end);
        if (end == v || *end || !(d >= 0.0 && d <= 1.0)) {
            cli_usage_error("search", "--keyword-weight: expected a number in [0, 1], got '%s'", v);
            return 2;
        }
        sp->keyword_weight = (float)d;
    } else return 0;
    (*i)++;
    return 1;
}

/* --weights "1,0.5,-1": one per part. */
static int parse_weights(fts_opts *o)
{
    const char *p = o->weights;
    for (int i = 0; i < o->n_parts; i++) {
        char *end;
        double d = strtod(p, &end);
        if (end == p || !(d >= -10.0 && d <= 10.0) || d == 0.0 || (*end != ',' && *end) ||
            (*end == ',') != (i + 1 < o->n_parts))
            return cli_usage_error("search", "--weights: expected %d non-zero numbers in [-10, 10] "
                                   "separated by commas (one per query part), got '%s'",
                                   o->n_parts, o->weights);
        o->parts[i].weight = (float)d;
        p = end + 1;
    }
    return 0;
}

static int make_query(cdx_library *lib, const char *text, const char *image, const char *like,
                      float *q);

/* The query vector: one part as is, several combined. */
static int combined_query(cdx_library *lib, const fts_opts *o, int dim, float *q)
{
    if (o->n_parts == 1 && o->parts[0].weight == 1.0f) {
        const query_part *p = &o->parts[0];
        return make_query(lib, p->kind == 't' ? p->arg : NULL, p->kind == 'i' ? p->arg : NULL,
                          p->kind == 'l' ? p->arg : NULL, q);
    }
    float *vecs = calloc((size_t)o->n_parts * (size_t)dim, sizeof *vecs);
    float w[PARTS_MAX];
    if (!vecs) return cli_fail("out of memory", CDX_ERR_NOMEM);
    int rc = 0;
    for (int i = 0; i < o->n_parts && !rc; i++) {
        const query_part *p = &o->parts[i];
        w[i] = p->weight;
        rc = make_query(lib, p->kind == 't' ? p->arg : NULL, p->kind == 'i' ? p->arg : NULL,
                        p->kind == 'l' ? p->arg : NULL, vecs + (size_t)i * dim);
    }
    cdx_result r = rc ? CDX_OK : cdx_query_combine(vecs, w, o->n_parts, dim, q);
    free(vecs);
    if (r) return cli_fail("combining the query", r);
    return rc;
}

/* Resolve the mode (default: hybrid when the library has text and the
 * query has a positive text part) and check the parts fit it. */
static int resolve_mode(cdx_library *lib, fts_opts *o, cdx_search_mode *mode)
{
    size_t need = 1;
    for (int i = 0; i < o->n_parts; i++)
        if (o->parts[i].kind == 't' && o->parts[i].weight > 0) need += strlen(o->parts[i].arg) + 1;
    if (!(o->words = calloc(1, need))) return cli_fail("out of memory", CDX_ERR_NOMEM);
    size_t at = 0;
    for (int i = 0; i < o->n_parts; i++)
        if (o->parts[i].kind == 't' && o->parts[i].weight > 0) {   /* sized above */
            size_t l = strlen(o->parts[i].arg);
            if (at) o->words[at++] = ' ';
            memcpy(o->words + at, o->parts[i].arg, l);
            at += l;
        }
    cdx_result r;
    if (o->mode) {
        if ((r = cdx_search_mode_parse(o->mode, mode))) return cli_usage_error("search", "--mode: %s", cdx_last_error());
    } else {
        int has = 0;
        if ((r = cdx_library_has_text(lib, &has))) return cli_fail("reading library", r);
        *mode = has && o->words[0] ? CDX_SEARCH_HYBRID : CDX_SEARCH_SEMANTIC;
    }
    if (*mode == CDX_SEARCH_KEYWORD && !o->keyword_only_ok)
        return cli_usage_error("search", "--mode keyword takes one TEXT (an FTS5 query) and no "
                               "--image, --like, --text, --not or --weights");
    if (*mode == CDX_SEARCH_HYBRID && !o->words[0])
        return cli_usage_error("search", "--mode hybrid needs a query text");
    return 0;
}

int cmd_search(int argc, char **argv)
{
    const char *dir = NULL, *text = NULL, *image = NULL, *like = NULL, *vector = NULL, *vectors = NULL;
    cdx_search_params sp = cdx_search_default_params();
    cdx_search_info how = {0, 0};
    sp.info = &how;
    int json = 0;
    fts_opts fo;
    memset(&fo, 0, sizeof fo);
    cdx_search_mode mode = CDX_SEARCH_SEMANTIC;
    cdx_precision prec = CDX_PRECISION_FP32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        long v;
        int fr = fts_option(&fo, &sp, argc, argv, &i);
        if (fr == 2) return 2;
        if (fr == 1) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && hv) dir = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--exact")) sp.exact = 1;
        else if (!strcmp(a, "--probes") && hv) {
            if (cli_parse_int(argv[++i], 1, 65536, &v)) return cli_usage_error("search", "--probes: expected 1..65536, got '%s'", argv[i]);
            sp.probes = (int)v;
        } else if ((!strcmp(a, "-k") || !strcmp(a, "--k")) && hv) {
            if (cli_parse_int(argv[++i], 1, 10000, &v)) return cli_usage_error("search", "-k: expected 1..10000, got '%s'", argv[i]);
            sp.k = (size_t)v;
        } else if (!strcmp(a, "--offset") && hv) {
            if (cli_parse_int(argv[++i], 0, 1000000, &v)) return cli_usage_error("search", "--offset: expected 0..1000000, got '%s'", argv[i]);
            sp.offset = (size_t)v;
        } else if (!strcmp(a, "--min-score") && hv) {
            char *end;
            double d = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(d >= -1.0 && d <= 1.0))
                return cli_usage_error("search", "--min-score: expected a number in [-1, 1], got '%s'", argv[i]);
            sp.min_score = (float)d;
        } else if (!strcmp(a, "--scan") && hv) {
            sp.scan = cdx_scan_parse(argv[++i]);
            if (sp.scan < 0) return cli_usage_error("search", "--scan: expected f32, int8, bit or pca8, got '%s'", argv[i]);
        } else if (!strcmp(a, "--rescore") && hv) {
            if (cli_parse_int(argv[++i], 1, 1000, &v)) return cli_usage_error("search", "--rescore: expected 1..1000, got '%s'", argv[i]);
            sp.rescore = (size_t)v;
        } else if (!strcmp(a, "--path-prefix") && hv) sp.path_prefix = argv[++i];
        else if (!strcmp(a, "--format") && hv) sp.format = argv[++i];
        else if ((!strcmp(a, "--after") || !strcmp(a, "--before")) && hv) {
            int64_t t;
            if (cli_parse_date(argv[++i], &t))
                return cli_usage_error("search", "%s: expected YYYY-MM-DD or ISO 8601, got '%s'", a, argv[i]);
            if (t == 0) t = a[2] == 'a' ? 1 : -1;   /* 0 means "unbounded" in the API */
            if (a[2] == 'a') sp.after = t;
            else sp.before = t;
        } else if (!strcmp(a, "--image") && hv) {
            if (image) return cli_usage_error("search", "give one --image");
            image = argv[++i];
            if (add_part(&fo, 'i', image, 1.0f)) return 2;
        } else if (!strcmp(a, "--like") && hv) {
            if (like) return cli_usage_error("search", "give one --like");
            like = argv[++i];
            if (add_part(&fo, 'l', like, 1.0f)) return 2;
        }
        else if (!strcmp(a, "--precision") && hv) {
            if (cli_parse_precision("search", argv[++i], &prec)) return 2;
        } else if (!strcmp(a, "--vector") && hv) vector = argv[++i];
        else if (!strcmp(a, "--vectors") && hv) vectors = argv[++i];
        else if (!strncmp(a, "--", 2) || (a[0] == '-' && a[1])) return cli_usage_error("search", "unknown or incomplete argument '%s'", a);
        else if (text) return cli_usage_error("search", "give one query text (quote it)");
        else {
            text = a;
            if (add_part(&fo, 't', text, 1.0f)) return 2;
        }
    }
    if ((vector || vectors) && (fo.n_parts || (vector && vectors)))
        return cli_usage_error("search", "--vector and --vectors are queries of their own: give one, "
                               "without TEXT, --image, --like, --text or --not");
    if (fo.n_parts == 0 && !vector && !vectors)
        return cli_usage_error("search", "give a query: TEXT, --image FILE|URL, --like ID|PATH, "
                               "--vector FILE or --vectors FILE");
    if (fo.weights && parse_weights(&fo)) return 2;
    fo.keyword_only_ok = text && fo.n_parts == 1 && !fo.weights;
    int need_model = image || fo.n_parts > 1 || (text && !(fo.mode && !strcmp(fo.mode, "keyword")));
    cdx_library_params lp = cdx_library_default_params();
    lp.load_model = need_model;
    lp.precision = prec;
    cdx_library *lib;
    if (cli_open_library(dir, &lp, &lib)) return 1;
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    int rc = 1;
    float *q = NULL;
    cdx_hit *hits = NULL;
    if (r) { rc = cli_fail("reading library", r); goto done; }
    q = calloc((size_t)info.dim, sizeof *q);
    hits = calloc(sp.k, sizeof *hits);
    if (!q || !hits) { rc = cli_fail("out of memory", CDX_ERR_NOMEM); goto done; }
    if (vectors) {
        rc = search_many(lib, vectors, info.dim, &sp);
        goto done;
    }
    if (vector) {
        double t0 = now_ms();
        size_t n = 0;
        uint64_t total = 0;
        float *v = NULL;
        size_t nv = 0;
        r = cdx_vectors_read(vector, info.dim, &v, &nv);
        if (r) { rc = cli_fail("--vector", r); goto done; }
        if (nv != 1) {
            fprintf(stderr, "clipdex: error: --vector: %s holds %zu vectors; give one (or use --vectors)\n",
                    vector, nv);
            free(v);
            goto done;
        }
        r = cdx_library_search_raw(lib, v, info.dim, &sp, hits, &n, &total);
        free(v);
        if (r) { rc = cli_fail("searching", r); goto done; }
        print_results(lib, hits, n, &sp, json, -1, total, now_ms() - t0, NULL);
        rc = fflush(stdout) ? 1 : 0;
        goto done;
    }
    if (resolve_mode(lib, &fo, &mode)) { rc = 2; goto done; }
    double t0 = now_ms();
    size_t n = 0;
    uint64_t total = 0;
    if (mode == CDX_SEARCH_KEYWORD) {
        r = cdx_library_search_keyword(lib, text, &sp, hits, &n, &total);
    } else {
        if (combined_query(lib, &fo, info.dim, q)) goto done;
        if (mode == CDX_SEARCH_HYBRID) r = cdx_library_search_hybrid(lib, q, fo.words, &sp, hits, &n, &total);
        else r = cdx_library_search_vector(lib, q, &sp, hits, &n, &total);
    }
    double took = now_ms() - t0;
    if (r) { rc = cli_fail("searching", r); goto done; }
    print_results(lib, hits, n, &sp, json, -1, total, took, cdx_search_mode_name(mode));
    rc = fflush(stdout) ? 1 : 0;
done:
    free(fo.words);
    free(q);
    free(hits);
    cdx_library_close(lib);
    return rc;
}
