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
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "ehlo_filter.h"
#include "upstream_opening.h"

enum { OP_UPSTREAM, OP_DRAIN, OP_TLS, OP_UNREACHABLE, OP_COUNT };

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
};

static void check_invariants(struct fuzz_edge *e)
{
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
	case OPENING_GREETING:
	case OPENING_EHLO:
	case OPENING_STARTTLS:
	case OPENING_HANDSHAKE:
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
			assert(e.sent_len + n < sizeof e.sent);
			memcpy(e.sent + e.sent_len, p, n);
			e.sent_len += n;
			upstream_opening_sent(&e.o, n);
			break;
		}
		case OP_TLS:
			if (upstream_opening_wants_tls(&e.o)) {
				/* No plaintext byte is left to be read as TLS. */
				assert(e.in_len == 0);
				e.tls_done = true;
				upstream_opening_tls_done(&e.o, e.result);
			}
			break;
		case OP_UNREACHABLE:
			if (e.o.state != OPENING_READY)
				upstream_opening_unreachable(&e.o);
			break;
		}
		check_invariants(&e);
	}
	return 0;
}
