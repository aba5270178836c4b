/*
 * uploads.c — uploaded files: what they are and how they reach the disk.
 *
 * The type comes from the first bytes (magic numbers), never from the
 * client's Content-Type or file name, and only the five types the tools take
 * are recognised; uploads_sniff_file() also follows the format's framing a
 * step or two, so that a signature glued to something else (a page, a
 * script) is refused. A file is written under a temporary name, synced, then
 * renamed into place and its directory synced, so after a crash a file is
 * either whole under its final name or not there at all.
 */
#include "uploads.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

void
upload_init(struct upload *u)
{
	memset(u, 0, sizeof(*u));
}

void
upload_cleanup(struct upload *u)
{
	free(u->id);
	free(u->user_id);
	free(u->type);
	free(u->sha256);
	free(u->filename);
	free(u->path);
	upload_init(u);
}

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static int
is_one_of(const unsigned char *p, const char *const *list)
{
	for (; *list != NULL; list++)
		if (memcmp(p, *list, 4) == 0)
			return 1;
	return 0;
}

/*
 * HEIF and AVIF still images share the ISO container with MP4 but are not
 * video a tool could take; brands are four printable bytes in real files.
 */
static const char *
iso_brand_type(const unsigned char *brand)
{
	static const char *const still[] = {"heic", "heix", "heim", "heis",
	    "hevc", "hevx", "mif1", "msf1", "avif", "avis", "crx ", NULL};

	for (int i = 0; i < 4; i++)
		if (brand[i] < 0x20 || brand[i] > 0x7e)
			return NULL;
	if (memcmp(brand, "qt  ", 4) == 0)
		return "mov";
	if (is_one_of(brand, still))
		return NULL;
	return "mp4";
}

/* ISO base media (MP4) and QuickTime, told apart by ftyp or first atom. */
static const char *
sniff_iso(const unsigned char *b, size_t len)
{
	static const char *const qt_atoms[] = {
	    "moov", "mdat", "wide", "free", "skip", "pnot", NULL};

	if (len < 8 || be32(b) < 8)
		return NULL;
	if (memcmp(b + 4, "ftyp", 4) == 0)
		return len >= 12 && be32(b) >= 12 ? iso_brand_type(b + 8)
		                                  : NULL;
	if (is_one_of(b + 4, qt_atoms))
		return "mov";
	return NULL;
}

const char *
uploads_sniff(const void *buf, size_t len)
{
	static const unsigned char png[8] = {
	    0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	const unsigned char *b = buf;

	if (b == NULL)
		return NULL;
	if (len >= 8 && memcmp(b, png, 8) == 0)
		return "png";
	if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return "jpeg";
	if (len >= 12 && memcmp(b, "RIFF", 4) == 0 &&
	    memcmp(b + 8, "WEBP", 4) == 0)
		return "webp";
	return sniff_iso(b, len);
}

/* ---- structure: the framing past the magic numbers ---- */

/* The CRC of PNG chunks (ISO 3309), a bit at a time: it runs over 17
 * bytes. */
static uint32_t
crc32_of(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return c ^ 0xffffffffu;
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[1] << 8 | p[0];
}

/* A file to check: its first bytes, and where to read the others. */
struct peek {
	const unsigned char *head;
	size_t headlen;
	const char *path; /* NULL: no bytes past head */
	uint64_t size;
};

/* n bytes at off into out: 0, or -1 when the file has no such bytes. */
static int
peek_at(const struct peek *p, uint64_t off, void *out, size_t n)
{
	ssize_t got;
	int fd;

	if (off > p->size || n > p->size - off)
		return -1;
	if (off + n <= p->headlen) {
		memcpy(out, p->head + off, n);
		return 0;
	}
	if (p->path == NULL || (fd = open(p->path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	got = pread(fd, out, n, (off_t)off);
	close(fd);
	return got == (ssize_t)n ? 0 : -1;
}

/* The signature, then IHDR: length 13, a size, its CRC right. */
static int
png_ok(const struct peek *p)
{
	unsigned char b[33];
	uint32_t w, h;

	if (peek_at(p, 0, b, sizeof(b)) < 0)
		return 0;
	w = be32(b + 16);
	h = be32(b + 20);
	return be32(b + 8) == 13 && memcmp(b + 12, "IHDR", 4) == 0 && w > 0 &&
	       h > 0 && w <= 0x7fffffff && h <= 0x7fffffff &&
	       crc32_of(b + 12, 17) == be32(b + 29);
}

/* SOI, then a marker that opens a segment (not RSTn, SOI, EOI, TEM or a
 * fill byte) whose length fits in the file. */
static int
jpeg_ok(const struct peek *p)
{
	unsigned char b[6];
	unsigned m, len;

	if (peek_at(p, 0, b, sizeof(b)) < 0)
		return 0;
	m = b[3];
	len = (unsigned)b[4] << 8 | b[5];
	if (m < 0xc0 || m == 0xff || (m >= 0xd0 && m <= 0xd9))
		return 0;
	return len >= 2 && 4 + (uint64_t)len <= p->size;
}

/* RIFF's size is the file's less 8, and its first chunk is VP8, VP8L or
 * VP8X (of 10 bytes), within the file. */
static int
webp_ok(const struct peek *p)
{
	static const char *const chunks[] = {"VP8 ", "VP8L", "VP8X", NULL};
	unsigned char b[20];
	uint32_t csize;

	if (peek_at(p, 0, b, sizeof(b)) < 0)
		return 0;
	csize = le32(b + 16);
	if ((uint64_t)le32(b + 4) + 8 != p->size || !is_one_of(b + 12, chunks))
		return 0;
	if (memcmp(b + 12, "VP8X", 4) == 0 && csize != 10)
		return 0;
	return 20 + (uint64_t)csize <= p->size;
}

/* The end of the ISO box at off (its size 0: the file's end; 1: a 64-bit
 * size follows), or 0 when its header is not sane or it overruns. */
static uint64_t
box_end(const struct peek *p, uint64_t off)
{
	unsigned char b[16];
	uint64_t sz;

	if (peek_at(p, off, b, 8) < 0)
		return 0;
	for (int i = 4; i < 8; i++)
		if (b[i] < 0x20 || b[i] > 0x7e)
			return 0;
	sz = be32(b);
	if (sz == 0)
		return p->size;
	if (sz == 1) {
		if (peek_at(p, off, b, 16) < 0)
			return 0;
		sz = (uint64_t)be32(b + 8) << 32 | be32(b + 12);
		if (sz < 16)
			return 0;
	} else if (sz < 8) {
		return 0;
	}
	return sz <= p->size - off ? off + sz : 0;
}

/* The first box ends inside the file, and a sane box follows it. */
static int
iso_ok(const struct peek *p)
{
	uint64_t first = box_end(p, 0);

	return first != 0 && first < p->size && box_end(p, first) != 0;
}

const char *
uploads_sniff_file(
    const void *head, size_t headlen, const char *path, uint64_t size)
{
	static const struct {
		const char *type;
		int (*ok)(const struct peek *);
	} checks[] = {
	    {"png", png_ok},
	    {"jpeg", jpeg_ok},
	    {"webp", webp_ok},
	    {"mp4", iso_ok},
	    {"mov", iso_ok},
	};
	struct peek p = {
	    head, headlen < size ? headlen : (size_t)size, path, size};
	const char *type = uploads_sniff(head, p.headlen);

	for (size_t i = 0; type && i < sizeof(checks) / sizeof(checks[0]); i++)
		if (strcmp(type, checks[i].type) == 0)
			return checks[i].ok(&p) ? type : NULL;
	return NULL;
}

int
uploads_is_image(const char *type)
{
	return type != NULL &&
	       (strcmp(type, "png") == 0 || strcmp(type, "jpeg") == 0 ||
	           strcmp(type, "webp") == 0);
}

int
uploads_is_video(const char *type)
{
	return type != NULL &&
	       (strcmp(type, "mp4") == 0 || strcmp(type, "mov") == 0);
}

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A name that stays inside dir: no separators, not "." or "..". */
static int
name_ok(const char *name)
{
	return name != NULL && name[0] != '\0' && strchr(name, '/') == NULL &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* fsync a directory so that a create or rename inside it is durable. */
static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* fsync the directory holding path, making path's creation durable. */
static void
sync_parent(char *path)
{
	char *slash = strrchr(path, '/');

	if (slash == NULL) {
		sync_dir(".");
	} else if (slash == path) {
		sync_dir("/");
	} else {
		*slash = '\0';
		sync_dir(path);
		*slash = '/';
	}
}

/*
 * mkdir -p with mode 0755. A directory it creates is made durable by
 * syncing its parent, so a file later renamed into it cannot vanish.
 */
static int
make_dirs(const char *dir, char *err, size_t errlen)
{
	char *path = xstrdup(dir);
	size_t len = strlen(path);
	struct stat st;

	for (size_t i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0755) == 0)
			sync_parent(path);
		else if (errno != EEXIST)
			goto fail;
		path[i] = i < len ? '/' : '\0';
	}
	if (stat(path, &st) < 0)
		goto fail;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		goto fail;
	}
	free(path);
	return 0;
fail:
	set_err(err, errlen, "uploads: cannot create directory %s: %s", path,
	    strerror(errno));
	free(path);
	return -1;
}

static int
write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write, sync and close tmp (opened O_EXCL); errno is kept on failure. */
static int
write_file(const char *tmp, const void *buf, size_t len)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	int saved;

	if (fd < 0)
		return -1;
	if (write_all(fd, buf, len) < 0 || fsync(fd) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return close(fd);
}

char *
uploads_save(const char *dir, const char *name, const void *buf, size_t len,
    char *err, size_t errlen)
{
	char suffix[17];
	char *path = NULL, *tmp = NULL;
	const char *sep;
	size_t dlen = dir ? strlen(dir) : 0;

	if (!name_ok(name)) {
		set_err(err, errlen, "uploads: bad file name \"%s\"",
		    name ? name : "(null)");
		return NULL;
	}
	if (dlen == 0) {
		set_err(err, errlen, "uploads: no directory given");
		return NULL;
	}
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	if (make_dirs(dir, err, errlen) < 0)
		return NULL;
	sep = dir[dlen - 1] == '/' ? "" : "/"; /* only for dir "/" */
	random_hex(suffix, 8);
	path = xasprintf("%.*s%s%s", (int)dlen, dir, sep, name);
	tmp = xasprintf("%.*s%s.%s.%s.tmp", (int)dlen, dir, sep, name, suffix);
	if (write_file(tmp, buf, len) < 0 || rename(tmp, path) < 0)
		goto fail_tmp;
	if (sync_dir(dir) < 0)
		goto fail_path;
	free(tmp);
	return path;
fail_tmp:
	set_err(
	    err, errlen, "uploads: cannot write %s: %s", path, strerror(errno));
	unlink(tmp);
	goto fail;
fail_path:
	/* Not durable: take it back, so NULL always means "nothing there". */
	set_err(
	    err, errlen, "uploads: cannot write %s: %s", path, strerror(errno));
	unlink(path);
fail:
	free(tmp);
	free(path);
	return NULL;
}

/* A display name from the client: its last path part, printable, short. */
static char *
clean_filename(const char *in)
{
	const char *base = in ? strrchr(in, '/') : NULL;
	char *out;
	size_t n = 0;

	if (in == NULL || *in == '\0')
		return NULL;
	base = base ? base + 1 : in;
	out = xmalloc(strlen(base) + 1);
	for (; *base && n < 200; base++)
		if ((unsigned char)*base >= 0x20 && *base != 0x7f &&
		    *base != '\\')
			out[n++] = *base;
	if (*base)
		n = utf8_cut(out, n);
	out[n] = '\0';
	if (n == 0) {
		free(out);
		return NULL;
	}
	return out;
}

int
uploads_create(struct upload *u, const char *dir, const char *user_id,
    const char *type, const char *filename, const void *buf, size_t len,
    char *err, size_t errlen)
{
	char sum[65];

	upload_init(u);
	u->id = new_id("upl_");
	u->user_id = xstrdup(user_id);
	u->type = xstrdup(type);
	u->size = (int64_t)len;
	sha256_hex(buf, len, sum);
	u->sha256 = xstrdup(sum);
	u->filename = clean_filename(filename);
	u->created_at = now_ms();
	char *name = xasprintf("%s.%s", u->id, type);
	u->path = uploads_save(dir, name, buf, len, err, errlen);
	free(name);
	if (u->path == NULL) {
		upload_cleanup(u);
		return -1;
	}
	return 0;
}

/* Sync src, make it 0644 and rename it to path: 0, or -1 with errno set. */
static int
move_synced(const char *src, const char *path)
{
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	int saved;

	if (fd < 0)
		return -1;
	if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if (close(fd) < 0)
		return -1;
	return rename(src, path);
}

int
uploads_adopt(struct upload *u, const char *dir, const char *user_id,
    const char *type, const char *filename, const char *src, int64_t size,
    const char *sha256, char *err, size_t errlen)
{
	size_t dlen = dir ? strlen(dir) : 0;

	upload_init(u);
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	if (dlen == 0) {
		set_err(err, errlen, "uploads: no directory given");
		return -1;
	}
	if (make_dirs(dir, err, errlen) < 0)
		return -1;
	u->id = new_id("upl_");
	u->user_id = xstrdup(user_id);
	u->type = xstrdup(type);
	u->size = size;
	u->sha256 = xstrdup(sha256);
	u->filename = clean_filename(filename);
	u->created_at = now_ms();
	u->path = xasprintf("%.*s%s%s.%s", (int)dlen, dir,
	    dir[dlen - 1] == '/' ? "" : "/", u->id, type);
	if (move_synced(src, u->path) < 0)
		goto fail;
	if (sync_dir(dir) < 0) {
		unlink(u->path); /* not durable: nothing under dir */
		goto fail;
	}
	return 0;
fail:
	set_err(err, errlen, "uploads: cannot move %s to %s: %s", src, u->path,
	    strerror(errno));
	upload_cleanup(u);
	return -1;
}
