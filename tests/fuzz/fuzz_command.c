/* fuzz_command.c - libFuzzer harness: the backend reads the verbs the proxy checked
 *
 * The session is driven by fuzzed client bytes in front of a model backend
 * that reads what the proxy relays the way a lenient server does
 * (lenient_reader.h): lines end at LF, words at any whitespace, BDAT is
 * followed by as many octets as its lenient second word says. The model
 * answers every command it reads (EHLO with PIPELINING, CHUNKING and AUTH,
 * 334 then 235 for AUTH without an initial response, 554 for DATA so the
 * stream stays commands, 250 otherwise), so both sides move on.
 *
 * After every step the harness checks, for every line the model read as a
 * command:
 * - the proxy's parser accepts the line and finds in it the verb the
 *   lenient reader finds (the same bytes, case aside);
 * - the line holds no control character (only its CR LF);
 * - it is never STARTTLS, XCLIENT or XFORWARD, and never AUTH before TLS
 *   unless auth_before_tls is on;
 * and every SASL line the model reads holds no control character.
 *
 * Byte 0 chooses the policy; then events: OP_CLIENT, a length byte and
 * that many bytes; OP_HANDSHAKE finishes a STARTTLS the session asked for.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lenient_reader.h"
#include "session.h"
#include "smtp_command.h"

enum { OP_CLIENT, OP_HANDSHAKE, OP_COUNT };

enum model_state { MODEL_COMMANDS, MODEL_SASL, MODEL_CHUNK, MODEL_CLOSED };

struct model {
	enum model_state state;
	uint64_t chunk_left;
	uint8_t line[SESSION_AUTH_LINE_MAX * 2];
	size_t line_len;
};

struct fuzz_edge {
	struct session s;
	struct model backend;
	uint8_t client_in[SESSION_AUTH_LINE_MAX + 256];
	size_t client_in_len;
	uint8_t backend_in[SESSION_OUT_CAP];
	size_t backend_in_len;
	bool tls_pending, closed, backend_dropped;
};

static void model_say(struct fuzz_edge *e, const char *reply)
{
	size_t n = strlen(reply);
	if (e->backend_in_len + n <= sizeof e->backend_in) {
		memcpy(e->backend_in + e->backend_in_len, reply, n);
		e->backend_in_len += n;
	}
}

static bool has_control(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7F)
			return true;
	return false;
}

/* model_command - one line the model reads as a command: check it, answer it */
static void model_command(struct fuzz_edge *e, const uint8_t *line, size_t len)
{
	static char verb[SESSION_AUTH_LINE_MAX], arg[32];
	bool has_verb = lenient_word(line, len, 0, verb, sizeof verb);

	/* The proxy parsed this very line the same way. */
	struct smtp_command cmd;
	assert(smtp_command_parse(line, len, &cmd));
	size_t proxy_verb_len = (size_t)(memchr(line, ' ', len) ? (const uint8_t *)memchr(line, ' ', len) - line
	                                                         : (ptrdiff_t)len);
	assert(has_verb && proxy_verb_len < sizeof verb && strlen(verb) == proxy_verb_len &&
	       strncasecmp(verb, (const char *)line, proxy_verb_len) == 0);
	assert(!has_control(line, len));
	assert(strcasecmp(verb, "STARTTLS") != 0 && strcasecmp(verb, "XCLIENT") != 0 &&
	       strcasecmp(verb, "XFORWARD") != 0);
	if (strcasecmp(verb, "AUTH") == 0)
		assert(e->s.tls_active || e->s.policy.auth_before_tls);

	if (strcasecmp(verb, "EHLO") == 0) {
		model_say(e, "250-model.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 AUTH PLAIN\r\n");
	} else if (strcasecmp(verb, "AUTH") == 0) {
		if (lenient_word(line, len, 2, arg, sizeof arg)) {
			model_say(e, "235 2.7.0 ok\r\n");
		} else {
			e->backend.state = MODEL_SASL;
			model_say(e, "334 \r\n");
		}
	} else if (strcasecmp(verb, "BDAT") == 0) {
		e->backend.chunk_left = lenient_word(line, len, 1, arg, sizeof arg) ? strtoull(arg, NULL, 10) : 0;
		/* The count the proxy acted on is the one it relayed. */
		uint64_t size;
		bool last;
		assert(smtp_bdat_parse(cmd.args, cmd.args_len, &size, &last) && size == e->backend.chunk_left);
		if (e->backend.chunk_left > 0)
			e->backend.state = MODEL_CHUNK;
		else
			model_say(e, "250 2.0.0 ok\r\n");
	} else if (strcasecmp(verb, "DATA") == 0) {
		model_say(e, "554 5.5.1 no data here\r\n");
	} else if (strcasecmp(verb, "QUIT") == 0) {
		model_say(e, "221 2.0.0 bye\r\n");
		e->backend.state = MODEL_CLOSED;
	} else {
		model_say(e, "250 2.0.0 ok\r\n");
	}
}

/* model_read - the model takes what the proxy wrote to the backend */
static void model_read(struct fuzz_edge *e, const uint8_t *p, size_t n)
{
	struct model *m = &e->backend;
	for (size_t i = 0; i < n && m->state != MODEL_CLOSED;) {
		if (m->state == MODEL_CHUNK) {
			uint64_t take = n - i < m->chunk_left ? n - i : m->chunk_left;
			m->chunk_left -= take;
			i += (size_t)take;
			if (m->chunk_left == 0) {
				m->state = MODEL_COMMANDS;
				model_say(e, "250 2.0.0 chunk ok\r\n");
			}
			continue;
		}
		uint8_t c = p[i++];
		assert(m->line_len < sizeof m->line);
		m->line[m->line_len++] = c;
		if (c != '\n')
			continue;
		/* Every line the proxy writes ends in CR LF. */
		assert(m->line_len >= 2 && m->line[m->line_len - 2] == '\r');
		size_t len = m->line_len - 2;
		m->line_len = 0;
		if (m->state == MODEL_SASL) {
			assert(!has_control(m->line, len));
			m->state = MODEL_COMMANDS;
			model_say(e, len == 1 && m->line[0] == '*' ? "501 5.7.0 cancelled\r\n" : "235 2.7.0 ok\r\n");
		} else {
			model_command(e, m->line, len);
		}
	}
}

static bool pump_once(struct fuzz_edge *e)
{
	bool moved = false;
	if (e->backend_in_len > 0 && !e->backend_dropped) {
		size_t used = session_from_backend(&e->s, e->backend_in, e->backend_in_len);
		memmove(e->backend_in, e->backend_in + used, e->backend_in_len - used);
		e->backend_in_len -= used;
		moved |= used > 0;
	}
	if (e->client_in_len > 0 && !e->tls_pending) {
		size_t used = session_from_client(&e->s, e->client_in, e->client_in_len);
		memmove(e->client_in, e->client_in + used, e->client_in_len - used);
		e->client_in_len -= used;
		moved |= used > 0;
	}
	size_t n;
	const uint8_t *out = session_output_to_backend(&e->s, &n);
	if (n > 0) {
		model_read(e, out, n);
		session_sent_to_backend(&e->s, n);
		moved = true;
	}
	out = session_output_to_client(&e->s, &n);
	if (n > 0) {
		session_sent_to_client(&e->s, n);
		moved = true;
	}
	enum session_action a;
	while ((a = session_next_action(&e->s)) != ACT_NONE) {
		if (a == ACT_START_TLS) {
			e->tls_pending = true;
			e->client_in_len = 0; /* RFC 3207 section 4.2 */
		} else if (a == ACT_DROP_BACKEND) {
			e->backend_dropped = true;
		} else {
			e->closed = true;
		}
	}
	(void)session_take_notice(&e->s);
	return moved;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_edge e;
	if (size < 1)
		return 0;
	struct session_policy policy = {
		.tls_mode = SESSION_STARTTLS,
		.require_tls = data[0] & 1,
		.auth_before_tls = data[0] & 2,
		.trace_header = data[0] & 4,
		.proxy_helo = "proxy.test",
		.client_addr = "192.0.2.7",
		.date = "Sat, 28 Nov 2026 20:58:13 +0000",
		.tls_suite = "TLS_AES_128_GCM_SHA256",
	};
	memset(&e.backend, 0, sizeof e.backend);
	e.client_in_len = e.backend_in_len = 0;
	e.tls_pending = e.closed = e.backend_dropped = false;
	session_init(&e.s, &policy);
	model_say(&e, "220 model.test ESMTP\r\n");

	size_t i = 1;
	while (i < size && !e.closed) {
		uint8_t op = data[i++] % OP_COUNT;
		if (op == OP_CLIENT) {
			if (i >= size)
				break;
			size_t n = data[i++];
			if (n > size - i)
				n = size - i;
			if (!e.tls_pending && e.client_in_len + n <= sizeof e.client_in) {
				memcpy(e.client_in + e.client_in_len, data + i, n);
				e.client_in_len += n;
			}
			i += n;
		} else if (e.tls_pending) {
			e.tls_pending = false;
			session_tls_established(&e.s);
		}
		for (int rounds = 0; rounds < 64 && !e.closed && pump_once(&e); rounds++)
			;
	}
	return 0;
}
