#ifndef FILA_WALBUF_H
#define FILA_WALBUF_H

#include <sqlite3.h>

/*
 * The name of a SQLite VFS that writes each run of consecutive writes to a
 * WAL file in one call, at the latest before the file is synced, read,
 * sized, truncated or closed (walbuf.c); registered on the first call, over
 * the default VFS. NULL if it cannot be: open with the default VFS then.
 * Call it after any sqlite3_config(): it initialises SQLite.
 */
const char *walbuf_vfs(void);

#endif
