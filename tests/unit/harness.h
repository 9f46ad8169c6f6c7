/* harness.h - a minimal table-friendly unit test harness
 *
 * Every CHECK counts; the run ends with "N passed, N failed" and exits
 * non-zero when anything failed. Each test file exports one run_*() that
 * harness.c calls.
 */
#ifndef STARTTLSD_HARNESS_H
#define STARTTLSD_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

void harness_check(bool ok, const char *file, int line, const char *what, const char *context);
void harness_check_bytes(const void *got, size_t got_len, const void *want, size_t want_len,
                         const char *file, int line, const char *what, const char *context);

/* CHECK - COND must hold; CTX (a string, may be NULL) names the table case */
#define CHECK(cond, ctx) harness_check((cond), __FILE__, __LINE__, #cond, (ctx))
/* CHECK_BYTES - two byte strings must be equal; both are shown when they are not */
#define CHECK_BYTES(got, got_len, want, want_len, ctx) \
	harness_check_bytes((got), (got_len), (want), (want_len), __FILE__, __LINE__, #got, (ctx))

void run_buf_tests(void);
void run_config_tests(void);
void run_data_scanner_tests(void);
void run_domain_policy_tests(void);
void run_ehlo_filter_tests(void);
void run_http_request_tests(void);
void run_ip_count_tests(void);
void run_metrics_tests(void);
void run_proxy_header_tests(void);
void run_session_tests(void);
void run_smtp_command_tests(void);
void run_upstream_opening_tests(void);

#endif
