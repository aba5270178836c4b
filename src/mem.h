/*
 * mem.h — small blocks for SQLite and jansson, kept per thread.
 */
#ifndef FILA_MEM_H
#define FILA_MEM_H

#include <stddef.h>

#include <sqlite3.h>

/*
 * malloc() and free() with a cache of freed small blocks in each thread.
 * Every block is malloc's own: free() may release a block of mem_alloc(),
 * and mem_free() may take any block of malloc() (or NULL).
 */
void *mem_alloc(size_t n);
void mem_free(void *p);

/* The same for SQLITE_CONFIG_MALLOC (set before SQLite initialises). */
const sqlite3_mem_methods *mem_sqlite(void);

/* Hand jansson's allocations to mem_alloc() and mem_free(). */
void mem_json(void);

/* The blocks this thread keeps. */
size_t mem_kept(void);

/* Give this thread's cached blocks back to malloc (also done when a
 * thread that cached any ends). */
void mem_flush(void);

#endif
