/*
 * vecfile.h - the on-disk vector store: one append-only, checksummed,
 * memory-mapped file of L2-normalised float32 vectors, each tagged with a
 * 32-byte content key (the sha256 of the image bytes).
 *
 * The byte layout, the crash-safety argument and the catalog protocol are
 * specified in docs/storage-format.md; in short:
 *  - a 4096-byte header (magic, version, dim, dtype, geometry, file id,
 *    model tag, CRC32C), then blocks of 64 records: 64 vector rows (each
 *    padded with zeros to a multiple of 64 bytes) followed by 64 metadata
 *    entries of 64 bytes (slot, key, batch, vector CRC32C, entry CRC32C).
 *    Vector rows are contiguous within a block and 64-byte aligned, and the
 *    metadata lives on pages the scan never touches.
 *  - Records are appended in batches; vecfile_append() returns only after
 *    fdatasync(), so a slot it returns may be referenced by a catalog commit.
 *  - On open only the last batch can be incomplete (torn tail): it is
 *    detected by its checksums and ignored (and removed by a writable open).
 *    Damage anywhere else is an error from open when it is adjacent to the
 *    tail and otherwise found by vecfile_check().
 *  - Slots are dense, 0..count-1, and never reused except by compaction,
 *    which renumbers them (and gives the file a new file id).
 *
 * Concurrency: one writer per file (flock LOCK_EX, taken by writable
 * opens); any number of read-only handles in any process, which see new
 * records after vecfile_refresh().  Within a process, one handle may be used
 * by several threads: vecfile_rows() snapshots stay valid until
 * vecfile_close() (old mappings are retired, not unmapped; a handle retires
 * at most 65536 mappings, then remaps and compactions fail cleanly with
 * CDX_ERR_TOO_LARGE and the handle must be reopened).
 *
 * Workload: appends of 1..VECFILE_MAX_BATCH vectors (ingest batches), scans
 * of up to ~10^7 vectors through the mapping, occasional check/compaction.
 */
#ifndef CDX_STORE_VECFILE_H
#define CDX_STORE_VECFILE_H

#include "clipdex.h"
#include "common/rows.h"

#include <stddef.h>
#include <stdint.h>

#define VECFILE_KEY_BYTES 32
#define VECFILE_ID_BYTES 16
#define VECFILE_MAX_DIM 16384
#define VECFILE_MAX_BATCH 65536         /* records per append (one atomic batch) */
#define VECFILE_BLOCK_RECORDS 64

typedef struct vecfile vecfile;

typedef struct vecfile_params {
    int writable;        /* open for appending; takes the writer lock (default 0) */
    int create;          /* create the file when missing (needs writable, dim) */
    int dim;             /* dimension; 0 = accept the file's (must be set to create) */
    const uint8_t *model_tag;  /* 32 bytes or NULL: stored on create; on open,
                                  a file with a different non-zero tag is a
                                  CDX_ERR_MISMATCH */
} vecfile_params;

vecfile_params vecfile_default_params(void);

/* What open found (all zero on a clean file). */
typedef struct vecfile_open_report {
    uint64_t count;            /* committed records */
    uint64_t torn_records;     /* records of an incomplete last batch that
                                  were ignored (and removed if writable) */
    int tail_repaired;         /* a writable open rewrote the tail */
} vecfile_open_report;

/* Open (or create) path.  Errors name the path and what was wrong:
 * CDX_ERR_NOT_FOUND, CDX_ERR_IO (also: locked by another writer),
 * CDX_ERR_FORMAT (bad magic/header checksum/geometry, or damage before the
 * tail), CDX_ERR_UNSUPPORTED (newer version, other dtype, unknown flags),
 * CDX_ERR_MISMATCH (dim or model tag).  rep may be NULL. */
cdx_result vecfile_open(const char *path, const vecfile_params *params,
                        vecfile **out, vecfile_open_report *rep);
void vecfile_close(vecfile *vf);

int vecfile_dim(const vecfile *vf);
uint64_t vecfile_count(vecfile *vf);
/* Random id chosen at creation (and by compaction); the catalog stores it to
 * know its slot numbers refer to this file. */
void vecfile_file_id(const vecfile *vf, uint8_t id[VECFILE_ID_BYTES]);

/* Append n vectors (n x dim floats, finite, non-zero; they are normalised to
 * unit length here) with their keys as one batch.  Returns after the batch
 * is durable (fdatasync); *first_slot (may be NULL) receives the slot of the
 * first vector, the others follow.  On an I/O failure the handle refuses
 * further appends (the file is repaired by the next writable open). */
cdx_result vecfile_append(vecfile *vf, const float *vecs,
                          const uint8_t (*keys)[VECFILE_KEY_BYTES], size_t n,
                          uint64_t *first_slot);

/* Copy slot's vector (dim floats; out may be NULL) and key (may be NULL),
 * verifying both checksums: CDX_ERR_NOT_FOUND for slot >= count,
 * CDX_ERR_FORMAT naming the slot when the record is damaged. */
cdx_result vecfile_get(vecfile *vf, uint64_t slot, float *out,
                       uint8_t key[VECFILE_KEY_BYTES]);

/* A zero-copy view of the committed rows; valid until vecfile_close() even
 * if the handle appends, refreshes or compacts. */
cdx_rows vecfile_rows(vecfile *vf);

/* CDX_OK when the rows of vecfile_rows() can be read: the file still holds
 * every committed record (fstat) and no read of the map hit a truncated
 * file (SIGBUS, caught by the module's handler, which puts a zero page in
 * place; see vecfile.c).  Check before and after reading a view. */
cdx_result vecfile_verify(vecfile *vf);

/* Read-only handles: pick up complete batches appended since open (by any
 * process).  CDX_ERR_MISMATCH when the path now holds another file (it was
 * compacted): reopen. */
cdx_result vecfile_refresh(vecfile *vf);

typedef enum vecfile_damage_kind {
    VECFILE_DAMAGE_META = 1,        /* metadata entry checksum/magic/slot wrong */
    VECFILE_DAMAGE_BATCH,           /* batch fields inconsistent with neighbours */
    VECFILE_DAMAGE_VECTOR,          /* vector checksum mismatch */
    VECFILE_DAMAGE_NOT_UNIT         /* checksum fine but not a finite unit vector */
} vecfile_damage_kind;

const char *vecfile_damage_str(vecfile_damage_kind k);

typedef struct vecfile_damage {
    uint64_t slot;
    vecfile_damage_kind kind;
} vecfile_damage;

typedef struct vecfile_check_report {
    uint64_t checked;          /* records verified */
    uint64_t damaged;          /* records with any damage */
    size_t listed;             /* entries written to the caller's list */
} vecfile_check_report;

/* Verify every committed record (both checksums, batch structure, unit
 * norm).  The first max_list damaged slots go to list (may be NULL).
 * Returns CDX_OK when clean, CDX_ERR_FORMAT (message: first damaged slot
 * and the total) when not, or an I/O error. */
cdx_result vecfile_check(vecfile *vf, vecfile_damage *list, size_t max_list,
                         vecfile_check_report *rep);

/* Rewrite the file keeping only slots whose bit is set in keep (bit s of
 * keep[s/64]; NULL = keep all), in slot order, then atomically replace it
 * (temp file + fsync + rename + directory fsync).  old_to_new (may be NULL;
 * count entries) receives each slot's new number or UINT64_MAX if dropped.
 * The file gets a new file id.  Writable handles only; the handle continues
 * on the new file.  A damaged kept record aborts with CDX_ERR_FORMAT and
 * leaves the original untouched. */
cdx_result vecfile_compact(vecfile *vf, const uint64_t *keep, uint64_t *old_to_new);

/* The same rewrite into a NEW file at new_path (created with O_EXCL; must
 * not exist) with file id new_id (NULL = random), fsynced together with its
 * directory entry; vf and its file are left untouched.  *out receives a
 * writable handle on the new file.  The caller decides when the new file
 * becomes the one in use (the library: one catalog transaction naming it,
 * docs/storage-format.md "Compaction").  On failure new_path is removed. */
cdx_result vecfile_compact_into(vecfile *vf, const uint64_t *keep, uint64_t *old_to_new,
                                const char *new_path, const uint8_t new_id[VECFILE_ID_BYTES],
                                vecfile **out);

/* Bytes of a file of this handle's geometry holding count records. */
uint64_t vecfile_bytes_for(const vecfile *vf, uint64_t count);

/* A fresh random file id (as creation and compaction choose them). */
void vecfile_new_id(uint8_t id[VECFILE_ID_BYTES]);

/* CRC32C (Castagnoli), as used by the format; SSE4.2 when available. */
uint32_t vecfile_crc32c(const void *data, size_t len);

#endif
