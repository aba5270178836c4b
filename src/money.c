/*
 * money.c — decimal amounts in integer billionths (money.h). The provider
 * reports what a task cost as a decimal string; summing those as doubles
 * would drift by fractions of a cent, so each is read digit by digit into
 * an integer of billionths and the sums stay exact.
 */
#include "money.h"

#include <stdio.h>
#include <string.h>

#define INT_DIGITS_MAX 9 /* 10^9 units in billionths fit in int64 */

int
money_parse(const char *s, struct money *out)
{
	int64_t units = 0, frac = 0;
	int n = 0, digits = 0;

	if (s == NULL)
		return -1;
	for (; *s >= '0' && *s <= '9'; s++, n++) {
		if (n == INT_DIGITS_MAX)
			return -1;
		units = units * 10 + (*s - '0');
	}
	if (n == 0)
		return -1;
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
			if (digits == MONEY_SCALE)
				return -1;
			frac = frac * 10 + (*s - '0');
		}
		if (digits == 0)
			return -1;
	}
	if (*s != '\0')
		return -1;
	for (int i = digits; i < MONEY_SCALE; i++)
		frac *= 10;
	out->nano = units * 1000000000 + frac;
	out->digits = digits;
	return 0;
}

int
money_add(struct money *a, const struct money *b)
{
	if (b->nano > INT64_MAX - a->nano)
		return -1;
	a->nano += b->nano;
	if (b->digits > a->digits)
		a->digits = b->digits;
	return 0;
}

char *
money_format(const struct money *m, int min_digits, char *buf, size_t len)
{
	int digits = m->digits > min_digits ? m->digits : min_digits;
	int64_t frac = m->nano % 1000000000;
	char f[16];

	if (digits > MONEY_SCALE)
		digits = MONEY_SCALE;
	snprintf(f, sizeof(f), "%09lld", (long long)frac);
	f[digits] = '\0';
	snprintf(buf, len, "%lld%s%s", (long long)(m->nano / 1000000000),
	    digits ? "." : "", f);
	return buf;
}
