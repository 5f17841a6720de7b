/*
 * vecfile.c - the append-only vector file (see vecfile.h and
 * docs/storage-format.md for the byte layout and the crash-safety argument).
 *
 * Invariants kept by this module:
 *  - Records 0..count-1 are committed: each batch they belong to was fully
 *    written and fdatasync'ed before vecfile_append() returned, and batches
 *    are written strictly one after another (writer mutex + file lock), so
 *    at most the LAST batch in the file can be incomplete after a crash.
 *  - The file ends exactly after the metadata entry of the last record (see
 *    size_for()).  A writable open cuts off a torn tail before the first
 *    append, so no stale entry of an old torn batch can be mistaken for part
 *    of a new one.
 *  - Mappings are never unmapped before close (they are retired), so a
 *    cdx_rows view obtained from vecfile_rows() stays valid.
 *
 * All file offsets and integers are encoded little-endian explicitly; the
 * float32 vector data is mapped and used in place, which is why a
 * little-endian host is asserted at compile time.
 *
 * CRC32C is written here by hand rather than using zlib's crc32: it is the
 * Castagnoli polynomial (better error detection on the 0.3..4 KB records we
 * protect than zlib's CRC-32), and with SSE4.2's crc32 instruction
 * (runtime-detected; a table fallback otherwise) it runs several times
 * faster, which matters for vecfile_check() and compaction over GBs.
 */
#include "store/vecfile.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "vecfile maps little-endian float32 data in place: a big-endian port needs byte swapping");
_Static_assert(sizeof(float) == 4 && sizeof(size_t) == 8, "64-bit host with IEEE float32 required");

#define HDR_SIZE 4096u
#define HDR_CRC_AT 124u
#define META_SIZE 64u
#define META_CRC_AT 60u
#define FORMAT_VERSION 1u
#define FLAG_NORMALISED 1u
#define KNOWN_FLAGS FLAG_NORMALISED
#define META_MAGIC 0x43455256u            /* "VREC" little-endian */
#define DTYPE_F32 0u
#define BLK VECFILE_BLOCK_RECORDS
#define RETIRED_CAP 65536            /* retired mappings per handle (hard cap) */
#define MIN_RESERVE ((size_t)64 << 20)
#define COMPACT_BATCH 4096
#define UNIT_TOL 1e-4

static const uint8_t k_magic[8] = {'C', 'D', 'X', 'V', 'E', 'C', 'F', '\0'};

struct vecfile {
    char *path;
    int fd;
    int writable;
    int broken;                 /* a write failed: the tail is cut (heal) before the next write */
    int dim;
    size_t stride;              /* bytes per vector row, multiple of 64 */
    size_t block_bytes;         /* BLK rows + BLK metadata entries */
    uint8_t file_id[VECFILE_ID_BYTES];
    uint8_t model_tag[32];
    uint8_t *scratch;           /* one block: rows then metadata */
    pthread_mutex_t wmu;        /* serialises append / compact */
    pthread_mutex_t mu;         /* guards map, map_len, count, fd swaps */
    const uint8_t *map;
    size_t map_len;
    struct retired { void *p; size_t len; } *retired;
    size_t n_retired, cap_retired;
    uint64_t count;
    atomic_int faulted;         /* a read of the map hit SIGBUS (file truncated) */
};

typedef struct meta {
    uint64_t slot;
    uint8_t key[VECFILE_KEY_BYTES];
    uint64_t batch_first;
    uint32_t batch_len;
    uint32_t vec_crc;
} meta;

/* ---------------------------------------------------------------- bytes */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---------------------------------------------------------------- crc32c */

static uint32_t crc_table[256];

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_table_init);
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
    }
    c = (uint32_t)c64;
    while (n--) c = _mm_crc32_u8(c, *p++);
    return c;
}

uint32_t vecfile_crc32c(const void *data, size_t len)
{
    static int hw = -1;
    int h = __atomic_load_n(&hw, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&hw, h, __ATOMIC_RELAXED);
    }
    uint32_t c = 0xFFFFFFFFu;
    c = h ? crc_hw(c, data, len) : crc_sw(c, data, len);
    return ~c;
}

/* ---------------------------------------------------------------- geometry */

static uint64_t row_off(const vecfile *vf, uint64_t s)
{
    return HDR_SIZE + (s / BLK) * vf->block_bytes + (s % BLK) * vf->stride;
}
static uint64_t meta_off(const vecfile *vf, uint64_t s)
{
    return HDR_SIZE + (s / BLK) * vf->block_bytes + BLK * vf->stride + (s % BLK) * META_SIZE;
}
/* The exact size of a file holding count records: it ends with the last
 * record's metadata entry (the rest of the last block does not exist). */
static uint64_t size_for(const vecfile *vf, uint64_t count)
{
    return count == 0 ? HDR_SIZE : meta_off(vf, count - 1) + META_SIZE;
}
static size_t stride_for(int dim)
{
    return ((size_t)dim * 4 + 63) & ~(size_t)63;
}

static void meta_encode(const meta *m, uint8_t out[META_SIZE])
{
    put64(out, m->slot);
    memcpy(out + 8, m->key, VECFILE_KEY_BYTES);
    put64(out + 40, m->batch_first);
    put32(out + 48, m->batch_len);
    put32(out + 52, m->vec_crc);
    put32(out + 56, META_MAGIC);
    put32(out + META_CRC_AT, vecfile_crc32c(out, META_CRC_AT));
}

/* 1 when the entry is intact and self-consistent for position pos. */
static int meta_decode(const uint8_t in[META_SIZE], uint64_t pos, meta *m)
{
    if (get32(in + 56) != META_MAGIC || get32(in + META_CRC_AT) != vecfile_crc32c(in, META_CRC_AT))
        return 0;
    m->slot = get64(in);
    memcpy(m->key, in + 8, VECFILE_KEY_BYTES);
    m->batch_first = get64(in + 40);
    m->batch_len = get32(in + 48);
    m->vec_crc = get32(in + 52);
    return m->slot == pos && m->batch_len >= 1 && m->batch_len <= VECFILE_MAX_BATCH &&
           m->batch_first <= pos && pos - m->batch_first < m->batch_len;
}

/* ---------------------------------------------------------------- file io */

static cdx_result pread_all(const vecfile *vf, int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return cdx_error(CDX_ERR_IO, "%s: read at %llu: %s", vf->path,
                                    (unsigned long long)off, strerror(errno));
        if (r == 0) return cdx_error(CDX_ERR_IO, "%s: unexpected end of file at %llu", vf->path,
                                     (unsigned long long)off);
        p += r; n -= (size_t)r; off += (uint64_t)r;
    }
    return CDX_OK;
}

static cdx_result pwrite_all(const char *path, int fd, const void *buf, size_t n, uint64_t off)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return cdx_error(CDX_ERR_IO, "%s: write at %llu: %s", path,
                                     (unsigned long long)off, w < 0 ? strerror(errno) : "no progress");
        p += w; n -= (size_t)w; off += (uint64_t)w;
    }
    return CDX_OK;
}

static cdx_result fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        memcpy(dir, ".", 2);
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof dir) return cdx_error(CDX_ERR_INVALID_ARG, "%s: path too long", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return cdx_error(CDX_ERR_IO, "%s: open directory: %s", dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    return r == 0 ? CDX_OK : cdx_error(CDX_ERR_IO, "%s: fsync directory: %s", dir, strerror(e));
}

static void random_id(uint8_t id[VECFILE_ID_BYTES])
{
    if (getrandom(id, VECFILE_ID_BYTES, 0) == VECFILE_ID_BYTES) return;
    struct timespec ts;                  /* fallback: unique enough, not secret */
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30), b = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull;
    put64(id, a);
    put64(id + 8, b ^ (uint64_t)(uintptr_t)id);
}

static void header_encode(uint8_t h[HDR_SIZE], int dim, const uint8_t id[16], const uint8_t tag[32])
{
    memset(h, 0, HDR_SIZE);
    memcpy(h, k_magic, 8);
    put32(h + 8, FORMAT_VERSION);
    put32(h + 12, HDR_SIZE);
    put32(h + 16, (uint32_t)dim);
    put32(h + 20, DTYPE_F32);
    put32(h + 24, (uint32_t)stride_for(dim));
    put32(h + 28, BLK);
    put32(h + 32, META_SIZE);
    put32(h + 36, FLAG_NORMALISED);
    memcpy(h + 40, id, 16);
    memcpy(h + 56, tag, 32);
    put32(h + HDR_CRC_AT, vecfile_crc32c(h, HDR_CRC_AT));
}

static cdx_result header_decode(vecfile *vf, const uint8_t *h)
{
    const char *p = vf->path;
    if (memcmp(h, k_magic, 8) != 0)
        return cdx_error(CDX_ERR_FORMAT, "%s: not a clipdex vector file (bad magic)", p);
    if (get32(h + HDR_CRC_AT) != vecfile_crc32c(h, HDR_CRC_AT))
        return cdx_error(CDX_ERR_FORMAT, "%s: header checksum mismatch (corrupt header)", p);
    uint32_t version = get32(h + 8);
    if (version > FORMAT_VERSION)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: format version %u is newer than this clipdex (reads %u)",
                         p, version, FORMAT_VERSION);
    if (version != FORMAT_VERSION)
        return cdx_error(CDX_ERR_FORMAT, "%s: invalid format version %u", p, version);
    if (get32(h + 12) != HDR_SIZE)
        return cdx_error(CDX_ERR_FORMAT, "%s: header_size %u, expected %u", p, get32(h + 12), HDR_SIZE);
    uint32_t dim = get32(h + 16);
    if (dim < 1 || dim > VECFILE_MAX_DIM)
        return cdx_error(CDX_ERR_FORMAT, "%s: dim %u out of range 1..%d", p, dim, VECFILE_MAX_DIM);
    if (get32(h + 20) != DTYPE_F32)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: dtype %u not supported (only 0 = float32)", p, get32(h + 20));
    if (get32(h + 24) != stride_for((int)dim))
        return cdx_error(CDX_ERR_FORMAT, "%s: row_stride %u does not match dim %u (expected %zu)",
                         p, get32(h + 24), dim, stride_for((int)dim));
    if (get32(h + 28) != BLK || get32(h + 32) != META_SIZE)
        return cdx_error(CDX_ERR_FORMAT, "%s: block_records %u / meta_size %u, expected %u / %u",
                         p, get32(h + 28), get32(h + 32), BLK, META_SIZE);
    uint32_t flags = get32(h + 36);
    if (flags & ~KNOWN_FLAGS)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: unknown flags 0x%x", p, flags & ~KNOWN_FLAGS);
    if (!(flags & FLAG_NORMALISED))
        return cdx_error(CDX_ERR_FORMAT, "%s: flags 0x%x lack the required 'normalised' bit", p, flags);
    for (unsigned i = 88; i < HDR_CRC_AT; i++)
        if (h[i]) return cdx_error(CDX_ERR_FORMAT, "%s: reserved header byte %u is not zero", p, i);
    vf->dim = (int)dim;
    vf->stride = stride_for((int)dim);
    vf->block_bytes = BLK * vf->stride + BLK * META_SIZE;
    memcpy(vf->file_id, h + 40, 16);
    memcpy(vf->model_tag, h + 56, 32);
    return CDX_OK;
}

/* ---------------------------------------------------------------- SIGBUS guard
 *
 * A file truncated underneath a MAP_SHARED mapping (by another process, a
 * full disk's repair tool, a user) makes every read of a page beyond its
 * new end raise SIGBUS, which would kill a server in the middle of a scan.
 * Every mapping of this module is registered here; a process-wide SIGBUS
 * handler, installed with the first mapping, maps an anonymous zero page
 * over the faulting page of a registered mapping (so the read completes,
 * in whatever thread) and marks the handle faulted.  vecfile_verify()
 * turns that mark, and a file shorter than its records need (checked with
 * fstat before each scan), into an error: callers check before and after
 * reading, so zeros are never returned as data.  Faults outside our
 * mappings go to the previous handler (or the default action).  The
 * handler uses only atomics and mmap (a plain system call on Linux).
 */
#define GUARD_SLOTS 4096
static struct guard {
    _Atomic uintptr_t lo, hi;
    _Atomic(vecfile *) vf;
} g_guard[GUARD_SLOTS];
static struct sigaction g_old_bus;
static long g_page;
static pthread_once_t g_guard_once = PTHREAD_ONCE_INIT;

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    for (size_t i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t lo = atomic_load(&g_guard[i].lo), hi = atomic_load(&g_guard[i].hi);
        if (!lo || a < lo || a >= hi) continue;
        vecfile *vf = atomic_load(&g_guard[i].vf);
        void *page = (void *)(a & ~(uintptr_t)(g_page - 1));
        if (mmap(page, (size_t)g_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
            break;
        if (vf) atomic_store(&vf->faulted, 1);
        return;
    }
    if ((g_old_bus.sa_flags & SA_SIGINFO) && g_old_bus.sa_sigaction) {
        g_old_bus.sa_sigaction(sig, si, uc);
    } else if (g_old_bus.sa_handler != SIG_DFL && g_old_bus.sa_handler != SIG_IGN) {
        g_old_bus.sa_handler(sig);
    } else {
        signal(SIGBUS, SIG_DFL);   /* the fault repeats and takes the default action */
    }
}

static void guard_install(void)
{
    g_page = sysconf(_SC_PAGESIZE);
    if (g_page <= 0) g_page = 4096;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = bus_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_old_bus);
}

static void guard_add(vecfile *vf, const void *p, size_t len)
{
    pthread_once(&g_guard_once, guard_install);
    for (size_t i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t zero = 0;   /* a free slot has hi == 0; 1 claims it */
        if (atomic_compare_exchange_strong(&g_guard[i].hi, &zero, 1)) {
            atomic_store(&g_guard[i].vf, vf);
            atomic_store(&g_guard[i].hi, (uintptr_t)p + len);
            atomic_store(&g_guard[i].lo, (uintptr_t)p);
            return;
        }
    }
    /* all slots taken: this mapping is unguarded (a truncation kills, as before) */
}

static void guard_remove(const void *p)
{
    for (size_t i = 0; i < GUARD_SLOTS; i++)
        if (atomic_load(&g_guard[i].lo) == (uintptr_t)p) {
            atomic_store(&g_guard[i].lo, 0);
            atomic_store(&g_guard[i].hi, 0);
            return;
        }
}

cdx_result vecfile_verify(vecfile *vf)
{
    if (atomic_load(&vf->faulted))
        return cdx_error(CDX_ERR_IO, "%s: the file was truncated while in use (a read went past its "
                         "end); reopen the library and run clipdex check", vf->path);
    struct stat st;
    pthread_mutex_lock(&vf->mu);
    uint64_t need = size_for(vf, vf->count);
    int bad = fstat(vf->fd, &st) != 0 ? -1 : (uint64_t)st.st_size < need;
    pthread_mutex_unlock(&vf->mu);
    if (bad < 0) return cdx_error(CDX_ERR_IO, "%s: %s", vf->path, strerror(errno));
    if (bad)
        return cdx_error(CDX_ERR_IO, "%s: %llu bytes, but its records need %llu: the file was "
                         "truncated underneath (run clipdex check)", vf->path,
                         (unsigned long long)st.st_size, (unsigned long long)need);
    return CDX_OK;
}

/* ---------------------------------------------------------------- mapping */

/* Make room for one more retired mapping (caller holds mu).  Called BEFORE
 * any state change that retires a mapping, so that retiring cannot fail
 * half-way: a full list used to leave the handle on the old mapping with
 * the new file's count (wrong rows whose checksums still pass). */
static cdx_result retire_reserve(vecfile *vf)
{
    if (vf->n_retired < vf->cap_retired) return CDX_OK;
    if (vf->cap_retired >= RETIRED_CAP)
        return cdx_error(CDX_ERR_TOO_LARGE, "%s: %d mappings retired by this handle; reopen it",
                         vf->path, RETIRED_CAP);
    size_t cap = vf->cap_retired ? vf->cap_retired * 2 : 16;
    struct retired *r = realloc(vf->retired, cap * sizeof *r);
    if (!r) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    vf->retired = r;
    vf->cap_retired = cap;
    return CDX_OK;
}

/* Retire the current mapping (room reserved by retire_reserve). */
static void retire_map(vecfile *vf)
{
    if (!vf->map) return;
    vf->retired[vf->n_retired].p = (void *)vf->map;
    vf->retired[vf->n_retired].len = vf->map_len;
    vf->n_retired++;
    vf->map = NULL;
    vf->map_len = 0;
}

static size_t reserve_for(uint64_t need)
{
    size_t len = MIN_RESERVE;
    while (len < need * 2) len *= 2;
    return len;
}

/* Make the mapping cover need bytes (caller holds mu).  Old mappings are
 * retired, not unmapped: views handed out earlier keep working. */
static cdx_result map_ensure(vecfile *vf, uint64_t need)
{
    if (vf->map && need <= vf->map_len) return CDX_OK;
    cdx_result rc = retire_reserve(vf);
    if (rc != CDX_OK) return rc;
    size_t len = reserve_for(need);
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, vf->fd, 0);
    if (p == MAP_FAILED)
        return cdx_error(CDX_ERR_IO, "%s: mmap %zu bytes: %s", vf->path, len, strerror(errno));
    guard_add(vf, p, len);
    retire_map(vf);
    vf->map = p;
    vf->map_len = len;
    return CDX_OK;
}

/* ---------------------------------------------------------------- recovery */

/* Entry at pos via pread; 0 when beyond fsize or invalid. */
static int meta_at(const vecfile *vf, uint64_t pos, uint64_t fsize, meta *m)
{
    uint8_t b[META_SIZE];
    if (meta_off(vf, pos) + META_SIZE > fsize) return 0;
    if (pread_all(vf, vf->fd, b, META_SIZE, meta_off(vf, pos)) != CDX_OK) return 0;
    return meta_decode(b, pos, m);
}

/* 1 when batch [first, first+len) is complete and intact in the file. */
static int batch_ok(vecfile *vf, uint64_t first, uint32_t len, uint64_t fsize)
{
    if (first + len > UINT64_MAX / 2 || meta_off(vf, first + len - 1) + META_SIZE > fsize) return 0;
    for (uint64_t s = first; s < first + len; s++) {
        meta m;
        if (!meta_at(vf, s, fsize, &m) || m.batch_first != first || m.batch_len != len) return 0;
        if (pread_all(vf, vf->fd, vf->scratch, vf->stride, row_off(vf, s)) != CDX_OK) return 0;
        if (vecfile_crc32c(vf->scratch, vf->stride) != m.vec_crc) return 0;
    }
    return 1;
}

static uint64_t positions_in(const vecfile *vf, uint64_t fsize)
{
    uint64_t data = fsize - HDR_SIZE, full = data / vf->block_bytes, part = data % vf->block_bytes;
    uint64_t meta_start = BLK * vf->stride, extra = 0;
    if (part > meta_start) extra = (part - meta_start) / META_SIZE;
    return full * BLK + (extra > BLK ? BLK : extra);
}

/* Find the committed count: the last batch may be torn (ignored); the batch
 * before it must then be intact, else the file is damaged, not torn. */
static cdx_result recover(vecfile *vf, uint64_t fsize, vecfile_open_report *rep)
{
    uint64_t max_pos = positions_in(vf, fsize), p = max_pos, skipped = 0;
    meta m;
    int found = 0;
    while (p > 0) {
        p--;
        if (meta_at(vf, p, fsize, &m)) { found = 1; break; }
        if (++skipped > VECFILE_MAX_BATCH + BLK)
            return cdx_error(CDX_ERR_FORMAT,
                             "%s: no intact record in the last %llu positions (before slot %llu): "
                             "damage, not a torn tail", vf->path, (unsigned long long)skipped,
                             (unsigned long long)max_pos);
    }
    vf->count = 0;
    if (!found) return CDX_OK;
    uint64_t first = m.batch_first;
    if (p == first + m.batch_len - 1 && batch_ok(vf, first, m.batch_len, fsize)) {
        vf->count = first + m.batch_len;
        return CDX_OK;
    }
    /* The last batch is torn. */
    for (uint64_t s = first; s <= p; s++) {
        meta t;
        if (meta_at(vf, s, fsize, &t)) rep->torn_records++;
    }
    if (first > 0) {
        meta pm;
        if (!meta_at(vf, first - 1, fsize, &pm) || pm.batch_first + pm.batch_len != first ||
            !batch_ok(vf, pm.batch_first, pm.batch_len, fsize))
            return cdx_error(CDX_ERR_FORMAT,
                             "%s: the batch ending at slot %llu is damaged and is not the torn tail "
                             "(the last batch, from slot %llu, is incomplete too)",
                             vf->path, (unsigned long long)(first - 1), (unsigned long long)first);
    }
    vf->count = first;
    return CDX_OK;
}

/* Writable opens: cut the file right after the last committed metadata
 * entry, so no stale entry of a torn batch can join a future batch. */
static cdx_result repair_tail(vecfile *vf, uint64_t fsize, vecfile_open_report *rep)
{
    uint64_t want = size_for(vf, vf->count);
    if (fsize == want) return CDX_OK;
    if (ftruncate(vf->fd, (off_t)want) != 0 || fdatasync(vf->fd) != 0)
        return cdx_error(CDX_ERR_IO, "%s: repairing the tail: %s", vf->path, strerror(errno));
    rep->tail_repaired = 1;
    return CDX_OK;
}

/* ---------------------------------------------------------------- open */

vecfile_params vecfile_default_params(void)
{
    vecfile_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static char *path_with(const char *path, const char *suffix)
{
    size_t a = strlen(path), b = strlen(suffix);
    char *s = malloc(a + b + 1);
    if (!s) return NULL;
    memcpy(s, path, a);
    memcpy(s + a, suffix, b + 1);
    return s;
}

/* Create path holding only a header, atomically (temp + link, so a file
 * that appeared meanwhile is never clobbered). */
static cdx_result create_file(const char *path, int dim, const uint8_t *tag)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, ".create.%d.tmp", (int)getpid());
    char *tmp = path_with(path, suffix);
    if (!tmp) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    uint8_t *h = calloc(1, HDR_SIZE);
    uint8_t id[16], zero[32] = {0};
    cdx_result rc = CDX_OK;
    int fd = -1;
    if (!h) { rc = cdx_error(CDX_ERR_NOMEM, "out of memory"); goto out; }
    random_id(id);
    header_encode(h, dim, id, tag ? tag : zero);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { rc = cdx_error(CDX_ERR_IO, "%s: %s", tmp, strerror(errno)); goto out; }
    if ((rc = pwrite_all(tmp, fd, h, HDR_SIZE, 0)) != CDX_OK) goto out;
    if (fsync(fd) != 0) { rc = cdx_error(CDX_ERR_IO, "%s: fsync: %s", tmp, strerror(errno)); goto out; }
    if (link(tmp, path) != 0 && errno != EEXIST) {
        rc = cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = fsync_dir_of(path);
out:
    if (fd >= 0) { close(fd); unlink(tmp); }
    free(h);
    free(tmp);
    return rc;
}

cdx_result vecfile_open(const char *path, const vecfile_params *params,
                        vecfile **out, vecfile_open_report *rep)
{
    vecfile_params p = params ? *params : vecfile_default_params();
    vecfile_open_report dummy;
    if (!rep) rep = &dummy;
    memset(rep, 0, sizeof *rep);
    if (!out || !path) return cdx_error(CDX_ERR_INVALID_ARG, "vecfile_open: NULL argument");
    *out = NULL;
    if (p.create && (!p.writable || p.dim < 1 || p.dim > VECFILE_MAX_DIM))
        return cdx_error(CDX_ERR_INVALID_ARG, "%s: creating needs writable and a dim in 1..%d (got %d)",
                         path, VECFILE_MAX_DIM, p.dim);
    if (p.dim < 0 || p.dim > VECFILE_MAX_DIM)
        return cdx_error(CDX_ERR_INVALID_ARG, "%s: dim %d out of range", path, p.dim);

    vecfile *vf = calloc(1, sizeof *vf);
    if (!vf) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    vf->fd = -1;
    vf->writable = p.writable;
    pthread_mutex_init(&vf->mu, NULL);
    pthread_mutex_init(&vf->wmu, NULL);
    cdx_result rc = CDX_OK;
    if (!(vf->path = path_with(path, ""))) { rc = cdx_error(CDX_ERR_NOMEM, "out of memory"); goto fail; }

    int flags = (p.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    vf->fd = open(path, flags);
    if (vf->fd < 0 && errno == ENOENT && p.create) {
        if ((rc = create_file(path, p.dim, p.model_tag)) != CDX_OK) goto fail;
        vf->fd = open(path, flags);
    }
    if (vf->fd < 0) {
        rc = cdx_error(errno == ENOENT ? CDX_ERR_NOT_FOUND : CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (p.writable && flock(vf->fd, LOCK_EX | LOCK_NB) != 0) {
        rc = cdx_error(CDX_ERR_IO, "%s: %s", path, errno == EWOULDBLOCK ?
                       "locked by another writer" : strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(vf->fd, &st) != 0) { rc = cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(errno)); goto fail; }
    if (!S_ISREG(st.st_mode)) { rc = cdx_error(CDX_ERR_IO, "%s: not a regular file", path); goto fail; }
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize < HDR_SIZE) {
        rc = cdx_error(CDX_ERR_FORMAT, "%s: %llu bytes is too short for the %u-byte header", path,
                       (unsigned long long)fsize, HDR_SIZE);
        goto fail;
    }
    uint8_t h[HDR_CRC_AT + 4];
    if ((rc = pread_all(vf, vf->fd, h, sizeof h, 0)) != CDX_OK) goto fail;
    if ((rc = header_decode(vf, h)) != CDX_OK) goto fail;
    if (p.dim && p.dim != vf->dim) {
        rc = cdx_error(CDX_ERR_MISMATCH, "%s: holds %d-dimensional vectors, expected %d", path, vf->dim, p.dim);
        goto fail;
    }
    static const uint8_t zero[32];
    if (p.model_tag && memcmp(vf->model_tag, zero, 32) != 0 && memcmp(vf->model_tag, p.model_tag, 32) != 0) {
        rc = cdx_error(CDX_ERR_MISMATCH, "%s: was made by another model (model tag differs)", path);
        goto fail;
    }
    if (!(vf->scratch = cdx_alloc_aligned(1, vf->block_bytes))) {
        rc = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = recover(vf, fsize, rep)) != CDX_OK) goto fail;
    if (p.writable) {
        char *tmp = path_with(path, ".compact.tmp");   /* a compaction that died */
        if (tmp) { unlink(tmp); free(tmp); }
        if ((rc = repair_tail(vf, fsize, rep)) != CDX_OK) goto fail;
    }
    if ((rc = map_ensure(vf, size_for(vf, vf->count))) != CDX_OK) goto fail;
    rep->count = vf->count;
    *out = vf;
    return CDX_OK;
fail:
    vecfile_close(vf);
    return rc;
}

void vecfile_close(vecfile *vf)
{
    if (!vf) return;
    if (vf->map) {
        guard_remove(vf->map);
        munmap((void *)vf->map, vf->map_len);
    }
    for (size_t i = 0; i < vf->n_retired; i++) {
        guard_remove(vf->retired[i].p);
        munmap(vf->retired[i].p, vf->retired[i].len);
    }
    free(vf->retired);
    if (vf->fd >= 0) close(vf->fd);
    pthread_mutex_destroy(&vf->mu);
    pthread_mutex_destroy(&vf->wmu);
    cdx_free_aligned(vf->scratch);
    free(vf->path);
    free(vf);
}

int vecfile_dim(const vecfile *vf) { return vf->dim; }

uint64_t vecfile_count(vecfile *vf)
{
    pthread_mutex_lock(&vf->mu);
    uint64_t n = vf->count;
    pthread_mutex_unlock(&vf->mu);
    return n;
}

void vecfile_file_id(const vecfile *vf, uint8_t id[VECFILE_ID_BYTES])
{
    memcpy(id, vf->file_id, VECFILE_ID_BYTES);
}

cdx_rows vecfile_rows(vecfile *vf)
{
    cdx_rows s;
    pthread_mutex_lock(&vf->mu);
    s.base = vf->map + HDR_SIZE;
    s.count = vf->count;
    s.dim = vf->dim;
    s.row_stride = vf->stride;
    s.block_rows = BLK;
    s.block_stride = vf->block_bytes;
    pthread_mutex_unlock(&vf->mu);
    return s;
}

/* ---------------------------------------------------------------- append */

/* Produces row i (stride bytes, zero-padded by the caller) and its key. */
typedef cdx_result (*fill_fn)(void *ctx, size_t i, float *row, uint8_t key[VECFILE_KEY_BYTES]);

/* Write records pos0..pos0+n-1 as one batch to fd (no sync). */
static cdx_result write_batch(vecfile *vf, const char *path, int fd, uint64_t pos0, size_t n,
                              fill_fn fill, void *ctx)
{
    for (size_t i = 0; i < n;) {
        uint64_t pos = pos0 + i;
        size_t at = (size_t)(pos % BLK), m = BLK - at < n - i ? BLK - at : n - i;
        uint8_t *rows = vf->scratch, *metas = vf->scratch + BLK * vf->stride;
        memset(rows, 0, m * vf->stride);
        for (size_t j = 0; j < m; j++) {
            meta e;
            float *row = (float *)(rows + j * vf->stride);
            cdx_result rc = fill(ctx, i + j, row, e.key);
            if (rc != CDX_OK) return rc;
            e.slot = pos + j;
            e.batch_first = pos0;
            e.batch_len = (uint32_t)n;
            e.vec_crc = vecfile_crc32c(row, vf->stride);
            meta_encode(&e, metas + j * META_SIZE);
        }
        cdx_result rc = pwrite_all(path, fd, rows, m * vf->stride, row_off(vf, pos));
        if (rc == CDX_OK) rc = pwrite_all(path, fd, metas, m * META_SIZE, meta_off(vf, pos));
        if (rc != CDX_OK) return rc;
        i += m;
    }
    return CDX_OK;
}

typedef struct append_ctx {
    const float *vecs;
    const uint8_t (*keys)[VECFILE_KEY_BYTES];
    int dim;
} append_ctx;

static double norm2(const float *v, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++) s += (double)v[d] * v[d];
    return s;
}

static cdx_result fill_append(void *ctx, size_t i, float *row, uint8_t key[VECFILE_KEY_BYTES])
{
    const append_ctx *a = ctx;
    const float *v = a->vecs + i * (size_t)a->dim;
    double inv = 1.0 / sqrt(norm2(v, a->dim));
    for (int d = 0; d < a->dim; d++) row[d] = (float)(v[d] * inv);
    memcpy(key, a->keys[i], VECFILE_KEY_BYTES);
    return CDX_OK;
}

/* After a failed write or fdatasync (`broken`), the bytes past the last
 * committed batch are in an unknown state, and the page cache may hold
 * pages the disk never got (a failed fsync is not retried: see "fsyncgate").
 * Cut the file back to its committed size and sync that: the committed
 * batches were synced before, so the file on disk is then exactly what a
 * reopen would repair it to, and appends can go on in this process
 * (writer mutex held).  Found by tests/e2e_faults.sh: one EIO on an upload
 * used to refuse every later upload until the server restarted. */
static cdx_result heal(vecfile *vf)
{
    if (!vf->broken) return CDX_OK;
    uint64_t want = size_for(vf, vf->count);
    if (ftruncate(vf->fd, (off_t)want) != 0 || fdatasync(vf->fd) != 0)
        return cdx_error(CDX_ERR_IO, "%s: an earlier write failed, and cutting its torn tail failed "
                         "too (%s); reopen the library", vf->path, strerror(errno));
    vf->broken = 0;
    return CDX_OK;
}

cdx_result vecfile_append(vecfile *vf, const float *vecs,
                          const uint8_t (*keys)[VECFILE_KEY_BYTES], size_t n,
                          uint64_t *first_slot)
{
    if (!vf || (n > 0 && (!vecs || !keys)))
        return cdx_error(CDX_ERR_INVALID_ARG, "vecfile_append: NULL argument");
    if (!vf->writable) return cdx_error(CDX_ERR_INVALID_ARG, "%s: opened read-only", vf->path);
    if (n > VECFILE_MAX_BATCH)
        return cdx_error(CDX_ERR_INVALID_ARG, "%s: batch of %zu exceeds %d records", vf->path, n,
                         VECFILE_MAX_BATCH);
    for (size_t i = 0; i < n; i++) {
        const float *v = vecs + i * (size_t)vf->dim;
        for (int d = 0; d < vf->dim; d++)
            if (!isfinite(v[d]))
                return cdx_error(CDX_ERR_INVALID_ARG, "%s: vector %zu of the batch has a non-finite value",
                                 vf->path, i);
        double s = norm2(v, vf->dim);
        if (!(s > 1e-30) || !isfinite(s))
            return cdx_error(CDX_ERR_INVALID_ARG, "%s: vector %zu of the batch has no usable norm",
                             vf->path, i);
    }
    pthread_mutex_lock(&vf->wmu);
    cdx_result rc = CDX_OK;
    uint64_t pos0 = vf->count;
    if ((rc = heal(vf)) != CDX_OK) goto out;
    if (first_slot) *first_slot = pos0;
    if (n == 0) goto out;
    append_ctx ctx = {vecs, keys, vf->dim};
    rc = write_batch(vf, vf->path, vf->fd, pos0, n, fill_append, &ctx);
    if (rc == CDX_OK && fdatasync(vf->fd) != 0)
        rc = cdx_error(CDX_ERR_IO, "%s: fdatasync: %s", vf->path, strerror(errno));
    if (rc != CDX_OK) {
        vf->broken = 1;   /* the tail's state is unknown: never retry fsync */
        goto out;
    }
    pthread_mutex_lock(&vf->mu);
    rc = map_ensure(vf, size_for(vf, pos0 + n));
    if (rc == CDX_OK) vf->count = pos0 + n;
    else vf->broken = 1;  /* durable but not visible: orphans, see storage-format.md */
    pthread_mutex_unlock(&vf->mu);
out:
    pthread_mutex_unlock(&vf->wmu);
    return rc;
}

/* ---------------------------------------------------------------- read */

typedef struct snap {
    const uint8_t *map;
    uint64_t count;
} snap;

static snap take_snap(vecfile *vf)
{
    pthread_mutex_lock(&vf->mu);
    snap s = {vf->map, vf->count};
    pthread_mutex_unlock(&vf->mu);
    return s;
}

/* Verify slot s of a snapshot: 0 = intact, else the damage kind. */
static vecfile_damage_kind verify_slot(const vecfile *vf, const snap *sn, uint64_t s, meta *m)
{
    if (!meta_decode(sn->map + meta_off(vf, s), s, m)) return VECFILE_DAMAGE_META;
    if (vecfile_crc32c(sn->map + row_off(vf, s), vf->stride) != m->vec_crc) return VECFILE_DAMAGE_VECTOR;
    return 0;
}

cdx_result vecfile_get(vecfile *vf, uint64_t slot, float *out, uint8_t key[VECFILE_KEY_BYTES])
{
    snap sn = take_snap(vf);
    if (slot >= sn.count)
        return cdx_error(CDX_ERR_NOT_FOUND, "%s: slot %llu does not exist (count %llu)", vf->path,
                         (unsigned long long)slot, (unsigned long long)sn.count);
    meta m;
    vecfile_damage_kind k = verify_slot(vf, &sn, slot, &m);
    if (k)
        return cdx_error(CDX_ERR_FORMAT, "%s: slot %llu: %s", vf->path, (unsigned long long)slot,
                         vecfile_damage_str(k));
    if (out) memcpy(out, sn.map + row_off(vf, slot), (size_t)vf->dim * 4);
    if (key) memcpy(key, m.key, VECFILE_KEY_BYTES);
    return CDX_OK;
}

const char *vecfile_damage_str(vecfile_damage_kind k)
{
    switch (k) {
    case VECFILE_DAMAGE_META: return "metadata entry damaged (checksum, magic or slot)";
    case VECFILE_DAMAGE_BATCH: return "batch fields inconsistent with neighbouring records";
    case VECFILE_DAMAGE_VECTOR: return "vector checksum mismatch";
    case VECFILE_DAMAGE_NOT_UNIT: return "vector is not a finite unit vector";
    }
    return "unknown damage";
}

cdx_result vecfile_check(vecfile *vf, vecfile_damage *list, size_t max_list,
                         vecfile_check_report *rep)
{
    vecfile_check_report dummy;
    if (!rep) rep = &dummy;
    memset(rep, 0, sizeof *rep);
    snap sn = take_snap(vf);
    uint64_t cur_first = 0, cur_end = 0, first_bad = 0;
    for (uint64_t s = 0; s < sn.count; s++) {
        meta m;
        vecfile_damage_kind k = verify_slot(vf, &sn, s, &m);
        if (k != VECFILE_DAMAGE_META) {
            int ok = s >= cur_end ? m.batch_first == s
                                  : m.batch_first == cur_first && m.batch_first + m.batch_len == cur_end;
            cur_first = m.batch_first;
            cur_end = m.batch_first + m.batch_len;
            if (!ok && !k) k = VECFILE_DAMAGE_BATCH;
        }
        if (!k) {
            const float *row = (const float *)(sn.map + row_off(vf, s));
            double n2 = norm2(row, vf->dim);
            if (!isfinite(n2) || fabs(n2 - 1.0) > UNIT_TOL) k = VECFILE_DAMAGE_NOT_UNIT;
        }
        rep->checked++;
        if (k) {
            if (rep->damaged++ == 0) first_bad = s;
            if (list && rep->listed < max_list) {
                list[rep->listed].slot = s;
                list[rep->listed].kind = k;
                rep->listed++;
            }
        }
    }
    if (rep->damaged)
        return cdx_error(CDX_ERR_FORMAT, "%s: %llu of %llu records damaged, the first at slot %llu",
                         vf->path, (unsigned long long)rep->damaged, (unsigned long long)rep->checked,
                         (unsigned long long)first_bad);
    return CDX_OK;
}

cdx_result vecfile_refresh(vecfile *vf)
{
    if (vf->writable) return CDX_OK;   /* the writer always knows its count */
    pthread_mutex_lock(&vf->mu);
    cdx_result rc = CDX_OK;
    struct stat a, b;
    if (fstat(vf->fd, &a) != 0) {
        rc = cdx_error(CDX_ERR_IO, "%s: %s", vf->path, strerror(errno));
        goto out;
    }
    if (stat(vf->path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        rc = cdx_error(CDX_ERR_MISMATCH, "%s: the file was replaced (compacted?); reopen it", vf->path);
        goto out;
    }
    uint64_t fsize = (uint64_t)a.st_size, pos = vf->count;
    meta m;
    while (meta_at(vf, pos, fsize, &m) && m.batch_first == pos && batch_ok(vf, pos, m.batch_len, fsize))
        pos += m.batch_len;
    if (pos != vf->count && (rc = map_ensure(vf, size_for(vf, pos))) == CDX_OK) vf->count = pos;
out:
    pthread_mutex_unlock(&vf->mu);
    return rc;
}

/* ---------------------------------------------------------------- compact */

typedef struct compact_ctx {
    vecfile *vf;
    const uint64_t *slots;
} compact_ctx;

static cdx_result fill_compact(void *ctx, size_t i, float *row, uint8_t key[VECFILE_KEY_BYTES])
{
    compact_ctx *c = ctx;
    return vecfile_get(c->vf, c->slots[i], row, key);
}

/* Write the kept records of vf into fd (an empty file at path) under a new
 * header with file id id, then fsync it.  *n_out receives the record count.
 * Caller holds wmu (no append runs meanwhile). */
static cdx_result compact_write(vecfile *vf, const uint64_t *keep, uint64_t *old_to_new,
                                const char *path, int fd, const uint8_t id[VECFILE_ID_BYTES],
                                uint64_t *n_out)
{
    cdx_result rc = CDX_OK;
    uint64_t *slots = malloc(COMPACT_BATCH * sizeof *slots);
    uint8_t *h = calloc(1, HDR_SIZE);
    uint64_t count = vf->count, out = 0;
    if (!slots || !h) { rc = cdx_error(CDX_ERR_NOMEM, "out of memory"); goto done; }
    header_encode(h, vf->dim, id, vf->model_tag);
    if ((rc = pwrite_all(path, fd, h, HDR_SIZE, 0)) != CDX_OK) goto done;
    size_t pending = 0;
    compact_ctx ctx = {vf, slots};
    for (uint64_t s = 0; s <= count; s++) {
        if (s < count) {
            int kept = !keep || ((keep[s / 64] >> (s % 64)) & 1);
            if (old_to_new) old_to_new[s] = kept ? out + pending : UINT64_MAX;
            if (kept) slots[pending++] = s;
        }
        if (pending == COMPACT_BATCH || (s == count && pending)) {
            if ((rc = write_batch(vf, path, fd, out, pending, fill_compact, &ctx)) != CDX_OK) goto done;
            out += pending;
            pending = 0;
        }
    }
    if (ftruncate(fd, (off_t)size_for(vf, out)) != 0 || fsync(fd) != 0) {
        rc = cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    *n_out = out;
done:
    free(h);
    free(slots);
    return rc;
}

cdx_result vecfile_compact(vecfile *vf, const uint64_t *keep, uint64_t *old_to_new)
{
    if (!vf->writable) return cdx_error(CDX_ERR_INVALID_ARG, "%s: opened read-only", vf->path);
    pthread_mutex_lock(&vf->wmu);
    cdx_result rc = CDX_OK;
    int fd = -1;
    void *nmap = MAP_FAILED;
    size_t nlen = 0;
    char *tmp = path_with(vf->path, ".compact.tmp");
    uint8_t id[16];
    uint64_t out = 0;
    if (!tmp) { rc = cdx_error(CDX_ERR_NOMEM, "out of memory"); goto done; }
    if ((rc = heal(vf)) != CDX_OK) goto done;
    unlink(tmp);
    fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = cdx_error(CDX_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    random_id(id);
    if ((rc = compact_write(vf, keep, old_to_new, tmp, fd, id, &out)) != CDX_OK) goto done;
    /* Everything that can fail happens before the rename: room to retire
     * the old mapping, and the new mapping itself.  (wmu is held, so nothing
     * else retires a mapping meanwhile.) */
    pthread_mutex_lock(&vf->mu);
    rc = retire_reserve(vf);
    pthread_mutex_unlock(&vf->mu);
    if (rc != CDX_OK) goto done;
    nlen = reserve_for(size_for(vf, out));
    nmap = mmap(NULL, nlen, PROT_READ, MAP_SHARED, fd, 0);
    if (nmap == MAP_FAILED) {
        rc = cdx_error(CDX_ERR_IO, "%s: mmap %zu bytes: %s", tmp, nlen, strerror(errno));
        goto done;
    }
    guard_add(vf, nmap, nlen);
    if (rename(tmp, vf->path) != 0) {
        rc = cdx_error(CDX_ERR_IO, "%s: rename over %s: %s", tmp, vf->path, strerror(errno));
        goto done;
    }
    /* Renamed: from here on the new file is the file, whatever happens. */
    rc = fsync_dir_of(vf->path);
    pthread_mutex_lock(&vf->mu);
    close(vf->fd);
    vf->fd = fd;
    fd = -1;
    memcpy(vf->file_id, id, 16);
    retire_map(vf);                        /* old views stay valid */
    vf->map = nmap;
    vf->map_len = nlen;
    nmap = MAP_FAILED;
    vf->count = out;
    pthread_mutex_unlock(&vf->mu);
done:
    if (nmap != MAP_FAILED) {
        guard_remove(nmap);
        munmap(nmap, nlen);
    }
    if (fd >= 0) { close(fd); unlink(tmp); }
    free(tmp);
    pthread_mutex_unlock(&vf->wmu);
    return rc;
}

cdx_result vecfile_compact_into(vecfile *vf, const uint64_t *keep, uint64_t *old_to_new,
                                const char *new_path, const uint8_t new_id[VECFILE_ID_BYTES],
                                vecfile **out)
{
    if (!vf || !new_path || !out) return cdx_error(CDX_ERR_INVALID_ARG, "vecfile_compact_into: NULL argument");
    *out = NULL;
    if (!vf->writable) return cdx_error(CDX_ERR_INVALID_ARG, "%s: opened read-only", vf->path);
    pthread_mutex_lock(&vf->wmu);
    cdx_result rc = CDX_OK;
    uint8_t id[16];
    uint64_t n = 0;
    int fd = -1, created = 0;
    if ((rc = heal(vf)) != CDX_OK) goto done;
    fd = open(new_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = cdx_error(CDX_ERR_IO, "%s: %s", new_path, strerror(errno));
        goto done;
    }
    created = 1;
    if (new_id) memcpy(id, new_id, sizeof id);
    else random_id(id);
    if ((rc = compact_write(vf, keep, old_to_new, new_path, fd, id, &n)) != CDX_OK) goto done;
    if ((rc = fsync_dir_of(new_path)) != CDX_OK) goto done;
    close(fd);                             /* the open below takes the lock again */
    fd = -1;
    vecfile_params p = vecfile_default_params();
    p.writable = 1;
    p.dim = vf->dim;
    p.model_tag = vf->model_tag;
    vecfile_open_report rep;
    if ((rc = vecfile_open(new_path, &p, out, &rep)) != CDX_OK) goto done;
    if (rep.count != n || rep.torn_records) {
        vecfile_close(*out);
        *out = NULL;
        rc = cdx_error(CDX_ERR_IO, "%s: compacted file reads back %llu records, wrote %llu",
                       new_path, (unsigned long long)rep.count, (unsigned long long)n);
    }
done:
    if (fd >= 0) close(fd);
    if (rc != CDX_OK && created) unlink(new_path);
    pthread_mutex_unlock(&vf->wmu);
    return rc;
}

uint64_t vecfile_bytes_for(const vecfile *vf, uint64_t count)
{
    return size_for(vf, count);
}

void vecfile_new_id(uint8_t id[VECFILE_ID_BYTES])
{
    random_id(id);
}
