/* test_metrics.c - the counters' label tables, the sums over workers, and
 * the text: escaped label values, every family once, and a buffer one
 * byte too small refused rather than cut */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "metrics.h"

static char names[METRICS_MAX_LISTENERS][CONFIG_NAME_MAX];

static void test_listener_index(void)
{
	memset(names, 0, sizeof names);
	CHECK(metrics_listener_index(names, "mx") == 0, NULL);
	CHECK(metrics_listener_index(names, "submission") == 1, NULL);
	CHECK(metrics_listener_index(names, "mx") == 0, "a name keeps its row across reloads");
	char name[CONFIG_NAME_MAX];
	for (size_t i = 2; i < METRICS_MAX_LISTENERS - 1; i++) {
		snprintf(name, sizeof name, "l%zu", i);
		CHECK(metrics_listener_index(names, name) == i, name);
	}
	CHECK(metrics_listener_index(names, "one-too-many") == METRICS_MAX_LISTENERS - 1, "full: shared row");
	CHECK(strcmp(names[METRICS_MAX_LISTENERS - 1], METRICS_OTHER_LISTENER) == 0, NULL);
	CHECK(metrics_listener_index(names, "another") == METRICS_MAX_LISTENERS - 1, NULL);
	CHECK(metrics_listener_index(names, "submission") == 1, NULL);
}

static void test_label_tables(void)
{
	size_t version, cipher;
	metrics_tls_index("TLS1.3/AES-256-GCM", &version, &cipher);
	CHECK(version == 3 && cipher == 1, NULL);
	metrics_tls_index("TLS1.2/CHACHA20-POLY1305", &version, &cipher);
	CHECK(version == 2 && cipher == 2, NULL);
	metrics_tls_index("SSL3.0/ARCFOUR-128", &version, &cipher);
	CHECK(version == METRICS_TLS_VERSIONS - 1 && cipher == METRICS_CIPHERS - 1, "unknown: other");
	metrics_tls_index("TLS1.3", &version, &cipher);
	CHECK(version == 3 && cipher == METRICS_CIPHERS - 1, "no cipher");
	metrics_tls_index("TLS1.3/AES-256-GCMX", &version, &cipher);
	CHECK(cipher == METRICS_CIPHERS - 1, "a longer name is not a prefix match");
	CHECK(metrics_end_reason_index("quit") == 0, NULL);
	CHECK(metrics_end_reason_index("smuggling-refused") < METRICS_END_REASONS - 1, NULL);
	CHECK(metrics_end_reason_index("backend-unreachable") < METRICS_END_REASONS - 1, NULL);
	/* backend = original-destination's own ends, and the opening's */
	static const char *const transparent_ends[] = { "loop", "no-original-destination", "client-no-ehlo",
		                                        "upstream-data-before-tls", "upstream-handshake-failed" };
	for (size_t i = 0; i < sizeof transparent_ends / sizeof transparent_ends[0]; i++)
		CHECK(metrics_end_reason_index(transparent_ends[i]) < METRICS_END_REASONS - 1, transparent_ends[i]);
	CHECK(metrics_end_reason_index("no such reason") == METRICS_END_REASONS - 1, "unknown: other");

	CHECK(metrics_upstream_hop("ca") == METRICS_UPSTREAM_CA, NULL);
	CHECK(metrics_upstream_hop("dane") == METRICS_UPSTREAM_DANE, NULL);
	CHECK(metrics_upstream_hop("none") == METRICS_UPSTREAM_UNVERIFIED, NULL);
	CHECK(metrics_upstream_hop(NULL) == METRICS_UPSTREAM_PLAINTEXT, "no TLS at all");
	CHECK(metrics_upstream_hop("cax") == METRICS_UPSTREAM_UNVERIFIED, "unknown: never counted as verified");
}

static struct metrics_slot slots[3], sum;
static struct metrics_counters retired;

static void test_gather(void)
{
	memset(slots, 0, sizeof slots);
	memset(&retired, 0, sizeof retired);
	metrics_add(&slots[0].counters.messages, 2);
	metrics_add(&slots[1].counters.messages, 3);
	metrics_add(&slots[0].counters.refused[1][METRICS_REFUSED_MAX_PER_IP], 1);
	metrics_add(&slots[1].counters.reloads[METRICS_RELOAD_OK], 1);
	metrics_add(&slots[0].gauges.open[0], 1);
	metrics_add(&slots[1].gauges.open[0], 1);
	metrics_add(&slots[1].gauges.open[0], (uint64_t)-1);
	metrics_add(&slots[1].gauges.open[0], 1);
	metrics_set(&slots[0].gauges.backend_ok_at[0], 100);
	metrics_set(&slots[1].gauges.backend_ok_at[0], 200);
	metrics_add(&retired.messages, 10);

	metrics_gather(&retired, slots, 2, &sum);
	CHECK(sum.counters.messages == 15, NULL);
	CHECK(sum.counters.refused[1][METRICS_REFUSED_MAX_PER_IP] == 1, NULL);
	CHECK(sum.counters.reloads[METRICS_RELOAD_OK] == 1, NULL);
	CHECK(sum.gauges.open[0] == 2, "open is a sum, -1 included");
	CHECK(sum.gauges.backend_ok_at[0] == 200, "the latest greeting");

	/* A worker exits: its counters move to the retired sum; nothing goes backwards. */
	metrics_fold(&retired, &slots[1].counters);
	memset(&slots[1], 0, sizeof slots[1]);
	metrics_gather(&retired, slots, 2, &sum);
	CHECK(sum.counters.messages == 15, "the same total after the fold");
	CHECK(sum.counters.reloads[METRICS_RELOAD_OK] == 1, NULL);
	CHECK(sum.gauges.open[0] == 1, "an exited worker's connections are gone");
}

static char out[64 * 1024];

static void test_render(void)
{
	memset(names, 0, sizeof names);
	metrics_listener_index(names, "mx");
	metrics_listener_index(names, "odd\"name\\with\nnewline");
	memset(&sum, 0, sizeof sum);
	sum.counters.accepted[0] = 7;
	sum.gauges.open[0] = 2;
	sum.counters.established[3][1] = 5;
	sum.counters.refusals[METRICS_REFUSAL_AUTH_NEEDS_TLS] = 4;
	sum.counters.ended[metrics_end_reason_index("quit")] = 6;
	metrics_listener_index(names, "out");
	sum.counters.upstream_sessions[2][METRICS_UPSTREAM_PLAINTEXT] = 3;
	sum.counters.upstream_tls[2][3] = 4;
	struct metrics_cert certs[] = {
		{ "mx", "/etc/mx.pem", 1900000000, 1699999000 },
		{ "mx", "/etc/rsa.pem", 1800000000, -1 },
	};
	struct metrics_view view = { &sum, (const char(*)[CONFIG_NAME_MAX])names, certs, 2, 1700000000,
		                     "0.1.0", "3.7.9", "4.33" };
	size_t len = metrics_render(&view, out, sizeof out);
	CHECK(len > 0 && len < sizeof out, NULL);
	out[len] = '\0';
	static const char *const want[] = {
		"starttlsd_build_info{version=\"0.1.0\",gnutls=\"3.7.9\",libev=\"4.33\"} 1\n",
		"\nstarttlsd_connections_accepted_total{listener=\"mx\"} 7\n",
		"\nstarttlsd_connections_accepted_total{listener=\"odd\\\"name\\\\with\\nnewline\"} 0\n",
		"\nstarttlsd_connections_open{listener=\"mx\"} 2\n",
		"\nstarttlsd_connections_refused_total{listener=\"mx\",reason=\"max_handshakes\"} 0\n",
		"\nstarttlsd_tls_established_total{version=\"TLS1.3\",cipher=\"AES-256-GCM\"} 5\n",
		"\nstarttlsd_refusals_total{reason=\"auth_needs_tls\"} 4\n",
		"\nstarttlsd_sessions_ended_total{reason=\"quit\"} 6\n",
		"\nstarttlsd_sessions_ended_total{reason=\"other\"} 0\n",
		"\nstarttlsd_reloads_total{result=\"failed\"} 0\n",
		"\nstarttlsd_upstream_sessions_total{listener=\"out\",verified=\"plaintext\"} 3\n",
		"\nstarttlsd_upstream_sessions_total{listener=\"out\",verified=\"ca\"} 0\n",
		"\nstarttlsd_upstream_tls_total{listener=\"out\",version=\"TLS1.3\"} 4\n",
		"\nstarttlsd_certificate_expiry_seconds{listener=\"mx\",cert=\"/etc/rsa.pem\"} 1800000000\n",
		"\nstarttlsd_ocsp_response_age_seconds{listener=\"mx\",cert=\"/etc/mx.pem\"} 1000\n",
		"\n# TYPE starttlsd_connections_open gauge\n",
		"\n# TYPE starttlsd_messages_total counter\n",
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		CHECK(strstr(out, want[i]) != NULL, want[i]);
	CHECK(strstr(out, "cert=\"/etc/rsa.pem\"} 1800000000\n") &&
	              !strstr(out, "starttlsd_ocsp_response_age_seconds{listener=\"mx\",cert=\"/etc/rsa.pem\"}"),
	      "no OCSP age without a stapled response");
	CHECK(!strstr(out, "cipher=\"AES-128-GCM\""), "version and cipher pairs not seen are left out");
	CHECK(!strstr(out, "starttlsd_upstream_sessions_total{listener=\"mx\""),
	      "no upstream rows for a listener that never had an outbound session");
	CHECK(!strstr(out, "starttlsd_upstream_tls_total{listener=\"out\",version=\"TLS1.2\"}"),
	      "outbound TLS versions not seen are left out");
	CHECK(out[len - 1] == '\n', "the last line ends");

	CHECK(metrics_render(&view, out, len) == 0, "one byte short: refused, not cut");
	CHECK(metrics_render(&view, out, len + 1) == len, "exactly enough room");
	CHECK(metrics_render(&view, out, 0) == 0, NULL);
}

void run_metrics_tests(void)
{
	test_listener_index();
	test_label_tables();
	test_gather();
	test_render();
}
