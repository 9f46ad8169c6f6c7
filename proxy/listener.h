/* listener.h - listening sockets and accepting connections */
#ifndef STARTTLSD_LISTENER_H
#define STARTTLSD_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "server.h"

struct sockaddr;

/* format_addr - "192.0.2.1:25", "[2001:db8::1]:25" or "local" */
void format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* listener_bind - bind every listen line of L; "FILE:LINE: message" on failure */
bool listener_bind(struct listener *l, const char *filename, char *err, size_t errlen);

/* listener_start - accept on every socket of every listener */
void listener_start_all(struct server *srv);

/* listener_pause_all - stop accepting for a while (out of descriptors) */
void listener_pause_all(struct server *srv);

/* listener_close_all - stop accepting and close the sockets (shutdown) */
void listener_close_all(struct server *srv);

#endif
