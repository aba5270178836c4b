/*
 * list.h — the one list of fila: intrusive, circular and doubly linked.
 *
 * An element embeds a `struct list` link; a list is a `struct list` head
 * that points at itself when empty. Adding and removing are O(1) and
 * allocate nothing, and list_entry() gets the element back from its link.
 * A removed link points at itself again, so removing twice is harmless and
 * list_linked() tells whether an element is in a list.
 */
#ifndef FILA_LIST_H
#define FILA_LIST_H

#include <stddef.h>

struct list {
	struct list *prev, *next;
};

/* The element of type holding link p as its member. */
#define list_entry(p, type, member)                                            \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Every link of list h, in order; the current one may not be removed. */
#define list_each(it, h) for ((it) = (h)->next; (it) != (h); (it) = (it)->next)

/* Every link of list h, in order; the current one may be removed. */
#define list_each_safe(it, tmp, h)                                             \
	for ((it) = (h)->next, (tmp) = (it)->next; (it) != (h);                \
	     (it) = (tmp), (tmp) = (it)->next)

/* An empty list, or an unlinked element. */
static inline void
list_init(struct list *h)
{
	h->prev = h->next = h;
}

static inline int
list_empty(const struct list *h)
{
	return h->next == h;
}

/* 1 when the element's link is in a list (list_init()ed links only). */
static inline int
list_linked(const struct list *e)
{
	return e->next != e;
}

/* Add e at the end of list h. */
static inline void
list_add_tail(struct list *h, struct list *e)
{
	e->prev = h->prev;
	e->next = h;
	h->prev->next = e;
	h->prev = e;
}

/* Move every element of from to the end of to; from is left empty. */
static inline void
list_splice(struct list *to, struct list *from)
{
	if (list_empty(from))
		return;
	from->next->prev = to->prev;
	to->prev->next = from->next;
	from->prev->next = to;
	to->prev = from->prev;
	list_init(from);
}

/* Take e out of its list (if any). */
static inline void
list_remove(struct list *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	list_init(e);
}

#endif
