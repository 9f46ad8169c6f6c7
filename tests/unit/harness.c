/* harness.c - runs every unit test file and prints the tally */
#include "harness.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static unsigned passed, failed;

/* print_escaped - show bytes with CR, LF and non-printables visible */
static void print_escaped(const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r')
			fputs("\\r", stderr);
		else if (s[i] == '\n')
			fputs("\\n\n    ", stderr);
		else if (isprint(s[i]))
			fputc(s[i], stderr);
		else
			fprintf(stderr, "\\x%02x", s[i]);
	}
	fputc('\n', stderr);
}

void harness_check(bool ok, const char *file, int line, const char *what, const char *context)
{
	if (ok) {
		passed++;
		return;
	}
	failed++;
	fprintf(stderr, "FAIL %s:%d: %s%s%s\n", file, line, what, context ? " -- case: " : "",
	        context ? context : "");
}

void harness_check_bytes(const void *got, size_t got_len, const void *want, size_t want_len,
                         const char *file, int line, const char *what, const char *context)
{
	bool ok = got_len == want_len && memcmp(got, want, got_len) == 0;
	harness_check(ok, file, line, what, context);
	if (!ok) {
		fputs("  want: ", stderr);
		print_escaped(want, want_len);
		fputs("  got:  ", stderr);
		print_escaped(got, got_len);
	}
}

int main(void)
{
	run_buf_tests();
	run_config_tests();
	run_data_scanner_tests();
	run_domain_policy_tests();
	run_ehlo_filter_tests();
	run_http_request_tests();
	run_ip_count_tests();
	run_metrics_tests();
	run_proxy_header_tests();
	run_session_tests();
	run_smtp_command_tests();
	run_upstream_opening_tests();
	printf("unit: %u passed, %u failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
