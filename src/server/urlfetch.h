/*
 * urlfetch.h - fetching an image by URL for a query or an upload, safely.
 *
 * Server-side request forgery is the risk: a client could make the server
 * read internal services.  Defences (all in urlfetch.c):
 *  - only http:// and https://, also on redirects (CURLOPT_PROTOCOLS_STR /
 *    CURLOPT_REDIR_PROTOCOLS_STR); at most max_redirects redirects;
 *  - the address check runs in CURLOPT_OPENSOCKETFUNCTION, i.e. on the very
 *    address curl is about to connect to, after DNS: a DNS-rebinding name
 *    cannot pass the check with one answer and connect with another; every
 *    redirect hop goes through it too.  Refused unless allow_private:
 *    loopback, RFC 1918 private, CGNAT, link-local, multicast, unspecified,
 *    broadcast/reserved, "this network", IPv6 ULA/link-local/site-local,
 *    v4-mapped/compatible, NAT64 and 6to4 forms of those;
 *  - proxies from the environment are ignored (the check must see the
 *    real peer);
 *  - connect and total timeouts, a size cap (Content-Length checked first,
 *    then enforced while receiving), final status 200 and a Content-Type of
 *    image/... or application/octet-stream (the decoder still checks the
 *    bytes).
 */
#ifndef CDX_SERVER_URLFETCH_H
#define CDX_SERVER_URLFETCH_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct srv_fetch_params {
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_bytes;
    long max_redirects;
    int allow_private;
} srv_fetch_params;

typedef enum srv_fetch_status {
    SRV_FETCH_OK = 0,
    SRV_FETCH_BAD_URL,        /* not an http(s) URL */
    SRV_FETCH_REFUSED,        /* private/loopback/... address */
    SRV_FETCH_TOO_LARGE,
    SRV_FETCH_TIMEOUT,
    SRV_FETCH_REDIRECTS,      /* too many redirects or a refused protocol */
    SRV_FETCH_HTTP_STATUS,    /* the final response was not 200 */
    SRV_FETCH_NOT_IMAGE,      /* wrong Content-Type */
    SRV_FETCH_FAILED          /* DNS, connection, TLS, ... */
} srv_fetch_status;

/* Fetch url into *data (malloc'd, caller frees) / *len.  err receives a
 * message naming what went wrong. */
srv_fetch_status srv_fetch_url(const char *url, const srv_fetch_params *p, char **data,
                               size_t *len, char *err, size_t err_len);

/* 1 when a connection to this address is allowed without
 * --allow-private-urls (a public unicast address), else 0. */
int srv_addr_is_public(const struct sockaddr *sa);

#endif
