/*
 * util.c - shared helpers (see util.h).
 */
#include "common/util.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

cdx_result cdx_open_regular(const char *path, int *fd_out, uint64_t *size)
{
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cdx_error(errno == ENOENT ? CDX_ERR_NOT_FOUND : CDX_ERR_IO,
                         "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cdx_error(CDX_ERR_IO, "%s: not a regular file", path);
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return CDX_OK;
}

cdx_result cdx_read_file(const char *path, size_t max_bytes, char **out,
                         size_t *out_len)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    int fd;
    uint64_t fsize;
    cdx_result r = cdx_open_regular(path, &fd, &fsize);
    if (r != CDX_OK) return r;
    if (fsize > max_bytes) {
        close(fd);
        return cdx_error(CDX_ERR_TOO_LARGE, "%s: %llu bytes exceeds the limit of %zu",
                         path, (unsigned long long)fsize, max_bytes);
    }
    size_t n = (size_t)fsize;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return cdx_error(CDX_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t nr = read(fd, buf + got, n - got);
        if (nr < 0 && errno == EINTR) continue;
        if (nr <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return cdx_error(CDX_ERR_IO, "%s: %s", path, nr == 0 ? "file shrank while reading" : strerror(e));
        }
        got += (size_t)nr;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (out_len) *out_len = n;
    return CDX_OK;
}

cdx_result cdx_write_file_atomic(const char *path, const void *data, size_t len)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    snprintf(tmp, pl + 16, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        cdx_result r = cdx_error(CDX_ERR_IO, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return r;
    }
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        done += (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) { fd = -1; goto fail; }
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    free(tmp);
    return CDX_OK;
fail:;
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    return cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(e));
}

void *cdx_alloc_aligned(size_t n, size_t size)
{
    size_t bytes;
    if (!cdx_mul_ok(n, size, &bytes)) return NULL;
    if (bytes == 0) bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

void cdx_free_aligned(void *p) { free(p); }

char *cdx_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (k > 0 && s[k - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

double cdx_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cdx_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

void cdx_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}
