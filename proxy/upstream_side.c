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
 * With backend = original-destination (transparent mode) the destination
 * is read from the client's socket (original_dst.c) and the opening also
 * needs the client: the destination's greeting goes into the session for
 * the client, the client's first line is shown to the opening where it lies
 * in the input buffer (the session takes it later, inside TLS or, when the
 * destination offers no STARTTLS, as already sent), and a failed handshake
 * with fallback_plaintext = yes makes a new plaintext connection.
 *
 * The client side of an outbound connection is always plaintext, so the
 * connection's TLS buffers are the backend's here.
 */
#include "conn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "dane.h"
#include "dns.h"
#include "log.h"
#include "original_dst.h"
#include "panic.h"
#include "tls_upstream.h"
#include "transport_tls.h"

static const char *relay_name(const struct conn *c)
{
	return c->destination ? c->destination->text : tls_upstream_name(c->listener->upstream);
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

/* reconnect_plain - fallback_plaintext = yes after a failed handshake: the
 * spent connection goes, a new one is made for plaintext */
static void reconnect_plain(struct conn *c)
{
	log_warning("client %s: upstream %s: retrying in plaintext (fallback_plaintext = yes)", c->peer,
	            relay_name(c));
	backend_close(c);
	c->backend.tls = SIDE_PLAIN;
	c->backend_greeted = false;
	upstream_opening_reconnected(c->opening);
	backend_start(c);
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
	if (c->opening->state == OPENING_RECONNECT) {
		reconnect_plain(c);
		return true;
	}
	if (result != OPENING_TLS_VERIFIED) {
		opening_failed(c);
		return true;
	}
	tls_upstream_established(c->listener->upstream, session);
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

/* find_destination - backend = original-destination: where the client was
 * going before the redirect; false when it cannot be gone to */
static bool find_destination(struct conn *c)
{
	struct backend_addrs *a = &c->destination->addrs;
	struct sockaddr_storage *dst = &a->addr[0];
	enum original_dst_result r = original_dst(c->cfd, dst, &a->len[0]);
	snprintf(c->destination->text, sizeof c->destination->text, "-");
	if (r == ORIGINAL_DST_NONE) {
		upstream_opening_no_destination(c->opening, false);
		return false;
	}
	char text[INET6_ADDRSTRLEN] = "?";
	unsigned port;
	if (dst->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)dst;
		inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
		port = ntohs(in6->sin6_port);
		snprintf(c->destination->text, sizeof c->destination->text, "[%s]:%u", text, port);
	} else {
		const struct sockaddr_in *in = (const struct sockaddr_in *)dst;
		inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
		port = ntohs(in->sin_port);
		snprintf(c->destination->text, sizeof c->destination->text, "%s:%u", text, port);
	}
	if (r == ORIGINAL_DST_LOOP) {
		upstream_opening_no_destination(c->opening, true);
		return false;
	}
	a->n = 1;
	return true;
}

/* plain_policy - what the transparent opening does without TLS */
static enum opening_plain_policy plain_policy(const struct config_listener *cfg)
{
	if (cfg->upstream_tls != CONFIG_TLS_OPPORTUNISTIC)
		return OPENING_TLS_REQUIRED;
	return cfg->fallback_plaintext ? OPENING_FALLBACK : OPENING_OPPORTUNISTIC;
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
	if (cfg->backend.original_destination) {
		upstream_opening_init_transparent(c->opening, plain_policy(cfg));
		c->destination = calloc(1, sizeof *c->destination);
		if (!c->destination) {
			log_error("client %s: out of memory for the original destination", c->peer);
			conn_fail(c, "out-of-memory");
			return;
		}
		if (!find_destination(c)) {
			log_warning("client %s: original destination %s: %s", c->peer, c->destination->text,
			            c->opening->failure_reason);
			session_time_limit(&c->session, c->opening->failure_reply, c->opening->failure_reason);
			return;
		}
	} else {
		upstream_opening_init(c->opening, cfg->upstream_tls == CONFIG_TLS_IMPLICIT, c->srv->hostname,
		                      relay_name(c));
	}
	backend_start(c);
}

/* open_plain - the transparent opening ends without TLS: the session takes
 * the client's EHLO (sent already) and the reply the opening kept */
static void open_plain(struct conn *c)
{
	const struct upstream_opening *o = c->opening;
	log_info("client %s: upstream %s: no TLS (%s)%s", c->peer, relay_name(c), o->plain_reason,
	         o->client_helo ? "; the client said HELO" : "");
	session_plaintext_open(&c->session);
	size_t used = session_from_client(&c->session, c->cin, c->cin_len);
	memmove(c->cin, c->cin + used, c->cin_len - used);
	c->cin_len -= used;
	size_t len;
	const uint8_t *reply = upstream_opening_reply(o, &len);
	used = session_from_backend(&c->session, reply, len);
	PANIC_UNLESS(used == len); /* the EHLO's reply, owed and into empty buffers */
}

/* transparent_client_step - the destination's greeting to the client, and
 * the client's EHLO to the opening; true when something moved */
static bool transparent_client_step(struct conn *c)
{
	struct upstream_opening *o = c->opening;
	size_t len;
	const uint8_t *greeting = upstream_opening_client_greeting(o, &len);
	if (greeting) {
		session_greeting_passed(&c->session, greeting, len);
		return true;
	}
	return c->cin_len > 0 && upstream_opening_from_client(o, c->cin, c->cin_len);
}

bool upstream_opening_active(const struct conn *c)
{
	return c->opening && c->opening->state != OPENING_READY && c->opening->state != OPENING_PLAIN;
}

bool upstream_connect_by_write(const struct conn *c)
{
	/* An implicit-TLS relay says nothing before the ClientHello. */
	return c->opening && c->opening->implicit;
}

bool upstream_step(struct conn *c)
{
	struct upstream_opening *o = c->opening;
	if (!o || !upstream_opening_active(c) || o->state == OPENING_FAILED || c->bfd < 0 || c->backend_connecting)
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
	if (o->transparent)
		moved |= transparent_client_step(c);
	if (o->state == OPENING_FAILED) {
		opening_failed(c);
		return true;
	}
	if (o->state == OPENING_PLAIN) {
		open_plain(c);
		return true;
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
	if (c->opening->state == OPENING_RECONNECT)
		reconnect_plain(c);
	else
		opening_failed(c);
}

/* ---- dane = yes: a verdict per recipient domain (dane.h) ---- */

/* listener_dns - this worker's resolver for the listener, made on first
 * use; NULL (logged) when libunbound cannot be set up */
static struct dns *listener_dns(struct conn *c)
{
	struct listener *l = c->listener;
	if (!l->dns) {
		char err[1200];
		l->dns = dns_new(c->srv->loop, l->cfg, l->dns_anchors, err, sizeof err);
		if (!l->dns)
			log_error("listener %s: DNS resolver: %s", l->cfg->name, err);
	}
	return l->dns;
}

/* domain_decided - the verdict reaches the session; the held bytes are
 * offered again from the loop (conn_run runs on the client's watcher) */
static void domain_decided(void *arg, enum domain_verdict verdict, bool matched)
{
	struct conn *c = arg;
	dane_free(c->dane);
	c->dane = NULL;
	c->dane_matched += matched;
	c->dane_failed += verdict == DOMAIN_DEFER_DANE;
	session_domain_decided(&c->session, verdict);
	ev_feed_event(c->srv->loop, &c->client.io, EV_CUSTOM);
}

void upstream_domain_policy(struct conn *c)
{
	const char *domain = session_domain_wanted(&c->session);
	if (!domain || c->dane || !c->destination)
		return;
	struct dns *dns = listener_dns(c);
	struct dane_facts facts = {
		.domain = domain,
		.destination = &c->destination->addrs.addr[0],
		.tls = c->backend.tls == SIDE_TLS ? transport_tls_session(c->backend.t) : NULL,
		.timeout = c->listener->cfg->dns_timeout,
		.peer = c->peer,
	};
	c->dane = dns ? dane_start(dns, c->srv->loop, &facts, domain_decided, c) : NULL;
	if (!c->dane) {
		log_warning("client %s: dane domain=%s mx=- result=defer-dns why=no DNS resolver", c->peer, domain);
		session_domain_decided(&c->session, DOMAIN_DEFER_DNS);
		ev_feed_event(c->srv->loop, &c->client.io, EV_CUSTOM);
	}
}
