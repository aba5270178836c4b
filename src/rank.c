/*
 * rank.c — the order-statistic set of rank.h as a treap.
 *
 * Every node has a key, a random priority and the size of its subtree;
 * the tree is a binary search tree on keys and a heap on priorities, which
 * keeps its expected depth O(log n) whatever the order of the inserts (a
 * queue inserts in increasing order, the worst case of a plain tree).
 * Insert and remove work by split and merge; rank walks one path down,
 * adding the sizes of the left subtrees it passes.
 *
 * Nodes are slots of one array, linked by index (0 is "none"), with freed
 * slots on a free list: no allocation per key, and half the memory of
 * pointers.
 */
#include "rank.h"

#include <stdlib.h>

#include "util.h"

struct node {
	int64_t key;
	uint32_t prio;
	uint32_t size; /* nodes in this subtree, this one included */
	uint32_t left, right;
};

struct rank {
	struct node *v; /* v[0] is the "none" node: size 0 */
	uint32_t cap;
	uint32_t used;  /* slots handed out, v[0] included */
	uint32_t freed; /* first slot of the free list (linked by .left) */
	uint32_t root;
	uint64_t rng; /* xorshift state for the priorities */
};

static uint32_t
next_prio(struct rank *r)
{
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return (uint32_t)(r->rng >> 32);
}

static void
fix(struct rank *r, uint32_t n)
{
	r->v[n].size = 1 + r->v[r->v[n].left].size + r->v[r->v[n].right].size;
}

static uint32_t
node_new(struct rank *r, int64_t key)
{
	uint32_t n = r->freed;

	if (n != 0) {
		r->freed = r->v[n].left;
	} else {
		if (r->used == r->cap) {
			r->cap *= 2;
			r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
		}
		n = r->used++;
	}
	r->v[n] = (struct node){key, next_prio(r), 1, 0, 0};
	return n;
}

static void
node_free(struct rank *r, uint32_t n)
{
	r->v[n].left = r->freed;
	r->freed = n;
}

/* Split t into the keys < k (*lo) and the keys >= k (*hi). */
static void
split(struct rank *r, uint32_t t, int64_t k, uint32_t *lo, uint32_t *hi)
{
	if (t == 0) {
		*lo = *hi = 0;
	} else if (r->v[t].key < k) {
		split(r, r->v[t].right, k, &r->v[t].right, hi);
		*lo = t;
		fix(r, t);
	} else {
		split(r, r->v[t].left, k, lo, &r->v[t].left);
		*hi = t;
		fix(r, t);
	}
}

/* Join a and b, every key of a below every key of b. */
static uint32_t
merge(struct rank *r, uint32_t a, uint32_t b)
{
	if (a == 0 || b == 0)
		return a ? a : b;
	if (r->v[a].prio > r->v[b].prio) {
		r->v[a].right = merge(r, r->v[a].right, b);
		fix(r, a);
		return a;
	}
	r->v[b].left = merge(r, a, r->v[b].left);
	fix(r, b);
	return b;
}

struct rank *
rank_new(void)
{
	struct rank *r = xcalloc(1, sizeof(*r));

	r->cap = 64;
	r->v = xcalloc(r->cap, sizeof(*r->v));
	r->used = 1;
	r->rng = 0x9e3779b97f4a7c15u;
	return r;
}

void
rank_free(struct rank *r)
{
	if (r == NULL)
		return;
	free(r->v);
	free(r);
}

int
rank_contains(const struct rank *r, int64_t k)
{
	uint32_t t = r->root;

	while (t != 0 && r->v[t].key != k)
		t = k < r->v[t].key ? r->v[t].left : r->v[t].right;
	return t != 0;
}

int
rank_insert(struct rank *r, int64_t k)
{
	uint32_t lo, hi;

	if (rank_contains(r, k))
		return 0;
	split(r, r->root, k, &lo, &hi);
	r->root = merge(r, merge(r, lo, node_new(r, k)), hi);
	return 1;
}

/* t without key k (which it holds), its children merged in its place. */
static uint32_t
erase(struct rank *r, uint32_t t, int64_t k)
{
	struct node *n = &r->v[t];

	if (n->key == k) {
		uint32_t rest = merge(r, n->left, n->right);
		node_free(r, t);
		return rest;
	}
	if (k < n->key)
		r->v[t].left = erase(r, n->left, k);
	else
		r->v[t].right = erase(r, n->right, k);
	fix(r, t);
	return t;
}

int
rank_remove(struct rank *r, int64_t k)
{
	if (!rank_contains(r, k))
		return 0;
	r->root = erase(r, r->root, k);
	return 1;
}

size_t
rank_below(const struct rank *r, int64_t k)
{
	uint32_t t = r->root;
	size_t n = 0;

	while (t != 0) {
		if (r->v[t].key < k) {
			n += 1 + r->v[r->v[t].left].size;
			t = r->v[t].right;
		} else {
			t = r->v[t].left;
		}
	}
	return n;
}

size_t
rank_count(const struct rank *r)
{
	return r->v[r->root].size;
}

void
rank_clear(struct rank *r)
{
	r->root = 0;
	r->used = 1;
	r->freed = 0;
}
