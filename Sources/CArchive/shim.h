#ifndef CARCHIVE_SHIM_H
#define CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>

/* Macros that Swift cannot import directly. */
static inline int carchive_ok(void) { return ARCHIVE_OK; }
static inline int carchive_eof(void) { return ARCHIVE_EOF; }
static inline int carchive_warn(void) { return ARCHIVE_WARN; }
static inline int carchive_retry(void) { return ARCHIVE_RETRY; }
static inline unsigned int carchive_ae_ifreg(void) { return AE_IFREG; }
static inline unsigned int carchive_ae_ifdir(void) { return AE_IFDIR; }
static inline unsigned int carchive_ae_iflnk(void) { return AE_IFLNK; }
#endif
