/* fuzz_session.c - libFuzzer harness for the session state machine
 *
 * Byte 0 chooses the policy. The rest is a list of events: one opcode byte,
 * then for data events a length byte and that many bytes. Unused input is
 * kept and offered again, as the edge does. After every call the harness
 * checks the invariants that keep the proxy safe:
 * - buffers are valid and bounded, the queue never overflows;
 * - between ACT_START_TLS and the handshake, nothing new is written to
 *   either side (RFC 3207 section 4.2: no plaintext crosses STARTTLS);
 * - after a close action, nothing new is written to the backend;
 * - a time limit that ends an open message drops the backend with it;
 * - with per-domain verdicts (dane), a RCPT waits only while client bytes
 *   are held for it, and no RCPT reaches the backend unless its domain's
 *   verdict is ok (or it has no domain to decide); OP_VERDICT decides the
 *   held one (ok, defer-dane, defer-dns in turn).
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "session.h"

enum { OP_CLIENT, OP_BACKEND, OP_TLS_UP, OP_CLIENT_EOF, OP_BACKEND_EOF, OP_BACKEND_FAIL,
       OP_IDLE, OP_SHUTDOWN, OP_DRAIN_CLIENT, OP_DRAIN_BACKEND, OP_TIME_LIMIT, OP_VERDICT, OP_COUNT };

struct fuzz_edge {
	struct session s;
	uint8_t client_in[SESSION_AUTH_LINE_MAX + SESSION_LINE_MAX];
	size_t client_in_len;
	uint8_t backend_in[SESSION_LINE_MAX * 2];
	size_t backend_in_len;
	bool tls_pending, closed, backend_dropped;
};

static void check_invariants(struct fuzz_edge *e)
{
	assert(buf_valid(&e->s.out_client) && buf_valid(&e->s.out_backend));
	assert(e->s.queue_len <= SESSION_QUEUE_MAX);
	assert(e->s.uncommitted <= buf_pending(&e->s.out_client));
}

/* check_relayed_rcpts - the command lines P (N bytes) just relayed: every
 * RCPT's domain has the verdict ok. Stops at DATA or BDAT, after which
 * message bytes follow. */
static void check_relayed_rcpts(const struct session *s, const uint8_t *p, size_t n)
{
	while (n > 0) {
		const uint8_t *lf = memchr(p, '\n', n);
		size_t len = lf ? (size_t)(lf - p) : n;
		if (len >= 4 && (strncasecmp((const char *)p, "DATA", 4) == 0 || strncasecmp((const char *)p, "BDAT", 4) == 0))
			return;
		char name[DOMAIN_NAME_MAX];
		enum domain_verdict v;
		if (len > 5 && strncasecmp((const char *)p, "RCPT ", 5) == 0 &&
		    rcpt_domain(p + 5, len - 5 - (len > 5 && p[len - 1] == '\r'), name))
			assert(domain_decisions_find(s->policy.domains, name, &v) && v == DOMAIN_OK);
		if (!lf)
			return;
		n -= len + 1;
		p += len + 1;
	}
}

/* feed - offer one side's buffered input */
static void feed(struct fuzz_edge *e, bool client)
{
	uint8_t *in = client ? e->client_in : e->backend_in;
	size_t *len = client ? &e->client_in_len : &e->backend_in_len;
	if (*len == 0 || e->closed || (client && e->tls_pending))
		return;
	size_t out_client_before = e->s.out_client.wr - e->s.out_client.rd;
	size_t out_backend_before = e->s.out_backend.wr - e->s.out_backend.rd;
	bool commands = client && e->s.phase == CLIENT_COMMANDS && e->s.policy.domains;
	size_t used = client ? session_from_client(&e->s, in, *len) : session_from_backend(&e->s, in, *len);
	assert(used <= *len);
	size_t out_backend_after = buf_pending(&e->s.out_backend);
	if (commands && out_backend_after > out_backend_before)
		check_relayed_rcpts(&e->s, buf_head(&e->s.out_backend) + out_backend_before,
		                    out_backend_after - out_backend_before);
	memmove(in, in + used, *len - used);
	*len -= used;
	check_invariants(e);
	if (e->tls_pending) {
		/* Nothing may cross the handshake. */
		assert(buf_pending(&e->s.out_client) - e->s.uncommitted <= out_client_before);
		assert(buf_pending(&e->s.out_backend) <= out_backend_before);
	}
}

static void apply_actions(struct fuzz_edge *e)
{
	enum session_action a;
	while ((a = session_next_action(&e->s)) != ACT_NONE) {
		switch (a) {
		case ACT_START_TLS:
			assert(!e->tls_pending);
			e->tls_pending = true;
			e->client_in_len = 0;
			/* The 220 is flushed before the handshake. */
			session_sent_to_client(&e->s, buf_pending(&e->s.out_client) - e->s.uncommitted);
			break;
		case ACT_DROP_BACKEND:
			e->backend_dropped = true;
			buf_reset(&e->s.out_backend);
			break;
		case ACT_CLOSE_NOW:
		case ACT_CLOSE_AFTER_FLUSH:
			e->closed = true;
			break;
		case ACT_DOMAIN_POLICY: /* OP_VERDICT answers it */
			assert(session_domain_wanted(&e->s) && e->client_in_len > 0);
			break;
		case ACT_NONE:
			break;
		}
	}
	(void)session_take_notice(&e->s);
}

static void pump(struct fuzz_edge *e)
{
	feed(e, false);
	feed(e, true);
	apply_actions(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_edge e;
	static struct domain_decisions domains;
	unsigned verdicts = 0;
	if (size < 1)
		return 0;
	struct session_policy policy = {
		.tls_mode = data[0] & 1 ? SESSION_IMPLICIT : SESSION_STARTTLS,
		.require_tls = data[0] & 2,
		.auth_before_tls = data[0] & 4,
		.xclient = data[0] & 8,
		.proxy_helo = "proxy.test",
		.client_addr = "IPV6:2001:db8::7",
		.client_port = 50000,
		.trace_header = data[0] & 16,
		.date = "Sat, 28 Nov 2026 20:58:13 +0000",
		.tls_suite = "TLS_AES_128_GCM_SHA256",
		.domains = data[0] & 32 ? &domains : NULL,
	};
	domain_decisions_init(&domains);
	memset(&e, 0, offsetof(struct fuzz_edge, s));
	e.client_in_len = e.backend_in_len = 0;
	e.tls_pending = e.closed = e.backend_dropped = false;
	session_init(&e.s, &policy);

	size_t i = 1;
	while (i < size && !e.closed) {
		uint8_t op = data[i++] % OP_COUNT;
		size_t n = 0;
		if (op == OP_CLIENT || op == OP_BACKEND) {
			if (i >= size)
				break;
			n = data[i++];
			if (n > size - i)
				n = size - i;
		}
		size_t out;
		switch (op) {
		case OP_CLIENT:
			if (!e.tls_pending && e.client_in_len + n <= sizeof e.client_in) {
				memcpy(e.client_in + e.client_in_len, data + i, n);
				e.client_in_len += n;
			}
			break;
		case OP_BACKEND:
			if (!e.backend_dropped && e.backend_in_len + n <= sizeof e.backend_in) {
				memcpy(e.backend_in + e.backend_in_len, data + i, n);
				e.backend_in_len += n;
			}
			break;
		case OP_TLS_UP:
			if (e.tls_pending || (policy.tls_mode == SESSION_IMPLICIT && !e.s.tls_active)) {
				e.tls_pending = false;
				session_tls_established(&e.s);
			}
			break;
		case OP_CLIENT_EOF:
			session_client_eof(&e.s);
			break;
		case OP_BACKEND_EOF:
			if (!e.backend_dropped)
				session_backend_eof(&e.s);
			break;
		case OP_BACKEND_FAIL:
			if (!e.backend_dropped)
				session_backend_failed(&e.s);
			break;
		case OP_IDLE:
			session_idle_timeout(&e.s);
			break;
		case OP_SHUTDOWN:
			session_shutdown(&e.s);
			break;
		case OP_DRAIN_CLIENT:
			if (!e.tls_pending) {
				(void)session_output_to_client(&e.s, &out);
				session_sent_to_client(&e.s, out);
			}
			break;
		case OP_DRAIN_BACKEND:
			(void)session_output_to_backend(&e.s, &out);
			session_sent_to_backend(&e.s, out);
			break;
		case OP_VERDICT:
			if (session_domain_wanted(&e.s))
				session_domain_decided(&e.s, (enum domain_verdict)(verdicts++ % 3));
			break;
		case OP_TIME_LIMIT: {
			bool message_open = session_message_open(&e.s);
			session_time_limit(&e.s, "421 4.4.2 Data rate too low, closing connection\r\n",
			                   "data-too-slow");
			assert(!message_open || e.s.backend_gone);
			break;
		}
		}
		i += n;
		check_invariants(&e);
		pump(&e);
	}
	return 0;
}
