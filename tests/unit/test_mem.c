/*
 * test_mem.c — the per-thread block cache: a freed small block is handed
 * out again for a request of its size, at most KEEP per size are kept,
 * large blocks are not kept, and every block stays malloc's own (free()
 * and mem_free() take each other's). SQLite and jansson run on it.
 *
 * Under AddressSanitizer nothing is kept: only the mixing is checked.
 */
#include <criterion/criterion.h>

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "mem.h"

#if defined(__SANITIZE_ADDRESS__)
#define CACHING 0
#else
#define CACHING 1
#endif

static void
fini(void)
{
	mem_flush();
}

TestSuite(mem, .fini = fini);

Test(mem, a_freed_block_is_handed_out_again)
{
	void *p = mem_alloc(100), *q;

	cr_assert_not_null(p);
	cr_assert_geq(malloc_usable_size(p), 100);
	memset(p, 0xab, 100);
	mem_free(p);
	q = mem_alloc(97); /* the same class, 88 < n <= 104 */
	if (CACHING)
		cr_assert_eq(q, p);
	mem_free(q);
	q = mem_alloc(200); /* another class */
	if (CACHING)
		cr_assert_neq(q, p);
	mem_free(q);
}

Test(mem, large_blocks_are_not_kept)
{
	void *p = mem_alloc(100000);
	size_t before = mallinfo2().uordblks;

	mem_free(p);
	cr_assert_eq(mem_kept(), 0);
	if (CACHING) /* AddressSanitizer's allocator is not malloc's */
		cr_assert_leq(
		    mallinfo2().uordblks + 100000, before, "given back");
}

Test(mem, at_most_a_bounded_number_are_kept_per_size)
{
	enum { N = 1000 };
	static void *p[N];

	for (int i = 0; i < N; i++)
		p[i] = mem_alloc(40);
	for (int i = 0; i < N; i++)
		mem_free(p[i]);
	cr_assert_eq(mem_kept(), CACHING ? 256 : 0);
	for (int i = 0; i < N; i++)
		p[i] = mem_alloc(40 + (size_t)(i % 2) * 16);
	cr_assert_eq(mem_kept(), 0, "each kept block went to one request");
	for (int i = 0; i < N; i++)
		mem_free(p[i]);
	cr_assert_eq(mem_kept(), CACHING ? 512 : 0, "two classes");
	mem_flush();
	cr_assert_eq(mem_kept(), 0);
}

Test(mem, blocks_mix_with_malloc_and_free)
{
	void *p = mem_alloc(50);

	free(p); /* a cache block is malloc's */
	p = malloc(50);
	mem_free(p); /* and malloc's go to the cache */
	p = malloc(1000);
	mem_free(p);
	mem_free(NULL);
	p = mem_alloc(0);
	cr_assert_not_null(p);
	mem_free(p);
}

static void *
churn(void *arg)
{
	for (int i = 0; i < 100; i++)
		mem_free(mem_alloc(24 + (size_t)(i % 32) * 16));
	return arg;
}

Test(mem, a_thread_gives_its_blocks_back_when_it_ends)
{
	pthread_t t;
	struct mallinfo2 before, after;

	mallopt(M_ARENA_MAX, 1); /* the threads' blocks in the arena counted */
	churn(NULL);
	mem_flush();
	before = mallinfo2();
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(pthread_create(&t, NULL, churn, NULL), 0);
		cr_assert_eq(pthread_join(t, NULL), 0);
	}
	after = mallinfo2();
	/* 20 threads each left 32 blocks: 20 KiB would still be in use. */
	cr_assert_lt(after.uordblks, before.uordblks + 8192,
	    "in use before %zu, after %zu", before.uordblks, after.uordblks);
}

Test(mem, sqlite_asks_for_what_it_will_get)
{
	const sqlite3_mem_methods *m = mem_sqlite();
	void *p;

	cr_assert_eq(m->xRoundup(1), 24);
	cr_assert_eq(m->xRoundup(100), 104);
	cr_assert_eq(m->xRoundup(520), 520);
	cr_assert_eq(m->xRoundup(521), 528);
	p = m->xMalloc(m->xRoundup(100));
	cr_assert_geq(m->xSize(p), 100);
	p = m->xRealloc(p, 3000);
	cr_assert_geq(m->xSize(p), 3000);
	m->xFree(p);
	cr_assert_eq(m->xSize(NULL), 0);
}

Test(mem, sqlite_and_jansson_run_on_it)
{
	sqlite3 *db;
	char *text;
	json_t *v;
	int n = 0;

	mem_json();
	cr_assert_eq(
	    sqlite3_config(SQLITE_CONFIG_MALLOC, mem_sqlite()), SQLITE_OK);
	cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db,
	                 "CREATE TABLE t (a TEXT);"
	                 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL"
	                 " SELECT i + 1 FROM c WHERE i < 2000)"
	                 " INSERT INTO t SELECT printf('row %d', i) FROM c;",
	                 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_stmt *q;
	cr_assert_eq(sqlite3_prepare_v2(db,
	                 "SELECT count(*) FROM t WHERE a"
	                 " LIKE 'row 1%'",
	                 -1, &q, NULL),
	    SQLITE_OK);
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	n = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	cr_assert_eq(n, 1111);
	sqlite3_close(db);
	v = json_loads(
	    "{\"a\": [1, 2, {\"b\": \"c\"}], \"d\": \"e\"}", 0, NULL);
	cr_assert_not_null(v);
	text = json_dumps(v, JSON_COMPACT);
	cr_assert_str_eq(text, "{\"a\":[1,2,{\"b\":\"c\"}],\"d\":\"e\"}");
	free(text); /* jansson's text is malloc's too */
	json_decref(v);
}
