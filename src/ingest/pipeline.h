/*
 * pipeline.h - one `index` run: walk, skip what is unchanged, read + hash +
 * decode + preprocess on worker threads, embed in batches on the calling
 * thread, append vectors (fsync) and only then commit the catalog rows that
 * refer to them.
 *
 * Thread split (2-core target machine): the calling thread runs the batched
 * image tower (its GEMMs use the oneDNN/OpenMP pool over all cores) and all
 * catalog work; n_decode worker threads read, hash and decode.  Decoding is
 * ~10-15% of the per-image CPU of a ViT-B/32 embedding, so the workers fill
 * the gaps the GEMMs leave (between layers and batches, in the
 * non-GEMM ops); see bench/index_bench.c and docs/library.md for numbers.
 * With params.ocr the workers also read text in the pixels they decoded
 * (one Tesseract handle each, made at first use; image/ocr.h), committed
 * with the content row.
 * A bounded pool of pixel buffers (2 batches + one per worker) keeps the
 * decoders at most two batches ahead.
 *
 * Invariants: the caller holds the library's write lock and owns the
 * writer catalog connection and the writable vecfile for the whole run;
 * events are emitted only after the transaction they describe committed
 * (so "reported" implies durable); every catalog transaction leaves the
 * catalog invariants of catalog.h true.
 */
#ifndef CDX_INGEST_PIPELINE_H
#define CDX_INGEST_PIPELINE_H

#include "clipdex.h"
#include "store/catalog.h"
#include "store/vecfile.h"

typedef struct ingest_target {
    catalog *cat;             /* writer connection */
    vecfile *vf;              /* writable */
    const cdx_model *model;
    cdx_ctx *ctx;             /* batched image embedding; max_batch >= batch_size */
    const char *skip_dir;     /* the library directory (never indexed) */
    int n_decode;             /* decode worker threads (>= 1) */
} ingest_target;

cdx_result ingest_run(ingest_target *t, const char *const *paths, int n_paths,
                      const cdx_index_params *p, cdx_index_stats *stats);

#endif
