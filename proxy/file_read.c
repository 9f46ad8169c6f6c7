/* file_read.c - reading whole files, bounded (see file_read.h) */
#include "file_read.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool file_read(const char *path, struct file_blob *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return false;
	}
	char *data = malloc(FILE_SOURCE_MAX + 1);
	size_t n = data ? fread(data, 1, FILE_SOURCE_MAX + 1, f) : 0;
	bool failed = !data || ferror(f);
	fclose(f);
	if (failed || n > FILE_SOURCE_MAX) {
		snprintf(err, errlen, "%s: %s", path, failed ? "cannot read" : "file too large (at most 1 MiB)");
		free(data);
		return false;
	}
	data[n] = '\0';
	out->data = data;
	out->len = n;
	return true;
}

void file_blob_wipe(struct file_blob *b)
{
	if (b->data) {
		explicit_bzero(b->data, b->len);
		free(b->data);
	}
	b->data = NULL;
	b->len = 0;
}
