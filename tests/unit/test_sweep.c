/*
 * test_sweep.c — old uploads go, rows and files, the oldest first, a batch
 * at a time; young ones stay; a file already gone is no error.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixtures.h"
#include "store.h"
#include "sweep.h"
#include "util.h"

static char dir[64];
static struct store *st;

static void
setup(void)
{
	char path[128];
	struct store_opts o = {
	    .slots = 1, .per_user_active = 1, .credits_initial = 100};

	fx_tmpdir(dir, sizeof(dir), "sweep");
	snprintf(path, sizeof(path), "%s/fila.db", dir);
	st = fx_store_open(path, &o);
}

static void
teardown(void)
{
	store_free(st);
	fx_rmtree(dir);
}

TestSuite(sweep, .init = setup, .fini = teardown);

/* An upload made age_s ago, with its file (unless nofile). */
static void
upload(const char *id, int64_t age_s, int nofile)
{
	char path[160];
	struct upload u = {.id = (char *)id,
	    .user_id = "u1",
	    .type = "png",
	    .size = 3,
	    .sha256 = "00",
	    .path = path,
	    .created_at = now_ms() - age_s * 1000};
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, id);
	if (!nofile) {
		cr_assert_not_null(f = fopen(path, "w"));
		fputs("png", f);
		fclose(f);
	}
	cr_assert_eq(store_upload_add(st, &u), STORE_OK);
}

static int
file_exists(const char *id)
{
	char path[160];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, id);
	return stat(path, &sb) == 0;
}

static int
row_exists(const char *id)
{
	struct upload u;
	enum store_rc rc;

	upload_init(&u);
	rc = store_upload_get(st, id, "u1", &u);
	upload_cleanup(&u);
	return rc == STORE_OK;
}

Test(sweep, old_uploads_go_rows_and_files_young_ones_stay)
{
	upload("upl_old", 7200, 0);
	upload("upl_young", 10, 0);
	cr_assert_eq(sweep_pass(st, 3600, 100), 1);
	cr_assert(!row_exists("upl_old"));
	cr_assert(!file_exists("upl_old"));
	cr_assert(row_exists("upl_young"));
	cr_assert(file_exists("upl_young"));
	cr_assert_eq(sweep_pass(st, 3600, 100), 0, "nothing more");
}

Test(sweep, a_batch_at_a_time_oldest_first)
{
	upload("upl_a", 5000, 0);
	upload("upl_b", 4000, 0);
	upload("upl_c", 3000, 0);
	cr_assert_eq(sweep_pass(st, 100, 2), 2);
	cr_assert(!row_exists("upl_a"));
	cr_assert(!row_exists("upl_b"));
	cr_assert(row_exists("upl_c"));
	cr_assert_eq(sweep_pass(st, 100, 2), 1);
}

Test(sweep, a_file_already_gone_is_no_error)
{
	upload("upl_gone", 7200, 1);
	cr_assert_eq(sweep_pass(st, 3600, 100), 1);
	cr_assert(!row_exists("upl_gone"));
}

Test(sweep, no_retention_no_timer)
{
	cr_assert_null(sweep_new(NULL, st, 0));
}
