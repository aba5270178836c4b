/*
 * test_money.c — decimal amounts read into billionths and summed exactly
 * (money.c): what a double would round, this keeps.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "money.h"

static struct money
read_ok(const char *s)
{
	struct money m;

	cr_assert_eq(money_parse(s, &m), 0, "%s", s);
	return m;
}

Test(money, reads_plain_decimals)
{
	struct money m = read_ok("0.12");

	cr_expect_eq(m.nano, 120000000);
	cr_expect_eq(m.digits, 2);
	m = read_ok("12");
	cr_expect_eq(m.nano, 12000000000LL);
	cr_expect_eq(m.digits, 0);
	m = read_ok("0.000000001");
	cr_expect_eq(m.nano, 1);
	m = read_ok("999999999.999999999");
	cr_expect_eq(m.nano, 999999999999999999LL);
}

Test(money, refuses_what_is_not_one)
{
	const char *bad[] = {"", ".5", "5.", "-1", "+1", "1e3", "0x10",
	    "1.0000000001", "1000000000", " 1", "1 ", "1,5", "NaN"};
	struct money m;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(money_parse(bad[i], &m), -1, "\"%s\"", bad[i]);
	cr_expect_eq(money_parse(NULL, &m), -1);
}

Test(money, sums_exactly_where_doubles_drift)
{
	struct money sum = {0}, tenth = read_ok("0.1");
	char buf[40];
	double d = 0;

	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(money_add(&sum, &tenth), 0);
		d += 0.1;
	}
	cr_expect_neq(d, 100.0, "a double drifts");
	cr_expect_str_eq(money_format(&sum, 2, buf, sizeof(buf)), "100.00");
}

Test(money, formats_with_the_most_digits_seen)
{
	struct money sum = {0}, a = read_ok("0.10"), b = read_ok("1.125");
	char buf[40];

	cr_expect_str_eq(money_format(&sum, 2, buf, sizeof(buf)), "0.00");
	cr_expect_str_eq(money_format(&sum, 0, buf, sizeof(buf)), "0");
	money_add(&sum, &a);
	cr_expect_str_eq(money_format(&sum, 2, buf, sizeof(buf)), "0.10");
	cr_expect_str_eq(money_format(&sum, 0, buf, sizeof(buf)), "0.10");
	money_add(&sum, &b);
	cr_expect_str_eq(money_format(&sum, 2, buf, sizeof(buf)), "1.225");
	a = read_ok("12");
	cr_expect_str_eq(money_format(&a, 0, buf, sizeof(buf)), "12");
}

Test(money, overflow_leaves_the_sum_as_it_was)
{
	struct money big = read_ok("999999999.999999999"), sum = {0};
	int i;

	for (i = 0; i < 20 && money_add(&sum, &big) == 0; i++)
		;
	cr_expect_eq(i, 9, "9 fit in an int64 of billionths");
	cr_expect_eq(sum.nano, 9 * big.nano);
}
