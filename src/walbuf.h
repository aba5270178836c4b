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

/*
 * On: this thread's commits on walbuf connections leave the sync that ends
 * them (and only that one) undone, for walbuf_deferred() to hand out; off:
 * every sync is done at once. Returns what it was.
 */
int walbuf_defer(int on);

/*
 * The descriptor of the WAL whose commit sync this thread left since
 * walbuf_defer(1), and forget it; -1 when none was left. The commit is
 * durable once fdatasync() on it returns 0 (from any thread). It stays
 * open while the connection does: sync it before closing that.
 */
int walbuf_deferred(void);

#endif
