/*
 * test_list.c — the one list: order kept, O(1) removal anywhere, removal
 * twice harmless, and removal of the current element while walking.
 */
#include <criterion/criterion.h>

#include <stdio.h>

#include "list.h"

struct item {
	int n;
	struct list link;
};

/* The items' numbers in list order, as "1 2 3". */
static void
order(struct list *h, char *buf, size_t len)
{
	struct list *it;
	size_t k = 0;

	buf[0] = '\0';
	list_each(it, h)
	{
		k += (size_t)snprintf(buf + k, len - k, "%s%d", k ? " " : "",
		    list_entry(it, struct item, link)->n);
	}
}

Test(list, empty_and_linked)
{
	struct list h;
	struct item a = {.n = 1};

	list_init(&h);
	list_init(&a.link);
	cr_expect(list_empty(&h));
	cr_expect_not(list_linked(&a.link));
	list_add_tail(&h, &a.link);
	cr_expect_not(list_empty(&h));
	cr_expect(list_linked(&a.link));
	list_remove(&a.link);
	cr_expect(list_empty(&h));
	cr_expect_not(list_linked(&a.link));
	list_remove(&a.link); /* twice: nothing happens */
	cr_expect(list_empty(&h));
}

Test(list, order_and_removal_anywhere)
{
	struct list h;
	struct item v[5];
	char buf[64];

	list_init(&h);
	for (int i = 0; i < 5; i++) {
		v[i].n = i + 1;
		list_add_tail(&h, &v[i].link);
	}
	order(&h, buf, sizeof(buf));
	cr_expect_str_eq(buf, "1 2 3 4 5");
	list_remove(&v[0].link);
	list_remove(&v[2].link);
	list_remove(&v[4].link);
	order(&h, buf, sizeof(buf));
	cr_expect_str_eq(buf, "2 4");
	cr_expect_eq(list_entry(h.next, struct item, link)->n, 2);
}

Test(list, remove_while_walking)
{
	struct list h, *it, *tmp;
	struct item v[6];
	char buf[64];

	list_init(&h);
	for (int i = 0; i < 6; i++) {
		v[i].n = i + 1;
		list_add_tail(&h, &v[i].link);
	}
	list_each_safe(it, tmp, &h)
	{
		if (list_entry(it, struct item, link)->n % 2)
			list_remove(it);
	}
	order(&h, buf, sizeof(buf));
	cr_expect_str_eq(buf, "2 4 6");
}

Test(list, splice_moves_everything)
{
	struct list a, b;
	struct item v[4];
	char buf[64];

	list_init(&a);
	list_init(&b);
	list_splice(&a, &b); /* nothing to move */
	cr_expect(list_empty(&a));
	for (int i = 0; i < 4; i++) {
		v[i].n = i + 1;
		list_add_tail(i < 2 ? &a : &b, &v[i].link);
	}
	list_splice(&a, &b);
	cr_expect(list_empty(&b));
	order(&a, buf, sizeof(buf));
	cr_expect_str_eq(buf, "1 2 3 4");
}
