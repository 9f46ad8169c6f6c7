/* file_source.h - where a configuration generation reads its files
 *
 * The configuration, certificates, keys and OCSP responses are read through
 * a file_source: straight from disk, or from a bundle that a privileged
 * parent read for a worker that can no longer open root-only keys
 * (privsep.c). Every file is read whole into memory and bounded in size.
 */
#ifndef STARTTLSD_FILE_SOURCE_H
#define STARTTLSD_FILE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

/* No configuration, certificate chain, key or OCSP response is bigger. */
#define FILE_SOURCE_MAX (1024 * 1024)

struct file_blob {
	char *data; /* malloc'd; len bytes and a NUL after them */
	size_t len;
};

/* file_read_fn - PATH into *out; false with the reason in ERR */
typedef bool file_read_fn(void *ctx, const char *path, struct file_blob *out, char *err, size_t errlen);

struct file_source {
	file_read_fn *read;
	void *ctx;
};

/* file_read_disk - a file_read_fn that opens PATH itself (ctx unused) */
bool file_read_disk(void *ctx, const char *path, struct file_blob *out, char *err, size_t errlen);

/* file_blob_wipe - zero (it may hold a private key) and free */
void file_blob_wipe(struct file_blob *b);

#endif
