/*
 * test_rank.c — the order-statistic set against a plain sorted model:
 * random inserts and removes, the queue's own pattern (append at the
 * tail, leave at the head or anywhere), and the counts after each step.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "rank.h"

/* A model: a bitmap over keys 0..MODEL_MAX-1. */
#define MODEL_MAX 4096

static size_t
model_below(const unsigned char *m, int64_t k)
{
	size_t n = 0;

	for (int64_t i = 0; i < k && i < MODEL_MAX; i++)
		n += m[i];
	return n;
}

Test(rank, empty)
{
	struct rank *r = rank_new();

	cr_expect_eq(rank_count(r), 0);
	cr_expect_eq(rank_below(r, 10), 0);
	cr_expect_not(rank_contains(r, 10));
	cr_expect_eq(rank_remove(r, 10), 0);
	rank_free(r);
	rank_free(NULL);
}

Test(rank, a_queue_in_order)
{
	struct rank *r = rank_new();

	for (int64_t k = 1; k <= 100000; k++)
		cr_assert_eq(rank_insert(r, k), 1);
	cr_expect_eq(rank_insert(r, 5), 0, "twice is once");
	cr_expect_eq(rank_count(r), 100000);
	cr_expect_eq(rank_below(r, 1), 0);
	cr_expect_eq(rank_below(r, 50000), 49999);
	cr_expect_eq(rank_below(r, 1000000), 100000);
	/* The head leaves, one in the middle is cancelled. */
	cr_assert_eq(rank_remove(r, 1), 1);
	cr_assert_eq(rank_remove(r, 30000), 1);
	cr_expect_eq(rank_remove(r, 30000), 0);
	cr_expect_eq(rank_below(r, 2), 0);
	cr_expect_eq(rank_below(r, 50000), 49997);
	cr_expect_eq(rank_count(r), 99998);
	rank_clear(r);
	cr_expect_eq(rank_count(r), 0);
	cr_expect_eq(rank_insert(r, 7), 1);
	cr_expect_eq(rank_below(r, 8), 1);
	rank_free(r);
}

Test(rank, random_against_a_model)
{
	struct rank *r = rank_new();
	unsigned char *m = calloc(MODEL_MAX, 1);
	size_t count = 0;

	srand(7);
	for (int step = 0; step < 200000; step++) {
		int64_t k = rand() % MODEL_MAX;
		if (rand() % 3) {
			cr_assert_eq(rank_insert(r, k), !m[k], "insert %lld",
			    (long long)k);
			count += !m[k];
			m[k] = 1;
		} else {
			cr_assert_eq(rank_remove(r, k), m[k], "remove %lld",
			    (long long)k);
			count -= m[k];
			m[k] = 0;
		}
		if (step % 97 == 0) {
			int64_t q = rand() % (MODEL_MAX + 10);
			cr_assert_eq(rank_below(r, q), model_below(m, q),
			    "below %lld at step %d", (long long)q, step);
			cr_assert_eq(
			    rank_contains(r, q), q < MODEL_MAX && m[q]);
		}
		cr_assert_eq(rank_count(r), count);
	}
	free(m);
	rank_free(r);
}

Test(rank, extreme_keys)
{
	struct rank *r = rank_new();

	cr_assert_eq(rank_insert(r, INT64_MAX), 1);
	cr_assert_eq(rank_insert(r, INT64_MIN), 1);
	cr_assert_eq(rank_insert(r, 0), 1);
	cr_expect_eq(rank_below(r, INT64_MAX), 2);
	cr_assert_eq(rank_remove(r, INT64_MAX), 1);
	cr_assert_eq(rank_remove(r, INT64_MIN), 1);
	cr_expect_eq(rank_count(r), 1);
	rank_free(r);
}
