/* test_ehlo_filter.c - which capability lines a client sees */
#include <string.h>

#include "ehlo_filter.h"
#include "harness.h"

static const struct {
	const char *line;
	bool before_tls;       /* kept before TLS, auth hidden */
	bool before_tls_auth;  /* kept before TLS with auth_before_tls */
	bool inside_tls;       /* kept inside TLS */
} cases[] = {
	{ "PIPELINING", true, true, true },
	{ "STARTTLS", false, false, false },
	{ "starttls", false, false, false },
	{ "STARTTLSX", true, true, true },
	{ "XCLIENT NAME ADDR PROTO", false, false, false },
	{ "XFORWARD NAME ADDR", false, false, false },
	{ "AUTH PLAIN LOGIN", false, true, true },
	{ "AUTH=LOGIN PLAIN", false, true, true },
	{ "auth plain", false, true, true },
	{ "AUTHX", true, true, true },
	{ "REQUIRETLS", false, false, false },
	{ "requiretls", false, false, false },
	{ "REQUIRETLSX", true, true, true },
	{ "SIZE 10240000", true, true, true },
	{ "CHUNKING", true, true, true },
	{ "", true, true, true },
};

void run_ehlo_filter_tests(void)
{
	struct ehlo_view before = { false, false }, before_auth = { false, true }, inside = { true, false };
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const uint8_t *t = (const uint8_t *)cases[i].line;
		size_t n = strlen(cases[i].line);
		CHECK(ehlo_keep_line(t, n, &before) == cases[i].before_tls, cases[i].line);
		CHECK(ehlo_keep_line(t, n, &before_auth) == cases[i].before_tls_auth, cases[i].line);
		CHECK(ehlo_keep_line(t, n, &inside) == cases[i].inside_tls, cases[i].line);
	}
}
