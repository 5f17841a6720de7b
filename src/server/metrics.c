/*
 * metrics.c - fixed-size tables of counters behind one mutex, rendered in
 * the Prometheus text format (see metrics.h).  No allocation on the request
 * path: every (route, method, status) cell exists from the start.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])
static const int statuses[] = {200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404,
                               405, 408, 413, 415, 500, 502, 503, 504};
#define N_STATUS (sizeof statuses / sizeof statuses[0] + 1)  /* + "other" */
static const char *const methods[] = {"GET", "HEAD", "POST", "DELETE", "OPTIONS"};
#define N_METHOD (sizeof methods / sizeof methods[0] + 1)    /* + "other" */

typedef struct cell {
    uint64_t count;
    double sum;
    uint64_t bucket[N_BUCKETS];  /* non-cumulative; summed when rendered */
} cell;

struct srv_metrics {
    pthread_mutex_t mu;
    const char *const *routes;
    size_t n_routes;             /* cells has n_routes + 1 rows */
    cell *cells;
    long in_flight;
    uint64_t embeddings[2];
};

srv_metrics *srv_metrics_new(const char *const *route_names, size_t n_routes)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cells = calloc((n_routes + 1) * N_METHOD * N_STATUS, sizeof(cell));
    if (!m->cells) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->routes = route_names;
    m->n_routes = n_routes;
    return m;
}

void srv_metrics_free(srv_metrics *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->cells);
    free(m);
}

static size_t status_slot(int status)
{
    for (size_t i = 0; i < N_STATUS - 1; i++)
        if (statuses[i] == status) return i;
    return N_STATUS - 1;
}

static size_t method_slot(const char *method)
{
    for (size_t i = 0; method && i < N_METHOD - 1; i++)
        if (!strcmp(methods[i], method)) return i;
    return N_METHOD - 1;
}

void srv_metrics_observe(srv_metrics *m, size_t route, const char *method, int status,
                         double seconds)
{
    if (!m) return;
    if (route > m->n_routes) route = m->n_routes;
    size_t b = 0;
    while (b < N_BUCKETS && seconds > buckets[b]) b++;
    pthread_mutex_lock(&m->mu);
    cell *c = &m->cells[(route * N_METHOD + method_slot(method)) * N_STATUS + status_slot(status)];
    c->count++;
    c->sum += seconds;
    if (b < N_BUCKETS) c->bucket[b]++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_in_flight(srv_metrics *m, int delta)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->in_flight += delta;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_embeddings(srv_metrics *m, int image, uint64_t n)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->embeddings[image ? 1 : 0] += n;
    pthread_mutex_unlock(&m->mu);
}

/* A growable text buffer with a hard cap (16 MiB: far above any real size). */
typedef struct tbuf {
    char *p;
    size_t len, cap;
    int failed;
} tbuf;

__attribute__((format(printf, 2, 3))) static void tb_printf(tbuf *t, const char *fmt, ...)
{
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { t->failed = 1; return; }
        if (t->p && (size_t)n < t->cap - t->len) { t->len += (size_t)n; return; }
        size_t nc = t->cap ? t->cap * 2 : 16384;
        while (nc < t->len + (size_t)n + 1) nc *= 2;
        if (nc > (16u << 20)) { t->failed = 1; return; }
        char *np = realloc(t->p, nc);
        if (!np) { t->failed = 1; return; }
        t->p = np;
        t->cap = nc;
    }
}

static void status_label(size_t s, char *out, size_t n)
{
    if (s < N_STATUS - 1) snprintf(out, n, "%d", statuses[s]);
    else snprintf(out, n, "other");
}

char *srv_metrics_render(srv_metrics *m, const srv_library_gauges *g, size_t *len)
{
    tbuf t = {0};
    size_t n_cells = (m->n_routes + 1) * N_METHOD * N_STATUS;
    cell *snap = malloc(n_cells * sizeof(cell));
    if (!snap) return NULL;
    pthread_mutex_lock(&m->mu);
    memcpy(snap, m->cells, n_cells * sizeof(cell));
    long in_flight = m->in_flight;
    uint64_t emb[2] = {m->embeddings[0], m->embeddings[1]};
    pthread_mutex_unlock(&m->mu);

    tb_printf(&t, "# HELP clipdex_http_requests_total HTTP requests by route, method and status.\n"
                  "# TYPE clipdex_http_requests_total counter\n");
    for (size_t r = 0; r <= m->n_routes; r++)
        for (size_t me = 0; me < N_METHOD; me++)
            for (size_t s = 0; s < N_STATUS; s++) {
                const cell *c = &snap[(r * N_METHOD + me) * N_STATUS + s];
                if (!c->count) continue;
                char st[16];
                status_label(s, st, sizeof st);
                tb_printf(&t, "clipdex_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
                          r < m->n_routes ? m->routes[r] : "unmatched",
                          me < N_METHOD - 1 ? methods[me] : "other", st,
                          (unsigned long long)c->count);
            }
    tb_printf(&t, "# HELP clipdex_http_request_duration_seconds Time to produce a response.\n"
                  "# TYPE clipdex_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= m->n_routes; r++)
        for (size_t me = 0; me < N_METHOD; me++)
            for (size_t s = 0; s < N_STATUS; s++) {
                const cell *c = &snap[(r * N_METHOD + me) * N_STATUS + s];
                if (!c->count) continue;
                char st[16], labels[256];
                status_label(s, st, sizeof st);
                snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\",status=\"%s\"",
                         r < m->n_routes ? m->routes[r] : "unmatched",
                         me < N_METHOD - 1 ? methods[me] : "other", st);
                uint64_t cum = 0;
                for (size_t b = 0; b < N_BUCKETS; b++) {
                    cum += c->bucket[b];
                    tb_printf(&t, "clipdex_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n",
                              labels, buckets[b], (unsigned long long)cum);
                }
                tb_printf(&t, "clipdex_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n",
                          labels, (unsigned long long)c->count);
                tb_printf(&t, "clipdex_http_request_duration_seconds_sum{%s} %.6f\n", labels, c->sum);
                tb_printf(&t, "clipdex_http_request_duration_seconds_count{%s} %llu\n", labels,
                          (unsigned long long)c->count);
            }
    free(snap);
    tb_printf(&t, "# HELP clipdex_http_in_flight_requests Requests being processed.\n"
                  "# TYPE clipdex_http_in_flight_requests gauge\n"
                  "clipdex_http_in_flight_requests %ld\n", in_flight);
    tb_printf(&t, "# HELP clipdex_embeddings_total Embeddings computed by the server.\n"
                  "# TYPE clipdex_embeddings_total counter\n"
                  "clipdex_embeddings_total{kind=\"text\"} %llu\n"
                  "clipdex_embeddings_total{kind=\"image\"} %llu\n",
              (unsigned long long)emb[0], (unsigned long long)emb[1]);
    if (g && g->valid) {
        tb_printf(&t, "# HELP clipdex_library_images Catalogued images.\n"
                      "# TYPE clipdex_library_images gauge\n"
                      "clipdex_library_images %llu\n"
                      "# HELP clipdex_library_vectors Distinct embedded contents.\n"
                      "# TYPE clipdex_library_vectors gauge\n"
                      "clipdex_library_vectors %llu\n"
                      "# HELP clipdex_library_bytes On-disk size of the library.\n"
                      "# TYPE clipdex_library_bytes gauge\n"
                      "clipdex_library_bytes %llu\n",
                  (unsigned long long)g->images, (unsigned long long)g->vectors,
                  (unsigned long long)g->bytes);
    }
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
