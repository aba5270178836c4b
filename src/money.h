/*
 * money.h — decimal amounts as the provider writes them ("0.12", "12"),
 * read into integer billionths and summed exactly: no binary fraction ever
 * rounds a cent.
 */
#ifndef FILA_MONEY_H
#define FILA_MONEY_H

#include <stddef.h>
#include <stdint.h>

/* The unit: an amount is kept as a count of billionths. */
#define MONEY_SCALE 9

/* A sum of amounts and the most decimals any of them was written with. */
struct money {
	int64_t nano;
	int digits;
};

/*
 * Read a plain decimal ("12", "0.10", ".5" is refused): digits, then
 * optionally a point and 1 to MONEY_SCALE digits, no sign, no exponent,
 * at most 9 digits before the point. 0 with *out set, or -1.
 */
int money_parse(const char *s, struct money *out);

/* Add b to a (a's digits become the larger); -1 on overflow (a as it was). */
int money_add(struct money *a, const struct money *b);

/* The amount with max(min_digits, its digits) decimals ("0.20") into buf;
 * buf holds at least 32 bytes. */
char *money_format(
    const struct money *m, int min_digits, char *buf, size_t len);

#endif
