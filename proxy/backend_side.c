/* backend_side.c - a connection's backend side: connecting to the backend
 * (each resolved address in turn), the greeting's time limit, and telling
 * the backend who the client is with a PROXY header (XCLIENT is the
 * session core's, proxy/core/session.c). The relay over the connected
 * socket is conn.c's, the same for both sides. */
#include "conn_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics_shm.h"
#include "proxy_header.h"
#include "tls.h"

/* header_first - client_addr = proxy-v1 or proxy-v2: the backend hears
 * the header before it greets */
static bool header_first(const struct conn *c)
{
	enum config_client_addr mode = c->listener->cfg->client_addr;
	return mode == CONFIG_CLIENT_ADDR_PROXY_V1 || mode == CONFIG_CLIENT_ADDR_PROXY_V2;
}

/* forget_socket - the backend side has no socket any more */
static void forget_socket(struct conn *c)
{
	ev_io_stop(c->srv->loop, &c->backend.io);
	close(c->bfd);
	c->bfd = -1;
	transport_release(c->backend.t);
	c->backend.t = NULL;
	c->backend.events = 0;
}

void backend_close(struct conn *c)
{
	if (c->bfd < 0)
		return;
	ev_timer_stop(c->srv->loop, &c->connect_timer);
	forget_socket(c);
	c->bin_len = 0;
}

void backend_failed(struct conn *c)
{
	ev_timer_stop(c->srv->loop, &c->connect_timer);
	metrics_add(&metrics_mine->counters.backend_connect_failures, 1);
	if (!upstream_lost(c))
		session_backend_failed(&c->session);
}

/* start_connect - connect to address INDEX or a later one */
static void start_connect(struct conn *c, size_t index)
{
	bool transparent = c->listener->cfg->client_addr == CONFIG_CLIENT_ADDR_TRANSPARENT;
	c->bfd = backend_connect(c->destination ? &c->destination->addrs : &c->listener->backend, index, transparent ? &c->client_addr : NULL,
	                         &c->backend_index);
	if (c->bfd < 0) {
		log_warning("client %s: backend unreachable: %s", c->peer, strerror(errno));
		backend_failed(c);
		return;
	}
	c->backend_connecting = true;
	transport_plain_init(&c->backend.plain, c->bfd);
	c->backend.t = &c->backend.plain;
	c->backend.readable = c->backend.writable = false;
	ev_io_set(&c->backend.io, c->bfd, 0);
	c->backend.events = 0;
}

void backend_start(struct conn *c)
{
	ev_timer_start(c->srv->loop, &c->connect_timer);
	start_connect(c, 0);
}

/* try_next_backend - the connect failed with ERROR: the next address, or
 * a 421 when none is left */
static void try_next_backend(struct conn *c, int error)
{
	size_t next = c->backend_index + 1;
	forget_socket(c);
	c->backend_connecting = false;
	if (next < (c->destination ? &c->destination->addrs : &c->listener->backend)->n) {
		start_connect(c, next);
		return;
	}
	log_warning("client %s: backend unreachable: %s", c->peer, strerror(error));
	backend_failed(c);
}

/* send_client_addr - client_addr = proxy-v1 or proxy-v2: the header goes
 * first, in one write, before the greeting is read (PROXY protocol
 * section 2); on a fresh socket it always fits the send buffer */
static bool send_client_addr(struct conn *c)
{
	uint8_t header[PROXY_HEADER_WRITE_MAX];
	size_t n = 0;
	enum config_client_addr mode = c->listener->cfg->client_addr;
	if (mode != CONFIG_CLIENT_ADDR_PROXY_V1 && mode != CONFIG_CLIENT_ADDR_PROXY_V2)
		return true;
	if (c->local_addr.ss_family == AF_UNSPEC) {
		/* Asked only here, the one place it is told; a PROXY header
		 * from a load balancer has set it already. */
		socklen_t local_len = sizeof c->local_addr;
		if (getsockname(c->cfd, (struct sockaddr *)&c->local_addr, &local_len) < 0)
			c->local_addr.ss_family = AF_UNSPEC;
	}
	if (mode == CONFIG_CLIENT_ADDR_PROXY_V1) {
		n = proxy_header_write_v1(&c->client_addr, &c->local_addr, header, sizeof header);
	} else {
		/* With implicit TLS the handshake is over: its facts go along. */
		char version[64] = "", sni[256];
		struct proxy_tls_facts tls = { version, NULL, NULL };
		bool client_tls = c->client.tls == SIDE_TLS;
		if (client_tls) {
			snprintf(version, sizeof version, "%s", c->tls_desc);
			char *slash = strchr(version, '/');
			if (slash) {
				*slash = '\0';
				tls.cipher = slash + 1;
			}
			tls_sni(c->client.t, sni, sizeof sni);
			tls.sni = strcmp(sni, "-") == 0 ? NULL : sni;
		}
		n = proxy_header_write_v2(&c->client_addr, &c->local_addr, client_tls ? &tls : NULL, header,
		                          sizeof header);
	}
	size_t sent = 0;
	const char *reason = NULL;
	return n > 0 && transport_write(c->backend.t, header, n, &sent, &reason) == TRANSPORT_OK && sent == n;
}

/* Without a header to send first, the greeting's readability says the
 * connect is over and its read tells a refused connect
 * (backend_read_failed): asking the socket for its error would be one more
 * call. */
bool backend_connect_step(struct conn *c)
{
	if (!c->backend_connecting)
		return false;
	bool header = header_first(c) || upstream_connect_by_write(c);
	if (header ? !c->backend.writable : !c->backend.readable)
		return false;
	int error = header ? backend_connect_result(c->bfd) : 0;
	if (error == 0) {
		c->backend_connecting = false;
		c->backend.readable = c->backend.writable = true; /* a fresh socket's buffers are empty */
		if (!send_client_addr(c)) {
			log_warning("client %s: cannot send the PROXY header to the backend", c->peer);
			backend_close(c);
			backend_failed(c);
		}
		return true;
	}
	try_next_backend(c, error);
	return true;
}

int backend_connect_events(const struct conn *c)
{
	return header_first(c) || upstream_connect_by_write(c) ? EV_WRITE : EV_READ;
}

bool backend_read_failed(struct conn *c, int error)
{
	if (c->backend_greeted || header_first(c))
		return false;
	try_next_backend(c, error); /* the connect failed (backend_connect_step) */
	return true;
}

void backend_greeted(struct conn *c)
{
	c->backend_greeted = true;
	ev_timer_stop(c->srv->loop, &c->connect_timer);
	metrics_set(&metrics_mine->gauges.backend_ok_at[c->listener->metrics_index],
	            (uint64_t)ev_now(c->srv->loop));
}
