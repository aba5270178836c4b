/*
 * fuzz_sniff.c — libFuzzer target for uploads_sniff(), the check that an
 * upload's bytes are one of the five allowed types whatever the client says.
 *
 * Besides not crashing, the answer must be NULL or one of the five names,
 * agree with the magic bytes it claims, and be either an image or a video.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uploads.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* The claim is backed by the bytes: a cheap, independent re-check. */
static int
claim_holds(const char *type, const uint8_t *b, size_t len)
{
	if (strcmp(type, "png") == 0)
		return len >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0;
	if (strcmp(type, "jpeg") == 0)
		return len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
	if (strcmp(type, "webp") == 0)
		return len >= 12 && memcmp(b, "RIFF", 4) == 0 &&
		       memcmp(b + 8, "WEBP", 4) == 0;
	if (strcmp(type, "mp4") == 0)
		return len >= 12 && be32(b) >= 12 &&
		       memcmp(b + 4, "ftyp", 4) == 0;
	if (strcmp(type, "mov") == 0)
		return len >= 8 && be32(b) >= 8;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A private copy, exactly size bytes long, so that ASan catches any
	 * read past the end (libFuzzer's own buffer is exact too, but the
	 * copy also proves the input is not written to). */
	uint8_t *buf = malloc(size ? size : 1);
	const char *type;

	memcpy(buf, data, size);
	type = uploads_sniff(buf, size);
	if (memcmp(buf, data, size) != 0)
		abort();
	if (type != NULL) {
		if (!claim_holds(type, buf, size))
			abort();
		if (uploads_is_image(type) == uploads_is_video(type))
			abort();
	}
	if (uploads_sniff(NULL, size) != NULL)
		abort();
	free(buf);
	return 0;
}
