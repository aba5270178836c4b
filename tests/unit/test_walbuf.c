/*
 * test_walbuf.c — the VFS that gathers a WAL's writes: a commit reaches
 * the WAL in a few calls, a commit longer than one call's worth goes out
 * in parts, and every commit is in the file when COMMIT returns (other
 * connections read it; a process that dies right after loses nothing).
 *
 * Deferred, a commit's sync is left to the caller, and only that one.
 *
 * Under walbuf sits a counting VFS, registered as the default first: it is
 * the default VFS with the WAL's xWrite and xSync counted.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "walbuf.h"

static sqlite3_vfs counting, *unix_vfs;
static sqlite3_io_methods wal_io;
static int (*real_write)(sqlite3_file *, const void *, int, sqlite3_int64);
static int (*real_sync)(sqlite3_file *, int);
static long writes, bytes, syncs;

static int
count_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	writes++;
	bytes += n;
	return real_write(f, p, n, off);
}

static int
count_sync(sqlite3_file *f, int flags)
{
	syncs++;
	return real_sync(f, flags);
}

static int
count_open(
    sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags, int *out)
{
	int rc = unix_vfs->xOpen(unix_vfs, name, f, flags, out);

	(void)v;
	if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL)) {
		if (real_write == NULL) {
			wal_io = *f->pMethods;
			real_write = wal_io.xWrite;
			wal_io.xWrite = count_write;
			real_sync = wal_io.xSync;
			wal_io.xSync = count_sync;
		}
		f->pMethods = &wal_io;
	}
	return rc;
}

static char dir[64];
static char path[96];

static void
setup(void)
{
	unix_vfs = sqlite3_vfs_find(NULL);
	counting = *unix_vfs;
	counting.pNext = NULL;
	counting.zName = "counting";
	counting.xOpen = count_open;
	cr_assert_eq(sqlite3_vfs_register(&counting, 1), SQLITE_OK);
	strcpy(dir, "/tmp/fila-walbuf-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/t.db", dir);
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(walbuf, .init = setup, .fini = teardown);

static sqlite3 *
open_db(const char *vfs)
{
	sqlite3 *db;

	cr_assert_eq(sqlite3_open_v2(path, &db,
	                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
	    SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db,
	                 "PRAGMA journal_mode = WAL;"
	                 "PRAGMA synchronous = FULL;"
	                 "PRAGMA wal_autocheckpoint = 0;"
	                 "CREATE TABLE IF NOT EXISTS t(b BLOB);",
	                 NULL, NULL, NULL),
	    SQLITE_OK, "%s", sqlite3_errmsg(db));
	return db;
}

/* One transaction of n rows of about a page each. */
static void
insert_rows(sqlite3 *db, int n)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
	    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c"
	    " WHERE i < %d) INSERT INTO t SELECT randomblob(3000) FROM c",
	    n);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s",
	    sqlite3_errmsg(db));
}

static long
rows_seen_by_another(void)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long n = -1;

	cr_assert_eq(
	    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, "counting"),
	    SQLITE_OK);
	cr_assert_eq(
	    sqlite3_prepare_v2(db,
	        "SELECT count(*) FROM t WHERE length(b) = 3000", -1, &st, NULL),
	    SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

Test(walbuf, a_commit_is_one_write)
{
	const char *vfs = walbuf_vfs();
	sqlite3 *db;

	cr_assert_str_eq(vfs, "fila-walbuf");
	db = open_db(vfs);
	insert_rows(db, 1);
	writes = bytes = 0;
	insert_rows(db, 20);
	/* 20 pages and more, each a frame header and a page: 40 writes
	 * without walbuf. */
	cr_expect_geq(bytes, 20 * 4096);
	cr_expect_leq(writes, 2, "%ld writes for %ld bytes", writes, bytes);
	cr_expect_eq(rows_seen_by_another(), 21);
	sqlite3_close(db);
}

/* The control: the same commit on the default VFS. */
Test(walbuf, without_it_each_frame_is_two_writes)
{
	sqlite3 *db = open_db("counting");

	insert_rows(db, 1);
	writes = bytes = 0;
	insert_rows(db, 20);
	cr_expect_geq(writes, 40);
	sqlite3_close(db);
}

Test(walbuf, a_long_commit_goes_out_in_parts)
{
	sqlite3 *db = open_db(walbuf_vfs());

	writes = bytes = 0;
	insert_rows(db, 300); /* about 1.2 MiB of frames */
	cr_expect_geq(bytes, 300 * 4096);
	cr_expect_leq(writes, bytes / (100 * 1024) + 2, "%ld writes for %ld",
	    writes, bytes);
	cr_expect_eq(rows_seen_by_another(), 300);
	sqlite3_close(db);
}

Test(walbuf, each_commit_is_read_by_another_connection)
{
	sqlite3 *db = open_db(walbuf_vfs());

	for (int i = 1; i <= 5; i++) {
		insert_rows(db, 3);
		cr_expect_eq(rows_seen_by_another(), 3 * i);
	}
	sqlite3_close(db);
}

/* A process that commits and dies at once, with nothing closed, loses
 * nothing it committed. */
Test(walbuf, a_commit_outlives_its_process)
{
	int status;
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		sqlite3 *db = open_db(walbuf_vfs());
		insert_rows(db, 7);
		insert_rows(db, 5);
		kill(getpid(), SIGKILL);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status));
	cr_expect_eq(rows_seen_by_another(), 12);
}

/* Deferring, the sync that ends a commit is left undone, for the caller
 * to do on the descriptor it is given; a checkpoint's sync, and the sync
 * after a new WAL header, are done at once. */
Test(walbuf, a_deferred_commit_leaves_its_sync_alone)
{
	sqlite3 *db = open_db(walbuf_vfs()); /* the WAL's header */
	int fd;

	syncs = 0;
	walbuf_defer(1);
	insert_rows(db, 3);
	walbuf_defer(0);
	cr_expect_eq(syncs, 0, "%ld", syncs);
	fd = walbuf_deferred();
	cr_assert_geq(fd, 0, "the commit's sync is left");
	cr_expect_eq(fdatasync(fd), 0);
	cr_expect_eq(walbuf_deferred(), -1, "handed out once");

	walbuf_defer(1);
	insert_rows(db, 2);
	insert_rows(db, 2);
	walbuf_defer(0);
	cr_expect_eq(syncs, 0, "%ld", syncs);
	cr_expect_eq(rows_seen_by_another(), 7, "committed all the same");
	cr_expect_eq(walbuf_deferred(), fd, "the same WAL");

	/* Not deferring, each commit syncs. */
	insert_rows(db, 1);
	cr_expect_eq(syncs, 1);
	cr_expect_eq(walbuf_deferred(), -1);

	/* A checkpoint syncs the WAL before it copies: never left. */
	syncs = 0;
	walbuf_defer(1);
	cr_assert_eq(sqlite3_wal_checkpoint_v2(
	                 db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL),
	    SQLITE_OK);
	walbuf_defer(0);
	cr_expect_eq(syncs, 1, "%ld", syncs);
	cr_expect_eq(walbuf_deferred(), -1);

	/* It copied everything: the next commit starts the WAL over, and
	 * its new header is synced at once; the commit's own sync is left. */
	syncs = 0;
	walbuf_defer(1);
	insert_rows(db, 1);
	walbuf_defer(0);
	cr_expect_eq(syncs, 1, "%ld", syncs);
	cr_expect_eq(walbuf_deferred(), fd);
	cr_expect_eq(rows_seen_by_another(), 9);
	sqlite3_close(db);
}
