/*
 * multipart.h - multipart/form-data (RFC 7578) parsing of a buffered body.
 *
 * Why not MHD's post processor: it needs a live MHD_Connection (so it cannot
 * be unit tested or fuzzed on bytes), and it hands values over in chunks to
 * an iterator, which we would have to reassemble anyway: the server buffers
 * every body (capped by --max-body) before dispatch, and an image part must
 * be contiguous for the decoder.  Over a buffer the format is a few memmem()
 * calls, done here.
 *
 * Parts point into the body (no copies).  Limits: at most max_parts parts,
 * 8 KiB of headers per part, field names up to 63 bytes, filenames up to
 * 255 bytes.  The body must end with the closing delimiter.
 */
#ifndef CDX_SERVER_MULTIPART_H
#define CDX_SERVER_MULTIPART_H

#include <stddef.h>

typedef struct srv_part {
    char name[64];
    char filename[256];      /* "" when the part is not a file */
    int has_filename;
    char content_type[128];  /* "" when absent */
    const char *data;
    size_t len;
} srv_part;

/* True when content_type is multipart/form-data (any parameters). */
int srv_is_multipart(const char *content_type);

/* Returns 0 and fills parts[0..*n_parts), or -1 with a message in err. */
int srv_multipart_parse(const char *content_type, const char *body, size_t len,
                        srv_part *parts, size_t max_parts, size_t *n_parts,
                        char *err, size_t err_len);

#endif
