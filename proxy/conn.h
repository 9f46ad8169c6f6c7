/* conn.h - one client connection: sockets, watchers, buffers, TLS; feeds
 * the session core and applies what it asks for */
#ifndef STARTTLSD_CONN_H
#define STARTTLSD_CONN_H

#include <sys/socket.h>

#include "server.h"

/* Each side's input buffer holds at least one whole line (session.h). */
#define CONN_INPUT_CAP 16384

/* conn_accept - take over accepted socket FD from PEER on listener L */
void conn_accept(struct listener *l, int fd, const struct sockaddr *peer);

/* conn_shutdown_all - the daemon stops: idle sessions get 421, the rest
 * finish their transaction */
void conn_shutdown_all(struct server *srv);

/* conn_close_all - drain_timeout ran out: close what is left */
void conn_close_all(struct server *srv);

/* conn_release_idle_buffers - every IDLE_SWEEP_SECONDS: the buffer pages of
 * sessions without I/O since the last sweep go back to the system (an idle
 * session should hold no I/O buffer); the next byte faults in a zero page.
 * After a burst of sessions has ended, free heap pages go back as well. */
#define IDLE_SWEEP_SECONDS 0.25
void conn_release_idle_buffers(struct server *srv);

#endif
