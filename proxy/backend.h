/* backend.h - where the plaintext server is, and connecting to it */
#ifndef STARTTLSD_BACKEND_H
#define STARTTLSD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

#define BACKEND_MAX_ADDRS 8

/* The backend's addresses, resolved once at start-up: the event loop never
 * waits for a name lookup. */
struct backend_addrs {
	struct sockaddr_storage addr[BACKEND_MAX_ADDRS];
	socklen_t len[BACKEND_MAX_ADDRS];
	size_t n;
};

/* backend_resolve - B's addresses; "FILE:LINE: message" on failure */
bool backend_resolve(const struct config_backend *b, const char *filename, struct backend_addrs *out,
                     char *err, size_t errlen);

/* backend_connect - start a non-blocking connect to address INDEX or a later
 * one, from SOURCE when it is not NULL (client_addr = transparent: a foreign
 * address, IP_TRANSPARENT); returns the socket and sets *index_r to the
 * address used, or -1 with errno set when none could be started */
int backend_connect(const struct backend_addrs *a, size_t index, const struct sockaddr_storage *source,
                    size_t *index_r);

/* backend_connect_result - 0 when the connect finished well, else errno */
int backend_connect_result(int fd);

#endif
