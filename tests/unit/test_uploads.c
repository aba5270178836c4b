/*
 * test_uploads.c — the type of an upload comes from its bytes, and a saved
 * upload is on disk whole under its name, or not at all.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixtures.h"
#include "uploads.h"

#define SNIFF(lit) uploads_sniff(lit, sizeof(lit) - 1)

static char tmpdir[64];

static void
make_tmpdir(void)
{
	fx_tmpdir(tmpdir, sizeof(tmpdir), "test-uploads");
}

static void
remove_tmpdir(void)
{
	fx_rmtree(tmpdir);
}

/* Number of entries in dir besides "." and "..". */
static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static char *
read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

Test(uploads_sniff, images)
{
	cr_expect_str_eq(SNIFF("\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "png");
	cr_expect_str_eq(SNIFF("\xff\xd8\xff\xe0\0\x10JFIF"), "jpeg");
	cr_expect_str_eq(SNIFF("\xff\xd8\xff"), "jpeg");
	cr_expect_str_eq(SNIFF("RIFF\x24\0\0\0WEBPVP8 "), "webp");
}

Test(uploads_sniff, mp4_brands)
{
	static const char *const brands[] = {"isom", "iso2", "mp41", "mp42",
	    "avc1", "M4V ", "dash", "3gp5", NULL};
	unsigned char b[16] = {0, 0, 0, 0x18, 'f', 't', 'y', 'p'};

	for (size_t i = 0; brands[i] != NULL; i++) {
		memcpy(b + 8, brands[i], 4);
		cr_expect_str_eq(
		    uploads_sniff(b, sizeof(b)), "mp4", "%s", brands[i]);
	}
}

Test(uploads_sniff, quicktime)
{
	static const char *const atoms[] = {
	    "moov", "mdat", "wide", "free", "skip", "pnot", NULL};
	unsigned char b[12] = {0, 0, 0, 8};

	cr_expect_str_eq(SNIFF("\0\0\0\x14"
	                       "ftypqt  \0\0\0\0qt  "),
	    "mov");
	for (size_t i = 0; atoms[i] != NULL; i++) {
		memcpy(b + 4, atoms[i], 4);
		cr_expect_str_eq(
		    uploads_sniff(b, sizeof(b)), "mov", "%s", atoms[i]);
	}
}

Test(uploads_sniff, truncated_headers)
{
	cr_expect_null(uploads_sniff("", 0));
	cr_expect_null(uploads_sniff(NULL, 0));
	cr_expect_null(SNIFF("\x89PNG\r\n\x1a"));
	cr_expect_null(SNIFF("\xff\xd8"));
	cr_expect_null(SNIFF("RIFF\x24\0\0\0WEB"));
	cr_expect_null(SNIFF("\0\0\0\x18"
	                     "ftypis"));
	cr_expect_null(SNIFF("\0\0\0\x18"
	                     "ftyp"));
	cr_expect_null(SNIFF("\0\0\0\x08"
	                     "moo"));
}

Test(uploads_sniff, lookalikes)
{
	cr_expect_null(SNIFF("GIF89a\x01\0\x01\0"));
	cr_expect_null(SNIFF("%PDF-1.7\n%\xe2\xe3"));
	cr_expect_null(SNIFF("hello, world\n"));
	cr_expect_null(SNIFF("\x89PNG\r\n\x1a\r"));      /* one byte off */
	cr_expect_null(SNIFF("\xff\xd8\xfe\xe0"));       /* not a JPEG marker */
	cr_expect_null(SNIFF("RIFF\x24\0\0\0WAVEfmt ")); /* audio */
	cr_expect_null(SNIFF("RIFX\x24\0\0\0WEBPVP8 "));
	cr_expect_null(SNIFF("\0\0\0\x04"
	                     "moov\0\0\0\0")); /* size < 8 */
	cr_expect_null(SNIFF("\0\0\0\0"
	                     "mdat\0\0\0\0"));
	cr_expect_null(SNIFF("\0\0\0\x08"
	                     "trak\0\0\0\0")); /* not first */
	cr_expect_null(SNIFF("\0\0\0\x08"
	                     "ftypisom")); /* size too small */
	cr_expect_null(SNIFF("\0\0\0\x18"
	                     "ftyp\x01\x02\x03\x04\0\0\0\0"));
}

Test(uploads_sniff, heif_is_not_video)
{
	cr_expect_null(SNIFF("\0\0\0\x18"
	                     "ftypheic\0\0\0\0mif1heic"));
	cr_expect_null(SNIFF("\0\0\0\x1c"
	                     "ftypavif\0\0\0\0avifmif1"));
	cr_expect_null(SNIFF("\0\0\0\x18"
	                     "ftypmif1\0\0\0\0mif1heic"));
}

Test(uploads_kind, image_or_video)
{
	cr_expect(uploads_is_image("png"));
	cr_expect(uploads_is_image("jpeg"));
	cr_expect(uploads_is_image("webp"));
	cr_expect_not(uploads_is_image("mp4"));
	cr_expect_not(uploads_is_image("gif"));
	cr_expect_not(uploads_is_image(NULL));
	cr_expect(uploads_is_video("mp4"));
	cr_expect(uploads_is_video("mov"));
	cr_expect_not(uploads_is_video("png"));
	cr_expect_not(uploads_is_video(""));
	cr_expect_not(uploads_is_video(NULL));
}

Test(uploads_record, init_cleanup)
{
	struct upload u;

	upload_init(&u);
	cr_expect_null(u.id);
	upload_cleanup(&u); /* empty: safe */
	u.id = strdup("upl_1");
	u.user_id = strdup("alice");
	u.type = strdup("png");
	u.sha256 = strdup("00");
	u.filename = strdup("cat.png");
	u.path = strdup("/tmp/x");
	u.size = 3;
	upload_cleanup(&u);
	cr_expect_null(u.id);
	cr_expect_null(u.path);
	cr_expect_eq(u.size, 0);
	upload_cleanup(&u); /* twice: safe */
}

TestSuite(uploads_save, .init = make_tmpdir, .fini = remove_tmpdir);

Test(uploads_save, writes_and_reads_back)
{
	static const char data[] = "\x89PNG\r\n\x1a\n some bytes\0 and more";
	char err[256] = "";
	char *path = uploads_save(
	    tmpdir, "upl_abc", data, sizeof(data), err, sizeof(err));
	char want[128];
	struct stat st;
	size_t len;
	char *back;

	cr_assert_not_null(path, "%s", err);
	snprintf(want, sizeof(want), "%s/upl_abc", tmpdir);
	cr_expect_str_eq(path, want);
	back = read_all(path, &len);
	cr_expect_eq(len, sizeof(data));
	cr_expect_eq(memcmp(back, data, len), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0644);
	cr_expect_eq(count_entries(tmpdir), 1, "a temporary file was left");
	free(back);
	free(path);
}

Test(uploads_save, empty_file_and_trailing_slash)
{
	char dir[128], want[128], err[256] = "";
	char *path;
	size_t len;
	char *back;

	snprintf(dir, sizeof(dir), "%s/", tmpdir);
	snprintf(want, sizeof(want), "%s/empty", tmpdir);
	path = uploads_save(dir, "empty", "", 0, err, sizeof(err));
	cr_assert_not_null(path, "%s", err);
	cr_expect_str_eq(path, want);
	back = read_all(path, &len);
	cr_expect_eq(len, 0);
	free(back);
	free(path);
}

Test(uploads_save, creates_missing_nested_dirs)
{
	char dir[128], err[256] = "";
	char *path;
	struct stat st;
	size_t len;
	char *back;

	snprintf(dir, sizeof(dir), "%s/a/b/c", tmpdir);
	path = uploads_save(dir, "upl_1", "abc", 3, err, sizeof(err));
	cr_assert_not_null(path, "%s", err);
	cr_assert_eq(stat(dir, &st), 0);
	cr_expect(S_ISDIR(st.st_mode));
	cr_expect_eq(st.st_mode & 0777, 0755);
	back = read_all(path, &len);
	cr_expect_eq(len, 3);
	cr_expect_eq(memcmp(back, "abc", 3), 0);
	free(back);
	free(path);
}

Test(uploads_save, refuses_bad_names)
{
	static const char *const bad[] = {
	    "", ".", "..", "../x", "a/b", "/etc", "x/", NULL};
	char err[256];

	for (size_t i = 0; bad[i] != NULL; i++) {
		err[0] = '\0';
		cr_expect_null(
		    uploads_save(tmpdir, bad[i], "x", 1, err, sizeof(err)),
		    "saved as \"%s\"", bad[i]);
		cr_expect(
		    strstr(err, "uploads: bad file name") == err, "%s", err);
	}
	cr_expect_null(uploads_save(tmpdir, NULL, "x", 1, err, sizeof(err)));
	cr_expect_eq(count_entries(tmpdir), 0);
}

Test(uploads_save, dir_is_a_file)
{
	char file[128], dir[160], err[256] = "";
	FILE *f;

	snprintf(file, sizeof(file), "%s/plain", tmpdir);
	f = fopen(file, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_expect_null(uploads_save(file, "x", "x", 1, err, sizeof(err)));
	cr_expect(strstr(err, "Not a directory") != NULL, "%s", err);
	snprintf(dir, sizeof(dir), "%s/sub", file);
	cr_expect_null(uploads_save(dir, "x", "x", 1, err, sizeof(err)));
	cr_expect(
	    strstr(err, "uploads: cannot create directory") == err, "%s", err);
}

/* A write that fails half-way (file size limit) leaves nothing behind. */
Test(uploads_save, failed_write_leaves_nothing)
{
	static char big[65536];
	struct rlimit rl = {4096, 4096};
	char want[160], err[256] = "";

	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	memset(big, 'x', sizeof(big));
	cr_expect_null(uploads_save(
	    tmpdir, "upl_big", big, sizeof(big), err, sizeof(err)));
	snprintf(want, sizeof(want),
	    "uploads: cannot write %s/upl_big: File "
	    "too large",
	    tmpdir);
	cr_expect_str_eq(err, want);
	cr_expect_eq(count_entries(tmpdir), 0, "a temporary file was left");
}

Test(uploads_save, null_err_is_fine)
{
	cr_expect_null(uploads_save(tmpdir, "..", "x", 1, NULL, 0));
}

TestSuite(uploads_create, .init = make_tmpdir, .fini = remove_tmpdir);

Test(uploads_create, makes_the_whole_record)
{
	static const char data[] = "\x89PNG\r\n\x1a\n pixels";
	char err[256] = "", sum[65], want[128];
	struct upload u;

	cr_assert_eq(
	    uploads_create(&u, tmpdir, "alice", "png", "C:/photos/holiday.png",
	        data, sizeof(data) - 1, err, sizeof(err)),
	    0, "%s", err);
	cr_expect_eq(strncmp(u.id, "upl_", 4), 0);
	cr_expect_str_eq(u.user_id, "alice");
	cr_expect_str_eq(u.type, "png");
	cr_expect_eq(u.size, (int64_t)sizeof(data) - 1);
	sha256_hex(data, sizeof(data) - 1, sum);
	cr_expect_str_eq(u.sha256, sum);
	cr_expect_str_eq(u.filename, "holiday.png"); /* the last part only */
	cr_expect_gt(u.created_at, 0);
	snprintf(want, sizeof(want), "%s/%s.png", tmpdir, u.id);
	cr_expect_str_eq(u.path, want);
	cr_expect_eq(access(u.path, F_OK), 0);
	upload_cleanup(&u);
}

Test(uploads_create, filenames_are_made_fit_to_display)
{
	static const struct {
		const char *in, *want; /* want NULL: no name kept */
	} cases[] = {
	    {NULL, NULL},
	    {"", NULL},
	    {"a/b/", NULL},
	    {"tab\there\x7f.png", "tabhere.png"},
	    {"back\\slash.png", "backslash.png"},
	    {"\x01\x02", NULL},
	};
	char err[256];
	struct upload u;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(uploads_create(&u, tmpdir, "bob", "png",
		                 cases[i].in, "x", 1, err, sizeof(err)),
		    0, "%s", err);
		if (cases[i].want == NULL)
			cr_expect_null(u.filename, "case %zu", i);
		else
			cr_expect_str_eq(u.filename, cases[i].want);
		upload_cleanup(&u);
	}
	char *long_name = xmalloc(301);
	memset(long_name, 'n', 300);
	long_name[300] = '\0';
	cr_assert_eq(uploads_create(&u, tmpdir, "bob", "png", long_name, "x", 1,
	                 err, sizeof(err)),
	    0);
	cr_expect_eq(strlen(u.filename), 200);
	upload_cleanup(&u);

	/* "a" and 127 × "é" (255 bytes): cut before the é that byte 200
	 * would split, never inside it. */
	long_name[0] = 'a';
	for (size_t i = 1; i < 255; i += 2)
		memcpy(long_name + i, "\xc3\xa9", 2);
	long_name[255] = '\0';
	cr_assert_eq(uploads_create(&u, tmpdir, "bob", "png", long_name, "x", 1,
	                 err, sizeof(err)),
	    0);
	cr_expect_eq(strlen(u.filename), 199);
	cr_expect(text_ok(u.filename, strlen(u.filename)), "whole characters");
	upload_cleanup(&u);
	free(long_name);
}

Test(uploads_create, nothing_made_when_the_write_fails)
{
	char err[256] = "", file[128];
	struct upload u;
	FILE *f;

	snprintf(file, sizeof(file), "%s/not-a-dir", tmpdir);
	f = fopen(file, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(uploads_create(&u, file, "alice", "png", NULL, "x", 1, err,
	                 sizeof(err)),
	    -1);
	cr_expect_neq(err[0], '\0');
	cr_expect_null(u.id);
	cr_expect_null(u.path);
}

/* ---- the structure behind the magic numbers ---------------------------- */

#define SNIFF_FILE(lit)                                                        \
	uploads_sniff_file(lit, sizeof(lit) - 1, NULL, sizeof(lit) - 1)

/* A real 1x1 PNG (as bench/suite.mjs uploads). */
static const char real_png[] =
    "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0"
    "\x1f\x15\xc4\x89\0\0\0\x0dIDATx\xda\x63\x64\x60\xf8\x5f\x0f\0\x02\x87"
    "\x01\x80\xebG\xba\x92\0\0\0\0IEND\xae\x42\x60\x82";

/* tests/api/harness.mjs's pngBytes(): IHDR 1x1 RGB, a tEXt chunk, IEND. */
static const char harness_png[] =
    "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0"
    "\x90\x77\x53\xde\0\0\0\x0atEXtk\0randomAB\x12\x34\x56\x78"
    "\0\0\0\0IEND\xae\x42\x60\x82";

/* harness.mjs's jpegBytes(): SOI, APP0 JFIF (16), 16 random bytes, EOI. */
static const char harness_jpeg[] =
    "\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    "0123456789abcdef\xff\xd9";

/* harness.mjs's mp4Bytes(): ftyp isom (24), mdat (24). */
static const char harness_mp4[] = "\0\0\0\x18"
                                  "ftypisom\0\0\x02\0isommp41"
                                  "\0\0\0\x18mdat0123456789abcdef";

/* tests/api/uploads.test.mjs's webpBytes() and movBytes(). */
static const char api_webp[] = "RIFF\x16\0\0\0WEBPVP8 \x0a\0\0\0"
                               "0123456789";
static const char api_mov[] = "\0\0\0\x14"
                              "ftypqt  \0\0\x02\0qt  "
                              "\0\0\0\x10moov01234567";

Test(uploads_sniff_file, the_fixtures_of_the_tests_are_whole_files)
{
	cr_expect_str_eq(SNIFF_FILE(real_png), "png");
	cr_expect_str_eq(SNIFF_FILE(harness_png), "png");
	cr_expect_str_eq(SNIFF_FILE(harness_jpeg), "jpeg");
	cr_expect_str_eq(SNIFF_FILE(harness_mp4), "mp4");
	cr_expect_str_eq(SNIFF_FILE(api_webp), "webp");
	cr_expect_str_eq(SNIFF_FILE(api_mov), "mov");
}

Test(uploads_sniff_file, a_png_signature_glued_to_html_is_refused)
{
	cr_expect_null(SNIFF_FILE("\x89PNG\r\n\x1a\n<html><script>alert(1)"
	                          "</script></html>"));
	/* What tests/api/multiproc.test.mjs and bench/sse.mjs send. */
	cr_expect_null(SNIFF_FILE("\x89PNG\r\n\x1a\n\0\0\0\x01"));
	cr_expect_null(SNIFF_FILE("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"
	                          "0123456789abcdefg"));
}

Test(uploads_sniff_file, png_ihdr_checked)
{
	char b[sizeof(harness_png)];

	memcpy(b, harness_png, sizeof(b));
	b[29] ^= 1; /* the CRC */
	cr_expect_null(
	    uploads_sniff_file(b, sizeof(b) - 1, NULL, sizeof(b) - 1));
	memcpy(b, harness_png, sizeof(b));
	b[18] ^= 0x40; /* the width, CRC unchanged */
	cr_expect_null(
	    uploads_sniff_file(b, sizeof(b) - 1, NULL, sizeof(b) - 1));
	/* Width 0, its CRC right. */
	cr_expect_null(SNIFF_FILE("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\0"
	                          "\0\0\0\x01\x08\x02\0\0\0\x7f\xb5\x38\xe0"));
	/* IHDR of another length; another first chunk. */
	cr_expect_null(SNIFF_FILE("\x89PNG\r\n\x1a\n\0\0\0\x0cIHDR\0\0\0\x01"
	                          "\0\0\0\x01\x08\x02\0\0\0\x90\x77\x53\xde"));
	cr_expect_null(SNIFF_FILE("\x89PNG\r\n\x1a\n\0\0\0\x0dIDAT\0\0\0\x01"
	                          "\0\0\0\x01\x08\x02\0\0\0\x90\x77\x53\xde"));
	/* Cut inside IHDR. */
	cr_expect_null(uploads_sniff_file(harness_png, 30, NULL, 30));
}

Test(uploads_sniff_file, jpeg_first_segment_checked)
{
	/* tests/api/multiproc.test.mjs's: APP0 says 16 bytes, 9 follow. */
	cr_expect_null(SNIFF_FILE("\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x07"));
	cr_expect_null(SNIFF_FILE("\xff\xd8\xff\xd9"));       /* EOI at once */
	cr_expect_null(SNIFF_FILE("\xff\xd8\xff\xd0\0\x04")); /* RST0 */
	cr_expect_null(SNIFF_FILE("\xff\xd8\xff\xe0\0\x01xx")); /* length < 2 */
	cr_expect_null(SNIFF_FILE("\xff\xd8\xff\x01\0\x02"));   /* TEM */
	cr_expect_null(SNIFF_FILE("\xff\xd8\xff\xe0<html>"));
	cr_expect_str_eq(SNIFF_FILE("\xff\xd8\xff\xdb\0\x02"), "jpeg");
}

Test(uploads_sniff_file, webp_riff_checked)
{
	/* One byte more than RIFF says: something was glued on. */
	cr_expect_null(SNIFF_FILE("RIFF\x16\0\0\0WEBPVP8 \x0a\0\0\0"
	                          "0123456789<"));
	cr_expect_null(SNIFF_FILE("RIFF\x16\0\0\0WEBPVP9 \x0a\0\0\0"
	                          "0123456789"));
	cr_expect_null(SNIFF_FILE("RIFF\x16\0\0\0WEBPVP8 \x0b\0\0\0"
	                          "0123456789"));
	cr_expect_str_eq(SNIFF_FILE("RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0"
	                            "0123456789"),
	    "webp");
	cr_expect_null(SNIFF_FILE("RIFF\x14\0\0\0WEBPVP8X\x08\0\0\0"
	                          "01234567"));
	cr_expect_str_eq(SNIFF_FILE("RIFF\x14\0\0\0WEBPVP8L\x08\0\0\0"
	                            "01234567"),
	    "webp");
}

Test(uploads_sniff_file, iso_boxes_checked)
{
	cr_expect_null(SNIFF_FILE("\0\0\0\x18"
	                          "ftypisom\0\0\x02\0isommp41")); /* alone */
	cr_expect_null(SNIFF_FILE("\0\0\0\x40"
	                          "ftypisom\0\0\x02\0isommp41"
	                          "\0\0\0\x08mdat")); /* over the file */
	cr_expect_null(SNIFF_FILE("\0\0\0\x18"
	                          "ftypisom\0\0\x02\0isommp41"
	                          "\0\0\0\x04mdat")); /* next < 8 */
	cr_expect_null(SNIFF_FILE("\0\0\0\x18"
	                          "ftypisom\0\0\x02\0isommp41"
	                          "\0\0\0\x10mdat0123")); /* next overruns */
	cr_expect_null(SNIFF_FILE("\0\0\0\x18"
	                          "ftypisom\0\0\x02\0isommp41"
	                          "<html><body>")); /* not a box */
	cr_expect_null(SNIFF_FILE("\0\0\0\x18"
	                          "ftypisom\0\0\x02\0isommp41"
	                          "\0\0\0\x08md"));
	/* Sizes 0 (to the end) and 1 (64-bit) of the second box. */
	cr_expect_str_eq(SNIFF_FILE("\0\0\0\x18"
	                            "ftypisom\0\0\x02\0isommp41"
	                            "\0\0\0\0mdat0123"),
	    "mp4");
	cr_expect_str_eq(SNIFF_FILE("\0\0\0\x18"
	                            "ftypisom\0\0\x02\0isommp41"
	                            "\0\0\0\x01mdat\0\0\0\0\0\0\0\x14"
	                            "0123"),
	    "mp4");
	cr_expect_null(SNIFF_FILE("\0\0\0\x18"
	                          "ftypisom\0\0\x02\0isommp41"
	                          "\0\0\0\x01mdat\0\0\0\0\0\0\0\x24"
	                          "0123"));
	/* A first box of size 0 leaves no room for a second. */
	cr_expect_null(SNIFF_FILE("\0\0\0\0"
	                          "moov0123"));
}

TestSuite(
    uploads_sniff_file_on_disk, .init = make_tmpdir, .fini = remove_tmpdir);

static void
write_bytes(const char *path, const void *b, size_t n)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(b, 1, n, f), n);
	fclose(f);
}

/* A box header past the bytes in memory is read from the file. */
Test(uploads_sniff_file_on_disk, past_the_head_from_the_file)
{
	static unsigned char b[12000];
	char path[128];

	/* An ftyp of 10024 bytes (brands and brands), then mdat */
	memcpy(b,
	    "\0\0\x27\x28"
	    "ftypisom\0\0\x02\0isommp41",
	    24);
	memcpy(b + 10024, "\0\0\x07\xd0mdat", 8);
	snprintf(path, sizeof(path), "%s/clip", tmpdir);
	write_bytes(path, b, sizeof(b));
	/* 12000 bytes: the mdat of 2000 at 10024 overruns by 24. */
	cr_expect_null(uploads_sniff_file(b, 4096, path, sizeof(b)));
	memcpy(b + 10024, "\0\0\x07\xb8mdat", 8); /* 1976: to the end */
	write_bytes(path, b, sizeof(b));
	cr_expect_null(uploads_sniff_file(b, 4096, NULL, sizeof(b)));
	cr_expect_null(
	    uploads_sniff_file(b, 4096, "/nonexistent/clip", sizeof(b)));
	cr_expect_str_eq(uploads_sniff_file(b, 4096, path, sizeof(b)), "mp4");
}

TestSuite(uploads_adopt, .init = make_tmpdir, .fini = remove_tmpdir);

Test(uploads_adopt, moves_a_spooled_file_into_place)
{
	char src[128], dir[128], want[192], err[256] = "";
	struct upload u;
	struct stat st;
	size_t len;
	char *back;

	snprintf(src, sizeof(src), "%s/fila-spool-1", tmpdir);
	snprintf(dir, sizeof(dir), "%s/uploads/", tmpdir);
	write_bytes(src, harness_png, sizeof(harness_png) - 1);
	chmod(src, 0600);
	cr_assert_eq(uploads_adopt(&u, dir, "alice", "png", "a/cat.png", src,
	                 sizeof(harness_png) - 1, "abc123", err, sizeof(err)),
	    0, "%s", err);
	snprintf(want, sizeof(want), "%s/uploads/%s.png", tmpdir, u.id);
	cr_expect_str_eq(u.path, want);
	cr_expect_str_eq(u.user_id, "alice");
	cr_expect_str_eq(u.type, "png");
	cr_expect_str_eq(u.sha256, "abc123");
	cr_expect_str_eq(u.filename, "cat.png");
	cr_expect_eq(u.size, (int64_t)sizeof(harness_png) - 1);
	cr_expect_neq(access(src, F_OK), 0, "the spool file is still there");
	cr_assert_eq(stat(u.path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0644);
	back = read_all(u.path, &len);
	cr_expect_eq(len, sizeof(harness_png) - 1);
	cr_expect_eq(memcmp(back, harness_png, len), 0);
	free(back);
	upload_cleanup(&u);
}

Test(uploads_adopt, nothing_made_when_it_cannot)
{
	char src[128], file[128], err[256] = "";
	struct upload u;

	snprintf(src, sizeof(src), "%s/fila-spool-2", tmpdir);
	snprintf(file, sizeof(file), "%s/plain", tmpdir);
	write_bytes(src, "", 0);
	write_bytes(file, "", 0);
	cr_expect_eq(uploads_adopt(&u, file, "bob", "png", NULL, src, 0, "x",
	                 err, sizeof(err)),
	    -1);
	cr_expect(
	    strstr(err, "uploads: cannot create directory") == err, "%s", err);
	cr_expect_null(u.id);
	cr_expect_eq(access(src, F_OK), 0);
	snprintf(src, sizeof(src), "%s/missing", tmpdir);
	cr_expect_eq(uploads_adopt(&u, tmpdir, "bob", "png", NULL, src, 0, "x",
	                 err, sizeof(err)),
	    -1);
	cr_expect(strstr(err, "uploads: cannot move") == err, "%s", err);
	cr_expect_null(u.path);
	cr_expect_eq(count_entries(tmpdir), 2);
}
