/*
 * uploads.h — uploaded files: the type is read from the bytes, never from
 * the client's word, and names on disk are our ids, never user input.
 */
#ifndef FILA_UPLOADS_H
#define FILA_UPLOADS_H

#include <stddef.h>
#include <stdint.h>

struct upload {
	char *id;
	char *user_id;
	char *type; /* "png", "jpeg", "webp", "mp4", "mov" */
	int64_t size;
	char *sha256;
	char *filename; /* the client's name, for display only; may be NULL */
	char *path;     /* where the bytes are */
	int64_t created_at;
};

void upload_init(struct upload *u);
void upload_cleanup(struct upload *u);

/* The type of a file from its first bytes, or NULL when not allowed. */
const char *uploads_sniff(const void *buf, size_t len);
/*
 * The type of a file from its structure: uploads_sniff() on its first
 * bytes, then the format's own framing, as far as it goes: PNG's IHDR chunk
 * (length 13, its CRC); JPEG's first marker segment after SOI, within the
 * file; WebP's RIFF size (the file's, less 8) and a VP8, VP8L or VP8X
 * chunk; MP4 and MOV's first box (8 bytes up to the file's size) and the
 * box after it. head holds the file's first headlen bytes; path, when not
 * NULL, is read for what a check needs past them (NULL: head is all there
 * is to read); size is the file's. NULL when not allowed.
 */
const char *uploads_sniff_file(
    const void *head, size_t headlen, const char *path, uint64_t size);

/* 1 when type is an image type (png, jpeg, webp), 0 otherwise. */
int uploads_is_image(const char *type);
/* 1 when type is a video type (mp4, mov), 0 otherwise. */
int uploads_is_video(const char *type);

/*
 * Write buf durably as dir/name (a temporary file, fsync, rename), creating
 * dir if needed. Returns the path (caller frees), or NULL with err set.
 */
char *uploads_save(const char *dir, const char *name, const void *buf,
    size_t len, char *err, size_t errlen);

/*
 * A new upload of user_id: buf's bytes, of type (as uploads_sniff() read
 * them), saved under dir with a fresh id as their name, their SHA-256,
 * and the client's filename (may be NULL) made fit to display. 0 with u
 * filled (upload_cleanup() it), or -1 with err set and nothing on disk.
 */
int uploads_create(struct upload *u, const char *dir, const char *user_id,
    const char *type, const char *filename, const void *buf, size_t len,
    char *err, size_t errlen);

/*
 * As uploads_create(), for bytes already in the file src (a spooled body,
 * on dir's filesystem) of size bytes and SHA-256 sha256 (hex), as the
 * caller computed them: src is synced, made mode 0644 and renamed into
 * dir under the fresh id. 0 with u filled (upload_cleanup() it), src gone;
 * or -1 with err set, nothing under dir, src where it was if still there
 * (the caller removes it).
 */
int uploads_adopt(struct upload *u, const char *dir, const char *user_id,
    const char *type, const char *filename, const char *src, int64_t size,
    const char *sha256, char *err, size_t errlen);

#endif
