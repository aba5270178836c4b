/*
 * mem.c — a per-thread cache of small blocks for SQLite and jansson.
 *
 * Both allocate and free many small blocks: a SQLite statement a few
 * dozen (Debian builds it without lookaside, so each is a malloc), a
 * jansson parse one per value. A job through submit, start and finish
 * made about 850 of them, mostly in bursts of one size, and glibc's own
 * per-thread cache keeps 7 blocks of a size: the rest went the slow way.
 * Here each thread keeps up to KEEP freed blocks of each class and hands
 * them out again.
 *
 * A class is a usable size, 24 + 16 c bytes, c < NCLASS: what glibc gives
 * for a request of that size, so a block malloc'd at a class size is found
 * in that class again from malloc_usable_size(), with no header. Every
 * block stays malloc's own: free() may release one, and mem_free() may
 * take any block from malloc (one of another usable size is not cached).
 * Under AddressSanitizer nothing is kept, so that it sees every free.
 */
#include "mem.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#include <jansson.h>

#define NCLASS 32 /* classes of 24 to 520 bytes */
#define KEEP 256  /* blocks kept per class and thread */
#if defined(__SANITIZE_ADDRESS__)
#define CACHING 0
#else
#define CACHING 1
#endif

#define CLASS_SIZE(c) (24 + 16 * (size_t)(c))

struct cache {
	void *head[NCLASS]; /* each free block holds the next one's address */
	unsigned n[NCLASS];
	int registered; /* its thread flushes it when it ends */
};

static _Thread_local struct cache cache;
static pthread_key_t end_key;
static pthread_once_t end_once = PTHREAD_ONCE_INIT;

/* The smallest class that holds n bytes, or -1. */
static int
class_for(size_t n)
{
	size_t c = n <= CLASS_SIZE(0) ? 0 : (n - CLASS_SIZE(0) + 15) / 16;

	return c < NCLASS ? (int)c : -1;
}

/* The class of a block of usable size u, or -1. */
static int
class_of(size_t u)
{
	if (u < CLASS_SIZE(0) || (u - CLASS_SIZE(0)) % 16 != 0 ||
	    (u - CLASS_SIZE(0)) / 16 >= NCLASS)
		return -1;
	return (int)((u - CLASS_SIZE(0)) / 16);
}

static void
thread_end(void *arg)
{
	(void)arg;
	mem_flush();
	cache.registered = 0; /* a later free here registers again */
}

static void
make_key(void)
{
	if (pthread_key_create(&end_key, thread_end) != 0)
		abort();
}

void *
mem_alloc(size_t n)
{
	int c = class_for(n);
	void *p;

	if (c < 0)
		return malloc(n);
	p = cache.head[c];
	if (p == NULL)
		return malloc(CLASS_SIZE(c));
	cache.head[c] = *(void **)p;
	cache.n[c]--;
	return p;
}

void
mem_free(void *p)
{
	int c;

	if (p == NULL)
		return;
	c = CACHING ? class_of(malloc_usable_size(p)) : -1;
	if (c < 0 || cache.n[c] >= KEEP) {
		free(p);
		return;
	}
	if (!cache.registered) {
		pthread_once(&end_once, make_key);
		pthread_setspecific(end_key, &cache);
		cache.registered = 1;
	}
	*(void **)p = cache.head[c];
	cache.head[c] = p;
	cache.n[c]++;
}

size_t
mem_kept(void)
{
	size_t n = 0;

	for (int c = 0; c < NCLASS; c++)
		n += cache.n[c];
	return n;
}

void
mem_flush(void)
{
	for (int c = 0; c < NCLASS; c++) {
		while (cache.head[c] != NULL) {
			void *p = cache.head[c];

			cache.head[c] = *(void **)p;
			free(p);
		}
		cache.n[c] = 0;
	}
}

/* ---- SQLite ---------------------------------------------------------- */

static void *
sq_malloc(int n)
{
	return mem_alloc((size_t)n);
}

static void
sq_free(void *p)
{
	mem_free(p);
}

static void *
sq_realloc(void *p, int n)
{
	return realloc(p, (size_t)n);
}

static int
sq_size(void *p)
{
	return p != NULL ? (int)malloc_usable_size(p) : 0;
}

/* SQLite asks for what it will get: a class's size, or 8-byte steps. */
static int
sq_roundup(int n)
{
	int c = class_for((size_t)n);

	return c >= 0 ? (int)CLASS_SIZE(c) : (n + 7) & ~7;
}

static int
sq_init(void *arg)
{
	(void)arg;
	return SQLITE_OK;
}

static void
sq_shutdown(void *arg)
{
	(void)arg;
}

const sqlite3_mem_methods *
mem_sqlite(void)
{
	static const sqlite3_mem_methods m = {
	    .xMalloc = sq_malloc,
	    .xFree = sq_free,
	    .xRealloc = sq_realloc,
	    .xSize = sq_size,
	    .xRoundup = sq_roundup,
	    .xInit = sq_init,
	    .xShutdown = sq_shutdown,
	};
	return &m;
}

void
mem_json(void)
{
	json_set_alloc_funcs(mem_alloc, mem_free);
}
