/* listener.c - listening sockets and accepting connections */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"

/* Out of descriptors: the first pause, doubled while it lasts up to the
 * longest. Short enough to notice freed descriptors soon, long enough
 * that a stuck worker costs no CPU (the listening socket stays readable). */
#define ACCEPT_PAUSE_SECONDS 0.1
#define ACCEPT_PAUSE_MAX_SECONDS 1.0

/* format_addr - "1.2.3.4:25" or "[::1]:25" */
void format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "local");
	}
}

/* bind_one - one socket for AI; -1 with errno set on failure */
static int bind_one(const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ai->ai_family == AF_INET6)
		/* "*" binds IPv4 and IPv6 separately; [::] alone is IPv6 alone. */
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* serves - socket S can serve listen line A of listener L after a reload:
 * the same address, and for port 0 (the system's choice, a different port
 * each time) also the same listener */
static bool serves(const struct listen_socket *s, const struct listener *l, const struct config_listen *a)
{
	if (s->fd < 0 || strcmp(s->addr->host, a->host) != 0 || strcmp(s->addr->port, a->port) != 0)
		return false;
	return strcmp(a->port, "0") != 0 || strcmp(s->owner->cfg->name, l->cfg->name) == 0;
}

/* old_has - OLD already has a socket for listen line A of L */
static bool old_has(const struct generation *old, const struct listener *l, const struct config_listen *a)
{
	for (size_t i = 0; old && i < old->n_listeners; i++)
		for (size_t j = 0; j < old->listeners[i].n_sockets; j++)
			if (serves(&old->listeners[i].sockets[j], l, a))
				return true;
	return false;
}

/* tune_listening - what the accepted connections inherit (Linux copies a
 * listening socket's TCP options to each one it accepts): TCP_NODELAY, as
 * SMTP is a dialogue of short lines that must never wait to fill a
 * segment; and for implicit TLS, where the client speaks first,
 * TCP_DEFER_ACCEPT, so that a connection is accepted with its ClientHello
 * and the first read finds it. Never for STARTTLS, where the server speaks
 * first, nor with accept_proxy, whose header has its own time limit and
 * whose connections are counted and limited from accept on: it is cleared,
 * as a socket kept over a reload may have had it. */
static void tune_listening(const struct listener *l, int fd)
{
	int one = 1;
	bool client_hello_first = l->cfg->tls == CONFIG_TLS_IMPLICIT && !l->cfg->accept_proxy;
	int defer_seconds = client_hello_first ? (int)l->cfg->handshake_timeout : 0;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds, sizeof defer_seconds);
}

/* add_socket - one more socket for L */
static bool add_socket(struct listener *l, int fd, const struct config_listen *a)
{
	if (l->n_sockets == sizeof l->sockets / sizeof l->sockets[0])
		return false;
	tune_listening(l, fd);
	struct listen_socket *s = &l->sockets[l->n_sockets++];
	s->fd = fd;
	s->owner = l;
	s->addr = a;
	return true;
}

/* bind_line - new sockets for listen line A of L */
static bool bind_line(struct listener *l, const struct config_listen *a, const char *filename, char *err,
                      size_t errlen)
{
	bool wildcard = strcmp(a->host, "*") == 0;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
		                  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	int r = getaddrinfo(wildcard ? NULL : a->host, a->port, &hints, &res);
	if (r != 0) {
		snprintf(err, errlen, "%s:%d: listen %s: %s", filename, a->line, a->host, gai_strerror(r));
		return false;
	}
	bool ok = true;
	for (struct addrinfo *ai = res; ai && ok; ai = ai->ai_next) {
		char where[80];
		int fd = bind_one(ai);
		if (fd < 0 || !add_socket(l, fd, a)) {
			format_addr(ai->ai_addr, where, sizeof where);
			snprintf(err, errlen, "%s:%d: cannot listen on %s: %s", filename, a->line, where,
			         fd < 0 ? strerror(errno) : "too many sockets");
			if (fd >= 0)
				close(fd);
			ok = false;
			break;
		}
		struct sockaddr_storage bound;
		socklen_t blen = sizeof bound;
		getsockname(fd, (struct sockaddr *)&bound, &blen);
		format_addr((struct sockaddr *)&bound, where, sizeof where);
		log_info("listener %s: listening on %s", l->cfg->name, where);
	}
	freeaddrinfo(res);
	return ok;
}

/* adopt_line - move OLD's sockets for listen line A to L */
static void adopt_line(struct server *srv, struct listener *l, const struct config_listen *a,
                       struct generation *old)
{
	for (size_t i = 0; i < old->n_listeners; i++) {
		struct listener *ol = &old->listeners[i];
		for (size_t j = 0; j < ol->n_sockets; j++) {
			struct listen_socket *s = &ol->sockets[j];
			if (!serves(s, l, a))
				continue;
			ev_io_stop(srv->loop, &s->io);
			if (add_socket(l, s->fd, a))
				s->fd = -1;
		}
	}
}

/* find_listener - GEN's listener called NAME, or NULL */
static struct listener *find_listener(struct generation *gen, const char *name)
{
	for (size_t i = 0; i < gen->n_listeners; i++)
		if (strcmp(gen->listeners[i].cfg->name, name) == 0)
			return &gen->listeners[i];
	return NULL;
}

/* listener_names - "a, b, c": GEN's listener names, for error messages */
static void listener_names(const struct generation *gen, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < gen->n_listeners && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", gen->listeners[i].cfg->name);
}

/* inherited_names - "a, b": the names systemd gave the inherited sockets */
static void inherited_names(const struct inherited_socket *inherited, size_t n, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", inherited[i].name);
}

bool listener_take_inherited(struct generation *gen, const struct inherited_socket *inherited, size_t n,
                             const char *filename, char *err, size_t errlen)
{
	char names[512];
	for (size_t i = 0; i < n; i++) {
		if (!find_listener(gen, inherited[i].name)) {
			listener_names(gen, names, sizeof names);
			snprintf(err, errlen,
			         "%s:0: socket activation: socket %s (fd %d) matches no listener; "
			         "its FileDescriptorName= must be one of the listeners: %s",
			         filename, inherited[i].name, inherited[i].fd, names);
			return false;
		}
	}
	for (size_t i = 0; i < gen->n_listeners; i++) {
		const struct config_listener *cfg = gen->listeners[i].cfg;
		bool found = false;
		for (size_t j = 0; j < n && !found; j++)
			found = strcmp(inherited[j].name, cfg->name) == 0;
		if (!found) {
			inherited_names(inherited, n, names, sizeof names);
			snprintf(err, errlen,
			         "%s:%d: socket activation: listener %s has no socket named %s; systemd passed: %s",
			         filename, cfg->line, cfg->name, cfg->name, names);
			return false;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct listener *l = find_listener(gen, inherited[i].name);
		if (!add_socket(l, inherited[i].fd, NULL)) {
			snprintf(err, errlen, "%s:%d: socket activation: listener %s: too many sockets", filename,
			         l->cfg->line, l->cfg->name);
			return false;
		}
		struct sockaddr_storage bound;
		socklen_t blen = sizeof bound;
		char where[80] = "?";
		if (getsockname(inherited[i].fd, (struct sockaddr *)&bound, &blen) == 0)
			format_addr((struct sockaddr *)&bound, where, sizeof where);
		log_info("listener %s: listening on %s (socket %d from systemd)", l->cfg->name, where, inherited[i].fd);
	}
	gen->sockets_inherited = true;
	return true;
}

/* keep_inherited - a reload under socket activation: GEN takes OLD's
 * inherited sockets by listener name. The set of sockets cannot change
 * without a restart, so the listener names must stay the same. */
static bool keep_inherited(struct generation *gen, struct generation *old, const char *filename, char *err,
                           size_t errlen)
{
	char names[512];
	for (size_t i = 0; i < gen->n_listeners; i++) {
		const struct config_listener *cfg = gen->listeners[i].cfg;
		if (!find_listener(old, cfg->name)) {
			listener_names(old, names, sizeof names);
			snprintf(err, errlen,
			         "%s:%d: socket activation: listener %s has no socket named %s; systemd passed: %s",
			         filename, cfg->line, cfg->name, cfg->name, names);
			return false;
		}
	}
	for (size_t i = 0; i < old->n_listeners; i++) {
		const char *name = old->listeners[i].cfg->name;
		if (!find_listener(gen, name)) {
			listener_names(gen, names, sizeof names);
			snprintf(err, errlen,
			         "%s:0: socket activation: socket %s matches no listener; "
			         "its FileDescriptorName= must be one of the listeners: %s",
			         filename, name, names);
			return false;
		}
	}
	for (size_t i = 0; i < gen->n_listeners; i++) {
		struct listener *l = &gen->listeners[i];
		struct listener *ol = find_listener(old, l->cfg->name);
		for (size_t j = 0; j < ol->n_sockets; j++) {
			ev_io_stop(l->server->loop, &ol->sockets[j].io);
			add_socket(l, ol->sockets[j].fd, NULL); /* room: the same listener had them */
			ol->sockets[j].fd = -1;
		}
	}
	gen->sockets_inherited = true;
	return true;
}

bool listener_bind_all(struct generation *gen, struct generation *old, const char *filename, char *err,
                       size_t errlen)
{
	if (old && old->sockets_inherited)
		return keep_inherited(gen, old, filename, err, errlen);
	/* First everything that can fail: new addresses. */
	for (size_t i = 0; i < gen->n_listeners; i++) {
		struct listener *l = &gen->listeners[i];
		for (size_t j = 0; j < l->cfg->n_listen; j++) {
			if (old_has(old, l, &l->cfg->listen[j]))
				continue;
			if (!bind_line(l, &l->cfg->listen[j], filename, err, errlen)) {
				for (size_t k = 0; k <= i; k++)
					for (size_t m = 0; m < gen->listeners[k].n_sockets; m++)
						close(gen->listeners[k].sockets[m].fd);
				return false;
			}
		}
	}
	/* Then what cannot: unchanged addresses keep their sockets. */
	for (size_t i = 0; old && i < gen->n_listeners; i++) {
		struct listener *l = &gen->listeners[i];
		for (size_t j = 0; j < l->cfg->n_listen; j++)
			adopt_line(gen->listeners[i].server, l, &l->cfg->listen[j], old);
	}
	return true;
}

/* Handshake steps between two polls, each a key exchange and a signature
 * (about 0.5 ms): a relayed message's bytes wait behind at most this many,
 * not behind a whole burst of accepts (64 at max_handshakes). One would
 * bound each wait more tightly but spread a backlog of handshakes over
 * every step of a message (eight wakeups for MAIL, RCPT, DATA and the
 * message), which measured worse, and cost an epoll_wait per step (README
 * "Limits and floods"). */
#define HANDSHAKE_STEPS_PER_ITERATION 8

bool listener_handshake_turn(struct server *srv)
{
	unsigned iteration = ev_iteration(srv->loop);
	if (srv->handshake_turns_iteration != iteration) {
		srv->handshake_turns_iteration = iteration;
		srv->handshake_turns_left = HANDSHAKE_STEPS_PER_ITERATION;
	}
	if (srv->handshake_turns_left == 0)
		return false;
	srv->handshake_turns_left--;
	return true;
}

/* on_accept - take one waiting connection: the socket stays ready while
 * more wait, so the next poll comes back for them after what else is ready
 * has had its turn. With several workers on one socket every one of them
 * wakes, and one that took a whole burst would do all its handshakes while
 * the others idle. An implicit-TLS connection's first handshake step runs
 * as it is accepted, so it waits for a turn. */
static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listen_socket *s = (struct listen_socket *)w;
	struct server *srv = s->owner->server;
	(void)loop;
	(void)revents;
	if (s->owner->cfg->tls == CONFIG_TLS_IMPLICIT && !listener_handshake_turn(srv))
		return;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof peer;
	int fd = accept4(s->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			listener_pause_all(srv, errno);
		return; /* EAGAIN, or an aborted connection */
	}
	if (srv->accept_starved) {
		log_info("accepting new connections again");
		srv->accept_starved = false;
		srv->accept_backoff = 0;
	}
	conn_accept(s->owner, fd, (struct sockaddr *)&peer);
}

static void on_accept_pause_end(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	listener_update_all(w->data);
}

/* should_accept - socket S of listener L takes connections now */
static bool should_accept(const struct server *srv, const struct listener *l, const struct listen_socket *s)
{
	if (s->fd < 0 || srv->draining || ev_is_active(&srv->accept_pause))
		return false;
	return l->cfg->tls != CONFIG_TLS_IMPLICIT || srv->handshakes < srv->current->cfg.max_handshakes;
}

void listener_update_all(struct server *srv)
{
	struct generation *gen = srv->current;
	for (size_t i = 0; i < gen->n_listeners; i++) {
		struct listener *l = &gen->listeners[i];
		for (size_t j = 0; j < l->n_sockets; j++) {
			struct listen_socket *s = &l->sockets[j];
			bool wanted = should_accept(srv, l, s);
			if (wanted == ev_is_active(&s->io))
				continue;
			if (wanted) {
				ev_io_init(&s->io, on_accept, s->fd, EV_READ);
				ev_set_priority(&s->io, PRIORITY_ACCEPT);
				ev_io_start(srv->loop, &s->io);
			} else {
				ev_io_stop(srv->loop, &s->io);
			}
		}
	}
}

void listener_pause_all(struct server *srv, int errno_value)
{
	if (!srv->accept_starved)
		log_error("accept: %s; new connections wait until descriptors are free again",
		          strerror(errno_value));
	srv->accept_starved = true;
	srv->accept_backoff = srv->accept_backoff == 0 ? ACCEPT_PAUSE_SECONDS
	                      : srv->accept_backoff * 2 > ACCEPT_PAUSE_MAX_SECONDS
	                              ? ACCEPT_PAUSE_MAX_SECONDS
	                              : srv->accept_backoff * 2;
	ev_timer_init(&srv->accept_pause, on_accept_pause_end, srv->accept_backoff, 0);
	srv->accept_pause.data = srv;
	ev_timer_start(srv->loop, &srv->accept_pause);
	listener_update_all(srv);
}

void listener_close_all(struct server *srv, struct generation *gen)
{
	ev_timer_stop(srv->loop, &srv->accept_pause);
	for (size_t i = 0; i < gen->n_listeners; i++) {
		struct listener *l = &gen->listeners[i];
		for (size_t j = 0; j < l->n_sockets; j++) {
			ev_io_stop(srv->loop, &l->sockets[j].io);
			if (l->sockets[j].fd >= 0)
				close(l->sockets[j].fd);
			l->sockets[j].fd = -1;
		}
	}
}
