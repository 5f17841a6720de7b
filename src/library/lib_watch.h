/*
 * lib_watch.h - what the folder watcher (lib_watch.c, cdx_library_watch)
 * needs from the library handle beyond the public API.
 */
#ifndef CDX_LIBRARY_LIB_WATCH_H
#define CDX_LIBRARY_LIB_WATCH_H

#include "clipdex.h"

/* The library's directory (absolute as opened), never indexed. */
const char *lib_watch_dir(const cdx_library *lib);

#endif
