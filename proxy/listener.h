/* listener.h - listening sockets and accepting connections */
#ifndef STARTTLSD_LISTENER_H
#define STARTTLSD_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "server.h"

struct sockaddr;

/* format_addr - "192.0.2.1:25", "[2001:db8::1]:25" or "local" */
void format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* listener_bind_all - give every listener of GEN its sockets: the sockets
 * of OLD (the generation in force, or NULL) for unchanged listen lines, new
 * ones for the rest. When OLD's sockets were inherited from systemd, GEN
 * takes them by listener name and binds nothing: the listener names must
 * stay the same. All or nothing: on failure OLD keeps all its sockets and
 * ERR says "FILE:LINE: message". */
bool listener_bind_all(struct generation *gen, struct generation *old, const char *filename, char *err,
                       size_t errlen);

/* A socket passed by systemd (socket activation) and its
 * FileDescriptorName=, which names the listener that takes it. */
struct inherited_socket {
	int fd;
	char name[CONFIG_NAME_MAX];
};

/* listener_take_inherited - give every listener of GEN the inherited
 * sockets of its name instead of binding its listen lines. An inherited
 * socket that matches no listener, or a listener left without one, is an
 * error in ERR naming both. */
bool listener_take_inherited(struct generation *gen, const struct inherited_socket *inherited, size_t n,
                             const char *filename, char *err, size_t errlen);

/* The accepting watchers' priority: libev invokes the watchers that one
 * poll found ready highest first (the others have the default, 0), so the
 * sessions a worker has go before the connections waiting for it. */
#define PRIORITY_ACCEPT EV_MINPRI

/* listener_handshake_turn - whether one more handshake step may run in this
 * loop iteration. A step costs a key exchange and a signature; a message's
 * bytes that arrive meanwhile wait for the next poll, so only a few steps run
 * between two polls (listener.c) and the rest wait, their sockets still
 * ready, for the next one. */
bool listener_handshake_turn(struct server *srv);

/* listener_update_all - accept on exactly the sockets of the generation in
 * force that should accept now: none while out of descriptors, and no
 * implicit-TLS one while this worker has max_handshakes handshakes in
 * progress (each of its connections starts one at once) */
void listener_update_all(struct server *srv);

/* listener_pause_all - accept failed with ERRNO_VALUE (out of descriptors
 * or memory): stop accepting for a back-off that grows from 0.1 s to 1 s
 * while it lasts, logged once per episode */
void listener_pause_all(struct server *srv, int errno_value);

/* listener_close_all - stop accepting on GEN's sockets and close them */
void listener_close_all(struct server *srv, struct generation *gen);

#endif
