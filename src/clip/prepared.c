/*
 * prepared.c - the engine cache (prepared.h): fingerprints by file identity
 * and prepared tower weights, both under cdx_engine_cache_dir():
 *
 *   <cache>/fingerprints/<sha256(real path of the weight file)[:32]>.txt
 *   <cache>/prepared/<fingerprint[:16]>-<tower>-<sha256(key)[:16]>.cdxw
 *
 * Fingerprint entry: four text lines - a version line, the real path, the
 * identity (dev ino size mtime ctime, nanoseconds, plus sha256 of
 * config.json) and the fingerprint.  A lookup rebuilds the first three lines
 * from the current stat() and accepts the entry only if they match byte for
 * byte, so nothing in it is parsed.
 *
 * Prepared file: a 4096-byte header (magic, version, data size, slot count,
 * checksum of the data, and the key string: fingerprint, tower, precision,
 * layout (packed NR or plain), instruction-set level and $CLIPDEX_MAX_ISA)
 * followed by the tower's tensors in a fixed order (tower_slots: the block
 * Linear weights last), each padded to 64 bytes.  The int8 and bf16 copies
 * of the block Linears are a second file of the same format per tower and
 * precision ("<tower>_<precision>" in the name; see cdx_prep_load_copies).  Offsets are never read from the file: the reader
 * derives the whole layout from the model's config, and accepts the file
 * only when magic, version, key, sizes and the checksum all match; anything
 * else deletes it (the caller rebuilds).  The checksum (8-lane 64-bit
 * multiply-rotate hash) detects damage, not attackers: whoever can write the
 * cache can as well write the model.  Like the fingerprint, a matching
 * checksum is remembered by the file's identity ("<file>.ok": dev, ino,
 * size, mtime, ctime), so later loads of the unchanged file skip the full
 * read; any write to the file changes its identity, and `model verify`
 * (cdx_prep_check) always reads everything.
 *
 * Workload: one fingerprint lookup per model open; a prepared file is
 * mapped once per tower per process (the first map after a write reads it
 * all for the checksum) and written once per model, precision and
 * instruction set.
 */
#include "clip/prepared.h"
#include "clip/gemm.h"
#include "common/cpu.h"
#include "common/error.h"
#include "common/util.h"
#include "fetch/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PREP_VERSION 2   /* 2: block Linear weights last (tower_slots) */
#define PREP_HEADER 4096
#define PREP_MAGIC "CDXPREP\x01"
#define FP_ENTRY_MAX 8192
#define CHECK_CHUNK ((size_t)1 << 20)   /* checksum read size: a multiple of 64 */

/* ------------------------------------------------------------ helpers */

static char *env_abs(const char *name)
{
    const char *e = getenv(name);
    return e && e[0] == '/' ? strdup(e) : NULL;
}

char *cdx_engine_cache_dir(void)
{
    char *d = env_abs("CLIPDEX_CACHE_DIR");
    if (d) return d;
    const char *home = getenv("CLIPDEX_HOME");
    if (home && home[0] == '/') return cdx_path_join(home, "cache");
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && xdg[0] == '/') return cdx_path_join(xdg, "clipdex");
    home = getenv("HOME");
    if (home && home[0] == '/') return cdx_path_join(home, ".cache/clipdex");
    return NULL;
}

/* <cache>/<sub>, created; NULL when it cannot be. */
static char *cache_subdir(const char *sub)
{
    char *root = cdx_engine_cache_dir();
    char *d = root ? cdx_path_join(root, sub) : NULL;
    free(root);
    if (d && cdx_cache_mkdirs(d) != CDX_OK) {
        cdx_error_clear();
        free(d);
        return NULL;
    }
    return d;
}

void cdx_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32) memset(md, 0, 32);
    cdx_hex(md, 32, out);
}

static int is_hex64(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[64] == '\0';
}

static atomic_uint tmp_counter;

/* path.tmp.<pid>.<n>: unique per process and call */
static char *tmp_name(const char *path)
{
    size_t n = strlen(path) + 48;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s.tmp.%d.%u", path, (int)getpid(), atomic_fetch_add(&tmp_counter, 1));
    return t;
}

/* ------------------------------------------------------------ fingerprints */

/* Everything of the entry before the fingerprint itself; NULL on failure. */
static char *fp_entry_prefix(const char *real, const struct stat *st, const char cfg_sha[65])
{
    size_t n = strlen(real) + 512;
    char *s = malloc(n);
    if (!s) return NULL;
    snprintf(s, n,
             "clipdex fingerprint cache v1\npath %s\nid %llu %llu %llu %lld.%09ld %lld.%09ld cfg %s\n"
             "fingerprint ",
             real, (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
             (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
             (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, cfg_sha);
    return s;
}

/* <cache>/fingerprints/<hash of the real path>.txt (dir created) */
static char *fp_entry_path(const char *real)
{
    char *dir = cache_subdir("fingerprints");
    if (!dir) return NULL;
    char h[65], name[48];
    cdx_sha256_hex(real, strlen(real), h);
    snprintf(name, sizeof name, "%.32s.txt", h);
    char *p = cdx_path_join(dir, name);
    free(dir);
    return p;
}

cdx_result cdx_fpcache_get(const char *weights_path, const struct stat *st, const char cfg_sha[65],
                           char fp[65])
{
    char *real = realpath(weights_path, NULL);
    char *path = real ? fp_entry_path(real) : NULL;
    char *want = path ? fp_entry_prefix(real, st, cfg_sha) : NULL;
    char *buf = NULL;
    size_t len = 0;
    cdx_result r = CDX_ERR_NOT_FOUND;
    if (want && cdx_read_file(path, FP_ENTRY_MAX, &buf, &len) == CDX_OK) {
        size_t k = strlen(want);
        if (len == k + 65 && !memcmp(buf, want, k) && buf[k + 64] == '\n') {
            memcpy(fp, buf + k, 64);
            fp[64] = '\0';
            if (is_hex64(fp)) r = CDX_OK;
        }
    }
    cdx_error_clear();
    free(buf);
    free(want);
    free(path);
    free(real);
    return r;
}

void cdx_fpcache_put(const char *weights_path, const struct stat *st, const char cfg_sha[65],
                     const char fp[65], double hash_started)
{
    /* Racy-clean guard (as git's index): timestamps are only as fine as the
     * file system's tick, so the entry must postdate them by more than one. */
    double mt = (double)st->st_mtim.tv_sec + 1e-9 * (double)st->st_mtim.tv_nsec;
    double ct = (double)st->st_ctim.tv_sec + 1e-9 * (double)st->st_ctim.tv_nsec;
    double newest = mt > ct ? mt : ct;
    double tick = st->st_mtim.tv_nsec == 0 && st->st_ctim.tv_nsec == 0 ? 2.0 : 0.05;
    if (hash_started <= newest + tick || !is_hex64(fp)) return;
    char *real = realpath(weights_path, NULL);
    char *path = real ? fp_entry_path(real) : NULL;
    char *pre = path ? fp_entry_prefix(real, st, cfg_sha) : NULL;
    if (pre) {
        size_t k = strlen(pre);
        char *s = malloc(k + 66);
        if (s) {
            memcpy(s, pre, k);
            memcpy(s + k, fp, 64);
            s[k + 64] = '\n';
            if (cdx_write_file_atomic(path, s, k + 65) != CDX_OK) cdx_error_clear();
            free(s);
        }
    }
    free(pre);
    free(path);
    free(real);
}

/* ------------------------------------------------------------ checksum */

typedef struct sum_state {
    uint64_t h[8];
} sum_state;

#define SUM_K 0xff51afd7ed558ccdull

static void sum_init(sum_state *s)
{
    for (int i = 0; i < 8; i++) s->h[i] = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
}

/* n a multiple of 64.  Each step is a bijection of the lane state, so any
 * single changed word changes the result. */
static void sum_update(sum_state *s, const uint8_t *p, size_t n)
{
    uint64_t h[8];
    memcpy(h, s->h, sizeof h);
    for (size_t off = 0; off + 64 <= n; off += 64) {
        uint64_t w[8];
        memcpy(w, p + off, 64);
        for (int i = 0; i < 8; i++) {
            uint64_t x = h[i] ^ w[i];
            h[i] = ((x << 31) | (x >> 33)) * SUM_K;
        }
    }
    memcpy(s->h, h, sizeof h);
}

static uint64_t sum_final(const sum_state *s, uint64_t total)
{
    uint64_t r = total;
    for (int i = 0; i < 8; i++) {
        r = (r ^ s->h[i]) * SUM_K;
        r ^= r >> 29;
    }
    return r;
}

/* ------------------------------------------------------------ tower layout */

/* Where a slot's pointer lives, by its type: the tower's float tensors
 * (const float *), and the int8 / bf16 copies of the block Linears (model.h
 * cdx_linear_q8, cdx_linear.bf), whose members are not const. */
typedef enum slot_kind { SLOT_F32, SLOT_F32_MUT, SLOT_I8, SLOT_I32, SLOT_U16 } slot_kind;

typedef struct slot {
    void *pp;          /* address of the pointer, of the type `kind` names */
    slot_kind kind;
    size_t bytes;
} slot;

typedef struct slots {
    slot *v;
    size_t n;
    uint64_t bytes;   /* data bytes, every slot padded to 64 */
} slots;

static size_t pad64b(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

static void add_kind(slots *s, void *pp, slot_kind kind, size_t bytes)
{
    s->v[s->n++] = (slot){pp, kind, bytes};
    s->bytes += pad64b(bytes);
}

static void add(slots *s, const float **p, size_t n) { add_kind(s, (void *)p, SLOT_F32, n * sizeof(float)); }

static const void *slot_get(const slot *sl)
{
    switch (sl->kind) {
    case SLOT_F32: return *(const float **)sl->pp;
    case SLOT_F32_MUT: return *(float **)sl->pp;
    case SLOT_I8: return *(int8_t **)sl->pp;
    case SLOT_I32: return *(int32_t **)sl->pp;
    case SLOT_U16: return *(uint16_t **)sl->pp;
    }
    return NULL;
}

/* Bind the slot's pointer to p (read-only mapped data: nothing writes
 * through the non-const members once a tower is prepared). */
static void slot_set(const slot *sl, const uint8_t *p)
{
    void *v = (void *)(uintptr_t)p;
    switch (sl->kind) {
    case SLOT_F32: *(const float **)sl->pp = v; break;
    case SLOT_F32_MUT: *(float **)sl->pp = v; break;
    case SLOT_I8: *(int8_t **)sl->pp = v; break;
    case SLOT_I32: *(int32_t **)sl->pp = v; break;
    case SLOT_U16: *(uint16_t **)sl->pp = v; break;
    }
}

static void add_ln(slots *s, cdx_layernorm *ln)
{
    add(s, &ln->g, (size_t)ln->dim);
    add(s, &ln->b, (size_t)ln->dim);
}

static void add_weight(slots *s, cdx_linear *l, int packed)
{
    if (packed) add(s, &l->wp, cdx_pack_floats(l->out, l->in));
    else add(s, &l->w, (size_t)l->out * (size_t)l->in);
}

static void add_lin(slots *s, cdx_linear *l, int bias, int packed)
{
    add_weight(s, l, packed);
    if (bias) add(s, &l->b, (size_t)l->out);
}

/* The blocks' LayerNorms and biases (small), in block order. */
static void add_blocks_small(slots *s, cdx_block *b, int layers)
{
    for (int i = 0; i < layers; i++) {
        add_ln(s, &b[i].ln1);
        add_ln(s, &b[i].ln2);
        add(s, &b[i].qkv.b, (size_t)b[i].qkv.out);
        add(s, &b[i].out.b, (size_t)b[i].out.out);
        add(s, &b[i].fc1.b, (size_t)b[i].fc1.out);
        add(s, &b[i].fc2.b, (size_t)b[i].fc2.out);
    }
}

/* The blocks' Linear weights: last in the file, after everything else, so
 * that a precision computing with its own copies of them (int8, bf16)
 * never touches a page - or a large page-cache folio, which the kernel maps
 * whole on a fault - of these float32 weights (resident memory). */
static void add_blocks_weights(slots *s, cdx_block *b, int layers, int packed)
{
    for (int i = 0; i < layers; i++) {
        add_weight(s, &b[i].qkv, packed);
        add_weight(s, &b[i].out, packed);
        add_weight(s, &b[i].fc1, packed);
        add_weight(s, &b[i].fc2, packed);
    }
}

/* The tensors of one tower in file order (shapes must be set).  Dimensions
 * come from config.c's bounded values: no size_t overflow on 64-bit. */
static cdx_result tower_slots(cdx_model *m, int tower, int packed, slots *s)
{
    int layers = tower == CDX_TOWER_TEXT ? m->text.cfg.layers : m->vision.cfg.layers;
    s->n = 0;
    s->bytes = 0;
    s->v = calloc((size_t)layers * 12 + 16, sizeof *s->v);
    if (!s->v) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (tower == CDX_TOWER_TEXT) {
        cdx_text_tower *t = &m->text;
        add(s, &t->tok_emb, (size_t)t->vocab_size * (size_t)t->cfg.width);
        add(s, &t->pos_emb, (size_t)t->context_length * (size_t)t->cfg.width);
        add_blocks_small(s, t->blocks, t->cfg.layers);
        add_ln(s, &t->ln_final);
        add_lin(s, &t->proj, 0, packed);
        add_blocks_weights(s, t->blocks, t->cfg.layers, packed);
    } else {
        cdx_vision_tower *v = &m->vision;
        size_t w = (size_t)v->cfg.width, k = 3 * (size_t)v->patch_size * (size_t)v->patch_size;
        if (packed) add(s, &v->patch_wp, cdx_pack_floats(v->cfg.width, (int)k));
        else add(s, &v->patch_w, w * k);
        add(s, &v->class_emb, w);
        add(s, &v->pos_emb, (size_t)v->n_tokens * w);
        add_ln(s, &v->ln_pre);
        add_blocks_small(s, v->blocks, v->cfg.layers);
        add_ln(s, &v->ln_post);
        add_lin(s, &v->proj, 0, packed);
        add_blocks_weights(s, v->blocks, v->cfg.layers, packed);
    }
    return CDX_OK;
}

static void set_ln(cdx_layernorm *ln, int dim) { ln->dim = dim; }

static void set_lin(cdx_linear *l, int in, int out)
{
    l->in = in;
    l->out = out;
}

cdx_result cdx_tower_shapes(cdx_model *m, int tower)
{
    const cdx_tower_config *c = tower == CDX_TOWER_TEXT ? &m->cfg.text : &m->cfg.vision;
    cdx_block **bp = tower == CDX_TOWER_TEXT ? &m->text.blocks : &m->vision.blocks;
    free(*bp);
    *bp = calloc((size_t)c->layers, sizeof **bp);
    if (!*bp) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    int w = c->width;
    for (int i = 0; i < c->layers; i++) {
        cdx_block *b = &(*bp)[i];
        set_ln(&b->ln1, w);
        set_ln(&b->ln2, w);
        set_lin(&b->qkv, w, 3 * w);
        set_lin(&b->out, w, w);
        set_lin(&b->fc1, w, c->mlp);
        set_lin(&b->fc2, c->mlp, w);
    }
    if (tower == CDX_TOWER_TEXT) {
        set_ln(&m->text.ln_final, w);
        set_lin(&m->text.proj, w, m->cfg.projection_dim);
    } else {
        set_ln(&m->vision.ln_pre, w);
        set_ln(&m->vision.ln_post, w);
        set_lin(&m->vision.proj, w, m->cfg.projection_dim);
    }
    return CDX_OK;
}

/* ------------------------------------------------------------ prepared files */

typedef struct prep_header {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    uint64_t data_bytes;
    uint64_t n_slots;
    uint64_t checksum;
    char key[512];
} prep_header;

int cdx_prep_enabled(void)
{
    const char *e = getenv("CLIPDEX_PREPARED");
    return !(e && !strcmp(e, "0"));
}

int cdx_prep_packed(void)
{
    const char *e = getenv("CLIPDEX_PACK");
    return !(e && !strcmp(e, "0"));   /* the packed kernels run at every ISA level */
}

/* The instruction-set part of the key: the level the packed kernels run at
 * (common/cpu.h, already lowered by $CLIPDEX_MAX_ISA), so a pack made under
 * one level is never used under another. */
static void isa_key(char *buf, size_t cap)
{
    snprintf(buf, cap, "isa=%s", cdx_isa_name(cdx_cpu_level()));
}

static const char *tower_name(int tower) { return tower == CDX_TOWER_TEXT ? "text" : "vision"; }

/* <cache>/prepared/<fp[:16]>-<stem>-<sha256(key)[:16]>.cdxw (dir created);
 * NULL when there is no usable cache dir. */
static char *prep_file(const char *fp, const char *stem, const char key[512])
{
    char *dir = cache_subdir("prepared");
    if (!dir) return NULL;
    char kh[65], name[112];
    cdx_sha256_hex(key, strlen(key), kh);
    snprintf(name, sizeof name, "%.16s-%s-%.16s.cdxw", fp, stem, kh);
    char *p = cdx_path_join(dir, name);
    free(dir);
    return p;
}

/* The key (zero-padded into key[512]) and the file path; NULL when there is
 * no usable cache dir or the fingerprint is not a file fingerprint. */
static char *prep_path(const char *fp, int tower, char key[512])
{
    if (!cdx_prep_enabled() || !is_hex64(fp)) return NULL;
    char isa[64];
    isa_key(isa, sizeof isa);
    memset(key, 0, 512);
    if (cdx_prep_packed())
        snprintf(key, 512, "clipdex prepared tower v%d; fingerprint=%s; tower=%s; precision=fp32; "
                 "layout=packed-nr%d; %s; byteorder=little",
                 PREP_VERSION, fp, tower_name(tower), CDX_PACK_NR, isa);
    else
        snprintf(key, 512, "clipdex prepared tower v%d; fingerprint=%s; tower=%s; precision=fp32; "
                 "layout=plain; %s; byteorder=little",
                 PREP_VERSION, fp, tower_name(tower), isa);
    return prep_file(fp, tower_name(tower), key);
}

/* Checksum of the data region read through a small buffer: pread costs a
 * copy from the page cache but no page-table work, and leaves this
 * process's resident memory alone (the tower later faults in only what it
 * uses: a text query touches a few rows of a 100 MB token embedding). */
static int data_checksum(int fd, uint64_t bytes, uint64_t *out)
{
    uint8_t *buf = malloc(CHECK_CHUNK);
    if (!buf) return -1;
    sum_state ss;
    sum_init(&ss);
    int ok = 1;
    for (uint64_t off = 0; ok && off < bytes;) {
        size_t want = bytes - off < CHECK_CHUNK ? (size_t)(bytes - off) : CHECK_CHUNK;
        ssize_t n = pread(fd, buf, want, (off_t)(PREP_HEADER + off));
        if (n < 0 && errno == EINTR) continue;
        ok = n == (ssize_t)want;   /* whole chunks: the size was checked */
        if (ok) sum_update(&ss, buf, want);
        off += want;
    }
    free(buf);
    *out = sum_final(&ss, bytes);
    return ok ? 0 : -1;
}

/* "<path>.ok": the identity of the prepared file when its checksum last
 * matched.  Like a fingerprint entry, it spares later loads the full read
 * while the file is unchanged (model verify always re-reads). */
static char *ok_path(const char *path)
{
    size_t n = strlen(path) + 4;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s.ok", path);
    return p;
}

static void identity(const struct stat *st, char *buf, size_t cap)
{
    snprintf(buf, cap, "clipdex prepared ok v1 %llu %llu %llu %lld.%09ld %lld.%09ld\n",
             (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
             (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
             (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

static int verified_before(const char *path, const struct stat *st)
{
    char *okp = ok_path(path), *buf = NULL, want[160];
    size_t len = 0;
    identity(st, want, sizeof want);
    int ok = okp && cdx_read_file(okp, 1024, &buf, &len) == CDX_OK && len == strlen(want) &&
             !memcmp(buf, want, len);
    cdx_error_clear();
    free(buf);
    free(okp);
    return ok;
}

static void remember_verified(const char *path, const struct stat *st, double started)
{
    double mt = (double)st->st_mtim.tv_sec + 1e-9 * (double)st->st_mtim.tv_nsec;
    double ct = (double)st->st_ctim.tv_sec + 1e-9 * (double)st->st_ctim.tv_nsec;
    double tick = st->st_mtim.tv_nsec == 0 && st->st_ctim.tv_nsec == 0 ? 2.0 : 0.05;
    if (started <= (mt > ct ? mt : ct) + tick) return;   /* racily clean: see fpcache_put */
    char *okp = ok_path(path), line[160];
    identity(st, line, sizeof line);
    if (okp && cdx_write_file_atomic(okp, line, strlen(line)) != CDX_OK) cdx_error_clear();
    free(okp);
}

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Open, check and map `path` against layout s and key; full: always read
 * the data for the checksum.  On CDX_ERR_FORMAT the file is deleted. */
static cdx_result map_checked(const char *path, const char key[512], const slots *s, int full,
                              void **map_out, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? CDX_ERR_NOT_FOUND : CDX_ERR_FORMAT;
    struct stat st;
    prep_header h;
    const char *why = NULL;
    void *map = MAP_FAILED;
    uint64_t want = PREP_HEADER + s->bytes, sum = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) why = "not a regular file";
    else if ((uint64_t)st.st_size != want) why = "wrong size";
    else if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) why = "short header";
    else if (memcmp(h.magic, PREP_MAGIC, 8) || h.version != PREP_VERSION ||
             h.header_bytes != PREP_HEADER)
        why = "bad magic or version";
    else if (h.data_bytes != s->bytes || h.n_slots != s->n || memcmp(h.key, key, 512))
        why = "another model, layout or instruction set";
    else if (!full && verified_before(path, &st))
        ;   /* unchanged since its checksum matched */
    else {
        double started = wall_clock();
        if (data_checksum(fd, s->bytes, &sum) != 0 || sum != h.checksum) why = "checksum mismatch";
        else remember_verified(path, &st, started);
    }
    if (!why && (map = mmap(NULL, (size_t)want, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED)
        why = "mmap failed";
    close(fd);
    if (why) {
        if (map != MAP_FAILED) munmap(map, (size_t)want);
        unlink(path);   /* damaged or stale: rebuilt by the caller */
        char *okp = ok_path(path);
        if (okp) unlink(okp);
        free(okp);
        return CDX_ERR_FORMAT;
    }
    *map_out = map;
    *len_out = (size_t)want;
    return CDX_OK;
}

static void bind_slots(const slots *s, const uint8_t *data)
{
    size_t off = 0;
    for (size_t i = 0; i < s->n; i++) {
        slot_set(&s->v[i], data + off);
        off += pad64b(s->v[i].bytes);
    }
}

cdx_result cdx_prep_load(cdx_model *m, int tower)
{
    char key[512];
    char *path = prep_path(m->fingerprint, tower, key);
    if (!path) return CDX_ERR_NOT_FOUND;
    int packed = cdx_prep_packed(), ti = tower == CDX_TOWER_TEXT ? 0 : 1;
    slots s = {0};
    cdx_result r = cdx_tower_shapes(m, tower);
    if (!r) r = tower_slots(m, tower, packed, &s);
    void *map = NULL;
    size_t len = 0;
    if (!r) r = map_checked(path, key, &s, 0, &map, &len);
    if (!r) {
        bind_slots(&s, (const uint8_t *)map + PREP_HEADER);
        m->prep_map[ti] = map;
        m->prep_len[ti] = len;
    }
    free(s.v);
    free(path);
    return r;
}

cdx_result cdx_prep_check(const cdx_model *m, int tower)
{
    char key[512];
    char *path = prep_path(m->fingerprint, tower, key);
    if (!path) return CDX_ERR_NOT_FOUND;
    cdx_model *tmp = calloc(1, sizeof *tmp);
    slots s = {0};
    cdx_result r = tmp ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) {
        tmp->cfg = m->cfg;
        tmp->text = m->text;
        tmp->vision = m->vision;
        tmp->text.blocks = tmp->vision.blocks = NULL;
        r = cdx_tower_shapes(tmp, tower);
    }
    if (!r) r = tower_slots(tmp, tower, cdx_prep_packed(), &s);
    void *map = NULL;
    size_t len = 0;
    if (!r && (r = map_checked(path, key, &s, 1, &map, &len)) == CDX_OK) munmap(map, len);
    if (tmp) {
        free(tmp->text.blocks);
        free(tmp->vision.blocks);
    }
    free(tmp);
    free(s.v);
    free(path);
    return r;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

#define STAGE (4u << 20)

/* Stream the slots through a staging buffer (padding each to 64 bytes),
 * hashing what is written. */
static int write_slots(int fd, const slots *s, uint8_t *stage, sum_state *ss)
{
    size_t fill = 0;
    for (size_t i = 0; i < s->n; i++) {
        const uint8_t *src = slot_get(&s->v[i]);
        size_t bytes = s->v[i].bytes, padded = pad64b(bytes), done = 0;
        if (!src) return -1;
        while (done < padded) {
            size_t room = STAGE - fill, take = padded - done < room ? padded - done : room;
            size_t real = done < bytes ? (bytes - done < take ? bytes - done : take) : 0;
            memcpy(stage + fill, src + done, real);
            memset(stage + fill + real, 0, take - real);
            fill += take;
            done += take;
            if (fill == STAGE) {
                sum_update(ss, stage, fill);
                if (write_all(fd, stage, fill)) return -1;
                fill = 0;
            }
        }
    }
    sum_update(ss, stage, fill);
    return fill ? write_all(fd, stage, fill) : 0;
}

/* Write the slots' data as the prepared file `path` with `key`,
 * atomically (temporary + rename). */
static cdx_result save_slots(const char *path, const char key[512], const slots *s)
{
    char *tmp = tmp_name(path);
    uint8_t *stage = malloc(STAGE);
    cdx_result r = tmp && stage ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    int fd = -1;
    if (!r && (fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
        r = cdx_error(CDX_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (!r) {
        prep_header h;
        uint8_t hdr[PREP_HEADER];
        sum_state ss;
        sum_init(&ss);
        memset(&h, 0, sizeof h);
        memset(hdr, 0, sizeof hdr);
        int bad = lseek(fd, PREP_HEADER, SEEK_SET) != PREP_HEADER || write_slots(fd, s, stage, &ss);
        memcpy(h.magic, PREP_MAGIC, 8);
        h.version = PREP_VERSION;
        h.header_bytes = PREP_HEADER;
        h.data_bytes = s->bytes;
        h.n_slots = s->n;
        h.checksum = sum_final(&ss, s->bytes);
        memcpy(h.key, key, sizeof h.key);
        memcpy(hdr, &h, sizeof h);
        if (!bad) bad = pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr;
        if (close(fd) != 0) bad = 1;
        if (!bad && rename(tmp, path) != 0) bad = 1;
        if (bad) {
            r = cdx_error(CDX_ERR_IO, "%s: cannot write prepared weights: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(stage);
    free(tmp);
    return r;
}

cdx_result cdx_prep_save(const cdx_model *src, int tower, const char *fp)
{
    char key[512];
    char *path = prep_path(fp, tower, key);
    if (!path) return cdx_error(CDX_ERR_IO, "no writable engine cache directory");
    slots s = {0};
    cdx_result r = tower_slots((cdx_model *)src, tower, cdx_prep_packed(), &s);
    if (!r) r = save_slots(path, key, &s);
    free(s.v);
    free(path);
    return r;
}

/* ------------------------------------------------------------ int8 / bf16 copies
 *
 * A second file per tower and precision holds only what that precision adds
 * (the block Linears' int8 codes, scales, column sums and 1/SmoothQuant
 * factors, or their bf16 panels); everything else (embeddings, LayerNorms,
 * biases, patch embedding, projection) stays in the float32 tower file,
 * whose block weights the int8/bf16 forward pass never touches, so they
 * are never paged in (resident memory, docs/engine.md "Memory"). */

static int copies_index(cdx_precision prec) { return prec == CDX_PRECISION_BF16 ? 1 : 0; }

static void add_q8(slots *s, cdx_linear_q8 *q, int out, int in)
{
    size_t nr = (size_t)(out + CDX_Q8_NR - 1) / CDX_Q8_NR * CDX_Q8_NR;
    add_kind(s, &q->w, SLOT_I8, cdx_q8_pack_bytes(out, in));
    add_kind(s, &q->scale, SLOT_F32_MUT, nr * sizeof(float));
    add_kind(s, &q->colsum, SLOT_I32, nr * sizeof(int32_t));
    add_kind(s, &q->inv_smooth, SLOT_F32_MUT, (size_t)in * sizeof(float));
}

/* The copies of `tower` in file order; int8 needs every block Linear's q8
 * allocated (CDX_ERR_INTERNAL otherwise). */
static cdx_result copies_slots(cdx_model *m, int tower, cdx_precision prec, slots *s)
{
    int layers = tower == CDX_TOWER_TEXT ? m->text.cfg.layers : m->vision.cfg.layers;
    cdx_block *b = tower == CDX_TOWER_TEXT ? m->text.blocks : m->vision.blocks;
    s->n = 0;
    s->bytes = 0;
    s->v = calloc((size_t)layers * 16 + 1, sizeof *s->v);
    if (!s->v) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (int i = 0; b && i < layers; i++) {
        cdx_linear *l[4] = {&b[i].qkv, &b[i].out, &b[i].fc1, &b[i].fc2};
        for (int j = 0; j < 4; j++) {
            if (prec == CDX_PRECISION_BF16) {
                add_kind(s, &l[j]->bf, SLOT_U16, cdx_bf16_pack_elems(l[j]->out, l[j]->in) * sizeof(uint16_t));
                continue;
            }
            if (!l[j]->q8) return cdx_error(CDX_ERR_INTERNAL, "int8 copies not allocated");
            add_q8(s, l[j]->q8, l[j]->out, l[j]->in);
        }
    }
    return CDX_OK;
}

static char *copies_path(const char *fp, int tower, cdx_precision prec, const char *recipe, char key[512])
{
    if (!cdx_prep_enabled() || !is_hex64(fp) || !recipe) return NULL;
    char isa[64], stem[32];
    isa_key(isa, sizeof isa);
    memset(key, 0, 512);
    int n = snprintf(key, 512, "clipdex prepared copies v%d; fingerprint=%s; tower=%s; precision=%s; "
                     "%s; %s; byteorder=little",
                     PREP_VERSION, fp, tower_name(tower), cdx_precision_name(prec), recipe, isa);
    if (n < 0 || n >= 511) return NULL;   /* a recipe that does not fit is never cached */
    snprintf(stem, sizeof stem, "%s_%s", tower_name(tower), cdx_precision_name(prec));
    return prep_file(fp, stem, key);
}

cdx_result cdx_prep_load_copies(cdx_model *m, int tower, cdx_precision prec, const char *recipe)
{
    char key[512];
    char *path = copies_path(m->fingerprint, tower, prec, recipe, key);
    if (!path) return CDX_ERR_NOT_FOUND;
    int ti = tower == CDX_TOWER_TEXT ? 0 : 1, ci = copies_index(prec);
    slots s = {0};
    cdx_result r = copies_slots(m, tower, prec, &s);
    void *map = NULL;
    size_t len = 0;
    if (!r) r = map_checked(path, key, &s, 0, &map, &len);
    if (!r) {
        if (m->copies_map[ti][ci]) munmap(m->copies_map[ti][ci], m->copies_len[ti][ci]);
        bind_slots(&s, (const uint8_t *)map + PREP_HEADER);
        m->copies_map[ti][ci] = map;
        m->copies_len[ti][ci] = len;
    }
    free(s.v);
    free(path);
    return r;
}

cdx_result cdx_prep_save_copies(const cdx_model *m, int tower, cdx_precision prec, const char *recipe)
{
    char key[512];
    char *path = copies_path(m->fingerprint, tower, prec, recipe, key);
    if (!path) return cdx_error(CDX_ERR_IO, "no writable engine cache directory");
    slots s = {0};
    cdx_result r = copies_slots((cdx_model *)m, tower, prec, &s);
    if (!r) r = save_slots(path, key, &s);
    free(s.v);
    free(path);
    return r;
}

void cdx_prep_drop_pages(const cdx_model *m, int tower)
{
    int ti = tower == CDX_TOWER_TEXT ? 0 : 1;
    if (m->prep_map[ti]) madvise(m->prep_map[ti], m->prep_len[ti], MADV_DONTNEED);
}
