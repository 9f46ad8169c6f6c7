/* session.h - one SMTP session between a client and the backend, as a pure
 * state machine
 *
 * Bytes from each side go in; bytes for each side and a few actions come
 * out. Nothing here touches a socket, a timer, TLS, the clock or a log: the
 * edge (conn.c) reads and writes, runs the timers and the TLS handshake, and
 * applies the actions.
 *
 * Feeding: session_from_client() and session_from_backend() return how many
 * of the offered bytes they used. Fewer than offered means "not now": the
 * session waits for a reply, or the output towards the other side is full.
 * The edge keeps the rest, offers it again after the next event, and stops
 * reading a side whose input buffer is full. A partial line is never used:
 * the edge's input buffers must hold at least SESSION_AUTH_LINE_MAX bytes,
 * and a line that is still incomplete after its limit is too long.
 *
 * Output: session_output_to_*() show the bytes ready for each side, and
 * session_sent_to_*() say how many were written.
 */
#ifndef STARTTLSD_SESSION_H
#define STARTTLSD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "domain_policy.h"

/* Longest command or reply line the session parses, CRLF included.
 * RFC 5321 section 4.5.3.1.4 allows 512; extensions (AUTH, long
 * addresses) need more, and INTERFACE.md promises at least 2048. */
#define SESSION_LINE_MAX 4096
/* AUTH lines, SASL responses and challenges: RFC 4954 section 4 lets them
 * run to 12288 octets (GSSAPI tokens do), CRLF included. Only they. */
#define SESSION_AUTH_LINE_MAX 12288

#define SESSION_OUT_CAP 16384
#define SESSION_QUEUE_MAX 128

enum session_tls_mode { SESSION_STARTTLS, SESSION_IMPLICIT };

struct session_policy {
	enum session_tls_mode tls_mode;
	bool require_tls;     /* 530 before TLS for all but EHLO HELO STARTTLS NOOP RSET QUIT */
	bool auth_before_tls; /* show and relay AUTH before TLS */
	/* client_addr = xclient: after the greeting the proxy sends its own
	 * EHLO (as proxy_helo), then XCLIENT with the client's address and
	 * port, before any command of the client's (Postfix XCLIENT_README) */
	bool xclient;
	const char *proxy_helo;  /* a domain or address literal */
	const char *client_addr; /* "192.0.2.7" or "IPV6:2001:db8::7" */
	unsigned client_port;
	/* trace_header: a Received line before every message (trace.h);
	 * the edge keeps the strings behind these pointers current */
	bool trace_header;
	const char *date;      /* RFC 5322 date-time, now */
	const char *tls_suite; /* the cipher suite once TLS is up */
	/* dane = yes: a RCPT whose domain has no verdict yet waits for one
	 * (ACT_DOMAIN_POLICY); the edge owns the memory. NULL: no check. */
	struct domain_decisions *domains;
};

/* What the edge must do; session_next_action() hands them out one at a time
 * in this order of precedence. */
enum session_action {
	ACT_NONE = 0,
	ACT_CLOSE_NOW,         /* close both connections, nothing more to write */
	ACT_DROP_BACKEND,      /* close the backend connection at once, unflushed */
	ACT_START_TLS,         /* write all output to the client, then handshake */
	ACT_CLOSE_AFTER_FLUSH, /* write all output to the client, then close both */
	ACT_DOMAIN_POLICY,     /* decide session_domain_wanted(), then session_domain_decided() */
};

/* What one queued command expects back, in command order (RFC 2920 3.2). */
enum pending_kind {
	PENDING_LOCAL,         /* a reply the proxy makes itself: text in local_reply */
	PENDING_LOCAL_LAST,    /* the same, after which the session closes */
	PENDING_GREETING,
	PENDING_EHLO,
	PENDING_HELO,
	PENDING_MAIL,
	PENDING_DATA,          /* 354 opens the message */
	PENDING_DATA_END,      /* final reply to a message sent with DATA */
	PENDING_BDAT,
	PENDING_BDAT_LAST,
	PENDING_RSET,
	PENDING_QUIT,
	PENDING_AUTH,          /* 334 asks for one more client line */
	PENDING_STARTTLS_RSET, /* the proxy's own RSET before 220; reply swallowed */
	PENDING_SWALLOW,       /* a reply to the proxy's own line, not shown */
	PENDING_XCLIENT_EHLO,  /* the proxy's EHLO: does the backend offer XCLIENT? */
	PENDING_XCLIENT,       /* 220: the backend now sees the client's address */
	PENDING_OTHER,
};

struct pending {
	enum pending_kind kind;
	const char *local_reply; /* PENDING_LOCAL*: a static CRLF-ended reply */
};

enum client_phase {
	CLIENT_COMMANDS,       /* lines are commands */
	CLIENT_SKIP_LONG_LINE, /* discarding the rest of an overlong line */
	CLIENT_AUTH_RESPONSE,  /* the next line answers a 334 */
	CLIENT_DATA,           /* message bytes until CRLF.CRLF */
	CLIENT_DATA_DISCARD,   /* smuggling found: discard until CRLF.CRLF */
	CLIENT_BDAT_CHUNK,     /* chunk_left octets to relay */
	CLIENT_BDAT_DISCARD,   /* chunk_left octets of a refused BDAT to drop */
	CLIENT_AFTER_STARTTLS, /* everything until the handshake is discarded */
	CLIENT_DONE,           /* QUIT sent or session over: input ignored */
};

struct session_stats {
	uint64_t messages_accepted;
	/* Refusals, for the metrics (README "Monitoring") */
	uint32_t refused_must_starttls;   /* 530 before TLS (require_tls) */
	uint32_t refused_auth_needs_tls;  /* 538 */
	uint32_t refused_proxy_only;      /* 550: the client's own XCLIENT or XFORWARD */
	uint32_t refused_smuggling;       /* a message refused for a smuggled dot line */
	uint64_t plaintext_discarded;     /* bytes after STARTTLS, never acted on */
	const char *end_reason; /* static text, NULL while the session runs */
};

#include "data_scanner.h"

struct session {
	struct session_policy policy;
	enum client_phase phase;
	bool tls_active;
	bool ehlo_since_tls;     /* EHLO/HELO accepted since the handshake */
	bool in_transaction;     /* MAIL accepted, message not finished */
	bool authenticated;      /* AUTH answered 235 */
	bool backend_chunking;   /* the last EHLO reply offered CHUNKING */
	bool backend_pipelining; /* the last EHLO reply offered PIPELINING */
	bool backend_xclient;    /* the proxy's EHLO was offered XCLIENT */
	bool backend_gone;       /* backend closed or dropped */
	bool quit_sent;
	bool client_eof;
	bool draining;           /* shutdown asked: 421 once idle */
	bool ended;              /* the last output is queued; the rest is closing */
	bool helo_esmtp;         /* the client said EHLO, not HELO */
	bool plain_open;         /* implicit mode, opened without TLS (session_plaintext_open) */
	bool first_command_sent; /* the next relayed line reached the backend already */
	bool trace_due;          /* a Received line goes before the next message byte */
	bool trace_in_transaction; /* this transaction's BDAT message has its line */
	bool bdat_message_open;  /* a BDAT without LAST began this transaction's message */
	bool reply_in_progress;  /* a multi-line reply's first line is out */
	unsigned reply_code;     /* that first line's code */
	bool ehlo_rewriting;     /* the reply in progress is a 250 EHLO reply */
	bool ehlo_last_marker_valid;
	size_t ehlo_last_marker; /* last kept EHLO line's marker, from the uncommitted start */
	size_t uncommitted;      /* bytes at the end of out_client held back */
	uint64_t chunk_left;
	struct data_scanner scanner;
	unsigned actions; /* bit (1 << enum session_action) */
	const char *notice; /* a warning for the edge to log; static text */

	struct pending queue[SESSION_QUEUE_MAX];
	size_t queue_head, queue_len;

	struct session_stats stats;
	char helo_name[256]; /* the client's EHLO or HELO argument, for the trace line */

	struct buf out_client, out_backend;
	/* Last, so that the edge can place them on page boundaries and hand
	 * an idle session's pages back to the system (conn.c). */
	uint8_t out_client_storage[SESSION_OUT_CAP];
	uint8_t out_backend_storage[SESSION_OUT_CAP];
};

/* session_init - a new session; the backend's greeting is the first reply owed */
void session_init(struct session *s, const struct session_policy *policy);

/* session_from_client - client bytes (plaintext, after TLS if any); returns bytes used */
size_t session_from_client(struct session *s, const uint8_t *p, size_t n);

/* session_from_backend - backend bytes; returns bytes used */
size_t session_from_backend(struct session *s, const uint8_t *p, size_t n);

/* session_tls_established - the handshake finished (RFC 3207 section 4.2 reset) */
void session_tls_established(struct session *s);

/* session_greeting_passed - the transparent opening (upstream_opening.h)
 * has the backend's greeting (P, N bytes of whole CRLF lines) for the
 * client before TLS: it goes out as the greeting owed */
void session_greeting_passed(struct session *s, const uint8_t *p, size_t n);

/* session_plaintext_open - implicit mode without TLS: the transparent
 * opening found no TLS to be had; the client's next command (its EHLO or
 * HELO) reached the backend already, its reply comes as usual */
void session_plaintext_open(struct session *s);

/* session_client_eof - the client closed its side */
void session_client_eof(struct session *s);

/* session_backend_eof - the backend closed its side */
void session_backend_eof(struct session *s);

/* session_backend_failed - the backend could not be reached or did not greet in time */
void session_backend_failed(struct session *s);

/* session_idle_timeout - nothing happened for idle_timeout */
void session_idle_timeout(struct session *s);

/* session_message_open - the client owes message bytes: from the 354 to
 * DATA, or from the first BDAT of a transaction, until it has sent the
 * message's end (the edge's min_data_rate applies meanwhile) */
bool session_message_open(const struct session *s);

/* session_time_limit - a time limit of the edge's ran out: the client gets
 * REPLY (a CRLF-ended 421) and the session ends for REASON; a message still
 * open is cut off with the backend connection, so it is never delivered */
void session_time_limit(struct session *s, const char *reply, const char *reason);

/* session_shutdown - the daemon stops: 421 now when idle, else after the transaction */
void session_shutdown(struct session *s);

/* session_is_idle - no reply owed, no message open: safe to end with 421 */
bool session_is_idle(const struct session *s);

/* session_next_action - the next thing the edge must do, or ACT_NONE */
enum session_action session_next_action(struct session *s);

/* session_domain_wanted - the domain of the RCPT held for a verdict (the
 * RCPT and everything behind it wait, in order), or NULL */
const char *session_domain_wanted(const struct session *s);

/* session_domain_decided - the verdict on session_domain_wanted(): the
 * edge offers the client's bytes again and the RCPT goes on, to the
 * backend (DOMAIN_OK) or answered 450 4.7.5 / 451 4.4.3 by the session */
void session_domain_decided(struct session *s, enum domain_verdict verdict);

/* session_take_notice - a warning to log once, or NULL */
const char *session_take_notice(struct session *s);

/* session_output_to_client - bytes ready for the client */
const uint8_t *session_output_to_client(const struct session *s, size_t *len_r);

/* session_sent_to_client - N bytes of that output were written */
void session_sent_to_client(struct session *s, size_t n);

/* session_output_to_backend - bytes ready for the backend */
const uint8_t *session_output_to_backend(const struct session *s, size_t *len_r);

/* session_sent_to_backend - N bytes of that output were written */
void session_sent_to_backend(struct session *s, size_t n);

#endif
