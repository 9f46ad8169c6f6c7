/* session.c - one SMTP session as a pure state machine (see session.h)
 *
 * Security invariants, each with its reason:
 * - STARTTLS is acted on only when no reply is owed, and every client byte
 *   after the STARTTLS line is discarded until the handshake is done (RFC
 *   3207 section 4.2; CVE-2011-0411). The backend never sees STARTTLS.
 * - After the handshake the backend holds nothing from before it: the proxy
 *   sent RSET before its 220, and the client must say EHLO or HELO before
 *   anything but NOOP, RSET and QUIT (RFC 3207 section 4.2).
 * - Replies go to the client in command order, the proxy's own included
 *   (RFC 2920 section 3.2): a local reply waits in the queue like any other.
 * - A command whose reply decides how the next client bytes are read (DATA,
 *   AUTH, EHLO, ...) is the last one parsed until that reply arrives.
 * - Message bytes reach the backend as sent; a smuggled terminator never
 *   does (data_scanner.h).
 */
#include "session.h"

#include <stdio.h>
#include <string.h>

#include "ehlo_filter.h"
#include "panic.h"
#include "smtp_command.h"
#include "smtp_reply.h"
#include "trace.h"

/* Replies the proxy makes itself (INTERFACE.md, RFC 3463 codes). */
static const char REPLY_READY_TLS[] = "220 2.0.0 Ready to start TLS\r\n";
static const char REPLY_TLS_UNAVAILABLE[] = "454 4.7.0 TLS not available due to temporary reason\r\n";
static const char REPLY_STARTTLS_ARGS[] = "501 5.5.4 Syntax error (no parameters allowed)\r\n";
static const char REPLY_TLS_ACTIVE[] = "503 5.5.1 TLS already active\r\n";
static const char REPLY_STARTTLS_IN_TRANSACTION[] = "503 5.5.1 STARTTLS not allowed during a mail transaction\r\n";
static const char REPLY_STARTTLS_AFTER_AUTH[] = "503 5.5.1 STARTTLS not allowed after authentication\r\n";
static const char REPLY_SEND_EHLO[] = "503 5.5.1 Send EHLO first\r\n";
static const char REPLY_MUST_STARTTLS[] = "530 5.7.0 Must issue a STARTTLS command first\r\n";
static const char REPLY_AUTH_NEEDS_TLS[] = "538 5.7.11 Encryption required for requested authentication mechanism\r\n";
static const char REPLY_PROXY_ONLY[] = "550 5.7.0 Command not permitted\r\n";
static const char REPLY_LINE_TOO_LONG[] = "500 5.5.2 Line too long\r\n";
static const char REPLY_SYNTAX[] = "500 5.5.2 Syntax error in command line\r\n";
static const char REPLY_BDAT_SYNTAX[] = "501 5.5.4 Syntax error in BDAT parameters\r\n";
static const char REPLY_BDAT_UNSUPPORTED[] = "502 5.5.1 BDAT not supported\r\n";
static const char REPLY_SMUGGLING[] =
	"554 5.7.0 Message refused: a line with a lone dot next to a bare CR or LF\r\n"
	"421 4.7.0 Closing connection\r\n";
static const char REPLY_BACKEND_LOST[] = "421 4.4.2 Backend connection lost, closing connection\r\n";
static const char REPLY_BACKEND_UNREACHABLE[] = "421 4.4.2 Backend not available, closing connection\r\n";
static const char REPLY_BACKEND_BROKEN[] = "421 4.4.2 Backend protocol error, closing connection\r\n";
static const char REPLY_NO_XCLIENT[] = "421 4.7.0 Backend cannot take the client's address, closing connection\r\n";
static const char REPLY_IDLE[] = "421 4.4.2 Idle timeout, closing connection\r\n";
/* RFC 7672 section 2.2 and RFC 3463: the recipient's domain asks for DANE
 * and the destination does not meet it (4.7.5, cryptographic failure), or
 * DNS could not tell (4.4.3, directory server failure): the MTA retries. */
static const char REPLY_DANE_NOT_MET[] = "450 4.7.5 Recipient domain's DANE TLSA records not met by this server\r\n";
static const char REPLY_DNS_FAILED[] = "451 4.4.3 Recipient domain's DNS lookup failed, try again later\r\n";
static const char REPLY_SHUTDOWN[] = "421 4.3.2 Service shutting down, closing connection\r\n";

#define ACTION_BIT(a) (1u << (unsigned)(a))

/* Room a command step needs towards the backend: the longest line, plus
 * the CR LF that a bare-LF line gains (an AUTH line checks for its own). */
#define COMMAND_ROOM (SESSION_LINE_MAX + 2)
/* The same for a SASL response line (RFC 4954 section 4). */
#define AUTH_ROOM (SESSION_AUTH_LINE_MAX + 2)
/* Room a reply line needs towards the client: the line, its CR LF, and
 * the "250 STARTTLS" line the proxy may add after it. */
#define REPLY_ROOM (SESSION_LINE_MAX + 2 + sizeof "250 STARTTLS\r\n")
#define LOCAL_REPLY_MAX 256
_Static_assert(COMMAND_ROOM >= sizeof "BDAT 18446744073709551615 LAST\r\n" + TRACE_LINE_MAX,
               "a rebuilt BDAT command and its Received line fit in COMMAND_ROOM");
_Static_assert(AUTH_ROOM <= SESSION_OUT_CAP && REPLY_ROOM <= SESSION_OUT_CAP, "output buffers hold a line");

/* ---- queue of replies owed, oldest first ---- */

static struct pending *queue_at(struct session *s, size_t i)
{
	return &s->queue[(s->queue_head + i) % SESSION_QUEUE_MAX];
}

static struct pending *queue_front(struct session *s)
{
	return s->queue_len ? queue_at(s, 0) : NULL;
}

static void queue_push(struct session *s, enum pending_kind kind, const char *local_reply)
{
	PANIC_UNLESS(s->queue_len < SESSION_QUEUE_MAX);
	struct pending *p = queue_at(s, s->queue_len);
	p->kind = kind;
	p->local_reply = local_reply;
	s->queue_len++;
}

static void queue_pop(struct session *s)
{
	PANIC_UNLESS(s->queue_len > 0);
	s->queue_head = (s->queue_head + 1) % SESSION_QUEUE_MAX;
	s->queue_len--;
}

static bool is_local(enum pending_kind kind)
{
	return kind == PENDING_LOCAL || kind == PENDING_LOCAL_LAST;
}

/* owes_backend_reply - some queued entry waits for the backend */
static bool owes_backend_reply(struct session *s)
{
	for (size_t i = 0; i < s->queue_len; i++)
		if (!is_local(queue_at(s, i)->kind))
			return true;
	return false;
}

/* blocks_reading - a queued reply decides how the next client bytes read */
static bool blocks_reading(enum pending_kind kind)
{
	switch (kind) {
	case PENDING_GREETING:
	case PENDING_EHLO:
	case PENDING_HELO:
	case PENDING_DATA:
	case PENDING_AUTH:
	case PENDING_QUIT:
	case PENDING_STARTTLS_RSET:
	case PENDING_XCLIENT_EHLO:
	case PENDING_XCLIENT:
		return true;
	case PENDING_LOCAL:
	case PENDING_LOCAL_LAST:
	case PENDING_MAIL:
	case PENDING_DATA_END:
	case PENDING_BDAT:
	case PENDING_BDAT_LAST:
	case PENDING_RSET:
	case PENDING_SWALLOW:
	case PENDING_OTHER:
		return false;
	}
	return true;
}

/* ---- output ---- */

static void set_action(struct session *s, enum session_action a)
{
	s->actions |= ACTION_BIT(a);
}

/* end_session - the client gets TEXT (if any) as the last thing it reads */
static void end_session(struct session *s, const char *text, const char *reason)
{
	/* A half-built EHLO reply is never shown. */
	s->out_client.wr -= s->uncommitted;
	s->uncommitted = 0;
	s->queue_len = 0;
	if (text && !buf_append_str(&s->out_client, text))
		set_action(s, ACT_CLOSE_NOW);
	s->phase = CLIENT_DONE;
	s->ended = true;
	if (!s->stats.end_reason)
		s->stats.end_reason = reason;
	set_action(s, ACT_CLOSE_AFTER_FLUSH);
}

/* emit_local_replies - send the proxy's own replies that have reached the
 * head of the queue */
static void emit_local_replies(struct session *s)
{
	struct pending *p;
	while ((p = queue_front(s)) && is_local(p->kind)) {
		if (!buf_append_str(&s->out_client, p->local_reply))
			return; /* output full: again after the client reads */
		queue_pop(s);
		if (p->kind == PENDING_LOCAL_LAST) {
			end_session(s, NULL, "smuggling-refused");
			return;
		}
	}
}

/* settle - what follows every event: local replies, and the endings that
 * wait for an empty queue */
static void settle(struct session *s)
{
	emit_local_replies(s);
	if (s->queue_len > 0 || s->ended)
		return;
	if (s->client_eof) {
		end_session(s, NULL, "client-closed");
	} else if (s->draining && session_is_idle(s)) {
		end_session(s, REPLY_SHUTDOWN, "shutdown");
	}
}

static void reply_local(struct session *s, const char *text)
{
	queue_push(s, PENDING_LOCAL, text);
}

/* relay_line - LINE (no terminator) to the backend, ended by CR LF */
static void relay_line(struct session *s, const uint8_t *line, size_t len, enum pending_kind kind)
{
	if (s->first_command_sent) {
		/* The transparent opening sent it (session_plaintext_open). */
		PANIC_UNLESS(kind == PENDING_EHLO || kind == PENDING_HELO);
		s->first_command_sent = false;
		queue_push(s, kind, NULL);
		return;
	}
	bool ok = buf_append(&s->out_backend, line, len) && buf_append(&s->out_backend, "\r\n", 2);
	PANIC_UNLESS(ok); /* the caller checked COMMAND_ROOM */
	queue_push(s, kind, NULL);
}

/* ---- XCLIENT (Postfix XCLIENT_README) ---- */

/* append_xtext - VALUE as xtext (RFC 3461 section 4): "+", "=", blanks,
 * controls and non-ASCII become "+XX", so no value can end the line or
 * start another attribute */
static bool append_xtext(struct buf *b, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (*p > ' ' && *p < 0x7F && *p != '+' && *p != '=') {
			if (!buf_append(b, p, 1))
				return false;
		} else {
			uint8_t esc[3] = { '+', (uint8_t)hex[*p >> 4], (uint8_t)hex[*p & 0xF] };
			if (!buf_append(b, esc, sizeof esc))
				return false;
		}
	}
	return true;
}

/* send_xclient - the client's address and port; NAME is unknown to the
 * proxy, which does no DNS (the backend may look it up). The command stays
 * far below the 512 octets XCLIENT allows: an address, a port, a name. */
static void send_xclient(struct session *s)
{
	char port[16];
	snprintf(port, sizeof port, "%u", s->policy.client_port);
	bool ok = buf_append_str(&s->out_backend, "XCLIENT ADDR=") &&
	          append_xtext(&s->out_backend, s->policy.client_addr) &&
	          buf_append_str(&s->out_backend, " PORT=") && buf_append_str(&s->out_backend, port) &&
	          buf_append_str(&s->out_backend, " NAME=[UNAVAILABLE]\r\n");
	PANIC_UNLESS(ok); /* nothing else is queued for the backend before the greeting */
	queue_push(s, PENDING_XCLIENT, NULL);
}

/* ---- the trace line (trace_header) ---- */

/* trace_line - this message's Received line into BUF; its length */
static size_t trace_line(const struct session *s, char *buf, size_t cap)
{
	struct trace_facts f = {
		.helo = s->helo_name,
		.esmtp = s->helo_esmtp,
		.client_addr = s->policy.client_addr,
		.by = s->policy.proxy_helo,
		.tls_suite = s->tls_active ? s->policy.tls_suite : NULL,
		.authenticated = s->authenticated,
		.date = s->policy.date,
	};
	return trace_received(&f, buf, cap);
}

/* remember_helo - the client's EHLO or HELO name, for the trace line */
static void remember_helo(struct session *s, const struct smtp_command *cmd)
{
	size_t n = 0;
	while (n < cmd->args_len && n < sizeof s->helo_name - 1 && cmd->args[n] != ' ' && cmd->args[n] != '\t')
		n++;
	memcpy(s->helo_name, cmd->args, n);
	s->helo_name[n] = '\0';
	s->helo_esmtp = cmd->verb == VERB_EHLO;
}

/* ---- from the client ---- */

/* find_line - length of the line at P including its LF, 0 when it is
 * incomplete within LIMIT bytes */
static size_t find_line(const uint8_t *p, size_t n, size_t limit)
{
	if (limit > n)
		limit = n;
	const uint8_t *lf = memchr(p, '\n', limit);
	return lf ? (size_t)(lf - p) + 1 : 0;
}

/* line_content_len - the line without its CR LF or bare LF */
static size_t line_content_len(const uint8_t *line, size_t len_with_lf)
{
	size_t len = len_with_lf - 1;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

/* may_read_commands - no queued reply decides how the next bytes read */
static bool may_read_commands(struct session *s)
{
	if (s->queue_len == SESSION_QUEUE_MAX)
		return false;
	if (s->queue_len > 0 && blocks_reading(queue_at(s, s->queue_len - 1)->kind))
		return false;
	/* A backend that did not offer PIPELINING gets one command at a time. */
	if (!s->backend_pipelining && owes_backend_reply(s))
		return false;
	return buf_room(&s->out_backend) >= COMMAND_ROOM;
}

/* refuse_command - answer CMD with REPLY; a refused BDAT's chunk is still
 * data (RFC 3030 section 2) */
static void refuse_command(struct session *s, const struct smtp_command *cmd, const char *reply)
{
	uint64_t size;
	bool last;
	reply_local(s, reply);
	if (cmd->verb == VERB_BDAT && smtp_bdat_parse(cmd->args, cmd->args_len, &size, &last) && size > 0) {
		s->chunk_left = size;
		s->phase = CLIENT_BDAT_DISCARD;
	}
}

/* handle_starttls - STARTTLS, when no reply is owed (RFC 3207 section 4) */
static void handle_starttls(struct session *s, const struct smtp_command *cmd)
{
	if (cmd->args_len > 0)
		reply_local(s, REPLY_STARTTLS_ARGS);
	else if (s->tls_active || s->policy.tls_mode == SESSION_IMPLICIT)
		reply_local(s, REPLY_TLS_ACTIVE);
	else if (s->in_transaction)
		reply_local(s, REPLY_STARTTLS_IN_TRANSACTION);
	else if (s->authenticated)
		reply_local(s, REPLY_STARTTLS_AFTER_AUTH);
	else {
		/* Reset the backend before the 220, so that nothing of the
		 * plaintext session survives into TLS. */
		relay_line(s, (const uint8_t *)"RSET", 4, PENDING_STARTTLS_RSET);
		s->phase = CLIENT_AFTER_STARTTLS;
	}
}

/* handle_bdat - BDAT SIZE [LAST], relayed with its chunk when the backend
 * offered CHUNKING */
static void handle_bdat(struct session *s, const struct smtp_command *cmd)
{
	uint64_t size;
	bool last;
	if (!smtp_bdat_parse(cmd->args, cmd->args_len, &size, &last)) {
		reply_local(s, REPLY_BDAT_SYNTAX);
		return;
	}
	if (!s->backend_chunking) {
		refuse_command(s, cmd, REPLY_BDAT_UNSUPPORTED);
		return;
	}
	/* The backend gets the command rebuilt from what the proxy parsed, so
	 * it counts the same octets (no second opinion on "BDAT  05 last").
	 * The first chunk may carry the Received line: its size grows by the
	 * line's, the client's octets follow unchanged. */
	char trace[TRACE_LINE_MAX], command[64];
	size_t trace_len = 0;
	if (s->policy.trace_header && !s->trace_in_transaction) {
		trace_len = trace_line(s, trace, sizeof trace);
		s->trace_in_transaction = true;
	}
	int c = snprintf(command, sizeof command, "BDAT %llu%s", (unsigned long long)(size + trace_len),
	                 last ? " LAST" : "");
	relay_line(s, (const uint8_t *)command, (size_t)c, last ? PENDING_BDAT_LAST : PENDING_BDAT);
	bool ok = buf_append(&s->out_backend, trace, trace_len);
	PANIC_UNLESS(ok); /* COMMAND_ROOM holds the command and the trace line */
	s->bdat_message_open = !last;
	if (size > 0) {
		s->chunk_left = size;
		s->phase = CLIENT_BDAT_CHUNK;
	}
}

/* handle_command - one command line (LEN bytes, no terminator) that
 * follows the grammar (smtp_command.h), parsed into CMD */
static void handle_command(struct session *s, const struct smtp_command *parsed, const uint8_t *line,
                           size_t len)
{
	const struct smtp_command cmd = *parsed;
	if (s->tls_active && !s->ehlo_since_tls && !(cmd.flags & CMD_BEFORE_EHLO)) {
		refuse_command(s, &cmd, REPLY_SEND_EHLO);
		return;
	}
	if (!s->tls_active && s->policy.require_tls && !(cmd.flags & CMD_BEFORE_TLS)) {
		s->stats.refused_must_starttls++;
		refuse_command(s, &cmd, REPLY_MUST_STARTTLS);
		return;
	}
	if (cmd.flags & CMD_PROXY_ONLY) {
		s->stats.refused_proxy_only++;
		reply_local(s, REPLY_PROXY_ONLY);
		return;
	}

	switch (cmd.verb) {
	case VERB_STARTTLS:
		handle_starttls(s, &cmd);
		return;
	case VERB_BDAT:
		handle_bdat(s, &cmd);
		return;
	case VERB_AUTH:
		if (!s->tls_active && !s->policy.auth_before_tls) {
			s->stats.refused_auth_needs_tls++;
			reply_local(s, REPLY_AUTH_NEEDS_TLS);
			return;
		}
		relay_line(s, line, len, PENDING_AUTH);
		return;
	case VERB_EHLO:
		remember_helo(s, &cmd);
		relay_line(s, line, len, PENDING_EHLO);
		return;
	case VERB_HELO:
		remember_helo(s, &cmd);
		relay_line(s, line, len, PENDING_HELO);
		return;
	case VERB_MAIL:
		relay_line(s, line, len, PENDING_MAIL);
		return;
	case VERB_DATA:
		relay_line(s, line, len, PENDING_DATA);
		return;
	case VERB_RSET:
		relay_line(s, line, len, PENDING_RSET);
		return;
	case VERB_QUIT:
		relay_line(s, line, len, PENDING_QUIT);
		s->quit_sent = true;
		s->phase = CLIENT_DONE;
		return;
	case VERB_RCPT:
	case VERB_NOOP:
	case VERB_XCLIENT:
	case VERB_XFORWARD:
	case VERB_OTHER:
		relay_line(s, line, len, PENDING_OTHER);
		return;
	}
}

/* recipient_verdict - dane = yes: whether the RCPT CMD may go on now.
 * False holds it (unused, the bytes behind it too) until the edge has
 * decided its domain; a domain DNS cannot decide (no domain, an address
 * literal) goes on as in opportunistic delivery. */
static bool recipient_verdict(struct session *s, const struct smtp_command *cmd, enum domain_verdict *verdict_r)
{
	struct domain_decisions *d = s->policy.domains;
	char name[DOMAIN_NAME_MAX];
	*verdict_r = DOMAIN_OK;
	if (!rcpt_domain(cmd->args, cmd->args_len, name) || domain_decisions_find(d, name, verdict_r))
		return true;
	if (!d->wanted[0]) {
		memcpy(d->wanted, name, sizeof name);
		set_action(s, ACT_DOMAIN_POLICY);
	}
	return false;
}

/* step_commands - the next command line, if it may be read now */
static bool step_commands(struct session *s, const uint8_t *p, size_t n, size_t *used_r)
{
	if (!may_read_commands(s))
		return false;
	size_t limit = smtp_command_is_auth(p, n) ? SESSION_AUTH_LINE_MAX : SESSION_LINE_MAX;
	size_t line_len = find_line(p, n, limit);
	if (line_len == 0) {
		if (n < limit)
			return false; /* wait for the rest of the line */
		/* Too long: refused now, without waiting for its end, and
		 * the rest of it is never read as a command. */
		reply_local(s, REPLY_LINE_TOO_LONG);
		s->phase = CLIENT_SKIP_LONG_LINE;
		*used_r = limit;
		return true;
	}
	size_t len = line_content_len(p, line_len);

	struct smtp_command cmd;
	if (!smtp_command_parse(p, len, &cmd)) {
		/* A backend might read another verb in it, or more than
		 * one line: never relayed (smtp_command.h). */
		reply_local(s, REPLY_SYNTAX);
		*used_r = line_len;
		return true;
	}
	/* STARTTLS is decided only once no reply is owed: whether a
	 * transaction is open depends on the replies still to come. */
	if (cmd.verb == VERB_STARTTLS && s->queue_len > 0)
		return false;
	/* An AUTH line may be longer than others: room for it first. */
	if (buf_room(&s->out_backend) < len + 2)
		return false;

	enum domain_verdict verdict = DOMAIN_OK;
	if (cmd.verb == VERB_RCPT && s->policy.domains && !recipient_verdict(s, &cmd, &verdict))
		return false;
	if (cmd.verb == VERB_RCPT && s->policy.domains && verdict != DOMAIN_OK)
		reply_local(s, verdict == DOMAIN_DEFER_DANE ? REPLY_DANE_NOT_MET : REPLY_DNS_FAILED);
	else
		handle_command(s, &cmd, p, len);
	*used_r = line_len;
	return true;
}

/* step_auth_response - the client's line after a 334 (RFC 4954 section 4) */
static bool step_auth_response(struct session *s, const uint8_t *p, size_t n, size_t *used_r)
{
	if (buf_room(&s->out_backend) < AUTH_ROOM || s->queue_len + 2 > SESSION_QUEUE_MAX)
		return false;
	size_t line_len = find_line(p, n, SESSION_AUTH_LINE_MAX);
	if (line_len == 0 && n < SESSION_AUTH_LINE_MAX)
		return false; /* wait for the rest of the line */
	size_t len = line_len ? line_content_len(p, line_len) : 0;
	if (line_len > 0 && !smtp_line_has_control(p, len)) {
		s->phase = CLIENT_COMMANDS;
		relay_line(s, p, len, PENDING_AUTH);
		*used_r = line_len;
		return true;
	}
	/* Too long, or a control character the backend might split on:
	 * cancel the exchange ("*", RFC 4954 section 4) rather than leave
	 * the backend waiting; its 501 is swallowed. */
	relay_line(s, (const uint8_t *)"*", 1, PENDING_SWALLOW);
	if (line_len > 0) {
		reply_local(s, REPLY_SYNTAX);
		s->phase = CLIENT_COMMANDS;
		*used_r = line_len;
	} else {
		reply_local(s, REPLY_LINE_TOO_LONG);
		s->phase = CLIENT_SKIP_LONG_LINE;
		*used_r = SESSION_AUTH_LINE_MAX;
	}
	return true;
}

/* step_skip_long_line - discard up to the end of an overlong line */
static bool step_skip_long_line(struct session *s, const uint8_t *p, size_t n, size_t *used_r)
{
	const uint8_t *lf = memchr(p, '\n', n);
	if (!lf) {
		*used_r = n;
		return true;
	}
	s->phase = CLIENT_COMMANDS;
	*used_r = (size_t)(lf - p) + 1;
	return true;
}

/* step_data - message bytes up to CRLF.CRLF, scanned for smuggling */
static bool step_data(struct session *s, const uint8_t *p, size_t n, size_t *used_r)
{
	if (s->trace_due) {
		char trace[TRACE_LINE_MAX];
		size_t len = trace_line(s, trace, sizeof trace);
		if (!buf_append(&s->out_backend, trace, len))
			return false; /* once the backend has taken what is queued */
		s->trace_due = false;
	}
	size_t room = buf_room(&s->out_backend);
	size_t m = n < room ? n : room;
	enum data_scan_result result;
	size_t settled = data_scan(&s->scanner, p, m, &result);

	switch (result) {
	case DATA_MORE:
		buf_append(&s->out_backend, p, settled);
		*used_r = settled;
		return settled > 0;
	case DATA_END:
		buf_append(&s->out_backend, p, settled);
		queue_push(s, PENDING_DATA_END, NULL);
		s->phase = CLIENT_COMMANDS;
		*used_r = settled;
		return true;
	case DATA_SMUGGLING:
		/* Drop the backend without a terminator: the message is
		 * never delivered. Read on to the client's real end. */
		buf_append(&s->out_backend, p, settled);
		s->notice = "SMTP smuggling attempt: dot line next to a bare CR or LF; message refused";
		s->stats.refused_smuggling++;
		s->backend_gone = true;
		set_action(s, ACT_DROP_BACKEND);
		s->scanner.strict = false;
		s->phase = CLIENT_DATA_DISCARD;
		*used_r = settled;
		return true;
	}
	return false;
}

/* step_data_discard - the rest of a refused message */
static bool step_data_discard(struct session *s, const uint8_t *p, size_t n, size_t *used_r)
{
	enum data_scan_result result;
	size_t settled = data_scan(&s->scanner, p, n, &result);
	*used_r = settled;
	if (result == DATA_END) {
		queue_push(s, PENDING_LOCAL_LAST, REPLY_SMUGGLING);
		s->phase = CLIENT_DONE;
		return true;
	}
	return settled > 0;
}

/* step_chunk - BDAT octets, counted, never parsed (RFC 3030 section 2) */
static bool step_chunk(struct session *s, const uint8_t *p, size_t n, size_t *used_r)
{
	uint64_t m = n < s->chunk_left ? n : s->chunk_left;
	if (s->phase == CLIENT_BDAT_CHUNK) {
		size_t room = buf_room(&s->out_backend);
		if (m > room)
			m = room;
		buf_append(&s->out_backend, p, (size_t)m);
	}
	s->chunk_left -= m;
	if (s->chunk_left == 0)
		s->phase = CLIENT_COMMANDS;
	*used_r = (size_t)m;
	return m > 0;
}

/* client_step - one unit of client input; false when nothing more can be used now */
static bool client_step(struct session *s, const uint8_t *p, size_t n, size_t *used_r)
{
	*used_r = 0;
	switch (s->phase) {
	case CLIENT_COMMANDS:
		return step_commands(s, p, n, used_r);
	case CLIENT_SKIP_LONG_LINE:
		return step_skip_long_line(s, p, n, used_r);
	case CLIENT_AUTH_RESPONSE:
		return step_auth_response(s, p, n, used_r);
	case CLIENT_DATA:
		return step_data(s, p, n, used_r);
	case CLIENT_DATA_DISCARD:
		return step_data_discard(s, p, n, used_r);
	case CLIENT_BDAT_CHUNK:
	case CLIENT_BDAT_DISCARD:
		return step_chunk(s, p, n, used_r);
	case CLIENT_AFTER_STARTTLS:
	case CLIENT_DONE:
		/* RFC 3207 section 4.2: nothing sent after STARTTLS in
		 * plaintext is ever acted on. After QUIT nothing is. */
		if (s->phase == CLIENT_AFTER_STARTTLS)
			s->stats.plaintext_discarded += n;
		*used_r = n;
		return n > 0;
	}
	return false;
}

size_t session_from_client(struct session *s, const uint8_t *p, size_t n)
{
	size_t used = 0;
	while (used < n && !(s->actions & ACTION_BIT(ACT_CLOSE_NOW))) {
		size_t k;
		bool progress = client_step(s, p + used, n - used, &k);
		used += k;
		settle(s);
		if (!progress)
			break;
	}
	PANIC_UNLESS(used <= n);
	return used;
}

/* ---- from the backend ---- */

/* ehlo_line_out - one line of a 250 EHLO reply, rewritten
 *
 * Every kept line is written as "250-" and the whole reply is held back
 * (uncommitted) until its final line; then the last kept line's marker
 * becomes "250 ", or the proxy's STARTTLS is added as the last line. An
 * offset into the uncommitted region stays valid while the client drains
 * the committed bytes before it. Returns false when out_client lacks room. */
static bool ehlo_line_out(struct session *s, const uint8_t *line, size_t len,
                          const struct smtp_reply_line *r, bool first)
{
	const uint8_t *text = line + r->text;
	size_t text_len = len - r->text;
	struct ehlo_view view = { s->tls_active, s->policy.auth_before_tls };
	bool keep = first || ehlo_keep_line(text, text_len, &view);
	bool add_starttls = r->last && !s->tls_active && s->policy.tls_mode == SESSION_STARTTLS;

	if (buf_room(&s->out_client) < REPLY_ROOM)
		return false;
	if (first) {
		s->backend_chunking = false;
		s->backend_pipelining = false;
	}
	if (ehlo_keyword_is(text, text_len, "CHUNKING"))
		s->backend_chunking = true;
	if (ehlo_keyword_is(text, text_len, "PIPELINING"))
		s->backend_pipelining = true;

	if (keep) {
		uint8_t code_dash[4] = { line[0], line[1], line[2], '-' };
		size_t before = buf_pending(&s->out_client);
		buf_append(&s->out_client, code_dash, sizeof code_dash);
		buf_append(&s->out_client, text, text_len);
		buf_append(&s->out_client, "\r\n", 2);
		s->ehlo_last_marker = s->uncommitted + 3;
		s->ehlo_last_marker_valid = true;
		s->uncommitted += buf_pending(&s->out_client) - before;
	}
	if (!r->last)
		return true;

	if (add_starttls) {
		buf_append_str(&s->out_client, "250 STARTTLS\r\n");
	} else {
		PANIC_UNLESS(s->ehlo_last_marker_valid);
		size_t region = s->out_client.wr - s->uncommitted;
		s->out_client.data[region + s->ehlo_last_marker] = ' ';
	}
	s->uncommitted = 0;
	s->ehlo_last_marker_valid = false;
	return true;
}

/* on_final_reply - the last line of the reply to the queue's head went out */
static void on_final_reply(struct session *s, enum pending_kind kind, unsigned code)
{
	bool positive = code >= 200 && code < 300;

	switch (kind) {
	case PENDING_EHLO:
	case PENDING_HELO:
		/* RFC 5321 section 4.1.4: EHLO resets like RSET. */
		if (positive) {
			s->ehlo_since_tls = true;
			s->in_transaction = false;
			if (kind == PENDING_HELO)
				s->backend_chunking = s->backend_pipelining = false;
		}
		break;
	case PENDING_MAIL:
		if (positive) {
			s->in_transaction = true;
			s->trace_in_transaction = false;
			/* A failed transaction's BDAT does not open this
			 * one's message; one pipelined ahead of this reply
			 * counts again from the next chunk. */
			s->bdat_message_open = false;
		}
		break;
	case PENDING_DATA:
		if (code == 354) {
			data_scanner_init(&s->scanner, true);
			s->phase = CLIENT_DATA;
			s->trace_due = s->policy.trace_header;
		}
		break;
	case PENDING_DATA_END:
	case PENDING_BDAT_LAST:
		/* Whatever the reply, the transaction is over. */
		if (positive)
			s->stats.messages_accepted++;
		s->in_transaction = false;
		break;
	case PENDING_RSET:
		if (positive)
			s->in_transaction = false;
		break;
	case PENDING_AUTH:
		if (code == 334)
			s->phase = CLIENT_AUTH_RESPONSE;
		else if (code == 235)
			s->authenticated = true;
		break;
	case PENDING_STARTTLS_RSET:
		if (positive) {
			s->in_transaction = false;
			buf_append_str(&s->out_client, REPLY_READY_TLS);
			set_action(s, ACT_START_TLS);
		} else {
			buf_append_str(&s->out_client, REPLY_TLS_UNAVAILABLE);
			s->phase = CLIENT_COMMANDS;
		}
		break;
	case PENDING_QUIT:
		end_session(s, NULL, "quit");
		break;
	case PENDING_XCLIENT_EHLO:
		/* Fail closed: without XCLIENT the backend would take every
		 * client for the proxy itself. */
		if (positive && s->backend_xclient) {
			send_xclient(s);
		} else {
			s->notice = "client_addr = xclient, but the backend's EHLO does not offer XCLIENT";
			end_session(s, REPLY_NO_XCLIENT, "backend-no-xclient");
		}
		break;
	case PENDING_XCLIENT:
		if (code != 220) {
			s->notice = "the backend refused XCLIENT (is the proxy among its authorized XCLIENT hosts?)";
			end_session(s, REPLY_NO_XCLIENT, "backend-refused-xclient");
		}
		break;
	case PENDING_GREETING:
		if (s->policy.xclient && code == 220) {
			/* The proxy's own EHLO: is XCLIENT offered? (The
			 * client's EHLO, relayed later, sets the HELO name.) */
			buf_append_str(&s->out_backend, "EHLO ");
			buf_append_str(&s->out_backend, s->policy.proxy_helo);
			buf_append_str(&s->out_backend, "\r\n");
			queue_push(s, PENDING_XCLIENT_EHLO, NULL);
		}
		break;
	case PENDING_LOCAL:
	case PENDING_LOCAL_LAST:
	case PENDING_BDAT:
	case PENDING_SWALLOW:
	case PENDING_OTHER:
		break;
	}
}

/* reply_fits - CODE can answer a command of KIND
 *
 * A backend line is taken as the reply to the oldest command still owed
 * one (RFC 2920 section 3.2); no proxy can tell a reply sent early from
 * the one owed. But some codes belong to one command each: 354 switches
 * the backend to message data, 334 to a SASL line, 235 ends AUTH, 220 only
 * greets (or accepts XCLIENT) and 221 only answers QUIT. Anywhere else the
 * backend is out of step with the proxy, and relaying such a reply would
 * let the two read the client's next bytes differently. */
static bool reply_fits(enum pending_kind kind, unsigned code)
{
	switch (code) {
	case 354:
		return kind == PENDING_DATA;
	case 334:
	case 235:
		return kind == PENDING_AUTH;
	case 220:
		return kind == PENDING_GREETING || kind == PENDING_XCLIENT;
	case 221:
		return kind == PENDING_QUIT;
	default:
		return true;
	}
}

/* backend_out_of_step - the backend misbehaved: the client gets a 421 and
 * the backend is dropped unflushed, so nothing more reaches it */
static void backend_out_of_step(struct session *s, const char *notice)
{
	s->notice = notice;
	s->backend_gone = true;
	set_action(s, ACT_DROP_BACKEND);
	end_session(s, REPLY_BACKEND_BROKEN, "backend-protocol-error");
}

/* reply_line - one complete reply line (LEN bytes, no terminator) */
static bool reply_line(struct session *s, const uint8_t *line, size_t len)
{
	struct smtp_reply_line r;
	if (!smtp_reply_parse(line, len, &r)) {
		s->notice = "backend sent a malformed reply line";
		end_session(s, REPLY_BACKEND_BROKEN, "backend-protocol-error");
		return true;
	}

	struct pending *head = queue_front(s);
	if (!head) {
		/* Unsolicited. Never passed on: inside TLS it would be a
		 * reply to a command not yet sent (THREATS.md S11). A 421
		 * ends the session, which RFC 5321 section 3.8 allows. */
		if (r.code == 421 && r.last && s->phase != CLIENT_AFTER_STARTTLS) {
			end_session(s, REPLY_BACKEND_LOST, "backend-closed");
			return true;
		}
		s->notice = "backend sent an unsolicited reply line; discarded";
		return true;
	}
	if (is_local(head->kind))
		return false; /* the proxy's own reply goes first, once there is room */

	bool first = !s->reply_in_progress;
	if (first)
		s->reply_code = r.code;
	if (r.code != s->reply_code) {
		/* RFC 5321 section 4.2.1: every line of a reply has its code. */
		backend_out_of_step(s, "backend changed the reply code inside a multi-line reply");
		return true;
	}
	if (!reply_fits(head->kind, r.code)) {
		backend_out_of_step(s, "backend sent a reply that cannot answer the pending command");
		return true;
	}
	bool swallow = head->kind == PENDING_STARTTLS_RSET || head->kind == PENDING_SWALLOW ||
	               head->kind == PENDING_XCLIENT_EHLO || head->kind == PENDING_XCLIENT;
	if (head->kind == PENDING_XCLIENT_EHLO && r.code == 250 &&
	    ehlo_keyword_is(line + r.text, len - r.text, "XCLIENT"))
		s->backend_xclient = true;
	bool rewrite = head->kind == PENDING_EHLO && (first ? r.code == 250 : s->ehlo_rewriting);

	if (rewrite) {
		if (!ehlo_line_out(s, line, len, &r, first)) {
			if (buf_pending(&s->out_client) == s->uncommitted &&
			    buf_room(&s->out_client) < REPLY_ROOM) {
				s->notice = "backend EHLO reply too long";
				end_session(s, REPLY_BACKEND_BROKEN, "backend-protocol-error");
				return true;
			}
			return false;
		}
		s->ehlo_rewriting = true;
	} else if (!swallow) {
		if (buf_room(&s->out_client) < len + 2)
			return false;
		buf_append(&s->out_client, line, len);
		buf_append(&s->out_client, "\r\n", 2);
	}

	if (!r.last) {
		s->reply_in_progress = true;
		return true;
	}
	s->reply_in_progress = false;
	s->ehlo_rewriting = false;
	enum pending_kind kind = head->kind;
	queue_pop(s);
	if (r.code == 421 && kind != PENDING_STARTTLS_RSET && kind != PENDING_SWALLOW &&
	    kind != PENDING_XCLIENT_EHLO && kind != PENDING_XCLIENT) {
		/* The backend is closing: so does the session. */
		end_session(s, NULL, "backend-421");
		return true;
	}
	on_final_reply(s, kind, r.code);
	return true;
}

size_t session_from_backend(struct session *s, const uint8_t *p, size_t n)
{
	if (s->backend_gone || s->ended)
		return n; /* nothing from it matters any more */
	/* Implicit TLS: the greeting follows the handshake (RFC 8314 section 3). */
	if (s->policy.tls_mode == SESSION_IMPLICIT && !s->tls_active && !s->plain_open)
		return 0;

	size_t used = 0;
	while (used < n && !(s->actions & ACTION_BIT(ACT_CLOSE_NOW))) {
		if (s->phase == CLIENT_AFTER_STARTTLS && s->queue_len == 0) {
			/* Between the 220 and the handshake's end nothing from
			 * the backend may reach the client (THREATS.md S11). */
			used = n;
			s->notice = "backend sent data during the TLS handshake; discarded";
			break;
		}
		/* A SASL challenge may run to the AUTH limit (RFC 4954 section 4). */
		struct pending *head = queue_front(s);
		size_t limit = head && head->kind == PENDING_AUTH ? SESSION_AUTH_LINE_MAX : SESSION_LINE_MAX;
		size_t line_len = find_line(p + used, n - used, limit);
		if (line_len == 0) {
			if (n - used >= limit) {
				s->notice = "backend reply line too long";
				end_session(s, REPLY_BACKEND_BROKEN, "backend-protocol-error");
				used = n;
			}
			break;
		}
		if (!reply_line(s, p + used, line_content_len(p + used, line_len)))
			break;
		used += line_len;
		settle(s);
		if (s->ended) {
			used = n;
			break;
		}
	}
	settle(s);
	return used;
}

/* ---- events ---- */

void session_init(struct session *s, const struct session_policy *policy)
{
	memset(s, 0, offsetof(struct session, out_client_storage));
	s->policy = *policy;
	s->phase = CLIENT_COMMANDS;
	buf_init(&s->out_client, s->out_client_storage, sizeof s->out_client_storage);
	buf_init(&s->out_backend, s->out_backend_storage, sizeof s->out_backend_storage);
	queue_push(s, PENDING_GREETING, NULL);
}

void session_tls_established(struct session *s)
{
	s->tls_active = true;
	if (s->policy.tls_mode == SESSION_IMPLICIT) {
		/* A fresh session: nothing to forget. */
		s->ehlo_since_tls = true;
		return;
	}
	/* RFC 3207 section 4.2: discard what the client said before TLS.
	 * The backend was reset with RSET; the client must greet again. */
	s->ehlo_since_tls = false;
	s->in_transaction = false;
	s->phase = CLIENT_COMMANDS;
}

void session_greeting_passed(struct session *s, const uint8_t *p, size_t n)
{
	PANIC_UNLESS(s->queue_len == 1 && queue_front(s)->kind == PENDING_GREETING);
	bool ok = buf_append(&s->out_client, p, n);
	PANIC_UNLESS(ok); /* the first output; OPENING_REPLY_MAX < SESSION_OUT_CAP */
	queue_pop(s);
}

void session_plaintext_open(struct session *s)
{
	PANIC_UNLESS(s->policy.tls_mode == SESSION_IMPLICIT && !s->tls_active);
	s->plain_open = true;
	s->first_command_sent = true;
}

void session_client_eof(struct session *s)
{
	s->client_eof = true;
	switch (s->phase) {
	case CLIENT_DATA:
	case CLIENT_DATA_DISCARD:
	case CLIENT_BDAT_CHUNK:
	case CLIENT_BDAT_DISCARD:
	case CLIENT_AFTER_STARTTLS:
		/* A message cut short is never completed for the client. */
		if (!s->stats.end_reason)
			s->stats.end_reason = "client-closed";
		set_action(s, ACT_CLOSE_NOW);
		return;
	case CLIENT_COMMANDS:
	case CLIENT_SKIP_LONG_LINE:
	case CLIENT_AUTH_RESPONSE:
	case CLIENT_DONE:
		break;
	}
	/* Replies still owed go out before the close. */
	s->phase = CLIENT_DONE;
	settle(s);
}

/* backend_ends - the backend is gone; the client learns it with REPLY */
static void backend_ends(struct session *s, const char *reply, const char *reason)
{
	if (s->backend_gone)
		return;
	s->backend_gone = true;
	if (s->ended)
		return;
	if (s->quit_sent) {
		end_session(s, NULL, "quit");
		return;
	}
	end_session(s, reply, reason);
}

void session_backend_eof(struct session *s)
{
	backend_ends(s, REPLY_BACKEND_LOST, "backend-closed");
}

void session_backend_failed(struct session *s)
{
	backend_ends(s, REPLY_BACKEND_UNREACHABLE, "backend-unreachable");
}

void session_idle_timeout(struct session *s)
{
	/* RFC 5321 section 4.5.3.2: the server may close after its timeout. */
	end_session(s, REPLY_IDLE, "idle-timeout");
}

bool session_message_open(const struct session *s)
{
	switch (s->phase) {
	case CLIENT_DATA:
	case CLIENT_DATA_DISCARD:
	case CLIENT_BDAT_CHUNK:
	case CLIENT_BDAT_DISCARD:
		return true;
	case CLIENT_COMMANDS:
	case CLIENT_SKIP_LONG_LINE:
		/* RFC 3030 section 2: between chunks, until BDAT LAST */
		return s->bdat_message_open && s->in_transaction;
	case CLIENT_AUTH_RESPONSE:
	case CLIENT_AFTER_STARTTLS:
	case CLIENT_DONE:
		return false;
	}
	return false;
}

void session_time_limit(struct session *s, const char *reply, const char *reason)
{
	if (s->ended)
		return;
	if (session_message_open(s)) {
		/* No terminator, no BDAT LAST: the backend discards the
		 * half message (RFC 5321 section 4.1.1.4 needs the end). */
		s->backend_gone = true;
		set_action(s, ACT_DROP_BACKEND);
	}
	end_session(s, reply, reason);
}

void session_shutdown(struct session *s)
{
	s->draining = true;
	settle(s);
}

bool session_is_idle(const struct session *s)
{
	/* A client in the middle of an overlong line is not in a transaction. */
	bool between_commands = s->phase == CLIENT_COMMANDS || s->phase == CLIENT_SKIP_LONG_LINE;
	return s->queue_len == 0 && !s->in_transaction && between_commands;
}

enum session_action session_next_action(struct session *s)
{
	static const enum session_action order[] = { ACT_CLOSE_NOW, ACT_DROP_BACKEND, ACT_START_TLS,
		                                     ACT_CLOSE_AFTER_FLUSH, ACT_DOMAIN_POLICY };
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		if (s->actions & ACTION_BIT(order[i])) {
			s->actions &= ~ACTION_BIT(order[i]);
			return order[i];
		}
	}
	return ACT_NONE;
}

const char *session_domain_wanted(const struct session *s)
{
	const struct domain_decisions *d = s->policy.domains;
	return d && d->wanted[0] && !s->ended ? d->wanted : NULL;
}

void session_domain_decided(struct session *s, enum domain_verdict verdict)
{
	struct domain_decisions *d = s->policy.domains;
	PANIC_UNLESS(d && d->wanted[0]);
	domain_decisions_add(d, d->wanted, verdict);
	d->wanted[0] = '\0';
}

const char *session_take_notice(struct session *s)
{
	const char *n = s->notice;
	s->notice = NULL;
	return n;
}

const uint8_t *session_output_to_client(const struct session *s, size_t *len_r)
{
	*len_r = buf_pending(&s->out_client) - s->uncommitted;
	return buf_head(&s->out_client);
}

void session_sent_to_client(struct session *s, size_t n)
{
	PANIC_UNLESS(n <= buf_pending(&s->out_client) - s->uncommitted);
	buf_consume(&s->out_client, n);
	settle(s); /* local replies waiting for room */
}

const uint8_t *session_output_to_backend(const struct session *s, size_t *len_r)
{
	*len_r = buf_pending(&s->out_backend);
	return buf_head(&s->out_backend);
}

void session_sent_to_backend(struct session *s, size_t n)
{
	buf_consume(&s->out_backend, n);
}
