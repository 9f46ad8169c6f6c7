/* upstream_opening.h - the start of an outbound session: from the connect
 * to a TLS session with the upstream relay, as a pure state machine
 *
 * An outbound listener (direction = outbound) takes plaintext SMTP from a
 * legacy sender and delivers it to its relay over TLS. Before the sender
 * hears anything the proxy must have TLS with the relay, verified:
 *
 *   starttls: greeting 220 -> "EHLO name" -> 250 offering STARTTLS ->
 *             "STARTTLS" -> 220 -> handshake (the edge) -> ready
 *   implicit: handshake (the edge) -> ready; the relay's greeting comes
 *             inside TLS
 *
 * Invariant: the only bytes this machine ever writes are one EHLO line and
 * one STARTTLS line; no byte of the client's reaches the relay before TLS.
 * Every failure ends here with a 421 for the client instead of a greeting
 * (RFC 5321 section 3.8: the sender queues and retries), never with a
 * plaintext fallback.
 *
 * After the opening, the relay is the session's backend (session.h) in
 * SESSION_IMPLICIT mode: the edge calls session_tls_established() once this
 * machine is ready, so the session held the client's bytes and the greeting
 * until then, never adds STARTTLS to an EHLO reply, shows AUTH, and answers
 * the client's STARTTLS 503 5.5.1 (its session goes out over TLS already).
 * In starttls mode the relay greets only once, in plaintext, and that is
 * not passed on (RFC 3207 section 4.2: nothing learnt before TLS is kept):
 * the session gets the proxy's own greeting instead, upstream_opening_greeting().
 *
 * Transparent mode (backend = original-destination: a legacy MTA's port 25
 * redirected here) is driven by the client, so the destination keeps its
 * own greeting and the MTA's own EHLO name and never hears two EHLOs in
 * plaintext (some servers refuse the second, OpenSMTPD with 503):
 *
 *   destination 220 -> to the client (upstream_opening_client_greeting)
 *   client's "EHLO name" (or HELO) -> "EHLO name" to the destination
 *   250 with STARTTLS -> "STARTTLS" -> 220 -> handshake -> ready: the
 *       session sends the client's own line again inside TLS and relays
 *       the post-TLS reply (RFC 3207 section 4.2: the first one is
 *       forgotten)
 *   250 without STARTTLS (opportunistic) -> plain: the client's line is
 *       taken as sent and the reply kept (upstream_opening_reply) goes to
 *       it; a HELO gets that reply's first line alone, as a HELO reply
 *
 * A HELO is sent as EHLO too: without it nobody could know whether the
 * destination offers STARTTLS. With fallback_plaintext a refused STARTTLS
 * goes plain on the same connection, and a failed handshake asks the edge
 * for a new plaintext connection (OPENING_RECONNECT) where the greeting is
 * swallowed, the EHLO sent again, and STARTTLS never asked for.
 *
 * Feeding and output work as in session.h: from_upstream returns the bytes
 * used; output and sent show and drain what goes to the relay.
 */
#ifndef STARTTLSD_UPSTREAM_OPENING_H
#define STARTTLSD_UPSTREAM_OPENING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A reply line the opening parses, CRLF included (as session.h). */
#define OPENING_LINE_MAX 4096
/* A host name is at most 253 octets (RFC 1035 section 2.3.4). */
#define OPENING_NAME_MAX 256
/* A greeting or EHLO reply kept for the client (transparent mode) */
#define OPENING_REPLY_MAX 4096

/* What the transparent opening does when the destination does not give TLS */
enum opening_plain_policy {
	OPENING_TLS_REQUIRED,     /* upstream_tls = starttls: 421, never plaintext */
	OPENING_OPPORTUNISTIC,    /* plaintext only when STARTTLS is not offered */
	OPENING_FALLBACK,         /* fallback_plaintext = yes: also after a failed STARTTLS */
};

enum opening_state {
	OPENING_GREETING,  /* waiting for the relay's 220 */
	OPENING_EHLO,      /* the proxy's EHLO sent: is STARTTLS offered? */
	OPENING_STARTTLS,  /* STARTTLS sent: waiting for its 220 */
	OPENING_HANDSHAKE, /* the edge makes the handshake; no plaintext byte may come */
	OPENING_READY,     /* TLS is up and verified: the session takes over */
	OPENING_CLIENT_HELLO, /* transparent: greeting passed on; waiting for the client's EHLO */
	OPENING_RECONNECT, /* transparent fallback: the edge makes a new plaintext connection */
	OPENING_PLAIN,     /* transparent: no TLS; the session takes over in plaintext */
	OPENING_FAILED,    /* the client gets failure_reply, then the connection closes */
};

/* How the edge's handshake ended */
enum opening_tls_result {
	OPENING_TLS_VERIFIED,    /* chain and name checked, or verify = no */
	OPENING_TLS_FAILED,      /* the handshake itself failed */
	OPENING_TLS_NOT_TRUSTED, /* the certificate's chain or name failed the check */
};

struct upstream_opening {
	enum opening_state state;
	bool implicit;
	bool reply_in_progress;
	unsigned reply_code;      /* the first line's code of the reply in progress */
	bool starttls_offered;    /* in the EHLO reply in progress */
	const char *failure_reply; /* a CRLF-ended 421; static text */
	const char *failure_reason; /* for the session line's end=; static text */
	/* transparent mode */
	bool transparent;
	enum opening_plain_policy plain_policy;
	bool client_helo;         /* the client said HELO, not EHLO */
	bool fallback;            /* on the fallback connection: no STARTTLS asked */
	bool greeting_ready;      /* the greeting waits in reply for the client */
	const char *plain_reason; /* why OPENING_PLAIN: "not-offered" ...; static text */
	char client_name[OPENING_NAME_MAX];
	struct buf reply;         /* the greeting, then the EHLO reply, CRLF lines */
	uint8_t reply_storage[OPENING_REPLY_MAX];
	char greeting[OPENING_NAME_MAX + 64];
	struct buf out;
	uint8_t out_storage[OPENING_NAME_MAX + 16]; /* "EHLO name\r\n" or "STARTTLS\r\n" */
};

/* upstream_opening_init - a new opening; HELO_NAME is the proxy's EHLO
 * argument, UPSTREAM_NAME the relay's verified name (for the greeting) */
void upstream_opening_init(struct upstream_opening *o, bool implicit, const char *helo_name,
                           const char *upstream_name);

/* upstream_opening_init_transparent - a new transparent opening */
void upstream_opening_init_transparent(struct upstream_opening *o, enum opening_plain_policy policy);

/* upstream_opening_client_greeting - the destination's greeting, once, for
 * the client; NULL when there is none to pass on now */
const uint8_t *upstream_opening_client_greeting(struct upstream_opening *o, size_t *len_r);

/* upstream_opening_from_client - in OPENING_CLIENT_HELLO, the client's
 * input (P, N bytes) is looked at, never used: its first line, when
 * complete, must be EHLO or HELO; true when that line was taken */
bool upstream_opening_from_client(struct upstream_opening *o, const uint8_t *p, size_t n);

/* upstream_opening_reconnected - after OPENING_RECONNECT, the new plaintext
 * connection is up */
void upstream_opening_reconnected(struct upstream_opening *o);

/* upstream_opening_reply - in OPENING_PLAIN, the reply to the client's
 * EHLO or HELO, for the session */
const uint8_t *upstream_opening_reply(const struct upstream_opening *o, size_t *len_r);

/* upstream_opening_from_upstream - plaintext bytes from the relay; returns
 * the bytes used (a partial line is left; one past OPENING_LINE_MAX fails) */
size_t upstream_opening_from_upstream(struct upstream_opening *o, const uint8_t *p, size_t n);

/* upstream_opening_wants_tls - all output is out: the edge makes the
 * handshake now (upstream_opening_tls_done when it ends) */
bool upstream_opening_wants_tls(const struct upstream_opening *o);

/* upstream_opening_tls_done - the handshake and the check ended with RESULT */
void upstream_opening_tls_done(struct upstream_opening *o, enum opening_tls_result result);

/* upstream_opening_unreachable - the relay could not be reached, closed, or
 * did not answer in time */
void upstream_opening_unreachable(struct upstream_opening *o);

/* upstream_opening_no_destination - transparent: the connection was not
 * redirected (no original destination), or LOOP: it was going to this
 * listener itself */
void upstream_opening_no_destination(struct upstream_opening *o, bool loop);

/* upstream_opening_greeting - once ready in starttls mode, the greeting the
 * session relays to the client as if the relay had sent it inside TLS;
 * NULL in implicit mode (the relay's own greeting comes inside TLS) */
const char *upstream_opening_greeting(const struct upstream_opening *o);

/* upstream_opening_output - bytes ready for the relay */
const uint8_t *upstream_opening_output(const struct upstream_opening *o, size_t *len_r);

/* upstream_opening_sent - N bytes of that output were written */
void upstream_opening_sent(struct upstream_opening *o, size_t n);

#endif
