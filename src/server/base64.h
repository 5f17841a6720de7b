/*
 * base64.h - strict base64 decoding of image payloads sent in JSON
 * ("image_base64"), with an optional data: URL prefix.
 *
 * OpenSSL's EVP_DecodeBlock (libcrypto is already linked) does the decoding;
 * it is lenient (skips leading/trailing whitespace, counts padding as zero
 * bytes), so this module validates first: standard alphabet only, ASCII
 * whitespace ignored, length a multiple of 4 after that, '=' only as the
 * last one or two characters.  URL-safe base64 ("-_") is refused.
 */
#ifndef CDX_SERVER_BASE64_H
#define CDX_SERVER_BASE64_H

#include <stddef.h>

/* Decode s[0..len) into a malloc'd buffer (*out, *out_len; *out is NUL
 * terminated for convenience).  A "data:<type>;base64," prefix is accepted
 * and skipped.  Returns 0, or -1 with a message in err (NUL terminated). */
int srv_base64_decode(const char *s, size_t len, size_t max_out, unsigned char **out,
                      size_t *out_len, char *err, size_t err_len);

#endif
