/* loadgen.c - a load generator for SMTP proxies, on GnuTLS and libev
 *
 * Runs complete SMTP sessions over many concurrent connections and checks
 * every reply code on the way:
 *
 *   starttls   greeting, EHLO, STARTTLS, handshake, EHLO, MAIL, RCPT, DATA,
 *              the message, QUIT (RFC 3207)
 *   implicit   handshake, greeting, EHLO, MAIL, ... (RFC 8314)
 *   plain      greeting, EHLO, MAIL, ... with no TLS: the backend alone
 *   handshake  implicit TLS's handshake, then a close_notify and close: a
 *              flood of handshakes, as a botnet's ClientHellos would be
 *   hold       starttls up to the EHLO inside TLS, then idle (see --hold)
 *
 * With --messages-per-session N a session sends N messages, one after
 * another, before its QUIT, and each message's latency is timed on its own:
 * from sending MAIL to the 250 after the end of data (RFC 5321 4.1.1.4: the
 * transaction is over, the next MAIL starts a new one). The result line's
 * msg_p50_ms and msg_p99_ms are over all messages of all sessions.
 *
 * With --hold N the sessions stop after the first EHLO inside TLS (after
 * the EHLO in plain mode) and stay open; once all N are there it prints
 * "holding held=N failed=F", waits for --hold-seconds or a SIGUSR1, SIGINT
 * or SIGTERM, closes them and prints the result.
 *
 * A session that fails anywhere (a refused connection, a handshake error, an
 * unexpected reply code, a close, its time limit) is counted as failed and
 * never as done. The last line on stdout is the result, key=value pairs:
 *
 *   result mode=starttls ok=2000 failed=0 resumed=0 elapsed_s=1.234
 *          sessions_per_s=1620.7 p50_ms=2.95 p99_ms=7.10 message_bytes=1024
 *          mib_per_s=1.58 messages=2000 msg_p50_ms=1.412 msg_p99_ms=3.020
 *
 * The commands go one at a time, each after the reply to the one before (no
 * PIPELINING), so that every subject sees the same conversation. Certificates
 * are not verified: the subjects present test certificates, and the cost
 * measured is the server's.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <gnutls/gnutls.h>

/* TLS 1.3 only, as the benchmark compares every subject on it. */
#define DEFAULT_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"

/* A reply may span several lines; the longest EHLO reply seen in practice is
 * far below this. A reply that does not fit fails the session. */
#define REPLY_CAPACITY 8192

/* Message lines are this long, CRLF included (RFC 5322 recommends 78). */
#define MESSAGE_LINE 78
/* Every this many lines, a line starts with a dot, stuffed (RFC 5321 4.5.2). */
#define DOT_LINE_EVERY 16

/* At most this many failures are described on stderr; the rest are counted. */
#define FAILURES_SHOWN 5

enum mode { MODE_STARTTLS, MODE_IMPLICIT, MODE_PLAIN, MODE_HANDSHAKE };

enum step_kind {
	STEP_CONNECT,   /* the TCP connection */
	STEP_HANDSHAKE, /* the TLS handshake */
	STEP_REPLY,     /* send the command (if any), then read one reply */
	STEP_MESSAGE,   /* send the message and its end, then read one reply */
	STEP_DONE,      /* the session is complete */
};

struct step {
	const char *name;
	enum step_kind kind;
	const char *command; /* NULL for the greeting, which comes unasked */
	int expect;          /* the reply code that lets the session go on */
	bool wants_starttls; /* the reply must offer STARTTLS */
	bool hold_point;     /* with --hold, the session stops after this step */
	bool opens_message;  /* MAIL: a message's latency starts when it is sent */
};

#define EHLO_COMMAND "EHLO loadgen.example.org\r\n"

/* One table per mode: the conversation, step by step. */
static const struct step starttls_script[] = {
    {"connect", STEP_CONNECT, NULL, 0, false, false, false},
    {"greeting", STEP_REPLY, NULL, 220, false, false, false},
    {"EHLO", STEP_REPLY, EHLO_COMMAND, 250, true, false, false},
    {"STARTTLS", STEP_REPLY, "STARTTLS\r\n", 220, false, false, false},
    {"handshake", STEP_HANDSHAKE, NULL, 0, false, false, false},
    {"EHLO in TLS", STEP_REPLY, EHLO_COMMAND, 250, false, true, false},
    {"MAIL", STEP_REPLY, "MAIL FROM:<loadgen@example.org>\r\n", 250, false, false, true},
    {"RCPT", STEP_REPLY, "RCPT TO:<sink@example.org>\r\n", 250, false, false, false},
    {"DATA", STEP_REPLY, "DATA\r\n", 354, false, false, false},
    {"message", STEP_MESSAGE, NULL, 250, false, false, false},
    {"QUIT", STEP_REPLY, "QUIT\r\n", 221, false, false, false},
    {"done", STEP_DONE, NULL, 0, false, false, false},
};

static const struct step implicit_script[] = {
    {"connect", STEP_CONNECT, NULL, 0, false, false, false},
    {"handshake", STEP_HANDSHAKE, NULL, 0, false, false, false},
    {"greeting", STEP_REPLY, NULL, 220, false, false, false},
    {"EHLO in TLS", STEP_REPLY, EHLO_COMMAND, 250, false, true, false},
    {"MAIL", STEP_REPLY, "MAIL FROM:<loadgen@example.org>\r\n", 250, false, false, true},
    {"RCPT", STEP_REPLY, "RCPT TO:<sink@example.org>\r\n", 250, false, false, false},
    {"DATA", STEP_REPLY, "DATA\r\n", 354, false, false, false},
    {"message", STEP_MESSAGE, NULL, 250, false, false, false},
    {"QUIT", STEP_REPLY, "QUIT\r\n", 221, false, false, false},
    {"done", STEP_DONE, NULL, 0, false, false, false},
};

static const struct step plain_script[] = {
    {"connect", STEP_CONNECT, NULL, 0, false, false, false},
    {"greeting", STEP_REPLY, NULL, 220, false, false, false},
    {"EHLO", STEP_REPLY, EHLO_COMMAND, 250, false, true, false},
    {"MAIL", STEP_REPLY, "MAIL FROM:<loadgen@example.org>\r\n", 250, false, false, true},
    {"RCPT", STEP_REPLY, "RCPT TO:<sink@example.org>\r\n", 250, false, false, false},
    {"DATA", STEP_REPLY, "DATA\r\n", 354, false, false, false},
    {"message", STEP_MESSAGE, NULL, 250, false, false, false},
    {"QUIT", STEP_REPLY, "QUIT\r\n", 221, false, false, false},
    {"done", STEP_DONE, NULL, 0, false, false, false},
};

static const struct step handshake_script[] = {
    {"connect", STEP_CONNECT, NULL, 0, false, false, false},
    {"handshake", STEP_HANDSHAKE, NULL, 0, false, false, false},
    {"done", STEP_DONE, NULL, 0, false, false, false},
};

struct options {
	const char *host;
	const char *port;
	enum mode mode;
	unsigned concurrency;
	unsigned sessions;
	size_t size;
	const char *priority;
	bool resume;
	unsigned messages;   /* per session, each timed (--messages-per-session) */
	unsigned hold;       /* 0: run complete sessions */
	double hold_seconds; /* how long held sessions stay open at most */
	double timeout;      /* per session */
	double time_limit;   /* for the whole run */
};

/* What one step of a session came to. */
enum progress {
	PROGRESS_BLOCKED, /* waiting for the socket */
	PROGRESS_STEP,    /* the step is complete */
	PROGRESS_FAILED,  /* the session has failed; the reason is in the conn */
};

struct loadgen;

/* One session on one connection. */
struct conn {
	struct loadgen *lg;
	ev_io io;
	ev_timer timer;
	int fd;
	int io_events;        /* what io is started for; 0 when stopped */
	gnutls_session_t tls; /* NULL until the handshake step */
	const struct step *step;
	const char *out; /* what is left to send for this step */
	size_t out_len;
	size_t in_len;
	ev_tstamp started;
	ev_tstamp message_started;
	unsigned messages_done;
	ev_tstamp held_at;
	bool held;
	char failure[160];
	char in[REPLY_CAPACITY];
};

/* The run: its options, its shared TLS objects and its counters. Owned by
 * the event loop; nothing else changes it. */
struct loadgen {
	struct ev_loop *loop;
	struct options opt;
	const struct step *script;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	gnutls_certificate_credentials_t creds;
	gnutls_priority_t priority;
	gnutls_datum_t resume_data; /* from the last session that got a ticket */
	char *message;              /* the message, dot-stuffed, with its end */
	size_t message_len;
	unsigned target; /* sessions to run (or to hold) */
	unsigned started;
	unsigned in_flight; /* started, neither finished nor holding */
	unsigned ok;
	unsigned failed;
	unsigned resumed;
	unsigned held;
	bool holding;  /* every session is held or has failed */
	bool starting; /* session_start is on the stack */
	bool stopping;
	ev_tstamp t_start;
	ev_tstamp t_end;
	double *latencies_ms; /* one per session done */
	double *message_ms;   /* one per message accepted */
	unsigned messages;
	struct conn **conns;  /* every open connection, for the time limit */
	size_t conns_len;
	ev_timer limit_timer;
	ev_timer hold_timer;
	ev_signal sig_int, sig_term, sig_usr1;
};

static void session_start(struct loadgen *lg);
static void check_holding(struct loadgen *lg);
static void conn_advance(struct conn *c);
static ssize_t transport_recv(struct conn *c);

/* die - report a broken environment or bad usage and exit */
static void die(const char *what, const char *detail)
{
	fprintf(stderr, "loadgen: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

/* xcalloc - calloc that treats exhaustion as fatal: the run's numbers would be
 * meaningless without the memory */
static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (!p)
		die("out of memory", NULL);
	return p;
}

/* message_build - the message: SIZE octets of header and body in lines ending
 * in CRLF, some of them starting with a stuffed dot, then the end-of-data line */
static char *message_build(size_t size, size_t *len_r)
{
	static const char header[] = "From: <loadgen@example.org>\r\n"
	                             "To: <sink@example.org>\r\n"
	                             "Subject: loadgen\r\n"
	                             "\r\n";
	static const char pattern[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	static const char end[] = ".\r\n";
	char *m = xcalloc(1, size + sizeof end);
	size_t pos = sizeof header - 1;
	memcpy(m, header, pos);
	for (unsigned line = 0; pos < size; line++) {
		size_t room = size - pos;
		size_t n = room < MESSAGE_LINE ? room : MESSAGE_LINE;
		/* Never leave a remainder too short to be a line of its own. */
		if (room - n < 2)
			n = room;
		size_t text = n - 2;
		for (size_t i = 0; i < text; i++)
			m[pos + i] = pattern[(line + i) % (sizeof pattern - 1)];
		if (line % DOT_LINE_EVERY == 0 && text >= 2)
			memcpy(m + pos, "..", 2);
		memcpy(m + pos + text, "\r\n", 2);
		pos += n;
	}
	memcpy(m + pos, end, sizeof end - 1);
	*len_r = pos + sizeof end - 1;
	return m;
}

/* conn_fail - mark the session failed at its current step, with a reason */
static enum progress conn_fail(struct conn *c, const char *reason)
{
	snprintf(c->failure, sizeof c->failure, "at %s: %s", c->step->name, reason);
	return PROGRESS_FAILED;
}

/* conn_watch - the one place that decides which socket events a connection
 * waits for: EVENTS, or none */
static void conn_watch(struct conn *c, int events)
{
	if (c->io_events == events)
		return;
	ev_io_stop(c->lg->loop, &c->io);
	if (events) {
		ev_io_set(&c->io, c->fd, events);
		ev_io_start(c->lg->loop, &c->io);
	}
	c->io_events = events;
}

/* conn_remember_ticket - keep the session's resumption data for the next
 * connection; under TLS 1.3 only once a ticket has arrived (asking earlier
 * would make GnuTLS wait for one) */
static void conn_remember_ticket(struct conn *c)
{
	struct loadgen *lg = c->lg;
	if (!lg->opt.resume || !c->tls)
		return;
	if (!(gnutls_session_get_flags(c->tls) & GNUTLS_SFLAGS_SESSION_TICKET))
		return;
	gnutls_datum_t data;
	if (gnutls_session_get_data2(c->tls, &data) < 0)
		return;
	gnutls_free(lg->resume_data.data);
	lg->resume_data = data;
}

/* conn_close - end the session: count it, free the connection, and let the
 * next one start */
static void conn_close(struct conn *c, bool ok)
{
	struct loadgen *lg = c->lg;
	ev_tstamp now = ev_now(lg->loop);

	if (ok) {
		/* A held session's latency is the time it took to be held. */
		ev_tstamp end = c->held ? c->held_at : now;
		lg->latencies_ms[lg->ok++] = (end - c->started) * 1000.0;
		if (c->tls && gnutls_session_is_resumed(c->tls))
			lg->resumed++;
		conn_remember_ticket(c);
	} else {
		if (lg->failed < FAILURES_SHOWN)
			fprintf(stderr, "loadgen: session failed %s\n", c->failure);
		lg->failed++;
	}
	if (c->held)
		lg->held--;
	else
		lg->in_flight--;

	conn_watch(c, 0);
	ev_timer_stop(lg->loop, &c->timer);
	if (c->tls) {
		/* close_notify, as a polite client sends; no wait for the peer's */
		if (ok)
			gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c->tls);
	}
	close(c->fd);
	for (size_t i = 0; i < lg->conns_len; i++) {
		if (lg->conns[i] == c) {
			lg->conns[i] = lg->conns[--lg->conns_len];
			break;
		}
	}
	free(c);
	if (!lg->holding)
		lg->t_end = now;

	if (!lg->stopping)
		session_start(lg);
	if (lg->opt.hold)
		check_holding(lg);
	if (lg->conns_len == 0 && lg->started == lg->target)
		ev_break(lg->loop, EVBREAK_ALL);
}

/* conn_timeout_cb - the session took longer than --timeout */
static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct conn *c = w->data;
	conn_fail(c, "timed out");
	conn_close(c, false);
}

/* conn_check_held - a held session's socket is readable: a close, or bytes
 * nobody asked for (a TLS 1.3 ticket is consumed inside GnuTLS), end it */
static void conn_check_held(struct conn *c)
{
	ssize_t n = transport_recv(c);
	if (n == 0)
		return;
	if (n > 0)
		conn_fail(c, "the server spoke while the session was held");
	conn_close(c, false);
}

/* conn_io_cb - the socket is ready: take the session as far as it goes */
static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct conn *c = w->data;
	if (c->held)
		conn_check_held(c);
	else
		conn_advance(c);
}

/* transport_send - send from the step's output; >0 sent, 0 blocked, <0 error */
static ssize_t transport_send(struct conn *c)
{
	if (c->tls) {
		ssize_t n = gnutls_record_send(c->tls, c->out, c->out_len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			return 0;
		if (n < 0)
			conn_fail(c, gnutls_strerror((int)n));
		return n;
	}
	ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		conn_fail(c, strerror(errno));
	return n;
}

/* transport_recv - read into the reply buffer; >0 read, 0 blocked, <0 error
 * or end of stream */
static ssize_t transport_recv(struct conn *c)
{
	size_t room = sizeof c->in - c->in_len;
	if (room == 0) {
		conn_fail(c, "reply too long");
		return -1;
	}
	ssize_t n;
	if (c->tls) {
		n = gnutls_record_recv(c->tls, c->in + c->in_len, room);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			return 0;
		if (n < 0) {
			conn_fail(c, gnutls_strerror((int)n));
			return -1;
		}
	} else {
		n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0) {
			conn_fail(c, strerror(errno));
			return -1;
		}
	}
	if (n == 0) {
		conn_fail(c, "connection closed by the server");
		return -1;
	}
	c->in_len += (size_t)n;
	return n;
}

/* reply_end - the length of the complete reply at the start of BUF, or 0
 * when more is to come; *code_r is its code, -1 if the reply is malformed
 * (RFC 5321 4.2: "ddd-text" lines, then one "ddd text" or "ddd" line) */
static size_t reply_end(const char *buf, size_t len, int *code_r)
{
	size_t pos = 0;
	int code = -1;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		if (!nl)
			return 0;
		size_t line_len = (size_t)(nl - (buf + pos)) + 1;
		const char *line = buf + pos;
		pos += line_len;
		bool digits = line_len >= 4 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' &&
		              line[1] <= '9' && line[2] >= '0' && line[2] <= '9';
		int line_code = digits ? (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') : -1;
		if (line_code < 0 || (code >= 0 && line_code != code)) {
			*code_r = -1;
			return pos;
		}
		code = line_code;
		if (line[3] != '-') {
			*code_r = code;
			return pos;
		}
	}
	return 0;
}

/* reply_offers - whether an EHLO reply lists the keyword KW (a whole word
 * after the "250-" or "250 ") */
static bool reply_offers(const char *reply, size_t len, const char *kw)
{
	size_t kw_len = strlen(kw);
	for (size_t pos = 0; pos + 4 + kw_len <= len;) {
		const char *word = reply + pos + 4;
		if (strncasecmp(word, kw, kw_len) == 0 &&
		    (word[kw_len] == '\r' || word[kw_len] == '\n' || word[kw_len] == ' '))
			return true;
		const char *nl = memchr(reply + pos, '\n', len - pos);
		if (!nl)
			break;
		pos = (size_t)(nl - reply) + 1;
	}
	return false;
}

/* conn_connect_step - wait for the TCP connection and check its outcome */
static enum progress conn_connect_step(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (!(c->io_events & EV_WRITE))
		return PROGRESS_BLOCKED; /* not yet polled since connect() */
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == EINPROGRESS)
		return PROGRESS_BLOCKED;
	if (err)
		return conn_fail(c, strerror(err));
	return PROGRESS_STEP;
}

/* conn_handshake_step - start TLS on the connection, or go on with the
 * handshake */
static enum progress conn_handshake_step(struct conn *c)
{
	struct loadgen *lg = c->lg;
	if (!c->tls) {
		if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0)
			return conn_fail(c, "gnutls_init failed");
		if (gnutls_priority_set(c->tls, lg->priority) < 0 ||
		    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, lg->creds) < 0)
			return conn_fail(c, "cannot set up the TLS session");
		if (lg->opt.resume && lg->resume_data.size > 0)
			gnutls_session_set_data(c->tls, lg->resume_data.data, lg->resume_data.size);
		gnutls_transport_set_int(c->tls, c->fd);
	}
	int r = gnutls_handshake(c->tls);
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return PROGRESS_BLOCKED;
	if (r < 0)
		return conn_fail(c, gnutls_strerror(r));
	return PROGRESS_STEP;
}

/* conn_exchange_step - send what the step has to send, then read its reply
 * and check the code */
static enum progress conn_exchange_step(struct conn *c)
{
	while (c->out_len > 0) {
		ssize_t n = transport_send(c);
		if (n < 0)
			return PROGRESS_FAILED;
		if (n == 0)
			return PROGRESS_BLOCKED;
		c->out += n;
		c->out_len -= (size_t)n;
	}
	/* Read before waiting: GnuTLS may hold decrypted bytes that the socket
	 * no longer shows. */
	int code = 0;
	size_t end;
	while ((end = reply_end(c->in, c->in_len, &code)) == 0) {
		ssize_t n = transport_recv(c);
		if (n < 0)
			return PROGRESS_FAILED;
		if (n == 0)
			return PROGRESS_BLOCKED;
	}
	if (code != c->step->expect) {
		char why[120];
		int shown = (int)(end < 80 ? end : 80);
		while (shown > 0 && (c->in[shown - 1] == '\r' || c->in[shown - 1] == '\n'))
			shown--;
		snprintf(why, sizeof why, "expected %d, got \"%.*s\"", c->step->expect, shown, c->in);
		return conn_fail(c, why);
	}
	if (c->step->wants_starttls && !reply_offers(c->in, end, "STARTTLS"))
		return conn_fail(c, "STARTTLS not offered");
	/* One command, one reply: anything more is a server speaking out of
	 * turn, and before a handshake it would be an injection (RFC 3207 5). */
	if (end != c->in_len)
		return conn_fail(c, "unexpected bytes after the reply");
	c->in_len = 0;
	return PROGRESS_STEP;
}

/* conn_enter_step - set up the output of the step the session has reached */
static void conn_enter_step(struct conn *c)
{
	const struct step *s = c->step;
	if (s->opens_message) {
		/* The clock's own time, not the loop's: the loop's was taken
		 * before this turn's work. */
		ev_now_update(c->lg->loop);
		c->message_started = ev_now(c->lg->loop);
	}
	if (s->kind == STEP_MESSAGE) {
		c->out = c->lg->message;
		c->out_len = c->lg->message_len;
	} else if (s->command) {
		c->out = s->command;
		c->out_len = strlen(s->command);
	} else {
		c->out = NULL;
		c->out_len = 0;
	}
}

/* check_holding - once every session is held or has failed, say so and
 * start the hold's clock */
static void check_holding(struct loadgen *lg)
{
	if (lg->holding || lg->stopping || lg->started < lg->target || lg->in_flight > 0)
		return;
	lg->holding = true;
	lg->t_end = ev_now(lg->loop);
	printf("holding held=%u failed=%u\n", lg->held, lg->failed);
	fflush(stdout);
	ev_timer_start(lg->loop, &lg->hold_timer);
}

/* conn_hold - park the session: it stays open and idle until the run ends,
 * watched only for the server closing it */
static void conn_hold(struct conn *c)
{
	struct loadgen *lg = c->lg;
	c->held = true;
	c->held_at = ev_now(lg->loop);
	ev_timer_stop(lg->loop, &c->timer);
	conn_watch(c, EV_READ);
	lg->in_flight--;
	lg->held++;
	session_start(lg);
	check_holding(lg);
}

/* conn_message_done - the 250 after a message's end of data: time the
 * message, and go back to MAIL while the session has messages left */
static bool conn_message_done(struct conn *c)
{
	struct loadgen *lg = c->lg;
	lg->message_ms[lg->messages++] = (ev_now(lg->loop) - c->message_started) * 1000.0;
	if (++c->messages_done >= lg->opt.messages)
		return false;
	while (!c->step->opens_message)
		c->step--;
	conn_enter_step(c);
	return true;
}

/* conn_advance - run the session until it must wait for its socket, fails,
 * is held or is done; then wait for the events that the step needs */
static void conn_advance(struct conn *c)
{
	for (;;) {
		enum progress p;
		switch (c->step->kind) {
		case STEP_CONNECT:
			p = conn_connect_step(c);
			break;
		case STEP_HANDSHAKE:
			p = conn_handshake_step(c);
			break;
		case STEP_REPLY:
		case STEP_MESSAGE:
			p = conn_exchange_step(c);
			break;
		case STEP_DONE:
			conn_close(c, true);
			return;
		default:
			abort();
		}
		if (p == PROGRESS_FAILED) {
			conn_close(c, false);
			return;
		}
		if (p == PROGRESS_BLOCKED)
			break;
		if (c->step->hold_point && c->lg->opt.hold > 0) {
			conn_hold(c);
			return;
		}
		if (c->step->kind == STEP_MESSAGE && conn_message_done(c))
			continue; /* the next message's MAIL */
		c->step++;
		conn_enter_step(c);
	}

	int events;
	if (c->step->kind == STEP_CONNECT)
		events = EV_WRITE;
	else if (c->step->kind == STEP_HANDSHAKE)
		events = gnutls_record_get_direction(c->tls) ? EV_WRITE : EV_READ;
	else
		events = c->out_len > 0 ? EV_WRITE : EV_READ;
	conn_watch(c, events);
}

/* session_start - open new sessions while the concurrency and the count
 * allow; a call from inside the loop (a session that failed at once) leaves
 * the work to the loop, so the stack stays flat */
static void session_start(struct loadgen *lg)
{
	if (lg->starting)
		return;
	lg->starting = true;
	while (lg->in_flight < lg->opt.concurrency && lg->started < lg->target) {
		struct conn *c = xcalloc(1, sizeof *c);
		c->lg = lg;
		c->step = lg->script;
		c->started = ev_now(lg->loop);
		ev_init(&c->io, conn_io_cb);
		c->io.data = c;
		ev_timer_init(&c->timer, conn_timeout_cb, lg->opt.timeout, 0.);
		c->timer.data = c;
		ev_timer_start(lg->loop, &c->timer);
		lg->conns[lg->conns_len++] = c;
		lg->started++;
		lg->in_flight++;

		c->fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0) {
			conn_fail(c, strerror(errno));
			conn_close(c, false);
			continue;
		}
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(c->fd, (struct sockaddr *)&lg->addr, lg->addr_len) < 0 && errno != EINPROGRESS) {
			conn_fail(c, strerror(errno));
			conn_close(c, false);
			continue;
		}
		conn_advance(c);
	}
	lg->starting = false;
}

/* stop_all - close every open session: the held ones as done, the others as
 * failed (the time limit came first) */
static void stop_all(struct loadgen *lg, const char *reason)
{
	lg->stopping = true;
	while (lg->conns_len > 0) {
		struct conn *c = lg->conns[lg->conns_len - 1];
		if (c->held) {
			conn_close(c, true);
		} else {
			conn_fail(c, reason);
			conn_close(c, false);
		}
	}
	ev_break(lg->loop, EVBREAK_ALL);
}

/* limit_cb - the whole run has reached --time-limit */
static void limit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct loadgen *lg = w->data;
	/* Sessions never started are failures too: the run was asked for them. */
	lg->failed += lg->target - lg->started;
	lg->started = lg->target;
	stop_all(lg, "run time limit reached");
}

/* hold_over_cb - the held sessions have been held long enough */
static void hold_over_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	stop_all(w->data, "the hold time ran out");
}

/* signal_cb - SIGUSR1, SIGINT or SIGTERM: end the hold, or the run */
static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	struct loadgen *lg = w->data;
	lg->failed += lg->target - lg->started;
	lg->started = lg->target;
	stop_all(lg, "stopped by a signal");
}

/* compare_double - qsort order for latencies */
static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* percentile - the nearest-rank percentile P of N sorted values */
static double percentile(const double *sorted, unsigned n, double p)
{
	if (n == 0)
		return 0.0;
	double rank = p / 100.0 * n;
	unsigned i = (unsigned)rank;
	if ((double)i < rank)
		i++;
	return sorted[i > 0 ? i - 1 : 0];
}

/* print_result - the machine-readable result line */
static void print_result(struct loadgen *lg)
{
	static const char *mode_names[] = {"starttls", "implicit", "plain", "handshake"};
	double elapsed = lg->t_end > lg->t_start ? lg->t_end - lg->t_start : 0.0;
	qsort(lg->latencies_ms, lg->ok, sizeof *lg->latencies_ms, compare_double);
	qsort(lg->message_ms, lg->messages, sizeof *lg->message_ms, compare_double);
	double mib = (double)lg->messages * (double)lg->opt.size / (1024.0 * 1024.0);
	printf("result mode=%s%s ok=%u failed=%u resumed=%u elapsed_s=%.3f sessions_per_s=%.1f "
	       "p50_ms=%.2f p99_ms=%.2f message_bytes=%zu mib_per_s=%.2f messages=%u msg_p50_ms=%.3f "
	       "msg_p99_ms=%.3f\n",
	       mode_names[lg->opt.mode], lg->opt.hold ? "-hold" : "", lg->ok, lg->failed, lg->resumed,
	       elapsed, elapsed > 0 ? lg->ok / elapsed : 0.0, percentile(lg->latencies_ms, lg->ok, 50),
	       percentile(lg->latencies_ms, lg->ok, 99), lg->opt.hold ? (size_t)0 : lg->opt.size,
	       elapsed > 0 && !lg->opt.hold ? mib / elapsed : 0.0, lg->messages,
	       percentile(lg->message_ms, lg->messages, 50), percentile(lg->message_ms, lg->messages, 99));
	fflush(stdout);
}

/* usage - how to call it, on stderr; exits 2 */
static void usage(void)
{
	fprintf(stderr, "usage: loadgen --port PORT [options]\n"
	                "  --host ADDR           server address (default 127.0.0.1)\n"
	                "  --port PORT           server port (required)\n"
	                "  --mode MODE           starttls, implicit, plain, handshake or hold (default starttls)\n"
	                "  --concurrency N       sessions at once (default 50)\n"
	                "  --sessions N          sessions in all (default 1000)\n"
	                "  --size BYTES          message size (default 1024)\n"
	                "  --messages-per-session N  messages in each session, each timed (default 1)\n"
	                "  --priority STRING     GnuTLS priority (default " DEFAULT_PRIORITY ")\n"
	                "  --resume on|off       reuse the last session ticket (default off)\n"
	                "  --hold N              open N sessions to the EHLO inside TLS and hold them\n"
	                "                        (mode hold: 1000 by default)\n"
	                "  --hold-seconds S      hold them at most S seconds (default 30)\n"
	                "  --timeout S           time limit per session (default 30)\n"
	                "  --time-limit S        time limit for the run (default 120)\n");
	exit(2);
}

/* parse_count - a positive count option, or a usage error */
static unsigned parse_count(const char *name, const char *s, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v == 0 || v > max || s[0] == '-')
		die("bad value for option", name);
	return (unsigned)v;
}

/* parse_seconds - a positive duration option in seconds */
static double parse_seconds(const char *name, const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || end == s || !(v > 0))
		die("bad value for option", name);
	return v;
}

/* parse_options - the command line into OPT */
static void parse_options(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"mode", required_argument, NULL, 'm'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"sessions", required_argument, NULL, 'n'},
	    {"size", required_argument, NULL, 's'},
	    {"messages-per-session", required_argument, NULL, 'M'},
	    {"priority", required_argument, NULL, 'P'},
	    {"resume", required_argument, NULL, 'r'},
	    {"hold", required_argument, NULL, 'h'},
	    {"hold-seconds", required_argument, NULL, 'S'},
	    {"timeout", required_argument, NULL, 't'},
	    {"time-limit", required_argument, NULL, 'T'},
	    {NULL, 0, NULL, 0},
	};
	*opt = (struct options){
	    .host = "127.0.0.1",
	    .mode = MODE_STARTTLS,
	    .concurrency = 50,
	    .sessions = 1000,
	    .size = 1024,
	    .messages = 1,
	    .priority = DEFAULT_PRIORITY,
	    .hold_seconds = 30,
	    .timeout = 30,
	    .time_limit = 120,
	};
	bool hold_mode = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			opt->host = optarg;
			break;
		case 'p':
			opt->port = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "starttls") == 0)
				opt->mode = MODE_STARTTLS;
			else if (strcmp(optarg, "implicit") == 0)
				opt->mode = MODE_IMPLICIT;
			else if (strcmp(optarg, "plain") == 0)
				opt->mode = MODE_PLAIN;
			else if (strcmp(optarg, "handshake") == 0)
				opt->mode = MODE_HANDSHAKE;
			else if (strcmp(optarg, "hold") == 0)
				hold_mode = true;
			else
				die("unknown mode", optarg);
			break;
		case 'c':
			opt->concurrency = parse_count("--concurrency", optarg, 1000000);
			break;
		case 'n':
			opt->sessions = parse_count("--sessions", optarg, 100000000);
			break;
		case 's':
			opt->size = parse_count("--size", optarg, 1UL << 30);
			break;
		case 'M':
			opt->messages = parse_count("--messages-per-session", optarg, 1000000);
			break;
		case 'P':
			opt->priority = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
				die("--resume takes on or off", optarg);
			opt->resume = strcmp(optarg, "on") == 0;
			break;
		case 'h':
			opt->hold = parse_count("--hold", optarg, 1000000);
			break;
		case 'S':
			opt->hold_seconds = parse_seconds("--hold-seconds", optarg);
			break;
		case 't':
			opt->timeout = parse_seconds("--timeout", optarg);
			break;
		case 'T':
			opt->time_limit = parse_seconds("--time-limit", optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !opt->port)
		usage();
	if (hold_mode && opt->hold == 0)
		opt->hold = 1000;
}

/* resolve - the server's address into LG */
static void resolve(struct loadgen *lg)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	int r = getaddrinfo(lg->opt.host, lg->opt.port, &hints, &res);
	if (r != 0)
		die("cannot resolve the server", gai_strerror(r));
	memcpy(&lg->addr, res->ai_addr, res->ai_addrlen);
	lg->addr_len = res->ai_addrlen;
	freeaddrinfo(res);
}

/* raise_fd_limit - as many descriptors as the hard limit allows: a held
 * session takes one */
static void raise_fd_limit(unsigned needed)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)needed + 16)
		die("too few file descriptors for the sessions (raise ulimit -n)", NULL);
}

/* tls_setup - the credentials and priority every session shares */
static void tls_setup(struct loadgen *lg)
{
	const char *err_pos = NULL;
	if (gnutls_global_init() < 0)
		die("GnuTLS initialisation failed", NULL);
	if (gnutls_certificate_allocate_credentials(&lg->creds) < 0)
		die("out of memory", NULL);
	if (gnutls_priority_init(&lg->priority, lg->opt.priority, &err_pos) < 0)
		die("bad priority string at", err_pos);
}

int main(int argc, char **argv)
{
	struct loadgen *lg = xcalloc(1, sizeof *lg);
	parse_options(argc, argv, &lg->opt);
	const struct step *scripts[] = {starttls_script, implicit_script, plain_script, handshake_script};
	lg->script = scripts[lg->opt.mode];
	lg->target = lg->opt.hold ? lg->opt.hold : lg->opt.sessions;
	if (lg->opt.concurrency > lg->target)
		lg->opt.concurrency = lg->target;

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(lg->opt.hold ? lg->opt.hold + lg->opt.concurrency : lg->opt.concurrency);
	resolve(lg);
	tls_setup(lg);
	lg->message = message_build(lg->opt.size, &lg->message_len);
	lg->latencies_ms = xcalloc(lg->target, sizeof *lg->latencies_ms);
	lg->message_ms = xcalloc((size_t)lg->target * lg->opt.messages, sizeof *lg->message_ms);
	lg->conns = xcalloc(lg->target, sizeof *lg->conns);

	lg->loop = EV_DEFAULT;
	ev_timer_init(&lg->limit_timer, limit_cb, lg->opt.time_limit, 0.);
	lg->limit_timer.data = lg;
	ev_timer_start(lg->loop, &lg->limit_timer);
	ev_timer_init(&lg->hold_timer, hold_over_cb, lg->opt.hold_seconds, 0.);
	lg->hold_timer.data = lg;
	ev_signal *sigs[] = {&lg->sig_int, &lg->sig_term, &lg->sig_usr1};
	int signums[] = {SIGINT, SIGTERM, SIGUSR1};
	for (size_t i = 0; i < 3; i++) {
		ev_signal_init(sigs[i], signal_cb, signums[i]);
		sigs[i]->data = lg;
		ev_signal_start(lg->loop, sigs[i]);
	}

	ev_now_update(lg->loop);
	lg->t_start = ev_now(lg->loop);
	session_start(lg);
	if (lg->conns_len > 0)
		ev_run(lg->loop, 0);
	print_result(lg);

	gnutls_free(lg->resume_data.data);
	gnutls_priority_deinit(lg->priority);
	gnutls_certificate_free_credentials(lg->creds);
	gnutls_global_deinit();
	free(lg->conns);
	free(lg->latencies_ms);
	free(lg->message_ms);
	free(lg->message);
	int status = lg->failed > 0 ? 1 : 0;
	free(lg);
	return status;
}
