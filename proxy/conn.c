/* conn.c - one client connection (see conn.h)
 *
 * Every event ends in conn_run(), the one function that decides the next
 * I/O (Postfix tlsproxy's tlsp_strategy): it reads what is ready, feeds the
 * session, applies its actions, writes what the session produced, and only
 * then sets the watchers. Readiness is remembered per socket and cleared
 * when a call would block, so a TLS read that needs a write (and the
 * reverse) simply waits for the other readiness. A connection is freed in
 * one place: at the end of conn_run(), never inside a callee.
 *
 * Both sockets are transports (transport.h), each with its readiness in a
 * struct conn_side: the relay (side_read, side_write, side_flush) is the
 * same for the client and the backend, plain or TLS. Connecting to the
 * backend is backend_side.c's.
 */
#include "conn_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dane.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "metrics_shm.h"
#include "proxy_header.h"
#include "session.h"
#include "tls.h"
#include "tls_upstream.h"

/* After a final 421 the proxy stops writing and waits this long for the
 * client to close, so that closing with unread input (which sends a reset
 * that can wipe the reply out) does not happen. */
#define LINGER_SECONDS 2.0
/* Rounds of I/O for one connection before others get their turn. */
#define ROUNDS_PER_EVENT 32
/* The PROXY header must be complete within this time (the specification
 * asks for at least 3 seconds). */
#define PROXY_HEADER_SECONDS 5.0
/* Heap pages go back to the system once this many sessions have ended
 * since the peak, and at least half of them (give_back_heap). */
#define TRIM_AFTER_CLOSED 64
/* While a message is open its data rate is checked this often. */
#define DATA_RATE_CHECK_SECONDS 1.0

/* The time limits' replies (RFC 3463: 4.4.2, bad connection). */
static const char REPLY_SESSION_TIMEOUT[] = "421 4.4.2 Session time limit exceeded, closing connection\r\n";
static const char REPLY_DATA_TOO_SLOW[] = "421 4.4.2 Data rate too low, closing connection\r\n";
/* A limit keeps a client out (RFC 3463: 4.7.0, security or policy). */
static const char REPLY_TOO_MANY[] = "421 4.7.0 Too many connections, try again later\r\n";
static const char *const refused_names[METRICS_REFUSED_REASONS] = { "max_connections", "max_per_ip",
	                                                            "max_handshakes" };

/* A connection is placed in its page-aligned allocation so that its I/O
 * buffers start on a page boundary and all of its state, the
 * session's included, fits in the one page before them: an idle session
 * holds that page only. */
#define PAGE_SIZE_ASSUMED 4096
#define STATE_SIZE (offsetof(struct conn, session) + offsetof(struct session, out_client_storage))
#define CONN_SHIFT (PAGE_SIZE_ASSUMED - STATE_SIZE)
/* aligned_alloc (C17 7.22.3.1) wants a multiple of the alignment */
#define CONN_ALLOCATION \
	((CONN_SHIFT + sizeof(struct conn) + PAGE_SIZE_ASSUMED - 1) / PAGE_SIZE_ASSUMED * PAGE_SIZE_ASSUMED)

/* proxy_step reads the load balancer's header into the input buffer, and
 * what came behind it on an implicit-TLS listener goes to the read-ahead
 * buffer as the start of the ClientHello (begin_handshake). */
_Static_assert(PROXY_HEADER_MAX <= CONN_INPUT_CAP && CONN_INPUT_CAP <= TLS_READ_AHEAD_CAP,
               "a PROXY header fits the client input buffer, and that the read-ahead buffer");
_Static_assert(STATE_SIZE <= PAGE_SIZE_ASSUMED && CONN_SHIFT % _Alignof(struct conn) == 0,
               "a connection's state fits in one page");
_Static_assert(offsetof(struct conn, cin) ==
                       offsetof(struct conn, session) + offsetof(struct session, out_backend_storage) +
                               SESSION_OUT_CAP &&
                       offsetof(struct conn, bin) == offsetof(struct conn, cin) + CONN_INPUT_CAP &&
                       offsetof(struct conn, tls_read_ahead) == offsetof(struct conn, bin) + CONN_INPUT_CAP &&
                       offsetof(struct conn, tls_gather) ==
                               offsetof(struct conn, tls_read_ahead) + TLS_READ_AHEAD_CAP &&
                       CONN_INPUT_CAP % PAGE_SIZE_ASSUMED == 0 && SESSION_OUT_CAP % PAGE_SIZE_ASSUMED == 0 &&
                       TLS_READ_AHEAD_CAP % PAGE_SIZE_ASSUMED == 0 && TLS_GATHER_CAP % PAGE_SIZE_ASSUMED == 0,
               "the I/O buffers form one range of whole pages");

_Static_assert(CONN_INPUT_CAP >= SESSION_AUTH_LINE_MAX, "an input buffer holds the longest line (session.h)");

static void conn_run(struct conn *c);
static void conn_start(struct conn *c);
static void init_session(struct conn *c);

void conn_fail(struct conn *c, const char *reason)
{
	if (!c->end_reason && !c->session.stats.end_reason)
		c->end_reason = reason;
	c->dead = true;
}

/* ---- lifecycle ---- */

/* count_session_end - the session's own counts go to this worker's metrics */
static void count_session_end(const struct conn *c, const char *end)
{
	struct metrics_counters *m = &metrics_mine->counters;
	const struct session_stats *st = &c->session.stats;
	metrics_add(&m->ended[metrics_end_reason_index(end)], 1);
	metrics_add(&m->messages, st->messages_accepted);
	metrics_add(&m->refusals[METRICS_REFUSAL_MUST_STARTTLS], st->refused_must_starttls);
	metrics_add(&m->refusals[METRICS_REFUSAL_AUTH_NEEDS_TLS], st->refused_auth_needs_tls);
	metrics_add(&m->refusals[METRICS_REFUSAL_CLIENT_XCLIENT], st->refused_proxy_only);
	metrics_add(&m->refusals[METRICS_REFUSAL_SMUGGLING], st->refused_smuggling);
	metrics_add(&m->refusals[METRICS_REFUSAL_PLAINTEXT_AFTER_STARTTLS], st->plaintext_discarded > 0);
}

/* count_upstream_hop - an outbound session reached its upstream: how the
 * hop was protected (VERIFIED as its log line says; NULL: plaintext) and,
 * over TLS, with which version */
static void count_upstream_hop(const struct conn *c, const char *verified)
{
	struct metrics_counters *m = &metrics_mine->counters;
	size_t listener = c->listener->metrics_index, version, cipher;
	metrics_add(&m->upstream_sessions[listener][metrics_upstream_hop(verified)], 1);
	if (c->tls_desc[0]) {
		metrics_tls_index(c->tls_desc, &version, &cipher);
		metrics_add(&m->upstream_tls[listener][version], 1);
	}
}

/* handshake_over - one handshake fewer in progress: an implicit-TLS
 * listener paused at max_handshakes may accept again */
static void handshake_over(struct server *srv)
{
	srv->handshakes--;
	listener_update_all(srv);
}

/* conn_free - log the session line and release everything, once */
static void conn_free(struct conn *c)
{
	struct server *srv = c->srv;
	const char *end = c->session.stats.end_reason ? c->session.stats.end_reason
	                  : c->end_reason                ? c->end_reason
	                                                 : "closed";
	metrics_add(&metrics_mine->gauges.open[c->listener->metrics_index], (uint64_t)-1);
	if (c->refused) {
		log_debug("client %s: refused: %s", c->peer, end);
	} else if (c->listener->upstream) {
		/* backend = original-destination without TLS: why (upstream_opening.h) */
		const char *plain_reason =
		        c->opening && c->opening->state == OPENING_PLAIN ? c->opening->plain_reason : NULL;
		/* dane: every domain DANE decided had its TLSA records matched */
		const char *verified = c->dane_matched && !c->dane_failed ? "dane" : c->upstream_verified;
		count_session_end(c, end);
		if (verified || plain_reason)
			count_upstream_hop(c, verified);
		log_info("session listener=%s client=%s upstream=%s tls=%s%s%s verified=%s bytes_in=%llu "
		         "bytes_out=%llu messages=%llu end=%s",
		         c->listener->cfg->name, c->peer,
		         c->destination ? c->destination->text : tls_upstream_name(c->listener->upstream),
		         c->tls_desc[0] ? c->tls_desc : "none", plain_reason ? " reason=" : "",
		         plain_reason ? plain_reason : "", verified ? verified : "-",
		         (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
		         (unsigned long long)c->session.stats.messages_accepted, end);
	} else {
		count_session_end(c, end);
		log_info("session listener=%s client=%s tls=%s sni=%s cert=%s resumed=%s bytes_in=%llu "
		         "bytes_out=%llu messages=%llu end=%s",
		         c->listener->cfg->name, c->peer, c->tls_desc[0] ? c->tls_desc : "none",
		         c->sni[0] ? c->sni : "-", c->cert_name ? c->cert_name : "-", c->resumed ? "yes" : "no",
		         (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
		         (unsigned long long)c->session.stats.messages_accepted, end);
	}
	if (c->per_ip_counted)
		ip_count_release(srv->per_ip, &c->per_ip_key);
	if (c->client.tls == SIDE_HANDSHAKE)
		handshake_over(srv);

	ev_io_stop(srv->loop, &c->client.io);
	ev_timer_stop(srv->loop, &c->handshake_timer);
	ev_timer_stop(srv->loop, &c->idle_timer);
	ev_timer_stop(srv->loop, &c->linger_timer);
	ev_timer_stop(srv->loop, &c->proxy_timer);
	ev_timer_stop(srv->loop, &c->session_timer);
	ev_timer_stop(srv->loop, &c->data_rate_timer);
	/* The backend may be gone already, its greeting timer not. */
	ev_timer_stop(srv->loop, &c->connect_timer);
	backend_close(c);
	transport_release(c->client.t);
	free(c->opening);
	free(c->destination);
	dane_free(c->dane);
	free(c->domains);
	close(c->cfd);
	generation_unref(c->listener->gen);

	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->n_conns--;
	free((uint8_t *)c - CONN_SHIFT);
	if (srv->draining && srv->n_conns == 0)
		ev_break(srv->loop, EVBREAK_ALL);
}

/* ---- the relay: either side, either direction ---- */

/* side_read - one read from side S into IN (*in_len of CAP in use); the
 * result as the transport gave it, readiness updated */
static enum transport_io side_read(struct conn_side *s, uint8_t *in, size_t *in_len, size_t cap,
                                   size_t *n_r, const char **reason_r)
{
	*n_r = 0;
	enum transport_io r = transport_read(s->t, in + *in_len, cap - *in_len, n_r, reason_r);
	s->read_wants_write = r == TRANSPORT_WANT_WRITE;
	if (r == TRANSPORT_OK) {
		*in_len += *n_r;
		/* Short of the socket's data: poll says when more comes, but
		 * what is already off the socket (TLS records read ahead,
		 * decrypted bytes) it cannot see. */
		s->readable = !s->t->drained || transport_pending(s->t) > 0;
	} else if (r == TRANSPORT_WANT_READ || r == TRANSPORT_WANT_WRITE) {
		s->readable = false;
	}
	return r;
}

/* side_write - one write of LEN bytes at P to side S; GnuTLS wants a
 * blocked write offered again with the same bytes */
static enum transport_io side_write(struct conn_side *s, const uint8_t *p, size_t len, size_t *n_r,
                                    const char **reason_r)
{
	*n_r = 0;
	size_t offer = s->write_again ? s->write_again : len;
	enum transport_io r = transport_write(s->t, p, offer, n_r, reason_r);
	s->write_wants_read = r == TRANSPORT_WANT_READ;
	if (r == TRANSPORT_OK) {
		s->write_again = 0;
	} else if (r == TRANSPORT_WANT_READ || r == TRANSPORT_WANT_WRITE) {
		s->write_again = offer;
		s->writable = false;
	}
	return r;
}

/* side_flush - what the transport gathered in this round leaves in one
 * call; false on an error */
static bool side_flush(struct conn_side *s, const char **reason_r)
{
	if (!s->t || transport_unsent(s->t) == 0 || !s->writable)
		return true;
	enum transport_io r = transport_flush(s->t, reason_r);
	if (r == TRANSPORT_ERROR)
		return false;
	if (r != TRANSPORT_OK)
		s->writable = false;
	return true;
}

/* side_output_pending - S still has LEN bytes to write, or the transport
 * holds some */
static bool side_output_pending(const struct conn_side *s, size_t len)
{
	return len > 0 || s->write_again > 0 || (s->t && transport_unsent(s->t) > 0);
}

/* side_events - what S's watcher waits for, given what the connection
 * wants of it; a TLS read that wants a write (and the reverse) waits for
 * what it was told */
static int side_events(const struct conn_side *s, bool want_read, bool want_write)
{
	int events = 0;
	if (s->tls == SIDE_HANDSHAKE) {
		events = s->handshake_wants_write ? EV_WRITE : EV_READ;
		if (transport_unsent(s->t) > 0)
			events |= EV_WRITE; /* a flight the socket did not take at once */
		return events;
	}
	if ((want_read && !s->read_wants_write) || (want_write && s->write_wants_read))
		events |= EV_READ;
	if ((want_write && !s->write_wants_read) || (want_read && s->read_wants_write))
		events |= EV_WRITE;
	return events;
}

/* side_event - poll's news for side S: either readiness may unblock a TLS
 * read or write (the two traps) */
static void side_event(struct conn_side *s, int revents)
{
	if (revents & (EV_READ | EV_CUSTOM))
		s->readable = true;
	if ((revents & EV_READ) && s->t)
		transport_readable(s->t);
	if (revents & (EV_WRITE | EV_CUSTOM))
		s->writable = true;
	if (s->read_wants_write && (revents & EV_WRITE))
		s->readable = true;
	if (s->write_wants_read && (revents & EV_READ))
		s->writable = true;
}

/* side_watch - start, stop or change S's io watcher on FD */
static void side_watch(struct conn *c, struct conn_side *s, int fd, int wanted)
{
	if (fd < 0 || wanted == s->events)
		return;
	ev_io_stop(c->srv->loop, &s->io);
	if (wanted) {
		ev_io_set(&s->io, fd, wanted);
		ev_io_start(c->srv->loop, &s->io);
	}
	s->events = wanted;
}

/* ---- the client side ---- */

/* tell_client_eof - the session hears of the client's end once it has
 * taken every whole line that came before it: pipelined commands that wait
 * for the greeting or a reply are still run (RFC 2920 section 3.2 loses no
 * input), however early the client closed its sending side. A partial line
 * left over can never be completed. */
static void tell_client_eof(struct conn *c)
{
	if (!c->client_eof || c->client_eof_told)
		return; /* the usual case, on every feed: no scan */
	if (c->cin_len > 0 && memchr(c->cin, '\n', c->cin_len))
		return; /* whole lines still to take */
	c->client_eof_told = true;
	session_client_eof(&c->session);
}

/* client_closed - the client's EOF */
static void client_closed(struct conn *c)
{
	c->client_eof = true;
	tell_client_eof(c);
	/* Gone before the greeting without a word: nothing is owed to it, so
	 * the backend is released now, not at connect_timeout. A client that
	 * sent commands and then closed only its sending side (gnutls-cli and
	 * nc at the end of their input) still reads their replies. */
	if (!c->backend_greeted && c->bytes_in == 0)
		conn_fail(c, "client-closed");
}

/* client_read - one read from the client, plaintext or TLS */
static bool client_read(struct conn *c)
{
	if (!c->client.readable || c->client_eof || c->cin_len == sizeof c->cin)
		return false;
	size_t before = c->cin_len, n;
	const char *reason = NULL;
	switch (side_read(&c->client, c->cin, &c->cin_len, sizeof c->cin, &n, &reason)) {
	case TRANSPORT_OK:
		if (c->refuse_proxy_header && c->bytes_in == 0 && c->client.tls == SIDE_PLAIN &&
		    proxy_header_could_be(c->cin + before, n)) {
			log_warning("client %s: PROXY header from a peer outside proxy_from; closed", c->peer);
			conn_fail(c, "proxy-header-refused");
			return true;
		}
		c->bytes_in += n;
		return true;
	case TRANSPORT_WANT_READ:
	case TRANSPORT_WANT_WRITE:
		return false;
	case TRANSPORT_EOF:
		client_closed(c);
		return true;
	case TRANSPORT_ERROR:
		if (c->client.tls == SIDE_PLAIN) {
			client_closed(c); /* a reset: the same to the session */
			return true;
		}
		log_warning("client %s: TLS: %s", c->peer, reason);
		conn_fail(c, "tls-error");
		return true;
	}
	return false;
}

/* client_write - session output to the client */
static bool client_write(struct conn *c)
{
	size_t len;
	const uint8_t *p = session_output_to_client(&c->session, &len);
	if (len == 0 || !c->client.writable || c->client.tls == SIDE_HANDSHAKE)
		return false;
	size_t n;
	const char *reason = NULL;
	switch (side_write(&c->client, p, len, &n, &reason)) {
	case TRANSPORT_OK:
		break;
	case TRANSPORT_WANT_READ:
	case TRANSPORT_WANT_WRITE:
		return false;
	case TRANSPORT_EOF:
	case TRANSPORT_ERROR:
		log_debug("client %s: write: %s", c->peer, reason ? reason : "closed");
		conn_fail(c, "client-write-error");
		return true;
	}
	c->bytes_out += n;
	metrics_add(&metrics_mine->counters.bytes[METRICS_TO_CLIENT], n);
	session_sent_to_client(&c->session, n);
	return n > 0;
}

/* log_client_cert - client_cert = request: who the client says it is */
static void log_client_cert(struct conn *c)
{
	char subject[512], sha256[100];
	if (c->listener->cfg->request_client_cert &&
	    tls_client_cert(c->client.t, subject, sizeof subject, sha256, sizeof sha256))
		log_info("client %s: client certificate subject=\"%s\" sha256=%s", c->peer, subject, sha256);
}

/* count_handshake - a handshake that succeeded, by version and cipher */
static void count_handshake(const struct conn *c)
{
	struct metrics_counters *m = &metrics_mine->counters;
	size_t version, cipher;
	metrics_tls_index(c->tls_desc, &version, &cipher);
	metrics_add(&m->handshakes[METRICS_HANDSHAKE_OK], 1);
	metrics_add(&m->established[version][cipher], 1);
	metrics_add(&m->resumed, c->resumed);
}

enum transport_io conn_side_handshake(struct conn_side *s, const char **reason_r)
{
	if (s->handshake_wants_write ? !s->writable : !s->readable)
		return TRANSPORT_WANT_READ;
	enum transport_io r = transport_handshake(s->t, reason_r);
	switch (r) {
	case TRANSPORT_OK:
		s->tls = SIDE_TLS;
		s->readable = s->writable = true;
		break;
	case TRANSPORT_WANT_READ:
		s->handshake_wants_write = false;
		s->readable = false;
		break;
	case TRANSPORT_WANT_WRITE:
		s->handshake_wants_write = true;
		s->writable = false;
		break;
	case TRANSPORT_EOF:
	case TRANSPORT_ERROR:
		break;
	}
	return r;
}

/* handshake_step - drive the client's TLS handshake */
static bool handshake_step(struct conn *c)
{
	if (c->client.tls != SIDE_HANDSHAKE)
		return false;
	const char *reason = NULL;
	switch (conn_side_handshake(&c->client, &reason)) {
	case TRANSPORT_OK:
		handshake_over(c->srv);
		ev_timer_stop(c->srv->loop, &c->handshake_timer);
		tls_describe(c->client.t, c->tls_desc, sizeof c->tls_desc);
		tls_suite(c->client.t, c->tls_suite, sizeof c->tls_suite);
		tls_sni(c->client.t, c->sni, sizeof c->sni);
		c->cert_name = tls_cert_name(c->client.t);
		c->resumed = tls_resumed(c->client.t);
		count_handshake(c);
		log_debug("client %s: TLS established: %s sni=%s", c->peer, c->tls_desc, c->sni);
		log_client_cert(c);
		session_tls_established(&c->session);
		if (c->backend_after_handshake) {
			c->backend_after_handshake = false;
			backend_start(c);
		}
		return true;
	case TRANSPORT_WANT_READ:
	case TRANSPORT_WANT_WRITE:
		return false;
	case TRANSPORT_EOF:
	case TRANSPORT_ERROR:
		log_info("client %s: TLS handshake failed: %s", c->peer, reason ? reason : "connection closed");
		metrics_add(&metrics_mine->counters.handshakes[METRICS_HANDSHAKE_FAILED], 1);
		conn_fail(c, "handshake-failed");
		return true;
	}
	return false;
}

/* begin_handshake - from now on the client speaks TLS */
static void begin_handshake(struct conn *c)
{
	bool implicit = c->listener->cfg->tls == CONFIG_TLS_IMPLICIT;
	struct transport_buffers bufs = { c->tls_read_ahead, sizeof c->tls_read_ahead, 0, c->tls_gather,
		                          sizeof c->tls_gather };
	if (implicit) {
		/* What came behind a PROXY header is the ClientHello's start
		 * (RFC 8314 section 3: TLS from the first byte). */
		memcpy(c->tls_read_ahead, c->cin, c->cin_len);
		bufs.read_ahead_len = c->cin_len;
	}
	/* RFC 3207 section 4.2: plaintext read after STARTTLS is dropped. */
	c->cin_len = 0;
	c->client.t = tls_server_new(c->listener->creds, c->cfd, bufs);
	if (!c->client.t) {
		c->client.t = &c->client.plain;
		log_error("client %s: cannot create a TLS session", c->peer);
		conn_fail(c, "tls-setup-failed");
		return;
	}
	c->client.t->drained = c->client.plain.drained; /* the same socket */
	c->client.tls = SIDE_HANDSHAKE;
	c->srv->handshakes++;
	listener_update_all(c->srv); /* max_handshakes */
	c->client.handshake_wants_write = false;
	/* After STARTTLS's 220 the ClientHello cannot be there yet: poll
	 * says when it is. With implicit TLS it often came with the
	 * connection. */
	c->client.readable = implicit;
	c->client.writable = true;
	ev_timer_set(&c->handshake_timer, c->listener->cfg->handshake_timeout, 0);
	ev_timer_start(c->srv->loop, &c->handshake_timer);
}

/* linger_read - discard what the client still sends; its end ends it all:
 * over TLS its close_notify (what came with it is read off the socket with
 * it), in plaintext its EOF. True when bytes came or it ended. */
static bool linger_read(struct conn *c)
{
	uint8_t scratch[4096];
	if (!c->client.readable)
		return false;
	size_t n;
	const char *reason;
	struct transport *t = c->client.t;
	if (c->client.tls != SIDE_TLS) {
		/* Read until EOF or EAGAIN: the FIN mostly comes with the
		 * last bytes. */
		transport_readable(t);
	}
	switch (transport_read(t, scratch, sizeof scratch, &n, &reason)) {
	case TRANSPORT_OK:
		return true;
	case TRANSPORT_WANT_READ:
	case TRANSPORT_WANT_WRITE:
		c->client.readable = false;
		return false;
	case TRANSPORT_EOF:
	case TRANSPORT_ERROR:
		break;
	}
	c->dead = true;
	return true;
}

/* begin_linger - all output is out, close_notify included: wait for the
 * client to close. A TLS client has its close_notify; a plaintext one is
 * told by half-closing (a shutdown for TLS would only race the client's
 * close: ENOTCONN). */
static void begin_linger(struct conn *c)
{
	backend_close(c);
	c->lingering = true;
	if (c->session.quit_sent) {
		/* RFC 5321 section 4.1.1.10: QUIT has its reply and the
		 * server closes; the client sends nothing more. With none of
		 * its bytes unread the close sends a FIN, never a reset that
		 * could wipe the 221 out, so there is nothing to wait for. */
		c->client.readable = true;
		transport_readable(c->client.t);
		if (!linger_read(c))
			c->dead = true;
		if (c->dead)
			return;
	}
	if (c->client.tls != SIDE_TLS)
		shutdown(c->cfd, SHUT_WR);
	c->client.readable = false; /* its answer to the close cannot be there yet */
	ev_timer_set(&c->linger_timer, LINGER_SECONDS, 0);
	ev_timer_start(c->srv->loop, &c->linger_timer);
}

/* proxy_step - the load balancer's PROXY header, read like any other
 * bytes into the client input buffer; what follows it (SMTP, or the start
 * of a TLS ClientHello) stays there for the session or the handshake */
static bool proxy_step(struct conn *c)
{
	struct proxy_header h;
	if (!c->client.readable)
		return false;
	size_t n;
	const char *reason = NULL;
	enum transport_io r = side_read(&c->client, c->cin, &c->cin_len, sizeof c->cin, &n, &reason);
	if (r == TRANSPORT_WANT_READ || r == TRANSPORT_WANT_WRITE)
		return false;
	enum proxy_header_result parsed =
	        r == TRANSPORT_OK ? proxy_header_parse(c->cin, c->cin_len, &h) : PROXY_HEADER_INVALID;
	if (parsed == PROXY_HEADER_INCOMPLETE && c->cin_len < PROXY_HEADER_MAX)
		return true; /* the rest comes later */
	if (parsed != PROXY_HEADER_DONE) {
		/* Never guessed: no valid header, no session (section 2). */
		log_info("client %s: no valid PROXY header; closed", c->peer);
		conn_fail(c, "proxy-header-invalid");
		return true;
	}
	c->cin_len -= h.length;
	memmove(c->cin, c->cin + h.length, c->cin_len);
	if (!h.local) {
		c->client_addr = h.source;
		c->local_addr = h.destination;
		format_addr((const struct sockaddr *)&h.source, c->peer, sizeof c->peer);
		init_session(c); /* nothing has reached it yet; now with the real client */
	}
	c->awaiting_proxy = false;
	ev_timer_stop(c->srv->loop, &c->proxy_timer);
	log_debug("client %s: from the PROXY header", c->peer);
	if (c->listener->cfg->tls != CONFIG_TLS_IMPLICIT)
		c->bytes_in += c->cin_len; /* the client's first SMTP bytes */
	conn_start(c);
	return true;
}

/* ---- the backend side (connecting to it: backend_side.c) ---- */

static bool backend_read(struct conn *c)
{
	if (c->bfd < 0 || c->backend_connecting || !c->backend.readable || c->bin_len == sizeof c->bin ||
	    c->backend.tls == SIDE_HANDSHAKE)
		return false;
	size_t n;
	const char *reason = NULL;
	switch (side_read(&c->backend, c->bin, &c->bin_len, sizeof c->bin, &n, &reason)) {
	case TRANSPORT_OK:
		if (!c->backend_greeted)
			backend_greeted(c);
		return true;
	case TRANSPORT_WANT_READ:
	case TRANSPORT_WANT_WRITE:
		return false;
	case TRANSPORT_ERROR:
		if (c->backend.tls == SIDE_PLAIN && backend_read_failed(c, errno))
			return true;
		break;
	case TRANSPORT_EOF:
		break;
	}
	if (upstream_lost(c))
		return true;
	/* Replies already read are still delivered before the 421. */
	if (c->bin_len > 0)
		(void)session_from_backend(&c->session, c->bin, c->bin_len);
	log_debug("client %s: backend closed", c->peer);
	backend_close(c);
	session_backend_eof(&c->session);
	return true;
}

static bool backend_write(struct conn *c)
{
	size_t len;
	const uint8_t *p = session_output_to_backend(&c->session, &len);
	if (len == 0 || c->bfd < 0 || c->backend_connecting || !c->backend.writable ||
	    c->backend.tls == SIDE_HANDSHAKE)
		return false;
	size_t n;
	const char *reason = NULL;
	switch (side_write(&c->backend, p, len, &n, &reason)) {
	case TRANSPORT_OK:
		break;
	case TRANSPORT_WANT_READ:
	case TRANSPORT_WANT_WRITE:
		return false;
	case TRANSPORT_EOF:
	case TRANSPORT_ERROR:
		log_debug("client %s: backend write: %s", c->peer, reason ? reason : "closed");
		backend_close(c);
		session_backend_eof(&c->session);
		return true;
	}
	session_sent_to_backend(&c->session, n);
	metrics_add(&metrics_mine->counters.bytes[METRICS_TO_BACKEND], (uint64_t)n);
	return n > 0;
}

/* backend_flush - what the backend's transport gathered leaves in one call */
static void backend_flush(struct conn *c)
{
	const char *reason = NULL;
	if (c->bfd < 0 || c->backend_connecting || side_flush(&c->backend, &reason))
		return;
	log_debug("client %s: backend write: %s", c->peer, reason);
	backend_close(c);
	session_backend_eof(&c->session);
}

/* ---- the session ---- */

/* track_message - start min_data_rate's clock when a message opens, stop
 * it when the message has ended */
static void track_message(struct conn *c)
{
	bool open = session_message_open(&c->session);
	if (open == c->message_open)
		return;
	c->message_open = open;
	if (open) {
		c->message_opened_at = ev_now(c->srv->loop);
		c->message_bytes = 0;
		if (c->listener->cfg->min_data_rate > 0)
			ev_timer_again(c->srv->loop, &c->data_rate_timer);
	} else {
		ev_timer_stop(c->srv->loop, &c->data_rate_timer);
	}
}

/* feed - offer buffered input to the session; true when some was used */
static bool feed(struct conn *c)
{
	bool moved = false;
	if (c->bin_len > 0 && !upstream_opening_active(c)) {
		size_t used = session_from_backend(&c->session, c->bin, c->bin_len);
		memmove(c->bin, c->bin + used, c->bin_len - used);
		c->bin_len -= used;
		moved |= used > 0;
	}
	track_message(c); /* a 354 opens one */
	/* During an outbound opening the client's bytes wait (the transparent
	 * opening reads its EHLO where it lies). */
	if (c->cin_len > 0 && c->client.tls != SIDE_HANDSHAKE && !c->start_tls && !c->closing &&
	    !upstream_opening_active(c)) {
		bool was_open = c->message_open;
		size_t used = session_from_client(&c->session, c->cin, c->cin_len);
		memmove(c->cin, c->cin + used, c->cin_len - used);
		c->cin_len -= used;
		moved |= used > 0;
		track_message(c); /* a BDAT opens one, its end closes it */
		if (was_open || c->message_open)
			c->message_bytes += used;
	}
	tell_client_eof(c);
	return moved;
}

/* apply_actions - do what the session asks */
static void apply_actions(struct conn *c)
{
	const char *notice = session_take_notice(&c->session);
	if (notice)
		log_warning("client %s: %s", c->peer, notice);

	enum session_action a;
	while ((a = session_next_action(&c->session)) != ACT_NONE) {
		switch (a) {
		case ACT_CLOSE_NOW:
			c->dead = true;
			break;
		case ACT_DROP_BACKEND:
			backend_close(c);
			break;
		case ACT_START_TLS:
			metrics_add(&metrics_mine->counters.starttls, 1);
			c->start_tls = true;
			c->cin_len = 0; /* RFC 3207 section 4.2 */
			break;
		case ACT_CLOSE_AFTER_FLUSH:
			c->closing = true;
			break;
		case ACT_DOMAIN_POLICY:
			upstream_domain_policy(c);
			break;
		case ACT_NONE:
			break;
		}
	}
}

/* client_output_pending - bytes the session or TLS still has for the client */
static bool client_output_pending(struct conn *c)
{
	size_t len;
	(void)session_output_to_client(&c->session, &len);
	return side_output_pending(&c->client, len);
}

/* say_goodbye - closing over TLS: close_notify goes right behind the last
 * reply, so that both leave in one flush */
static void say_goodbye(struct conn *c)
{
	size_t len;
	(void)session_output_to_client(&c->session, &len);
	if (!c->closing || c->client.tls != SIDE_TLS || c->bye_gathered || len > 0 || c->client.write_again > 0)
		return;
	transport_bye(c->client.t);
	c->bye_gathered = true;
}

/* client_flush - what TLS gathered in this round leaves in one call */
static void client_flush(struct conn *c)
{
	const char *reason = NULL;
	if (!side_flush(&c->client, &reason)) {
		log_debug("client %s: write: %s", c->peer, reason);
		conn_fail(c, "client-write-error");
	}
}

/* update_watchers - wait for exactly what the connection needs next */
static void update_watchers(struct conn *c)
{
	int client = 0, backend = 0;
	if (c->lingering) {
		client = EV_READ;
	} else if (c->awaiting_proxy) {
		client = EV_READ;
	} else {
		bool want_read = !c->client_eof && !c->start_tls && !c->closing && c->cin_len < sizeof c->cin;
		client = side_events(&c->client, want_read, client_output_pending(c));
	}
	if (c->bfd >= 0) {
		size_t len;
		(void)session_output_to_backend(&c->session, &len);
		if (c->backend_connecting)
			backend = backend_connect_events(c);
		else
			backend = side_events(&c->backend, c->bin_len < sizeof c->bin,
			                      side_output_pending(&c->backend, len));
	}
	side_watch(c, &c->client, c->cfd, client);
	side_watch(c, &c->backend, c->bfd, backend);
}

/* refresh_date - the trace line's date, formatted once a second */
static void refresh_date(struct server *srv)
{
	time_t now = (time_t)ev_now(srv->loop);
	if ((long)now == srv->date_second)
		return;
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(srv->date, sizeof srv->date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	srv->date_second = (long)now;
}

/* conn_run - the one place that decides the next I/O, after every event */
static void conn_run(struct conn *c)
{
	c->io_since_sweep = true; /* its buffers may hold bytes again */
	refresh_date(c->srv);
	int round;
	for (round = 0; round < ROUNDS_PER_EVENT && !c->dead; round++) {
		bool moved = false;
		/* Only the session's progress keeps it alive: a client
		 * trickling a line a byte at a time still times out
		 * (RFC 5321 section 4.5.3.2). */
		bool progress = false;
		if (c->lingering) {
			moved |= linger_read(c);
		} else if (c->awaiting_proxy) {
			moved |= proxy_step(c);
		} else {
			progress |= handshake_step(c);
			moved |= backend_connect_step(c);
			if (c->client.tls != SIDE_HANDSHAKE && !c->start_tls && !c->closing)
				moved |= client_read(c);
			moved |= backend_read(c);
			progress |= upstream_step(c);
			progress |= feed(c);
			apply_actions(c);
			if (c->dead)
				break;
			progress |= client_write(c);
			progress |= backend_write(c);
			say_goodbye(c);
			client_flush(c);
			backend_flush(c);
			if (c->dead)
				break;
			if (c->start_tls && !client_output_pending(c)) {
				c->start_tls = false;
				begin_handshake(c);
				moved = true;
			}
			if (c->closing && !client_output_pending(c)) {
				begin_linger(c);
				moved = true;
			}
		}
		if (progress && !c->dead && !c->closing)
			ev_timer_again(c->srv->loop, &c->idle_timer);
		if (!moved && !progress)
			break;
	}
	if (c->dead) {
		conn_free(c);
		return;
	}
	update_watchers(c);
	if (round == ROUNDS_PER_EVENT)
		ev_feed_event(c->srv->loop, &c->client.io, EV_CUSTOM); /* more next turn */
}

/* ---- callbacks ---- */

static void on_client_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	/* A handshake step waits for its turn; poll reports the socket again. */
	if (c->client.tls == SIDE_HANDSHAKE && !(revents & EV_CUSTOM) && !listener_handshake_turn(c->srv))
		return;
	side_event(&c->client, revents);
	conn_run(c);
}

static void on_backend_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	side_event(&c->backend, revents);
	conn_run(c);
}

static void on_handshake_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	(void)revents;
	if (c->opening) {
		upstream_handshake_timeout(c);
		conn_run(c);
		return;
	}
	log_info("client %s: TLS handshake timed out", c->peer);
	metrics_add(&metrics_mine->counters.handshakes[METRICS_HANDSHAKE_TIMEOUT], 1);
	conn_fail(c, "handshake-timeout");
	conn_run(c);
}

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	(void)revents;
	log_warning("client %s: backend did not greet within %us", c->peer, c->listener->cfg->connect_timeout);
	backend_close(c);
	backend_failed(c);
	conn_run(c);
}

static void on_idle_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	(void)revents;
	if (c->client.tls == SIDE_HANDSHAKE || c->lingering || c->closing) {
		conn_fail(c, "idle-timeout");
	} else {
		session_idle_timeout(&c->session);
		/* A client that never reads must not keep the 421 waiting. */
		ev_timer_set(&c->idle_timer, 0, LINGER_SECONDS);
	}
	conn_run(c);
}

/* end_for_time_limit - session_timeout or min_data_rate ran out */
static void end_for_time_limit(struct conn *c, const char *reply, const char *reason)
{
	if (c->awaiting_proxy || c->client.tls == SIDE_HANDSHAKE || c->start_tls || c->lingering ||
	    c->closing) {
		conn_fail(c, reason); /* no SMTP reply can be given now */
		return;
	}
	session_time_limit(&c->session, reply, reason);
	/* A client that never reads must not keep the 421 waiting. */
	c->idle_timer.repeat = LINGER_SECONDS;
	ev_timer_again(c->srv->loop, &c->idle_timer);
}

static void on_session_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	(void)revents;
	log_info("client %s: session_timeout of %us reached", c->peer, c->listener->cfg->session_timeout);
	end_for_time_limit(c, REPLY_SESSION_TIMEOUT, "session-timeout");
	conn_run(c);
}

/* on_data_rate_check - the client has sent at least min_data_rate bytes a
 * second of the message since its grace time; a slow backend is never held
 * against it (nothing waits to go to the backend) */
static void on_data_rate_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	const struct config_listener *cfg = c->listener->cfg;
	(void)revents;
	double counted = ev_now(loop) - c->message_opened_at - cfg->min_data_rate_grace;
	size_t backend_pending;
	(void)session_output_to_backend(&c->session, &backend_pending);
	if (counted <= 0 || backend_pending > 0 || (double)c->message_bytes >= counted * cfg->min_data_rate)
		return;
	log_info("client %s: message data below min_data_rate: %llu bytes in %.0fs; closed", c->peer,
	         (unsigned long long)c->message_bytes, ev_now(loop) - c->message_opened_at);
	end_for_time_limit(c, REPLY_DATA_TOO_SLOW, "data-too-slow");
	conn_run(c);
}

static void on_linger_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	(void)revents;
	c->dead = true;
	conn_run(c);
}

/* on_proxy_timeout - no whole PROXY header in time */
static void on_proxy_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	(void)loop;
	(void)revents;
	log_info("client %s: no PROXY header within %.0fs; closed", c->peer, PROXY_HEADER_SECONDS);
	conn_fail(c, "proxy-header-timeout");
	conn_run(c);
}

/* refuse_client - a limit keeps the client on FD out before anything was
 * sent to it: a STARTTLS listener answers 421 (it fits a fresh socket's
 * send buffer), an implicit-TLS one closes before any TLS work */
static void refuse_client(struct listener *l, int fd, enum metrics_refused_reason reason)
{
	metrics_count_refused(l, reason);
	if (l->cfg->tls == CONFIG_TLS_STARTTLS)
		(void)send(fd, REPLY_TOO_MANY, sizeof REPLY_TOO_MANY - 1, MSG_NOSIGNAL);
}

/* connection_limit - max_connections, or what the descriptors allow */
static unsigned connection_limit(const struct server *srv)
{
	unsigned configured = srv->current->cfg.max_connections;
	return configured ? configured : srv->connections_auto;
}

/* admit - the limits that need the client's address, known only after a
 * PROXY header: max_per_ip (counted here, released in conn_free) and, on
 * an implicit-TLS listener, max_handshakes (its accepts pause at the limit,
 * but a header can complete while they are paused); the refusing limit, or
 * METRICS_REFUSED_REASONS */
static enum metrics_refused_reason admit(struct conn *c)
{
	const struct config_listener *cfg = c->listener->cfg;
	struct server *srv = c->srv;
	if (cfg->tls == CONFIG_TLS_IMPLICIT && srv->handshakes >= srv->current->cfg.max_handshakes)
		return METRICS_REFUSED_MAX_HANDSHAKES;
	const struct sockaddr_storage *a = &c->client_addr;
	if (cfg->max_per_ip == 0 || (a->ss_family != AF_INET && a->ss_family != AF_INET6))
		return METRICS_REFUSED_REASONS;
	const uint8_t *addr = a->ss_family == AF_INET
	                              ? (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr
	                              : (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr;
	ip_count_key(a->ss_family == AF_INET6, addr, (uint32_t)c->listener->metrics_index, &c->per_ip_key);
	/* A full table refuses too: memory stays bounded (ip_count.h). */
	if (ip_count_acquire(srv->per_ip, &c->per_ip_key, cfg->max_per_ip) != IP_COUNT_ADMITTED)
		return METRICS_REFUSED_MAX_PER_IP;
	c->per_ip_counted = true;
	return METRICS_REFUSED_REASONS;
}

/* conn_start - the client is known: reach the backend, and for implicit TLS
 * start the handshake (RFC 8314 section 3: TLS from the first byte) */
static void conn_start(struct conn *c)
{
	const struct config_listener *cfg = c->listener->cfg;
	enum metrics_refused_reason refused = admit(c);
	if (refused != METRICS_REFUSED_REASONS) {
		refuse_client(c->listener, c->cfd, refused);
		c->refused = true;
		conn_fail(c, refused_names[refused]);
		return;
	}
	ev_timer_again(c->srv->loop, &c->idle_timer);
	if (cfg->direction == CONFIG_OUTBOUND) {
		upstream_start(c);
		return;
	}
	c->backend_after_handshake =
	        cfg->tls == CONFIG_TLS_IMPLICIT && cfg->client_addr == CONFIG_CLIENT_ADDR_PROXY_V2;
	if (!c->backend_after_handshake)
		backend_start(c);
	if (cfg->tls == CONFIG_TLS_IMPLICIT)
		begin_handshake(c);
}

/* peer_listed - the peer may send a PROXY header (proxy_from) */
static bool peer_listed(const struct config_listener *cfg, const struct sockaddr *peer)
{
	if (cfg->n_proxy_from == 0)
		return true;
	const unsigned char *addr = peer->sa_family == AF_INET
	                                    ? (const unsigned char *)&((const struct sockaddr_in *)(const void *)peer)->sin_addr
	                                    : (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr;
	for (size_t i = 0; i < cfg->n_proxy_from; i++)
		if (config_network_contains(&cfg->proxy_from[i], peer->sa_family, addr))
			return true;
	return false;
}

/* xclient_addr - ADDR as XCLIENT wants it: IPv4, or "IPV6:" and the address */
static void xclient_addr(const struct sockaddr_storage *ss, char *buf, size_t len, unsigned *port_r)
{
	char text[INET6_ADDRSTRLEN] = "[UNAVAILABLE]";
	*port_r = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
		*port_r = ntohs(in->sin_port);
		snprintf(buf, len, "%s", text);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		*port_r = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, text, sizeof text);
			snprintf(buf, len, "%s", text);
		} else {
			inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
			snprintf(buf, len, "IPV6:%s", text);
		}
	} else {
		snprintf(buf, len, "%s", text);
	}
}

/* init_session - the session core for this connection's listener and client */
static void init_session(struct conn *c)
{
	const struct config_listener *cfg = c->listener->cfg;
	/* Outbound: the session is protected once TLS with the relay is up,
	 * as with implicit TLS (upstream_opening.h), and AUTH goes inside it. */
	bool outbound = cfg->direction == CONFIG_OUTBOUND;
	struct session_policy policy = {
		.tls_mode = cfg->tls == CONFIG_TLS_IMPLICIT || outbound ? SESSION_IMPLICIT : SESSION_STARTTLS,
		.require_tls = cfg->require_tls,
		.auth_before_tls = cfg->auth_before_tls || outbound,
		.xclient = cfg->client_addr == CONFIG_CLIENT_ADDR_XCLIENT,
		.proxy_helo = c->srv->hostname,
		.client_addr = c->xclient_addr,
		.trace_header = cfg->trace_header,
		.date = c->srv->date,
		.tls_suite = c->tls_suite,
	};
	xclient_addr(&c->client_addr, c->xclient_addr, sizeof c->xclient_addr, &policy.client_port);
	if (cfg->dane) {
		if (!c->domains && !(c->domains = malloc(sizeof *c->domains))) {
			/* Never without the check: the session does not start. */
			log_error("client %s: out of memory for the DANE verdicts", c->peer);
			conn_fail(c, "out-of-memory");
		} else {
			domain_decisions_init(c->domains);
		}
		policy.domains = c->domains;
	}
	session_init(&c->session, &policy);
}

/* ---- public ---- */

void conn_accept(struct listener *l, int fd, const struct sockaddr *peer)
{
	struct server *srv = l->server;
	metrics_add(&metrics_mine->counters.accepted[l->metrics_index], 1);
	/* Counted over every worker (metrics_shm.h): those accepting at the
	 * same moment may each let one more in. */
	if (metrics_shm_open_connections() >= connection_limit(srv)) {
		char where[64];
		format_addr(peer, where, sizeof where);
		log_debug("client %s: refused: max_connections", where);
		refuse_client(l, fd, METRICS_REFUSED_MAX_CONNECTIONS);
		close(fd);
		return;
	}
	/* Only the pages that are written become resident: the buffers
	 * stay untouched until data flows. */
	uint8_t *allocation = aligned_alloc(PAGE_SIZE_ASSUMED, CONN_ALLOCATION);
	struct conn *c = allocation ? (struct conn *)(allocation + CONN_SHIFT) : NULL;
	if (!c) {
		log_error("out of memory for a new connection");
		close(fd);
		return;
	}
	memset(c, 0, STATE_SIZE);
	metrics_add(&metrics_mine->gauges.open[l->metrics_index], 1);
	c->listener = l;
	generation_ref(l->gen); /* a reload does not pull it from under the session */
	c->srv = srv;
	c->cfd = fd;
	c->bfd = -1;
	c->client.writable = true;
	format_addr(peer, c->peer, sizeof c->peer);
	memcpy(&c->client_addr, peer, peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                                          : sizeof(struct sockaddr_in));

	init_session(c);

	transport_plain_init(&c->client.plain, fd);
	c->client.t = &c->client.plain;
	ev_io_init(&c->client.io, on_client_io, fd, 0);
	c->client.io.data = c;
	ev_io_init(&c->backend.io, on_backend_io, -1, 0);
	c->backend.io.data = c;
	ev_init(&c->handshake_timer, on_handshake_timeout);
	c->handshake_timer.data = c;
	ev_timer_init(&c->connect_timer, on_connect_timeout, l->cfg->connect_timeout, 0);
	c->connect_timer.data = c;
	ev_init(&c->idle_timer, on_idle_timeout);
	c->idle_timer.repeat = l->cfg->idle_timeout;
	c->idle_timer.data = c;
	ev_init(&c->linger_timer, on_linger_timeout);
	c->linger_timer.data = c;
	ev_timer_init(&c->session_timer, on_session_timeout, l->cfg->session_timeout, 0);
	c->session_timer.data = c;
	if (l->cfg->session_timeout > 0)
		ev_timer_start(srv->loop, &c->session_timer);
	ev_init(&c->data_rate_timer, on_data_rate_check);
	c->data_rate_timer.repeat = DATA_RATE_CHECK_SECONDS;
	c->data_rate_timer.data = c;
	ev_timer_init(&c->proxy_timer, on_proxy_timeout, PROXY_HEADER_SECONDS, 0);
	c->proxy_timer.data = c;

	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->n_conns++;
	if (srv->n_conns > srv->n_conns_peak)
		srv->n_conns_peak = srv->n_conns;

	log_debug("client %s: connected to listener %s (worker %ld)", c->peer, l->cfg->name, srv->worker_pid);
	if (l->cfg->accept_proxy && peer_listed(l->cfg, peer)) {
		/* PROXY protocol section 2: nothing before a valid header. */
		c->awaiting_proxy = true;
		c->client.readable = true;
		ev_timer_start(srv->loop, &c->proxy_timer);
	} else {
		c->refuse_proxy_header = l->cfg->accept_proxy;
		conn_start(c);
	}
	conn_run(c);
}

void conn_shutdown_all(struct server *srv)
{
	struct conn *c = srv->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (c->client.tls == SIDE_HANDSHAKE || c->start_tls) {
			conn_fail(c, "shutdown");
		} else {
			session_shutdown(&c->session);
		}
		conn_run(c);
	}
}

void conn_close_all(struct server *srv)
{
	struct conn *c = srv->conns, *next;
	for (; c; c = next) {
		next = c->next;
		conn_fail(c, "shutdown-timeout");
		conn_run(c);
	}
}

/* give_back_heap - after a burst of sessions has ended, hand the free heap
 * pages back to the system: glibc keeps them otherwise, and the pages that
 * thousands of TLS sessions touched stay resident (tens of MB). Only when
 * the count fell well below its peak, so that a steady load pays nothing. */
static void give_back_heap(struct server *srv)
{
	if (srv->n_conns_peak - srv->n_conns < TRIM_AFTER_CLOSED || srv->n_conns > srv->n_conns_peak / 2)
		return;
	malloc_trim(0);
	srv->n_conns_peak = srv->n_conns;
}

void conn_release_idle_buffers(struct server *srv)
{
	give_back_heap(srv);
	for (struct conn *c = srv->conns; c; c = c->next) {
		bool empty = c->cin_len == 0 && c->bin_len == 0 && buf_pending(&c->session.out_client) == 0 &&
		             buf_pending(&c->session.out_backend) == 0 &&
		             transport_pending(c->client.t) == 0 && transport_unsent(c->client.t) == 0;
		if (!c->io_since_sweep && !c->buffers_released && empty) {
			/* Private anonymous memory reads back as zeros: right for
			 * empty buffers. */
			uint8_t *start = c->session.out_client_storage;
			size_t len = (size_t)(c->tls_gather + TLS_GATHER_CAP - start);
			c->buffers_released = madvise(start, len, MADV_DONTNEED) == 0;
		}
		if (c->io_since_sweep)
			c->buffers_released = false;
		c->io_since_sweep = false;
	}
}
