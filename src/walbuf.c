/*
 * walbuf.c — a SQLite VFS that gathers the writes to a write-ahead log.
 *
 * SQLite writes each frame of a commit to the WAL as two pwrite calls (a
 * 24-byte header, then the page), so a commit of 18 pages costs 36 system
 * calls before its fsync. This VFS sits over the default one and keeps a
 * WAL file's writes that follow each other in one buffer, written in one
 * call before anything else touches the file: a sync, a read, a size, a
 * truncate, a write elsewhere, a close. A commit's frames therefore reach
 * the file before its sync and before SQLite publishes them to other
 * connections (it marks frames in the WAL index only after the sync), so
 * what the disk holds at every sync, and what any reader sees, is what
 * SQLite alone would have written. Every other file, and every method but
 * xWrite, goes straight to the default VFS.
 *
 * It can also leave a commit's sync to its caller (walbuf_defer): the
 * thread that commits then goes on while another one syncs the WAL
 * through a descriptor of its own. Only the sync that ends a commit is
 * left: a sync after a write to the WAL's header (a WAL that starts
 * over), or with nothing written since the last one (a checkpoint's,
 * before it copies frames into the database), is done at once, as it
 * orders what reaches the disk. What the disk holds at any instant is then
 * what synchronous=NORMAL would leave: a prefix of the commits.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"
#include "walbuf.h"

/* Writes are gathered up to this much; a longer run goes out in parts.
 * The default VFS writes under 128 KiB per call (it masks the length to 17
 * bits), so one write of the buffer is one pwrite. */
#define WALBUF_MAX (120 * 1024)

struct wal {
	sqlite3_file base;
	sqlite3_file *real; /* the default VFS's file, after this struct */
	unsigned char *buf; /* WALBUF_MAX bytes, the first len for off on */
	size_t len;
	sqlite3_int64 off;
	int fd;     /* the same file, for a sync elsewhere; -1: none */
	int dirty;  /* written since its last sync */
	int header; /* its header written (or it truncated) since then */
};

/* WAL header bytes: a write below this starts the WAL over. */
#define WAL_HEADER 32

static sqlite3_vfs vfs;
static sqlite3_vfs *parent;

/* This thread's commits leave their sync (walbuf_defer), and the WAL whose
 * sync was left since. */
static _Thread_local int deferring;
static _Thread_local struct wal *deferred;

/* Write what is gathered. The caller returns the error as its own: a
 * sync that cannot write fails like a write would. */
static int
flush(struct wal *w)
{
	int rc;

	if (w->len == 0)
		return SQLITE_OK;
	rc = w->real->pMethods->xWrite(w->real, w->buf, (int)w->len, w->off);
	w->len = 0;
	return rc;
}

static int
wal_close(sqlite3_file *f)
{
	struct wal *w = (struct wal *)f;
	int rc = flush(w);
	int rc2 = w->real->pMethods->xClose(w->real);

	free(w->buf);
	w->buf = NULL;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (deferred == w)
		deferred = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int
wal_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	struct wal *w = (struct wal *)f;
	int rc = flush(w);

	return rc != SQLITE_OK ? rc
	                       : w->real->pMethods->xRead(w->real, p, n, off);
}

/* Append to the run when the write continues it; else write the run out
 * and start a new one. */
static int
wal_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	struct wal *w = (struct wal *)f;
	int rc;

	w->dirty = 1;
	if (off < WAL_HEADER)
		w->header = 1;
	if (w->len > 0 && (off != w->off + (sqlite3_int64)w->len ||
	                      w->len + (size_t)n > WALBUF_MAX)) {
		if ((rc = flush(w)) != SQLITE_OK)
			return rc;
	}
	if ((size_t)n > WALBUF_MAX)
		return w->real->pMethods->xWrite(w->real, p, n, off);
	if (w->buf == NULL)
		w->buf = xmalloc(WALBUF_MAX);
	if (w->len == 0)
		w->off = off;
	memcpy(w->buf + w->len, p, (size_t)n);
	w->len += (size_t)n;
	return SQLITE_OK;
}

static int
wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct wal *w = (struct wal *)f;
	int rc = flush(w);

	w->header = 1;
	return rc != SQLITE_OK ? rc
	                       : w->real->pMethods->xTruncate(w->real, size);
}

/* A commit's sync is left to walbuf_deferred()'s caller when this thread
 * defers; any other is done here, and covers the one left before. */
static int
wal_sync(sqlite3_file *f, int flags)
{
	struct wal *w = (struct wal *)f;
	int rc = flush(w);

	if (rc != SQLITE_OK)
		return rc;
	if (deferring && w->fd >= 0 && w->dirty && !w->header &&
	    (deferred == NULL || deferred == w)) {
		w->dirty = 0;
		deferred = w;
		return SQLITE_OK;
	}
	w->dirty = w->header = 0;
	return w->real->pMethods->xSync(w->real, flags);
}

static int
wal_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct wal *w = (struct wal *)f;
	int rc = flush(w);

	return rc != SQLITE_OK ? rc
	                       : w->real->pMethods->xFileSize(w->real, size);
}

static int
wal_lock(sqlite3_file *f, int level)
{
	struct wal *w = (struct wal *)f;
	return w->real->pMethods->xLock(w->real, level);
}

static int
wal_unlock(sqlite3_file *f, int level)
{
	struct wal *w = (struct wal *)f;
	return w->real->pMethods->xUnlock(w->real, level);
}

static int
wal_reserved(sqlite3_file *f, int *out)
{
	struct wal *w = (struct wal *)f;
	return w->real->pMethods->xCheckReservedLock(w->real, out);
}

static int
wal_control(sqlite3_file *f, int op, void *arg)
{
	struct wal *w = (struct wal *)f;
	int rc = flush(w);

	return rc != SQLITE_OK
	           ? rc
	           : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int
wal_sector(sqlite3_file *f)
{
	struct wal *w = (struct wal *)f;
	return w->real->pMethods->xSectorSize(w->real);
}

static int
wal_device(sqlite3_file *f)
{
	struct wal *w = (struct wal *)f;
	return w->real->pMethods->xDeviceCharacteristics(w->real);
}

/* Version 1: a WAL file has no shared memory and is not mapped. */
static const sqlite3_io_methods wal_methods = {
    .iVersion = 1,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_size,
    .xLock = wal_lock,
    .xUnlock = wal_unlock,
    .xCheckReservedLock = wal_reserved,
    .xFileControl = wal_control,
    .xSectorSize = wal_sector,
    .xDeviceCharacteristics = wal_device,
};

/* A WAL gets a struct wal with the default VFS's file after it; any other
 * file is the default VFS's own, in the same memory. */
static int
vfs_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags,
    int *out_flags)
{
	struct wal *w = (struct wal *)f;
	int rc;

	(void)v;
	if (!(flags & SQLITE_OPEN_WAL))
		return parent->xOpen(parent, name, f, flags, out_flags);
	memset(w, 0, sizeof(*w));
	w->real = (sqlite3_file *)(w + 1);
	rc = parent->xOpen(parent, name, w->real, flags, out_flags);
	if (rc == SQLITE_OK) {
		w->base.pMethods = &wal_methods;
		/* Without it, its syncs are all done at once. */
		do
			w->fd = open(name, O_RDWR | O_CLOEXEC);
		while (w->fd < 0 && errno == EINTR);
	}
	return rc;
}

static void
vfs_init(void)
{
	parent = sqlite3_vfs_find(NULL);
	if (parent == NULL)
		return;
	vfs = *parent;
	vfs.pNext = NULL;
	vfs.zName = "fila-walbuf";
	vfs.szOsFile = (int)sizeof(struct wal) + parent->szOsFile;
	vfs.xOpen = vfs_open;
	if (sqlite3_vfs_register(&vfs, 0) != SQLITE_OK)
		parent = NULL;
}

const char *
walbuf_vfs(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, vfs_init);
	return parent ? vfs.zName : NULL;
}

int
walbuf_defer(int on)
{
	int was = deferring;

	deferring = on;
	return was;
}

int
walbuf_deferred(void)
{
	struct wal *w = deferred;

	deferred = NULL;
	return w ? w->fd : -1;
}
