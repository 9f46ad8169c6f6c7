/* fuzz_upstream.c - libFuzzer harness for the outbound opening
 * (upstream_opening.h)
 *
 * Byte 0 chooses the mode (bit 0: implicit) and how the handshake ends
 * (bits 1-2). The rest is a list of events: one opcode byte, then for relay
 * data a length byte and that many bytes. Unused input is kept and offered
 * again, as the edge does. After every event the harness checks what keeps
 * an outbound session safe:
 * - everything ever written to the relay is a prefix of "EHLO name" CRLF
 *   "STARTTLS" CRLF: no other plaintext, and none in implicit mode;
 * - STARTTLS goes out only after an EHLO reply that offered it (the
 *   harness checks the word came from the relay at all);
 * - no plaintext byte is left unread when the handshake starts;
 * - the opening is ready only after a verified handshake; a failure is one
 *   421 line for the client and nothing more for the relay.
 *
 * Bit 3 of byte 0 chooses transparent mode (backend = original-destination)
 * and bits 4-5 its policy; the client's first line then comes from the
 * input too (OP_CLIENT), and a fallback may ask for a new connection
 * (OP_RECONNECT). There the harness checks:
 * - on each connection only "EHLO name" CRLF and then perhaps "STARTTLS"
 *   CRLF are written, the name the client's, cleaned; never STARTTLS on a
 *   fallback connection;
 * - the client gets the greeting once, before the EHLO goes out;
 * - plaintext (OPENING_PLAIN) without fallback_plaintext only on a
 *   connection where STARTTLS was never asked for: nothing goes in
 *   plaintext to a destination that offered it; the reply kept for the
 *   session is whole CRLF lines.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "ehlo_filter.h"
#include "upstream_opening.h"

enum { OP_UPSTREAM, OP_DRAIN, OP_TLS, OP_UNREACHABLE, OP_CLIENT, OP_GREETING, OP_RECONNECT, OP_COUNT };

static const char ALLOWED[] = "EHLO fuzz.example\r\nSTARTTLS\r\n";

struct fuzz_edge {
	struct upstream_opening o;
	uint8_t in[OPENING_LINE_MAX * 2];
	size_t in_len;
	char sent[sizeof ALLOWED + 64];
	size_t sent_len;
	bool tls_done;
	bool starttls_seen; /* the relay's bytes so far hold "STARTTLS", any case */
	enum opening_tls_result result;
	/* transparent mode */
	char tsent[OPENING_NAME_MAX + 32]; /* this connection's writes */
	size_t tsent_len;
	bool greeted, reconnected;
	uint8_t client[OPENING_LINE_MAX + 8];
	size_t client_len;
};

/* check_transparent - the transparent opening's invariants (above) */
static void check_transparent(struct fuzz_edge *e)
{
	const struct upstream_opening *o = &e->o;
	const char *t = e->tsent;
	assert(buf_valid(&o->out) && buf_valid(&o->reply));
	if (e->tsent_len > 0) {
		assert(e->tsent_len >= 5 ? memcmp(t, "EHLO ", 5) == 0 : memcmp(t, "EHLO ", e->tsent_len) == 0);
		assert(e->greeted);
	}
	const char *crlf = memchr(t, '\n', e->tsent_len);
	if (crlf) {
		size_t rest = e->tsent_len - (size_t)(crlf + 1 - t);
		assert(rest <= 10 && memcmp(crlf + 1, "STARTTLS\r\n", rest) == 0);
		assert(rest == 0 || !e->reconnected);
		for (const char *p = t + 5; p < crlf - 1; p++)
			assert(*p > ' ' && *p < 0x7F);
	}
	bool starttls_asked = crlf && e->tsent_len > (size_t)(crlf + 1 - t);
	switch (o->state) {
	case OPENING_READY:
		assert(e->tls_done && e->result == OPENING_TLS_VERIFIED && starttls_asked && !e->reconnected);
		break;
	case OPENING_PLAIN: {
		assert(o->plain_policy != OPENING_TLS_REQUIRED);
		if (o->plain_policy != OPENING_FALLBACK)
			assert(!starttls_asked && !e->reconnected && strcmp(o->plain_reason, "not-offered") == 0);
		size_t n;
		const uint8_t *r = upstream_opening_reply(o, &n);
		assert(n >= 5 && r[n - 2] == '\r' && r[n - 1] == '\n' && memcmp(r, "250", 3) == 0);
		break;
	}
	case OPENING_FAILED: {
		const char *r = o->failure_reply;
		assert(strncmp(r, "421 4.", 6) == 0 && strchr(r, '\n') == r + strlen(r) - 1);
		size_t n;
		upstream_opening_output(o, &n);
		assert(n == 0);
		break;
	}
	default:
		break;
	}
}

static void check_invariants(struct fuzz_edge *e)
{
	if (e->o.transparent) {
		check_transparent(e);
		return;
	}
	assert(buf_valid(&e->o.out));
	assert(e->sent_len < sizeof ALLOWED && memcmp(e->sent, ALLOWED, e->sent_len) == 0);
	if (e->o.implicit)
		assert(e->sent_len == 0);
	if (e->sent_len > strlen("EHLO fuzz.example\r\n"))
		assert(e->o.state != OPENING_GREETING && e->o.state != OPENING_EHLO && e->starttls_seen);
	switch (e->o.state) {
	case OPENING_READY: {
		assert(e->tls_done && e->result == OPENING_TLS_VERIFIED);
		assert(e->o.implicit || e->sent_len == sizeof ALLOWED - 1);
		const char *g = upstream_opening_greeting(&e->o);
		assert(e->o.implicit ? !g : strncmp(g, "220 ", 4) == 0 && strchr(g, '\n') == g + strlen(g) - 1);
		break;
	}
	case OPENING_FAILED: {
		const char *r = e->o.failure_reply;
		size_t n;
		assert(strncmp(r, "421 4.", 6) == 0 && strchr(r, '\n') == r + strlen(r) - 1);
		assert(e->o.failure_reason && strncmp(e->o.failure_reason, "upstream-", 9) == 0);
		upstream_opening_output(&e->o, &n);
		assert(n == 0);
		break;
	}
	default:
		assert(!e->tls_done);
		break;
	}
}

/* memmem_nocase - WORD (upper case) in P, any case */
static bool memmem_nocase(const uint8_t *p, size_t n, const char *word)
{
	size_t w = strlen(word);
	for (size_t i = 0; i + w <= n; i++) {
		size_t j = 0;
		while (j < w && (p[i + j] & ~0x20) == word[j])
			j++;
		if (j == w)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_edge e;
	if (size < 1)
		return 0;
	memset(&e, 0, sizeof e);
	e.result = (enum opening_tls_result)((data[0] >> 1) % 3);
	if (data[0] & 8)
		upstream_opening_init_transparent(&e.o, (enum opening_plain_policy)((data[0] >> 4) % 3));
	else
		upstream_opening_init(&e.o, data[0] & 1, "fuzz.example", "relay.example");
	check_invariants(&e);

	size_t i = 1;
	while (i < size) {
		unsigned op = data[i++] % OP_COUNT;
		switch (op) {
		case OP_UPSTREAM: {
			size_t n = i < size ? data[i++] : 0;
			if (n > size - i)
				n = size - i;
			if (n > sizeof e.in - e.in_len)
				n = sizeof e.in - e.in_len;
			memcpy(e.in + e.in_len, data + i, n);
			e.starttls_seen |= memmem_nocase(e.in, e.in_len + n, "STARTTLS");
			e.in_len += n;
			i += n;
			size_t used = upstream_opening_from_upstream(&e.o, e.in, e.in_len);
			assert(used <= e.in_len);
			memmove(e.in, e.in + used, e.in_len - used);
			e.in_len -= used;
			break;
		}
		case OP_DRAIN: {
			size_t n;
			const uint8_t *p = upstream_opening_output(&e.o, &n);
			if (e.o.transparent) {
				assert(e.tsent_len + n < sizeof e.tsent);
				memcpy(e.tsent + e.tsent_len, p, n);
				e.tsent_len += n;
			} else {
				assert(e.sent_len + n < sizeof e.sent);
				memcpy(e.sent + e.sent_len, p, n);
				e.sent_len += n;
			}
			upstream_opening_sent(&e.o, n);
			break;
		}
		case OP_CLIENT: {
			size_t n = i < size ? data[i++] : 0;
			if (n > size - i)
				n = size - i;
			if (n > sizeof e.client - e.client_len)
				n = sizeof e.client - e.client_len;
			memcpy(e.client + e.client_len, data + i, n);
			e.client_len += n;
			i += n;
			if (e.o.transparent)
				(void)upstream_opening_from_client(&e.o, e.client, e.client_len);
			break;
		}
		case OP_GREETING: {
			size_t n;
			if (e.o.transparent && upstream_opening_client_greeting(&e.o, &n)) {
				assert(!e.greeted && n >= 5);
				e.greeted = true;
			}
			break;
		}
		case OP_RECONNECT:
			if (e.o.state == OPENING_RECONNECT) {
				assert(e.o.plain_policy == OPENING_FALLBACK && e.result != OPENING_TLS_VERIFIED);
				upstream_opening_reconnected(&e.o);
				e.reconnected = true;
				e.tsent_len = 0;
				e.in_len = 0;
			}
			break;
		case OP_TLS:
			if (upstream_opening_wants_tls(&e.o)) {
				/* No plaintext byte is left to be read as TLS. */
				assert(e.in_len == 0);
				e.tls_done = true;
				upstream_opening_tls_done(&e.o, e.result);
			}
			break;
		case OP_UNREACHABLE:
			if (e.o.state != OPENING_READY && e.o.state != OPENING_PLAIN)
				upstream_opening_unreachable(&e.o);
			break;
		}
		check_invariants(&e);
	}
	return 0;
}
