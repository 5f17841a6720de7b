/*
 * lib_fleet.h - what the fleet's outbox (src/fleet/outbox.c) needs from
 * the library handle beyond the public API: the writer catalog under the
 * writer mutex, and the outbox's installation on a writable open.
 *
 * Invariant: an owning library (DIR/pipeline exists) opened writable has
 * its outbox triggers installed on the writer connection before any write,
 * so every change to its images is recorded (catalog.h "fleet outbox").
 */
#ifndef CDX_LIBRARY_LIB_FLEET_H
#define CDX_LIBRARY_LIB_FLEET_H

#include "clipdex.h"
#include "store/catalog.h"

/* The writer catalog with the writer mutex held (NULL, unlocked, for a
 * read-only handle); release with lib_fleet_writer_unlock. */
catalog *lib_fleet_writer_lock(cdx_library *lib);
void lib_fleet_writer_unlock(cdx_library *lib);

/* Writable open: install the outbox when the library has a pipeline. */
cdx_result lib_fleet_attach(cdx_library *lib);

#endif
