/* upstream_side.c - an outbound connection's way to TLS with its relay
 *
 * The opening (proxy/core/upstream_opening.h) decides; this file carries
 * it out on the backend socket: the plaintext greeting, EHLO and STARTTLS
 * (connect_timeout for each reply), then a client-mode TLS session from
 * tls_upstream.c on the same socket (handshake_timeout), GnuTLS's check of
 * the relay's certificate inside the handshake, and the greeting for the
 * session. From then on the relay is the session's backend on the TLS
 * transport, relayed by conn.c like any backend. Any failure before that
 * ends the session with the opening's 421 and nothing more is written to
 * the relay.
 *
 * The client side of an outbound connection is always plaintext, so the
 * connection's TLS buffers are the backend's here.
 */
#include "conn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "panic.h"
#include "tls_upstream.h"
#include "transport_tls.h"

static const char *relay_name(const struct conn *c)
{
	return tls_upstream_name(c->listener->upstream);
}

/* opening_failed - the client hears the opening's 421 instead of a
 * greeting; the relay hears nothing more */
static void opening_failed(struct conn *c)
{
	const struct upstream_opening *o = c->opening;
	log_info("client %s: upstream %s: %s", c->peer, relay_name(c), o->failure_reason);
	ev_timer_stop(c->srv->loop, &c->handshake_timer);
	backend_close(c);
	session_time_limit(&c->session, o->failure_reply, o->failure_reason);
}

/* restart_reply_timer - connect_timeout for the relay's next reply */
static void restart_reply_timer(struct conn *c)
{
	ev_timer_stop(c->srv->loop, &c->connect_timer);
	ev_timer_set(&c->connect_timer, c->listener->cfg->connect_timeout, 0);
	ev_timer_start(c->srv->loop, &c->connect_timer);
}

/* write_opening - the opening's EHLO or STARTTLS line; true when written */
static bool write_opening(struct conn *c)
{
	size_t n, sent = 0;
	const uint8_t *p = upstream_opening_output(c->opening, &n);
	if (n == 0)
		return false;
	/* One short line on a socket whose send buffer the relay's reply
	 * has just emptied: it always fits (as the PROXY header does). */
	const char *reason = NULL;
	if (transport_write(c->backend.t, p, n, &sent, &reason) != TRANSPORT_OK || sent != n) {
		log_debug("client %s: upstream write: %s", c->peer, reason ? reason : "short");
		upstream_opening_unreachable(c->opening);
		opening_failed(c);
		return true;
	}
	upstream_opening_sent(c->opening, n);
	restart_reply_timer(c);
	return true;
}

/* begin_handshake - the relay's socket becomes a TLS client session */
static void begin_handshake(struct conn *c)
{
	ev_timer_stop(c->srv->loop, &c->connect_timer);
	gnutls_session_t session;
	struct transport_buffers bufs = { c->tls_read_ahead, sizeof c->tls_read_ahead, 0, c->tls_gather,
		                          sizeof c->tls_gather };
	struct transport *t = NULL;
	/* The opening took every plaintext byte (a byte after the 220 ends
	 * it): nothing read before is left for the handshake to see. */
	PANIC_UNLESS(c->bin_len == 0);
	if (tls_upstream_session(c->listener->upstream, &session))
		t = transport_tls_new(session, c->bfd, bufs);
	if (!t) {
		log_error("client %s: cannot create a TLS session for the upstream", c->peer);
		upstream_opening_tls_done(c->opening, OPENING_TLS_FAILED);
		opening_failed(c);
		return;
	}
	t->drained = c->backend.plain.drained;
	c->backend.t = t;
	c->backend.tls = SIDE_HANDSHAKE;
	c->backend.handshake_wants_write = false;
	/* The client speaks first: the first step writes the ClientHello. */
	c->backend.readable = c->backend.writable = true;
	ev_timer_set(&c->handshake_timer, c->listener->cfg->handshake_timeout, 0);
	ev_timer_start(c->srv->loop, &c->handshake_timer);
}

/* handshake_step - drive the handshake; at its end, ready or failed */
static bool handshake_step(struct conn *c)
{
	const char *reason = NULL;
	enum transport_io r = conn_side_handshake(&c->backend, &reason);
	if (r == TRANSPORT_WANT_READ || r == TRANSPORT_WANT_WRITE)
		return false;
	ev_timer_stop(c->srv->loop, &c->handshake_timer);
	gnutls_session_t session = transport_tls_session(c->backend.t);
	enum opening_tls_result result = tls_upstream_result(session, r == TRANSPORT_OK);
	if (result == OPENING_TLS_NOT_TRUSTED) {
		char why[512];
		tls_upstream_why_untrusted(session, why, sizeof why);
		log_warning("client %s: upstream %s: certificate not trusted: %s", c->peer, relay_name(c), why);
	} else if (result == OPENING_TLS_FAILED) {
		log_warning("client %s: upstream %s: TLS handshake failed: %s", c->peer, relay_name(c),
		            reason ? reason : "connection closed");
	}
	upstream_opening_tls_done(c->opening, result);
	if (result != OPENING_TLS_VERIFIED) {
		opening_failed(c);
		return true;
	}
	tls_upstream_describe(session, c->tls_desc, sizeof c->tls_desc);
	c->upstream_verified = tls_upstream_verified(c->listener->upstream);
	log_debug("client %s: upstream %s: TLS established: %s verified=%s", c->peer, relay_name(c), c->tls_desc,
	          c->upstream_verified);
	/* The session counts as protected from here (upstream_opening.h). */
	session_tls_established(&c->session);
	const char *greeting = upstream_opening_greeting(c->opening);
	if (greeting) {
		size_t len = strlen(greeting);
		size_t used = session_from_backend(&c->session, (const uint8_t *)greeting, len);
		PANIC_UNLESS(used == len); /* the first reply, into empty buffers */
	}
	return true;
}

void upstream_start(struct conn *c)
{
	const struct config_listener *cfg = c->listener->cfg;
	c->opening = malloc(sizeof *c->opening);
	if (!c->opening) {
		log_error("client %s: out of memory for the upstream opening", c->peer);
		conn_fail(c, "out-of-memory");
		return;
	}
	upstream_opening_init(c->opening, cfg->upstream_tls == CONFIG_TLS_IMPLICIT, c->srv->hostname,
	                      relay_name(c));
	backend_start(c);
}

bool upstream_opening_active(const struct conn *c)
{
	return c->opening && c->opening->state != OPENING_READY;
}

bool upstream_connect_by_write(const struct conn *c)
{
	/* An implicit-TLS relay says nothing before the ClientHello. */
	return c->opening && c->opening->implicit;
}

bool upstream_step(struct conn *c)
{
	struct upstream_opening *o = c->opening;
	if (!o || o->state == OPENING_READY || o->state == OPENING_FAILED || c->bfd < 0 || c->backend_connecting)
		return false;
	if (c->backend.tls == SIDE_HANDSHAKE)
		return handshake_step(c);
	bool moved = false;
	if (c->bin_len > 0) {
		size_t used = upstream_opening_from_upstream(o, c->bin, c->bin_len);
		memmove(c->bin, c->bin + used, c->bin_len - used);
		c->bin_len -= used;
		moved = used > 0;
		if (o->state == OPENING_FAILED) {
			opening_failed(c);
			return true;
		}
	}
	moved |= write_opening(c);
	if (upstream_opening_wants_tls(o)) {
		begin_handshake(c);
		moved = true;
	}
	return moved;
}

bool upstream_lost(struct conn *c)
{
	if (!upstream_opening_active(c))
		return false;
	if (c->opening->state != OPENING_FAILED) {
		upstream_opening_unreachable(c->opening);
		opening_failed(c);
	}
	return true;
}

void upstream_handshake_timeout(struct conn *c)
{
	log_warning("client %s: upstream %s: TLS handshake timed out", c->peer, relay_name(c));
	upstream_opening_tls_done(c->opening, OPENING_TLS_FAILED);
	opening_failed(c);
}
