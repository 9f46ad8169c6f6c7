/* upstream_opening.c - from the connect to TLS with the relay (see
 * upstream_opening.h)
 *
 * The proxy is the SMTP client here, so the rules are the client's side of
 * RFC 3207: STARTTLS only when the EHLO reply offers it, nothing after the
 * 220 but the handshake, and no plaintext fallback on any failure.
 */
#include "upstream_opening.h"

#include <stdio.h>
#include <string.h>

#include "ehlo_filter.h"
#include "panic.h"
#include "smtp_command.h"
#include "smtp_reply.h"

/* What the client hears instead of a greeting (RFC 5321 section 3.8; RFC
 * 3463: X.4.2 for the connection, X.7.0 for security). */
static const char REPLY_UNAVAILABLE[] = "421 4.4.2 Upstream not available, closing connection\r\n";
static const char REPLY_NO_STARTTLS[] = "421 4.7.0 Upstream does not offer STARTTLS, closing connection\r\n";
static const char REPLY_STARTTLS_REFUSED[] = "421 4.7.0 Upstream refused STARTTLS, closing connection\r\n";
static const char REPLY_DATA_BEFORE_TLS[] = "421 4.7.0 Upstream sent data before TLS, closing connection\r\n";
static const char REPLY_HANDSHAKE[] = "421 4.7.0 TLS handshake with upstream failed, closing connection\r\n";
/* RFC 3463: X.4.6 routing loop, X.3.5 system not configured for this */
static const char REPLY_LOOP[] = "421 4.4.6 Destination is this proxy (mail loop), closing connection\r\n";
static const char REPLY_NO_DESTINATION[] = "421 4.3.5 No original destination (not redirected), closing connection\r\n";
static const char REPLY_CLIENT_NO_EHLO[] = "421 4.7.0 EHLO or HELO first, closing connection\r\n";
static const char REPLY_NOT_TRUSTED[] = "421 4.7.0 Upstream certificate not trusted, closing connection\r\n";

/* fail - the opening ends; the client gets REPLY, the log REASON */
static void fail(struct upstream_opening *o, const char *reply, const char *reason)
{
	if (o->state == OPENING_FAILED || o->state == OPENING_READY || o->state == OPENING_PLAIN)
		return;
	o->state = OPENING_FAILED;
	o->failure_reply = reply;
	o->failure_reason = reason;
	buf_reset(&o->out); /* nothing more for the relay */
}

/* copy_name - NAME into DST with anything but a host name's characters
 * replaced, so that no name can break the line it goes into */
static void copy_name(char *dst, size_t cap, const char *name)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:[]";
	size_t i = 0;
	for (; name[i] && i + 1 < cap; i++)
		dst[i] = strchr(allowed, name[i]) ? name[i] : '?';
	dst[i] = '\0';
}

void upstream_opening_init(struct upstream_opening *o, bool implicit, const char *helo_name,
                           const char *upstream_name)
{
	memset(o, 0, sizeof *o);
	o->implicit = implicit;
	buf_init(&o->out, o->out_storage, sizeof o->out_storage);
	char name[OPENING_NAME_MAX];
	copy_name(name, sizeof name, upstream_name);
	snprintf(o->greeting, sizeof o->greeting, "220 %s ESMTP starttlsd relay\r\n", name);
	if (implicit) {
		o->state = OPENING_HANDSHAKE;
		return;
	}
	o->state = OPENING_GREETING;
	/* Queued now, written once the greeting is in (RFC 5321 section
	 * 4.3.1: the client waits for it). */
	copy_name(name, sizeof name, helo_name);
	bool ok = buf_append_str(&o->out, "EHLO ") && buf_append_str(&o->out, name) &&
	          buf_append_str(&o->out, "\r\n");
	PANIC_UNLESS(ok); /* out_storage holds the longest name */
}

void upstream_opening_init_transparent(struct upstream_opening *o, enum opening_plain_policy policy)
{
	memset(o, 0, sizeof *o);
	o->transparent = true;
	o->plain_policy = policy;
	buf_init(&o->out, o->out_storage, sizeof o->out_storage);
	buf_init(&o->reply, o->reply_storage, sizeof o->reply_storage);
	o->state = OPENING_GREETING;
}

/* go_plain - transparent: the session takes over without TLS, for REASON */
static void go_plain(struct upstream_opening *o, const char *reason)
{
	o->state = OPENING_PLAIN;
	o->plain_reason = reason;
	if (o->client_helo) {
		/* A HELO is answered with one line (RFC 5321 section 4.1.1.1):
		 * the EHLO reply's first, its code made final. */
		const uint8_t *p = buf_head(&o->reply);
		const uint8_t *lf = memchr(p, '\n', buf_pending(&o->reply));
		PANIC_UNLESS(lf && buf_pending(&o->reply) >= 4);
		size_t first = (size_t)(lf - p) + 1;
		if (o->reply.data[o->reply.rd + 3] == '-') /* "250\r\n" is final already */
			o->reply.data[o->reply.rd + 3] = ' ';
		o->reply.wr = o->reply.rd + first;
	}
}

/* transparent_final - the last line of a reply (code CODE), transparent */
static void transparent_final(struct upstream_opening *o, unsigned code)
{
	switch (o->state) {
	case OPENING_GREETING:
		if (code != 220)
			fail(o, REPLY_UNAVAILABLE, "upstream-refused-greeting");
		else if (o->fallback)
			o->state = OPENING_EHLO; /* the client had the first one */
		else {
			o->state = OPENING_CLIENT_HELLO;
			o->greeting_ready = true;
		}
		return;
	case OPENING_EHLO:
		if (code != 250)
			fail(o, REPLY_UNAVAILABLE, "upstream-refused-ehlo");
		else if (o->fallback)
			go_plain(o, "handshake-failed");
		else if (o->starttls_offered) {
			o->state = OPENING_STARTTLS;
			bool ok = buf_append_str(&o->out, "STARTTLS\r\n");
			PANIC_UNLESS(ok); /* the EHLO went out before its reply came */
		} else if (o->plain_policy == OPENING_TLS_REQUIRED)
			fail(o, REPLY_NO_STARTTLS, "upstream-no-starttls");
		else
			go_plain(o, "not-offered");
		return;
	case OPENING_STARTTLS:
		if (code == 220)
			o->state = OPENING_HANDSHAKE;
		else if (o->plain_policy == OPENING_FALLBACK)
			go_plain(o, "starttls-refused");
		else
			fail(o, REPLY_STARTTLS_REFUSED, "upstream-refused-starttls");
		return;
	default:
		break;
	}
	PANIC_UNLESS(!"a reply outside the plaintext states");
}

/* keep_line - transparent: the greeting's and the EHLO reply's lines are
 * kept, CRLF-ended, for the client */
static void keep_line(struct upstream_opening *o, const uint8_t *line, size_t len)
{
	if (!o->transparent || (o->state != OPENING_GREETING && o->state != OPENING_EHLO))
		return;
	if (!o->reply_in_progress)
		buf_reset(&o->reply);
	if (!buf_append(&o->reply, line, len) || !buf_append(&o->reply, "\r\n", 2))
		fail(o, REPLY_UNAVAILABLE, "upstream-protocol-error");
}

/* final_reply - the last line of a reply (code CODE) in state O->state */
static void final_reply(struct upstream_opening *o, unsigned code)
{
	if (o->transparent) {
		transparent_final(o, code);
		return;
	}
	switch (o->state) {
	case OPENING_GREETING:
		if (code == 220)
			o->state = OPENING_EHLO;
		else
			fail(o, REPLY_UNAVAILABLE, "upstream-refused-greeting");
		return;
	case OPENING_EHLO:
		if (code != 250)
			fail(o, REPLY_UNAVAILABLE, "upstream-refused-ehlo");
		else if (!o->starttls_offered)
			fail(o, REPLY_NO_STARTTLS, "upstream-no-starttls");
		else {
			o->state = OPENING_STARTTLS;
			bool ok = buf_append_str(&o->out, "STARTTLS\r\n");
			PANIC_UNLESS(ok); /* the EHLO went out before its reply came */
		}
		return;
	case OPENING_STARTTLS:
		if (code == 220)
			o->state = OPENING_HANDSHAKE;
		else
			fail(o, REPLY_STARTTLS_REFUSED, "upstream-refused-starttls");
		return;
	default:
		break;
	}
	PANIC_UNLESS(!"a reply outside the plaintext states");
}

/* reply_line - one complete line (LEN bytes, no terminator) */
static void reply_line(struct upstream_opening *o, const uint8_t *line, size_t len)
{
	struct smtp_reply_line r;
	if (!smtp_reply_parse(line, len, &r)) {
		fail(o, REPLY_UNAVAILABLE, "upstream-protocol-error");
		return;
	}
	if (!o->reply_in_progress) {
		o->reply_code = r.code;
		o->starttls_offered = false;
	} else if (r.code != o->reply_code) {
		/* RFC 5321 section 4.2.1: every line of a reply has its code. */
		fail(o, REPLY_UNAVAILABLE, "upstream-protocol-error");
		return;
	}
	keep_line(o, line, len);
	if (o->state == OPENING_FAILED)
		return;
	/* The EHLO reply's first line is the relay's name, not a keyword. */
	if (o->state == OPENING_EHLO && o->reply_in_progress &&
	    ehlo_keyword_is(line + r.text, len - r.text, "STARTTLS"))
		o->starttls_offered = true;
	o->reply_in_progress = !r.last;
	if (r.last)
		final_reply(o, r.code);
}

size_t upstream_opening_from_upstream(struct upstream_opening *o, const uint8_t *p, size_t n)
{
	size_t used = 0;
	while (used < n) {
		switch (o->state) {
		case OPENING_GREETING:
		case OPENING_EHLO:
		case OPENING_STARTTLS:
			break;
		case OPENING_HANDSHAKE:
			/* Between the 220 and the handshake the relay has
			 * nothing to say: bytes here are replies injected to be
			 * read as if they came inside TLS (the client's side of
			 * CVE-2011-0411). A ClientHello is never answered
			 * before it is sent, so none of this is TLS. */
			fail(o, REPLY_DATA_BEFORE_TLS, "upstream-data-before-tls");
			return n;
		case OPENING_READY:
		case OPENING_PLAIN:
			return used; /* the session's from here on */
		case OPENING_CLIENT_HELLO:
			/* The destination speaks out of turn (RFC 5321
			 * section 4.3.1: the client's EHLO is next). */
			fail(o, REPLY_UNAVAILABLE, "upstream-protocol-error");
			return n;
		case OPENING_RECONNECT: /* the old connection's last words */
		case OPENING_FAILED:
			return n;
		}
		/* Before its reply is complete, the EHLO or STARTTLS line must
		 * have gone out: a reply that comes earlier answers nothing. */
		if (buf_pending(&o->out) > 0 && o->state != OPENING_GREETING) {
			fail(o, REPLY_UNAVAILABLE, "upstream-protocol-error");
			return n;
		}
		size_t limit = n - used < OPENING_LINE_MAX ? n - used : OPENING_LINE_MAX;
		const uint8_t *lf = memchr(p + used, '\n', limit);
		if (!lf) {
			if (n - used >= OPENING_LINE_MAX) {
				fail(o, REPLY_UNAVAILABLE, "upstream-protocol-error");
				return n;
			}
			return used; /* the rest of the line later */
		}
		size_t line_len = (size_t)(lf - (p + used)) + 1;
		size_t len = line_len - 1;
		if (len > 0 && p[used + len - 1] == '\r')
			len--;
		reply_line(o, p + used, len);
		used += line_len;
	}
	return used;
}

bool upstream_opening_wants_tls(const struct upstream_opening *o)
{
	return o->state == OPENING_HANDSHAKE && buf_pending(&o->out) == 0;
}

void upstream_opening_tls_done(struct upstream_opening *o, enum opening_tls_result result)
{
	PANIC_UNLESS(o->state == OPENING_HANDSHAKE || o->state == OPENING_FAILED);
	switch (result) {
	case OPENING_TLS_VERIFIED:
		if (o->state == OPENING_HANDSHAKE)
			o->state = OPENING_READY;
		return;
	case OPENING_TLS_FAILED:
	case OPENING_TLS_NOT_TRUSTED:
		if (o->transparent && o->plain_policy == OPENING_FALLBACK && o->state == OPENING_HANDSHAKE) {
			/* The connection is spent: a new one, in plaintext. */
			o->state = OPENING_RECONNECT;
			return;
		}
		if (result == OPENING_TLS_FAILED)
			fail(o, REPLY_HANDSHAKE, "upstream-handshake-failed");
		else
			fail(o, REPLY_NOT_TRUSTED, "upstream-not-trusted");
		return;
	}
}

const uint8_t *upstream_opening_client_greeting(struct upstream_opening *o, size_t *len_r)
{
	*len_r = 0;
	if (!o->greeting_ready || o->state == OPENING_FAILED)
		return NULL;
	o->greeting_ready = false;
	*len_r = buf_pending(&o->reply);
	return buf_head(&o->reply);
}

bool upstream_opening_from_client(struct upstream_opening *o, const uint8_t *p, size_t n)
{
	if (o->state != OPENING_CLIENT_HELLO || o->greeting_ready)
		return false;
	size_t limit = n < OPENING_LINE_MAX ? n : OPENING_LINE_MAX;
	const uint8_t *lf = memchr(p, '\n', limit);
	if (!lf) {
		if (n >= OPENING_LINE_MAX)
			fail(o, REPLY_CLIENT_NO_EHLO, "client-no-ehlo");
		return false;
	}
	size_t len = (size_t)(lf - p);
	if (len > 0 && p[len - 1] == '\r')
		len--;
	/* The session relays this same line later (upstream_opening.h), so
	 * it must be a line the session relays: the grammar's EHLO or HELO
	 * with a name. */
	struct smtp_command cmd;
	if (smtp_line_has_control(p, len) || !smtp_command_parse(p, len, &cmd) ||
	    (cmd.verb != VERB_EHLO && cmd.verb != VERB_HELO) || cmd.args_len == 0) {
		fail(o, REPLY_CLIENT_NO_EHLO, "client-no-ehlo");
		return true;
	}
	o->client_helo = cmd.verb == VERB_HELO;
	size_t name_len = 0;
	while (name_len < cmd.args_len && name_len < sizeof o->client_name - 1 && cmd.args[name_len] != ' ')
		name_len++;
	char raw[OPENING_NAME_MAX];
	memcpy(raw, cmd.args, name_len);
	raw[name_len] = '\0';
	copy_name(o->client_name, sizeof o->client_name, raw);
	bool ok = buf_append_str(&o->out, "EHLO ") && buf_append_str(&o->out, o->client_name) &&
	          buf_append_str(&o->out, "\r\n");
	PANIC_UNLESS(ok); /* out_storage holds the longest name */
	o->state = OPENING_EHLO;
	return true;
}

void upstream_opening_reconnected(struct upstream_opening *o)
{
	PANIC_UNLESS(o->state == OPENING_RECONNECT);
	o->fallback = true;
	o->reply_in_progress = false;
	buf_reset(&o->out);
	bool ok = buf_append_str(&o->out, "EHLO ") && buf_append_str(&o->out, o->client_name) &&
	          buf_append_str(&o->out, "\r\n");
	PANIC_UNLESS(ok);
	o->state = OPENING_GREETING;
}

const uint8_t *upstream_opening_reply(const struct upstream_opening *o, size_t *len_r)
{
	PANIC_UNLESS(o->state == OPENING_PLAIN);
	*len_r = buf_pending(&o->reply);
	return buf_head(&o->reply);
}

void upstream_opening_no_destination(struct upstream_opening *o, bool loop)
{
	if (loop)
		fail(o, REPLY_LOOP, "loop");
	else
		fail(o, REPLY_NO_DESTINATION, "no-original-destination");
}

void upstream_opening_unreachable(struct upstream_opening *o)
{
	fail(o, REPLY_UNAVAILABLE, "upstream-unreachable");
}

const char *upstream_opening_greeting(const struct upstream_opening *o)
{
	PANIC_UNLESS(o->state == OPENING_READY);
	return o->implicit || o->transparent ? NULL : o->greeting;
}

const uint8_t *upstream_opening_output(const struct upstream_opening *o, size_t *len_r)
{
	/* The EHLO waits for the greeting. */
	*len_r = o->state == OPENING_GREETING ? 0 : buf_pending(&o->out);
	return buf_head(&o->out);
}

void upstream_opening_sent(struct upstream_opening *o, size_t n)
{
	PANIC_UNLESS(n <= buf_pending(&o->out));
	buf_consume(&o->out, n);
}
