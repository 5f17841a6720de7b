/*
 * metrics.h - Prometheus counters and histograms of the HTTP server.
 *
 * Series: clipdex_http_requests_total{route,method,status},
 * clipdex_http_request_duration_seconds{route,method,status} (histogram),
 * clipdex_http_in_flight_requests, clipdex_embeddings_total{kind} (text,
 * image), and gauges of the library (images, vectors, bytes) passed in at
 * render time.  Routes are the route table's patterns (plus "unmatched"),
 * so label cardinality is bounded: routes x methods x a fixed status list.
 * One mutex; an observation is a handful of additions.
 */
#ifndef CDX_SERVER_METRICS_H
#define CDX_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_metrics srv_metrics;

/* route_names[i] labels route i (copied by pointer: must outlive m). */
srv_metrics *srv_metrics_new(const char *const *route_names, size_t n_routes);
void srv_metrics_free(srv_metrics *m);

/* route = n_routes means "unmatched". */
void srv_metrics_observe(srv_metrics *m, size_t route, const char *method, int status,
                         double seconds);
void srv_metrics_in_flight(srv_metrics *m, int delta);
void srv_metrics_embeddings(srv_metrics *m, int image, uint64_t n);

typedef struct srv_library_gauges {
    int valid;
    uint64_t images, vectors, bytes;
} srv_library_gauges;

/* The text exposition (version 0.0.4), malloc'd; NULL on OOM. */
char *srv_metrics_render(srv_metrics *m, const srv_library_gauges *g, size_t *len);

#endif
