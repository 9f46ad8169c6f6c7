/* test_domain_policy.c - the RCPT domain and DNS name parsers, the
 * decision cache, and the session's hold on a RCPT whose domain waits for
 * its verdict (dane = yes) */
#include <stdio.h>
#include <string.h>

#include "domain_policy.h"
#include "harness.h"
#include "session_driver.h"

static void rcpt_domain_cases(void)
{
	static const struct {
		const char *args;
		const char *want; /* NULL: no domain */
	} cases[] = {
		{ "TO:<b@example.org>", "example.org" },
		{ "to:<b@Example.ORG>", "example.org" },
		{ "TO: <b@example.org>", "example.org" },
		{ "TO:<b@example.org.> NOTIFY=NEVER", "example.org" },
		{ "TO:<@relay.test,@other.test:b@dest.test>", "dest.test" },
		{ "TO:<\"a@b>c\"@quoted.test>", "quoted.test" },
		{ "TO:<\"a\\\"@x\"@esc.test>", "esc.test" },
		{ "TO:<Postmaster>", NULL },
		{ "TO:<>", NULL },
		{ "TO:<b@[192.0.2.1]>", NULL },
		{ "TO:<b@>", NULL },
		{ "TO:<b@example.org", NULL },
		{ "TO:b@example.org", NULL },
		{ "FROM:<b@example.org>", NULL },
		{ "TO:<b@exa mple.org>", NULL },
		{ "TO:<b@a..b>", NULL },
		{ "TO:<b@.a>", NULL },
		{ "TO:<b@a..>", NULL },
		{ "TO:<b@b\xc3\xbc.test>", NULL },
		{ "TO:<\"unterminated@x.test>", NULL },
		{ "TO:<@relay.test>", NULL },
		{ "TO", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char name[DOMAIN_NAME_MAX] = "";
		bool ok = rcpt_domain((const uint8_t *)cases[i].args, strlen(cases[i].args), name);
		CHECK(ok == (cases[i].want != NULL), cases[i].args);
		if (ok && cases[i].want)
			CHECK(strcmp(name, cases[i].want) == 0, cases[i].args);
	}
	/* 253 octets is the longest name; 254 is one too many */
	char args[400] = "TO:<b@";
	size_t n = strlen(args);
	for (int label = 0; label < 4; label++) {
		memset(args + n, 'a', 63);
		n += 63;
		args[n++] = '.';
	}
	n -= 3; /* 4 * 64 - 3 = 253: the last dot and two octets go */
	memcpy(args + n, ">", 2);
	char name[DOMAIN_NAME_MAX];
	CHECK(rcpt_domain((const uint8_t *)args, strlen(args), name) && strlen(name) == 253, "253 octets");
	memcpy(args + n, "a>", 3);
	CHECK(!rcpt_domain((const uint8_t *)args, strlen(args), name), "254 octets");
}

static void wire_name_cases(void)
{
	char name[DOMAIN_NAME_MAX];
	size_t used;
	static const uint8_t mx[] = "\x02mx\x04" "DANE\x04test\x00" "rest";
	CHECK(dns_wire_name(mx, sizeof mx - 1, name, &used) && strcmp(name, "mx.dane.test") == 0 && used == 14,
	      "mx.dane.test");
	static const uint8_t root[] = { 0 };
	CHECK(dns_wire_name(root, 1, name, &used) && name[0] == '\0' && used == 1, "root");
	static const uint8_t pointer[] = { 0xc0, 0x0c };
	CHECK(!dns_wire_name(pointer, sizeof pointer, name, &used), "compression pointer");
	static const uint8_t cut[] = { 5, 'a', 'b' };
	CHECK(!dns_wire_name(cut, sizeof cut, name, &used), "cut short");
	static const uint8_t no_end[] = { 1, 'a' };
	CHECK(!dns_wire_name(no_end, sizeof no_end, name, &used), "no root label");
	static const uint8_t dot[] = { 3, 'a', '.', 'b', 0 };
	CHECK(!dns_wire_name(dot, sizeof dot, name, &used), "a dot inside a label");
	static const uint8_t under[] = { 4, '_', '2', '5', 'x', 0 };
	CHECK(dns_wire_name(under, sizeof under, name, &used) && strcmp(name, "_25x") == 0, "underscore");
	/* five labels of 63: past 253 octets */
	uint8_t longname[5 * 64 + 1];
	for (int i = 0; i < 5; i++) {
		longname[i * 64] = 63;
		memset(longname + i * 64 + 1, 'a', 63);
	}
	longname[5 * 64] = 0;
	CHECK(!dns_wire_name(longname, sizeof longname, name, &used), "too long");
}

static void decision_cases(void)
{
	struct domain_decisions d;
	domain_decisions_init(&d);
	enum domain_verdict v;
	CHECK(!domain_decisions_find(&d, "a.test", &v), "empty");
	domain_decisions_add(&d, "a.test", DOMAIN_DEFER_DANE);
	CHECK(domain_decisions_find(&d, "a.test", &v) && v == DOMAIN_DEFER_DANE, "found");
	char name[32];
	for (int i = 0; i < DOMAIN_DECISIONS_MAX; i++) {
		snprintf(name, sizeof name, "d%d.test", i);
		domain_decisions_add(&d, name, DOMAIN_OK);
	}
	CHECK(!domain_decisions_find(&d, "a.test", &v), "the oldest gave way");
	CHECK(domain_decisions_find(&d, "d15.test", &v) && v == DOMAIN_OK, "the newest stays");
	CHECK(d.n_known == DOMAIN_DECISIONS_MAX, "bounded");
}

/* ---- the session's hold ---- */

static char got_client[DRIVER_OUT_CAP], got_backend[DRIVER_OUT_CAP], got_actions[256];
static size_t got_client_len, got_backend_len;

static void take(struct driver *d)
{
	driver_take(d, got_client, &got_client_len, got_backend, &got_backend_len, got_actions, sizeof got_actions);
	got_client[got_client_len] = '\0';
	got_backend[got_backend_len] = '\0';
}

#define SAYS(d, who, text) driver_##who((d), (text), strlen(text), trickle)

/* start - an implicit (outbound) session after its greeting and EHLO */
static void start(struct driver *d, struct domain_decisions *domains, bool trickle)
{
	struct session_policy policy = { .tls_mode = SESSION_IMPLICIT, .auth_before_tls = true };
	policy.domains = domains;
	domain_decisions_init(domains);
	driver_init(d, &policy);
	session_tls_established(&d->s);
	SAYS(d, backend, "220 dest.test ESMTP\r\n");
	SAYS(d, client, "EHLO mta.test\r\n");
	SAYS(d, backend, "250-dest.test\r\n250 PIPELINING\r\n");
	take(d);
}

static void hold_cases(bool trickle)
{
	const char *ctx = trickle ? "hold, trickled" : "hold";
	static struct driver d;
	static struct domain_decisions domains;
	start(&d, &domains, trickle);

	/* A pipelined transaction: MAIL goes on, the RCPT and all behind it wait. */
	SAYS(&d, client, "MAIL FROM:<a@mta.test>\r\nRCPT TO:<x@ok.test>\r\nRCPT TO:<y@bad.test>\r\n"
	                 "RCPT TO:<z@OK.test>\r\nDATA\r\n");
	take(&d);
	CHECK(strcmp(got_backend, "MAIL FROM:<a@mta.test>\r\n") == 0, ctx);
	CHECK(strcmp(got_actions, "DOMAIN_POLICY") == 0, ctx);
	CHECK(session_domain_wanted(&d.s) && strcmp(session_domain_wanted(&d.s), "ok.test") == 0, ctx);
	SAYS(&d, backend, "250 2.1.0 Ok\r\n");
	take(&d);
	CHECK(strcmp(got_client, "250 2.1.0 Ok\r\n") == 0 && got_backend_len == 0, ctx);

	session_domain_decided(&d.s, DOMAIN_OK);
	driver_pump(&d);
	take(&d);
	/* The first RCPT goes; the second waits for bad.test. */
	CHECK(strcmp(got_backend, "RCPT TO:<x@ok.test>\r\n") == 0, ctx);
	CHECK(strcmp(got_actions, "DOMAIN_POLICY") == 0, ctx);
	CHECK(strcmp(session_domain_wanted(&d.s), "bad.test") == 0, ctx);

	session_domain_decided(&d.s, DOMAIN_DEFER_DANE);
	driver_pump(&d);
	take(&d);
	/* bad.test is answered by the proxy, never relayed; OK.test is
	 * ok.test, decided already; DATA follows in order. */
	CHECK(strcmp(got_backend, "RCPT TO:<z@OK.test>\r\nDATA\r\n") == 0, got_backend);
	CHECK(got_actions[0] == '\0' && session_domain_wanted(&d.s) == NULL, ctx);
	CHECK(got_client_len == 0, ctx); /* the 450 waits for the first RCPT's reply */
	SAYS(&d, backend, "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n");
	take(&d);
	CHECK(strcmp(got_client, "250 2.1.5 Ok\r\n"
	                         "450 4.7.5 Recipient domain's DANE TLSA records not met by this server\r\n"
	                         "250 2.1.5 Ok\r\n354 go\r\n") == 0,
	      got_client);
}

static void dns_failure_case(void)
{
	static struct driver d;
	static struct domain_decisions domains;
	bool trickle = false;
	start(&d, &domains, trickle);
	SAYS(&d, client, "RCPT TO:<x@slow.test>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<y@[192.0.2.1]>\r\n");
	take(&d);
	CHECK(got_backend_len == 0 && strcmp(got_actions, "DOMAIN_POLICY") == 0, "dns: held");
	session_domain_decided(&d.s, DOMAIN_DEFER_DNS);
	driver_pump(&d);
	take(&d);
	/* No domain to decide: Postmaster and the literal go on unasked. */
	CHECK(strcmp(got_backend, "RCPT TO:<Postmaster>\r\nRCPT TO:<y@[192.0.2.1]>\r\n") == 0, got_backend);
	CHECK(strcmp(got_client, "451 4.4.3 Recipient domain's DNS lookup failed, try again later\r\n") == 0,
	      got_client);
	CHECK(got_actions[0] == '\0', "dns: one question per domain");
}

static void no_policy_case(void)
{
	/* Without domains (dane = no) a RCPT is relayed at once. */
	static struct driver d;
	struct session_policy policy = { .tls_mode = SESSION_IMPLICIT };
	driver_init(&d, &policy);
	session_tls_established(&d.s);
	bool trickle = false;
	SAYS(&d, backend, "220 dest.test ESMTP\r\n");
	SAYS(&d, client, "EHLO mta.test\r\n");
	SAYS(&d, backend, "250 dest.test\r\n");
	SAYS(&d, client, "RCPT TO:<x@ok.test>\r\n");
	take(&d);
	CHECK(strstr(got_backend, "RCPT TO:<x@ok.test>\r\n") != NULL && !strstr(got_actions, "DOMAIN_POLICY"),
	      "no policy");
}

void run_domain_policy_tests(void)
{
	rcpt_domain_cases();
	wire_name_cases();
	decision_cases();
	hold_cases(false);
	hold_cases(true);
	dns_failure_case();
	no_policy_case();
}
