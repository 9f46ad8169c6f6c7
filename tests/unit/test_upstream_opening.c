/* test_upstream_opening.c - the outbound opening: transcripts run whole and
 * a byte at a time, every failure with its 421, and the session that takes
 * over in outbound use */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "session_driver.h"
#include "upstream_opening.h"

#define EHLO "EHLO proxy.example\r\n"

/* One opening: the relay's segments, each arriving once the proxy's output
 * is out; then the handshake's result if the machine asks for one. */
struct opening_case {
	const char *name;
	bool implicit;
	const char *segments[4];
	enum opening_tls_result tls;
	const char *want_sent;   /* everything written to the relay */
	enum opening_state want_state;
	const char *want_reply;  /* the failure's 421, or the greeting when ready */
	const char *want_reason; /* NULL when ready */
};

static const struct opening_case cases[] = {
	{ "starttls, verified", false,
	  { "220 relay.example.net ESMTP\r\n", "250-relay.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
	    "220 2.0.0 Ready\r\n" },
	  OPENING_TLS_VERIFIED, EHLO "STARTTLS\r\n", OPENING_READY,
	  "220 relay.example.net ESMTP starttlsd relay\r\n", NULL },
	{ "multi-line greeting, bare LF, lower-case starttls", false,
	  { "220-relay.example.net\n220 hello\n", "250-x\n250-starttls\n250 AUTH LOGIN\n", "220 go\n" },
	  OPENING_TLS_VERIFIED, EHLO "STARTTLS\r\n", OPENING_READY,
	  "220 relay.example.net ESMTP starttlsd relay\r\n", NULL },
	{ "implicit: the handshake first, no plaintext at all", true, { NULL }, OPENING_TLS_VERIFIED, "",
	  OPENING_READY, NULL, NULL },
	{ "implicit: certificate not trusted", true, { NULL }, OPENING_TLS_NOT_TRUSTED, "", OPENING_FAILED,
	  "421 4.7.0 Upstream certificate not trusted, closing connection\r\n", "upstream-not-trusted" },
	{ "no STARTTLS offered: nothing but EHLO is sent", false,
	  { "220 relay\r\n", "250-relay\r\n250-AUTH PLAIN\r\n250 SIZE 100\r\n" }, OPENING_TLS_VERIFIED, EHLO,
	  OPENING_FAILED, "421 4.7.0 Upstream does not offer STARTTLS, closing connection\r\n",
	  "upstream-no-starttls" },
	{ "STARTTLS only in the EHLO reply's first line (the name)", false,
	  { "220 relay\r\n", "250-STARTTLS\r\n250 SIZE\r\n" }, OPENING_TLS_VERIFIED, EHLO, OPENING_FAILED,
	  "421 4.7.0 Upstream does not offer STARTTLS, closing connection\r\n", "upstream-no-starttls" },
	{ "STARTTLSX is not STARTTLS", false, { "220 relay\r\n", "250-relay\r\n250 STARTTLSX\r\n" },
	  OPENING_TLS_VERIFIED, EHLO, OPENING_FAILED,
	  "421 4.7.0 Upstream does not offer STARTTLS, closing connection\r\n", "upstream-no-starttls" },
	{ "greeting 554", false, { "554 5.7.1 go away\r\n" }, OPENING_TLS_VERIFIED, "", OPENING_FAILED,
	  "421 4.4.2 Upstream not available, closing connection\r\n", "upstream-refused-greeting" },
	{ "greeting 421", false, { "421 4.3.2 busy\r\n" }, OPENING_TLS_VERIFIED, "", OPENING_FAILED,
	  "421 4.4.2 Upstream not available, closing connection\r\n", "upstream-refused-greeting" },
	{ "EHLO refused", false, { "220 relay\r\n", "502 5.5.1 no EHLO\r\n" }, OPENING_TLS_VERIFIED, EHLO,
	  OPENING_FAILED, "421 4.4.2 Upstream not available, closing connection\r\n", "upstream-refused-ehlo" },
	{ "STARTTLS refused", false, { "220 relay\r\n", "250-relay\r\n250 STARTTLS\r\n", "454 4.7.0 no\r\n" },
	  OPENING_TLS_VERIFIED, EHLO "STARTTLS\r\n", OPENING_FAILED,
	  "421 4.7.0 Upstream refused STARTTLS, closing connection\r\n", "upstream-refused-starttls" },
	{ "a reply injected after the 220 to STARTTLS", false,
	  { "220 relay\r\n", "250-relay\r\n250 STARTTLS\r\n", "220 ready\r\n250 injected\r\n" },
	  OPENING_TLS_VERIFIED, EHLO "STARTTLS\r\n", OPENING_FAILED,
	  "421 4.7.0 Upstream sent data before TLS, closing connection\r\n", "upstream-data-before-tls" },
	{ "handshake failed", false, { "220 relay\r\n", "250-relay\r\n250 STARTTLS\r\n", "220 ready\r\n" },
	  OPENING_TLS_FAILED, EHLO "STARTTLS\r\n", OPENING_FAILED,
	  "421 4.7.0 TLS handshake with upstream failed, closing connection\r\n", "upstream-handshake-failed" },
	{ "certificate not trusted", false, { "220 relay\r\n", "250-relay\r\n250 STARTTLS\r\n", "220 ready\r\n" },
	  OPENING_TLS_NOT_TRUSTED, EHLO "STARTTLS\r\n", OPENING_FAILED,
	  "421 4.7.0 Upstream certificate not trusted, closing connection\r\n", "upstream-not-trusted" },
	{ "the EHLO reply before the EHLO", false, { "220 relay\r\n250 STARTTLS\r\n" }, OPENING_TLS_VERIFIED, "",
	  OPENING_FAILED, "421 4.4.2 Upstream not available, closing connection\r\n", "upstream-protocol-error" },
	{ "code changes inside a reply", false, { "220 relay\r\n", "250-relay\r\n220 STARTTLS\r\n" },
	  OPENING_TLS_VERIFIED, EHLO, OPENING_FAILED,
	  "421 4.4.2 Upstream not available, closing connection\r\n", "upstream-protocol-error" },
	{ "not SMTP", false, { "SSH-2.0-OpenSSH_9.2\r\n" }, OPENING_TLS_VERIFIED, "", OPENING_FAILED,
	  "421 4.4.2 Upstream not available, closing connection\r\n", "upstream-protocol-error" },
	{ "a TLS server on a STARTTLS port", false, { "\x16\x03\x03\x01\x02\x02\x28\n" }, OPENING_TLS_VERIFIED,
	  "", OPENING_FAILED, "421 4.4.2 Upstream not available, closing connection\r\n",
	  "upstream-protocol-error" },
};

/* run_opening - one case, whole or a byte at a time; SENT_R collects the output */
static void run_opening(const struct opening_case *c, bool trickle, char *sent_r, size_t cap,
                        struct upstream_opening *o)
{
	static uint8_t in[8192];
	size_t in_len = 0, sent_len = 0;
	upstream_opening_init(o, c->implicit, "proxy.example", "relay.example.net");
	for (size_t seg = 0;; seg++) {
		size_t n;
		const uint8_t *out = upstream_opening_output(o, &n);
		CHECK(sent_len + n < cap, c->name);
		memcpy(sent_r + sent_len, out, n);
		sent_len += n;
		upstream_opening_sent(o, n);
		if (upstream_opening_wants_tls(o)) {
			upstream_opening_tls_done(o, c->tls);
			break;
		}
		if (seg >= 4 || !c->segments[seg] || o->state == OPENING_FAILED)
			break;
		const char *s = c->segments[seg];
		size_t len = strlen(s), step = trickle ? 1 : len;
		for (size_t off = 0; off < len; off += step) {
			memcpy(in + in_len, s + off, step);
			in_len += step;
			size_t used = upstream_opening_from_upstream(o, in, in_len);
			CHECK(used <= in_len, c->name);
			memmove(in, in + used, in_len - used);
			in_len -= used;
		}
	}
	sent_r[sent_len] = '\0';
}

static void test_openings(void)
{
	static struct upstream_opening o;
	char sent[1024];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (int trickle = 0; trickle < 2; trickle++) {
			const struct opening_case *c = &cases[i];
			run_opening(c, trickle, sent, sizeof sent, &o);
			CHECK_BYTES(sent, strlen(sent), c->want_sent, strlen(c->want_sent), c->name);
			CHECK(o.state == c->want_state, c->name);
			if (c->want_state == OPENING_FAILED) {
				CHECK_BYTES(o.failure_reply, strlen(o.failure_reply), c->want_reply,
				            strlen(c->want_reply), c->name);
				CHECK(strcmp(o.failure_reason, c->want_reason) == 0, c->name);
				continue;
			}
			const char *g = upstream_opening_greeting(&o);
			if (c->want_reply)
				CHECK(g && strcmp(g, c->want_reply) == 0, c->name);
			else
				CHECK(!g, c->name);
		}
	}
}

/* test_opening_edges - limits and the events from outside */
static void test_opening_edges(void)
{
	static struct upstream_opening o;
	static uint8_t line[OPENING_LINE_MAX + 10];

	/* A line that never ends is refused once it passes the limit. */
	upstream_opening_init(&o, false, "p", "r");
	memset(line, 'x', sizeof line);
	memcpy(line, "220-", 4);
	CHECK(upstream_opening_from_upstream(&o, line, OPENING_LINE_MAX - 1) == 0, "partial line waits");
	CHECK(o.state == OPENING_GREETING, "still waiting");
	upstream_opening_from_upstream(&o, line, sizeof line);
	CHECK(o.state == OPENING_FAILED && strcmp(o.failure_reason, "upstream-protocol-error") == 0, "too long");

	/* Unreachable, or closed, in any plaintext state. */
	upstream_opening_init(&o, false, "p", "r");
	upstream_opening_unreachable(&o);
	CHECK(o.state == OPENING_FAILED && strcmp(o.failure_reason, "upstream-unreachable") == 0 &&
	      strncmp(o.failure_reply, "421 4.4.2 ", 10) == 0, "unreachable");
	size_t n;
	upstream_opening_output(&o, &n);
	CHECK(n == 0, "nothing more for the relay after a failure");
	/* The first failure is the one reported. */
	upstream_opening_unreachable(&o);
	CHECK(strcmp(o.failure_reason, "upstream-unreachable") == 0, "first failure kept");

	/* A name that could break the greeting line is made harmless. */
	upstream_opening_init(&o, true, "p\r\nRSET", "a b\r\nMAIL FROM:<x>");
	upstream_opening_tls_done(&o, OPENING_TLS_VERIFIED);
	CHECK(o.state == OPENING_READY && strchr(o.greeting, '\n') == o.greeting + strlen(o.greeting) - 1,
	      "one greeting line");
	upstream_opening_init(&o, false, "p\r\nRSET", "r");
	const uint8_t *out = upstream_opening_output(&o, &n);
	CHECK(n == 0, "EHLO waits for the greeting");
	upstream_opening_from_upstream(&o, (const uint8_t *)"220 r\r\n", 7);
	out = upstream_opening_output(&o, &n);
	CHECK_BYTES(out, n, "EHLO p??RSET\r\n", 14, "EHLO name cleaned");

	/* A long host name fits. */
	char name[OPENING_NAME_MAX + 40];
	memset(name, 'h', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	upstream_opening_init(&o, false, name, name);
	upstream_opening_from_upstream(&o, (const uint8_t *)"220 r\r\n", 7);
	upstream_opening_output(&o, &n);
	CHECK(n == 5 + OPENING_NAME_MAX - 1 + 2, "long EHLO name cut to the limit");
}

/* test_outbound_session - after the opening the relay is the backend of a
 * session in implicit mode (upstream_opening.h) */
static void test_outbound_session(void)
{
	static struct driver d;
	static char client[65536], backend[65536];
	char actions[256];
	size_t cl, bl;
	struct session_policy policy = { .tls_mode = SESSION_IMPLICIT, .auth_before_tls = true };
	for (int trickle = 0; trickle < 2; trickle++) {
		driver_init(&d, &policy);
		/* The client talks before its greeting: held, not relayed. */
		driver_client(&d, "EHLO legacy\r\n", 13, trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		CHECK(cl == 0 && bl == 0, "nothing before the upstream is ready");

		session_tls_established(&d.s);
		const char *greeting = "220 relay.example.net ESMTP starttlsd relay\r\n";
		driver_backend(&d, greeting, strlen(greeting), trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		static const char want_first[] = "220 relay.example.net ESMTP starttlsd relay\r\n";
		CHECK_BYTES(client, cl, want_first, sizeof want_first - 1, "the proxy's greeting");
		CHECK_BYTES(backend, bl, "EHLO legacy\r\n", 13, "the client's EHLO goes to the relay");

		static const char ehlo_reply[] = "250-relay.example.net\r\n250-PIPELINING\r\n250-STARTTLS\r\n"
		                                 "250-AUTH PLAIN LOGIN\r\n250-REQUIRETLS\r\n250 CHUNKING\r\n";
		driver_backend(&d, ehlo_reply, sizeof ehlo_reply - 1, trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		static const char want_ehlo[] = "250-relay.example.net\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n"
		                                "250 CHUNKING\r\n";
		CHECK_BYTES(client, cl, want_ehlo, sizeof want_ehlo - 1, "no STARTTLS, no REQUIRETLS, AUTH kept");

		driver_client(&d, "STARTTLS\r\n", 10, trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		static const char want_503[] = "503 5.5.1 TLS already active\r\n";
		CHECK_BYTES(client, cl, want_503, sizeof want_503 - 1, "the client's STARTTLS refused");
		CHECK(bl == 0 && !strstr(actions, "START_TLS"), "never relayed, no handshake");

		driver_client(&d, "AUTH PLAIN AGEAYg==\r\n", 21, trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		CHECK_BYTES(backend, bl, "AUTH PLAIN AGEAYg==\r\n", 21, "AUTH passes (inside TLS upstream)");
		driver_backend(&d, "235 2.7.0 ok\r\n", 14, trickle);

		static const char mail[] = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n";
		driver_client(&d, mail, sizeof mail - 1, trickle);
		driver_backend(&d, "250 ok\r\n250 ok\r\n354 go\r\n", 24, trickle);
		static const char smuggle[] = "Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@x>\r\n.\r\n";
		driver_client(&d, smuggle, sizeof smuggle - 1, trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		CHECK(memmem(client, cl, "554 5.7.0", 9) && strstr(actions, "DROP_BACKEND"), "smuggling refused as inbound");
		CHECK(!memmem(backend, bl, "\r\n.\r\n", 5), "no end of data reached the relay");
	}
}

/* ---- transparent mode (backend = original-destination) ---- */

#define GREETING "220 dest.example ESMTP\r\n"
#define REPLY_TLS "250-dest.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
#define REPLY_PLAIN "250-dest.example\r\n250 PIPELINING\r\n"

struct transparent_case {
	const char *name;
	enum opening_plain_policy policy;
	const char *client_line;
	const char *segments[6]; /* the destination's, in turn; NULL ends */
	enum opening_tls_result tls;
	const char *want_sent;
	enum opening_state want_state;
	const char *want_reply;  /* the plain reply for the session, or the failure's 421 */
	const char *want_reason; /* plain_reason or failure_reason; NULL when ready */
};

static const struct transparent_case transparent_cases[] = {
	{ "offered: STARTTLS with the client's name, then TLS", OPENING_OPPORTUNISTIC, "EHLO legacy.test\r\n",
	  { GREETING, REPLY_TLS, "220 go\r\n" }, OPENING_TLS_VERIFIED, "EHLO legacy.test\r\nSTARTTLS\r\n",
	  OPENING_READY, NULL, NULL },
	{ "not offered: plaintext, the reply kept", OPENING_OPPORTUNISTIC, "ehlo legacy.test\r\n",
	  { GREETING, REPLY_PLAIN }, OPENING_TLS_VERIFIED, "EHLO legacy.test\r\n", OPENING_PLAIN, REPLY_PLAIN,
	  "not-offered" },
	{ "HELO is sent as EHLO; its reply is one line", OPENING_OPPORTUNISTIC, "HELO old.test\r\n",
	  { GREETING, REPLY_PLAIN }, OPENING_TLS_VERIFIED, "EHLO old.test\r\n", OPENING_PLAIN,
	  "250 dest.example\r\n", "not-offered" },
	{ "HELO gets TLS when offered", OPENING_OPPORTUNISTIC, "HELO old.test\r\n",
	  { GREETING, REPLY_TLS, "220 go\r\n" }, OPENING_TLS_VERIFIED, "EHLO old.test\r\nSTARTTLS\r\n",
	  OPENING_READY, NULL, NULL },
	{ "upstream_tls = starttls: not offered is 421", OPENING_TLS_REQUIRED, "EHLO legacy.test\r\n",
	  { GREETING, REPLY_PLAIN }, OPENING_TLS_VERIFIED, "EHLO legacy.test\r\n", OPENING_FAILED,
	  "421 4.7.0 Upstream does not offer STARTTLS, closing connection\r\n", "upstream-no-starttls" },
	{ "STARTTLS refused: 421 without fallback", OPENING_OPPORTUNISTIC, "EHLO legacy.test\r\n",
	  { GREETING, REPLY_TLS, "454 4.7.0 not now\r\n" }, OPENING_TLS_VERIFIED,
	  "EHLO legacy.test\r\nSTARTTLS\r\n", OPENING_FAILED,
	  "421 4.7.0 Upstream refused STARTTLS, closing connection\r\n", "upstream-refused-starttls" },
	{ "STARTTLS refused: plaintext with fallback", OPENING_FALLBACK, "EHLO legacy.test\r\n",
	  { GREETING, REPLY_TLS, "454 4.7.0 not now\r\n" }, OPENING_TLS_VERIFIED,
	  "EHLO legacy.test\r\nSTARTTLS\r\n", OPENING_PLAIN, REPLY_TLS, "starttls-refused" },
	{ "handshake failed: 421 without fallback", OPENING_OPPORTUNISTIC, "EHLO legacy.test\r\n",
	  { GREETING, REPLY_TLS, "220 go\r\n" }, OPENING_TLS_FAILED, "EHLO legacy.test\r\nSTARTTLS\r\n",
	  OPENING_FAILED, "421 4.7.0 TLS handshake with upstream failed, closing connection\r\n",
	  "upstream-handshake-failed" },
	{ "handshake failed: a new connection, no STARTTLS asked", OPENING_FALLBACK, "EHLO legacy.test\r\n",
	  { GREETING, REPLY_TLS, "220 go\r\n", "220 again\r\n", REPLY_TLS }, OPENING_TLS_FAILED,
	  "EHLO legacy.test\r\nSTARTTLS\r\nEHLO legacy.test\r\n", OPENING_PLAIN, REPLY_TLS, "handshake-failed" },
	{ "a reply injected behind STARTTLS's 220", OPENING_FALLBACK, "EHLO legacy.test\r\n",
	  { GREETING, REPLY_TLS, "220 go\r\n250 injected\r\n" }, OPENING_TLS_VERIFIED,
	  "EHLO legacy.test\r\nSTARTTLS\r\n", OPENING_FAILED,
	  "421 4.7.0 Upstream sent data before TLS, closing connection\r\n", "upstream-data-before-tls" },
	{ "the client's first line is not EHLO", OPENING_OPPORTUNISTIC, "MAIL FROM:<a@b>\r\n", { GREETING },
	  OPENING_TLS_VERIFIED, "", OPENING_FAILED, "421 4.7.0 EHLO or HELO first, closing connection\r\n",
	  "client-no-ehlo" },
	{ "EHLO without a name", OPENING_OPPORTUNISTIC, "EHLO\r\n", { GREETING }, OPENING_TLS_VERIFIED, "",
	  OPENING_FAILED, "421 4.7.0 EHLO or HELO first, closing connection\r\n", "client-no-ehlo" },
	{ "the destination talks before the client's EHLO", OPENING_OPPORTUNISTIC, "EHLO legacy.test\r\n",
	  { GREETING "250 early\r\n" }, OPENING_TLS_VERIFIED, "", OPENING_FAILED,
	  "421 4.4.2 Upstream not available, closing connection\r\n", "upstream-protocol-error" },
	{ "greeting 554", OPENING_OPPORTUNISTIC, "EHLO legacy.test\r\n", { "554 no\r\n" }, OPENING_TLS_VERIFIED,
	  "", OPENING_FAILED, "421 4.4.2 Upstream not available, closing connection\r\n",
	  "upstream-refused-greeting" },
};

static void run_transparent(const struct transparent_case *c, bool trickle, char *sent_r, size_t cap,
                            struct upstream_opening *o, bool *greeted_r)
{
	static uint8_t in[8192];
	size_t in_len = 0, sent_len = 0, seg = 0;
	*greeted_r = false;
	upstream_opening_init_transparent(o, c->policy);
	for (int round = 0; round < 16; round++) {
		size_t n;
		const uint8_t *g = upstream_opening_client_greeting(o, &n);
		if (g) {
			CHECK_BYTES(g, n, GREETING, strlen(GREETING), c->name);
			*greeted_r = true;
		}
		upstream_opening_from_client(o, (const uint8_t *)c->client_line, strlen(c->client_line));
		const uint8_t *out = upstream_opening_output(o, &n);
		CHECK(sent_len + n < cap, c->name);
		memcpy(sent_r + sent_len, out, n);
		sent_len += n;
		upstream_opening_sent(o, n);
		if (upstream_opening_wants_tls(o))
			upstream_opening_tls_done(o, c->tls);
		if (o->state == OPENING_RECONNECT) {
			in_len = 0;
			upstream_opening_reconnected(o);
			continue;
		}
		if (o->state == OPENING_FAILED || o->state == OPENING_PLAIN || o->state == OPENING_READY ||
		    seg >= 6 || !c->segments[seg])
			break;
		const char *s = c->segments[seg++];
		size_t len = strlen(s), step = trickle ? 1 : len;
		for (size_t off = 0; off < len; off += step) {
			memcpy(in + in_len, s + off, step);
			in_len += step;
			size_t used = upstream_opening_from_upstream(o, in, in_len);
			memmove(in, in + used, in_len - used);
			in_len -= used;
		}
	}
	sent_r[sent_len] = '\0';
}

static void test_transparent_openings(void)
{
	static struct upstream_opening o;
	char sent[1024];
	for (size_t i = 0; i < sizeof transparent_cases / sizeof transparent_cases[0]; i++) {
		for (int trickle = 0; trickle < 2; trickle++) {
			const struct transparent_case *c = &transparent_cases[i];
			bool greeted;
			run_transparent(c, trickle, sent, sizeof sent, &o, &greeted);
			CHECK_BYTES(sent, strlen(sent), c->want_sent, strlen(c->want_sent), c->name);
			CHECK(o.state == c->want_state, c->name);
			if (c->want_state == OPENING_FAILED) {
				CHECK_BYTES(o.failure_reply, strlen(o.failure_reply), c->want_reply,
				            strlen(c->want_reply), c->name);
				CHECK(strcmp(o.failure_reason, c->want_reason) == 0, c->name);
			} else if (c->want_state == OPENING_PLAIN) {
				size_t n;
				const uint8_t *r = upstream_opening_reply(&o, &n);
				CHECK_BYTES(r, n, c->want_reply, strlen(c->want_reply), c->name);
				CHECK(strcmp(o.plain_reason, c->want_reason) == 0, c->name);
				CHECK(greeted, c->name);
			} else {
				CHECK(greeted && !upstream_opening_greeting(&o), c->name);
			}
		}
	}
	upstream_opening_init_transparent(&o, OPENING_OPPORTUNISTIC);
	upstream_opening_no_destination(&o, true);
	CHECK(o.state == OPENING_FAILED && strcmp(o.failure_reason, "loop") == 0, "loop");
	upstream_opening_init_transparent(&o, OPENING_OPPORTUNISTIC);
	upstream_opening_no_destination(&o, false);
	CHECK(strcmp(o.failure_reason, "no-original-destination") == 0 && strncmp(o.failure_reply, "421 ", 4) == 0,
	      "not redirected");
}

/* test_transparent_session - the session after a transparent opening: the
 * greeting passed on, in plaintext the client's EHLO taken as sent */
static void test_transparent_session(void)
{
	static struct driver d;
	static char client[65536], backend[65536];
	char actions[256];
	size_t cl, bl;
	struct session_policy policy = { .tls_mode = SESSION_IMPLICIT, .auth_before_tls = true };
	for (int trickle = 0; trickle < 2; trickle++) {
		driver_init(&d, &policy);
		session_greeting_passed(&d.s, (const uint8_t *)GREETING, strlen(GREETING));
		session_plaintext_open(&d.s);
		driver_client(&d, "EHLO legacy.test\r\n", 18, trickle);
		driver_backend(&d, REPLY_TLS, strlen(REPLY_TLS), trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		static const char want[] = GREETING "250-dest.example\r\n250 PIPELINING\r\n";
		CHECK_BYTES(client, cl, want, sizeof want - 1, "greeting, then the EHLO reply without STARTTLS");
		CHECK(bl == 0, "the EHLO is not sent twice");
		driver_client(&d, "MAIL FROM:<a@b>\r\n", 17, trickle);
		driver_take(&d, client, &cl, backend, &bl, actions, sizeof actions);
		CHECK_BYTES(backend, bl, "MAIL FROM:<a@b>\r\n", 17, "then relayed as usual");
	}
}

void run_upstream_opening_tests(void)
{
	test_transparent_openings();
	test_transparent_session();
	test_openings();
	test_opening_edges();
	test_outbound_session();
}
