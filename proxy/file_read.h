/* file_read.h - reading the configuration and the files it names
 *
 * The configuration, certificates, keys and OCSP responses are read whole
 * into memory, bounded in size, and wiped when done (a key is among them).
 */
#ifndef STARTTLSD_FILE_READ_H
#define STARTTLSD_FILE_READ_H

#include <stdbool.h>
#include <stddef.h>

/* No configuration, certificate chain, key or OCSP response is bigger. */
#define FILE_SOURCE_MAX (1024 * 1024)

struct file_blob {
	char *data; /* malloc'd; len bytes and a NUL after them */
	size_t len;
};

/* file_read - PATH into *out; false with the reason in ERR */
bool file_read(const char *path, struct file_blob *out, char *err, size_t errlen);

/* file_blob_wipe - zero (it may hold a private key) and free */
void file_blob_wipe(struct file_blob *b);

#endif
