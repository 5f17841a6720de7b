/*
 * http.h - the libmicrohttpd daemon of `clipdex serve`.
 *
 * Threading model (chosen for a 2-core machine serving many clients): one
 * thread per connection (MHD_USE_THREAD_PER_CONNECTION), capped by
 * --max-connections (default 256) and --max-per-client per address (64).
 * A request header must arrive with no pause over --header-timeout (5 s;
 * also the keep-alive idle time); bodies and handlers get 30 s.  Handlers
 * block: a text embedding takes milliseconds to tens of milliseconds, a
 * thumbnail a few, a URL fetch up to its timeout.  With a small pool of
 * select/epoll threads one slow fetch or embedding would stall every
 * connection multiplexed on that thread; with a thread per connection it
 * stalls only its own client, while the CPU-heavy work stays bounded by the
 * library's pool of inference contexts (sized to the cores).  The cost is
 * one mostly idle thread (lazily committed stack) per open connection.
 *
 * Bodies: refused with 413 from the Content-Length header before any byte
 * is read (no "100 Continue" is sent), and enforced while streaming
 * (chunked uploads): the connection is closed as soon as the limit is
 * crossed.  Accepted bodies are buffered (up to --max-body) and handed to
 * srv_dispatch().
 *
 * Shutdown: srv_http_stop() stops accepting (MHD_quiesce_daemon), waits for
 * in-flight requests to finish (bounded), then stops the daemon; responses
 * sent meanwhile carry "Connection: close".
 */
#ifndef CDX_SERVER_HTTP_H
#define CDX_SERVER_HTTP_H

#include "server.h"

#include <stddef.h>
#include <sys/socket.h>

typedef struct srv_http srv_http;

/* Bind cfg.host:cfg.port, refuse a non-loopback address without a token,
 * open the access log and start serving.  url receives e.g.
 * "http://127.0.0.1:8080".  0 ok, -1 with a message in err. */
int srv_http_start(srv_ctx *s, srv_http **out, char *url, size_t url_len, char *err,
                   size_t err_len);

/* Drain (up to drain_s seconds) and stop; frees h.  Accepts NULL. */
void srv_http_stop(srv_http *h, double drain_s);

/* 1 when sa is a loopback address (127/8, ::1, ::ffff:127/104). */
int srv_addr_is_loopback(const struct sockaddr *sa);

#endif
