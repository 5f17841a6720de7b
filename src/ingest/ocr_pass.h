/*
 * ocr_pass.h - `clipdex ocr`: read the text in images already in a library.
 *
 * The contents not yet read with the requested languages are listed from
 * the catalog in sha256 order, a page at a time; reading threads (one
 * Tesseract handle each) read the file, check that its bytes still hash to
 * the catalogued content, decode it, run the text-likeness test and
 * Tesseract; the calling thread commits each page in one transaction.
 *
 * Invariants: the caller holds the library's write lock and owns the writer
 * catalog connection; only contents.ocr_* change (the full-text index
 * follows through the catalog's triggers, in the same transaction); a page
 * interrupted by a cancel commits what was read, so a new run resumes.
 */
#ifndef CDX_INGEST_OCR_PASS_H
#define CDX_INGEST_OCR_PASS_H

#include "clipdex.h"
#include "store/catalog.h"

cdx_result ocr_pass_run(catalog *cat, const cdx_ocr_params *p, cdx_ocr_stats *st);

#endif
