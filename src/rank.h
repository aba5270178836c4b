/*
 * rank.h — a set of integer keys that answers "how many keys are smaller
 * than k" in O(log n): the queue's order (the keys are the queued jobs'
 * seq), so a job's place, a new job's place and a move each cost O(log n)
 * whatever the length of the queue.
 *
 * A treap (a binary search tree kept balanced by random priorities) whose
 * nodes count their subtrees; nodes live in one array, linked by index.
 */
#ifndef FILA_RANK_H
#define FILA_RANK_H

#include <stddef.h>
#include <stdint.h>

struct rank;

/* An empty set. */
struct rank *rank_new(void);
/* Free the set. NULL is a no-op. */
void rank_free(struct rank *r);

/* Add key k: 1 when added, 0 when it was there already. */
int rank_insert(struct rank *r, int64_t k);
/* Take key k out: 1 when removed, 0 when it was not there. */
int rank_remove(struct rank *r, int64_t k);
/* 1 when k is in the set. */
int rank_contains(const struct rank *r, int64_t k);
/* How many keys are smaller than k (k itself need not be in the set). */
size_t rank_below(const struct rank *r, int64_t k);
/* How many keys the set holds. */
size_t rank_count(const struct rank *r);
/* Empty the set (its memory is kept for reuse). */
void rank_clear(struct rank *r);

#endif
