/*
 * check.h — `fila check`: verify every invariant of docs/api.md §4 on a store,
 * independently of the daemon's code.
 */
#ifndef FILA_CHECK_H
#define FILA_CHECK_H

#include <stdio.h>
#include "config.h"

/*
 * Open cfg->store_url (sqlite:PATH, or postgres://… with its tables in
 * the schema cfg->store_schema) and check it in one read-only snapshot:
 * one "breach: …" line on out per broken invariant, "warning: …" lines
 * for what is suspicious but allowed, then a summary line ("check: 3
 * users, 12 jobs, 0 breaches"). Returns the number of breaches (0:
 * clean), or -1 with a "check: …" message on out when the store cannot
 * be opened or read. The store is never written.
 */
int check_store(const struct config *cfg, FILE *out);

#endif
