/* metrics.c - counter layout, label tables, sums and text (see metrics.h) */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- the fixed label sets ---- */

static const char *const refused_reasons[METRICS_REFUSED_REASONS] = {
	"max_connections", "max_per_ip", "max_handshakes",
};
static const char *const handshake_results[METRICS_HANDSHAKE_RESULTS] = { "ok", "failed", "timeout" };
static const char *const refusals[METRICS_REFUSALS] = {
	"must_starttls", "auth_needs_tls", "client_xclient", "smuggling", "plaintext_after_starttls",
};
static const char *const directions[METRICS_DIRECTIONS] = { "to_backend", "to_client" };
static const char *const reload_results[METRICS_RELOAD_RESULTS] = { "ok", "failed" };
/* the label of enum metrics_upstream_hop; the first three as verified= logs them */
static const char *const upstream_hops[METRICS_UPSTREAM_HOPS] = { "ca", "dane", "none", "plaintext" };
/* gnutls_protocol_get_name(); the last entry is every other */
static const char *const tls_versions[METRICS_TLS_VERSIONS] = { "TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3", "other" };
/* gnutls_cipher_get_name() of the AEAD and CBC ciphers */
static const char *const ciphers[METRICS_CIPHERS] = {
	"AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305", "AES-128-CCM",
	"AES-256-CCM", "AES-128-CBC", "AES-256-CBC", "other",
};
/* Every end= value of the session log line (session.c, conn.c). A new one
 * needs a row here, or it is counted as "other". */
static const char *const end_reasons[] = {
	"quit", "client-closed", "closed", "idle-timeout", "shutdown", "shutdown-timeout",
	"handshake-failed", "handshake-timeout", "tls-error", "tls-setup-failed", "client-write-error",
	"backend-closed", "backend-unreachable", "backend-protocol-error", "backend-no-xclient",
	"backend-refused-xclient", "smuggling-refused", "proxy-header-invalid", "proxy-header-refused",
	"proxy-header-timeout", "session-timeout", "data-too-slow",
	/* outbound listeners: why TLS with the relay never came up */
	"upstream-unreachable", "upstream-refused-greeting", "upstream-refused-ehlo", "upstream-no-starttls",
	"upstream-refused-starttls", "upstream-data-before-tls", "upstream-handshake-failed",
	"upstream-not-trusted", "upstream-protocol-error",
	/* backend = original-destination: why there was nowhere to go */
	"no-original-destination", "loop", "client-no-ehlo", "other",
};
_Static_assert(sizeof end_reasons / sizeof end_reasons[0] == METRICS_END_REASONS,
               "one row per end= value, and METRICS_END_REASONS counts them");

_Static_assert(sizeof(struct metrics_counters) % sizeof(uint64_t) == 0 &&
                       sizeof(struct metrics_gauges) % sizeof(uint64_t) == 0,
               "counters and gauges are arrays of uint64_t");

/* table_index - NAME's row in TABLE of N, or the last row ("other") */
static size_t table_index(const char *const *table, size_t n, const char *name, size_t name_len)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (strlen(table[i]) == name_len && memcmp(table[i], name, name_len) == 0)
			return i;
	return n - 1;
}

size_t metrics_listener_index(char names[METRICS_MAX_LISTENERS][CONFIG_NAME_MAX], const char *name)
{
	size_t last = METRICS_MAX_LISTENERS - 1;
	for (size_t i = 0; i < last; i++) {
		if (names[i][0] == '\0') {
			snprintf(names[i], CONFIG_NAME_MAX, "%s", name);
			return i;
		}
		if (strcmp(names[i], name) == 0)
			return i;
	}
	snprintf(names[last], CONFIG_NAME_MAX, "%s", METRICS_OTHER_LISTENER);
	return last;
}

void metrics_tls_index(const char *desc, size_t *version_r, size_t *cipher_r)
{
	const char *slash = strchr(desc, '/');
	size_t version_len = slash ? (size_t)(slash - desc) : strlen(desc);
	const char *cipher = slash ? slash + 1 : "";
	*version_r = table_index(tls_versions, METRICS_TLS_VERSIONS, desc, version_len);
	*cipher_r = table_index(ciphers, METRICS_CIPHERS, cipher, strlen(cipher));
}

size_t metrics_end_reason_index(const char *reason)
{
	return table_index(end_reasons, METRICS_END_REASONS, reason, strlen(reason));
}

enum metrics_upstream_hop metrics_upstream_hop(const char *verified)
{
	if (!verified)
		return METRICS_UPSTREAM_PLAINTEXT;
	/* An unknown value would be a bug: count it as unverified, never as verified. */
	for (size_t i = 0; i < METRICS_UPSTREAM_PLAINTEXT; i++)
		if (strcmp(upstream_hops[i], verified) == 0)
			return (enum metrics_upstream_hop)i;
	return METRICS_UPSTREAM_UNVERIFIED;
}

void metrics_fold(struct metrics_counters *total, const struct metrics_counters *from)
{
	uint64_t *t = (uint64_t *)total;
	const uint64_t *f = (const uint64_t *)from;
	for (size_t i = 0; i < sizeof *total / sizeof *t; i++)
		metrics_set(&t[i], metrics_get(&t[i]) + metrics_get(&f[i]));
}

void metrics_gather(const struct metrics_counters *retired, const struct metrics_slot *slots, size_t n,
                    struct metrics_slot *sum_r)
{
	memset(sum_r, 0, sizeof *sum_r);
	metrics_fold(&sum_r->counters, retired);
	for (size_t s = 0; s < n; s++) {
		metrics_fold(&sum_r->counters, &slots[s].counters);
		for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++) {
			sum_r->gauges.open[i] += metrics_get(&slots[s].gauges.open[i]);
			uint64_t ok_at = metrics_get(&slots[s].gauges.backend_ok_at[i]);
			if (ok_at > sum_r->gauges.backend_ok_at[i])
				sum_r->gauges.backend_ok_at[i] = ok_at;
		}
	}
}

/* ---- the text format (Prometheus exposition format 0.0.4) ---- */

struct text {
	char *p;
	size_t cap, len;
	bool overflow;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
	if (t->overflow)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= t->cap - t->len)
		t->overflow = true;
	else
		t->len += (size_t)n;
}

/* put_label_value - V in quotes, with backslash, quote and newline escaped */
static void put_label_value(struct text *t, const char *v)
{
	put(t, "\"");
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			put(t, "\\%c", *v);
		else if (*v == '\n')
			put(t, "\\n");
		else
			put(t, "%c", *v);
	}
	put(t, "\"");
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* series - NAME{K1="V1",K2="V2"}, labels left out from a NULL key on */
static void series(struct text *t, const char *name, const char *k1, const char *v1, const char *k2,
                   const char *v2)
{
	put(t, "%s", name);
	if (!k1)
		return;
	put(t, "{%s=", k1);
	put_label_value(t, v1);
	if (k2) {
		put(t, ",%s=", k2);
		put_label_value(t, v2);
	}
	put(t, "}");
}

static void sample(struct text *t, const char *name, const char *k1, const char *v1, const char *k2,
                   const char *v2, int64_t value)
{
	series(t, name, k1, v1, k2, v2);
	put(t, " %" PRId64 "\n", value);
}

static void counter(struct text *t, const char *name, const char *k1, const char *v1, const char *k2,
                    const char *v2, uint64_t value)
{
	series(t, name, k1, v1, k2, v2);
	put(t, " %" PRIu64 "\n", value);
}

/* by_table - one sample per row of TABLE, labelled KEY */
static void by_table(struct text *t, const char *name, const char *key, const char *const *table, size_t n,
                     const uint64_t *values)
{
	for (size_t i = 0; i < n; i++)
		counter(t, name, key, table[i], NULL, NULL, values[i]);
}

static void render_listeners(struct text *t, const struct metrics_view *v)
{
	const struct metrics_slot *s = v->sum;
	family(t, "starttlsd_connections_accepted_total", "counter", "Client connections accepted, those refused by a limit included.");
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++)
		if (v->listener_names[i][0])
			counter(t, "starttlsd_connections_accepted_total", "listener", v->listener_names[i], NULL, NULL,
			        s->counters.accepted[i]);
	family(t, "starttlsd_connections_open", "gauge", "Client connections open now, in live workers.");
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++)
		if (v->listener_names[i][0])
			counter(t, "starttlsd_connections_open", "listener", v->listener_names[i], NULL, NULL,
			        s->gauges.open[i]);
	family(t, "starttlsd_connections_refused_total", "counter",
	       "Client connections refused by a connection limit.");
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++)
		for (size_t r = 0; v->listener_names[i][0] && r < METRICS_REFUSED_REASONS; r++)
			counter(t, "starttlsd_connections_refused_total", "listener", v->listener_names[i], "reason",
			        refused_reasons[r], s->counters.refused[i][r]);
	family(t, "starttlsd_upstream_sessions_total", "counter",
	       "Outbound sessions that reached their upstream, by how the hop was protected.");
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++) {
		uint64_t any = 0;
		for (size_t h = 0; h < METRICS_UPSTREAM_HOPS; h++)
			any |= s->counters.upstream_sessions[i][h];
		/* inbound listeners never have one: no rows of zeros for them */
		for (size_t h = 0; any && h < METRICS_UPSTREAM_HOPS; h++)
			counter(t, "starttlsd_upstream_sessions_total", "listener", v->listener_names[i], "verified",
			        upstream_hops[h], s->counters.upstream_sessions[i][h]);
	}
	family(t, "starttlsd_upstream_tls_total", "counter",
	       "Outbound sessions whose upstream hop was TLS, by protocol version (those seen so far).");
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++)
		for (size_t j = 0; j < METRICS_TLS_VERSIONS; j++)
			if (s->counters.upstream_tls[i][j])
				counter(t, "starttlsd_upstream_tls_total", "listener", v->listener_names[i], "version",
				        tls_versions[j], s->counters.upstream_tls[i][j]);
}

static void render_tls(struct text *t, const struct metrics_view *v)
{
	const struct metrics_counters *c = &v->sum->counters;
	family(t, "starttlsd_starttls_total", "counter", "STARTTLS commands answered 220.");
	counter(t, "starttlsd_starttls_total", NULL, NULL, NULL, NULL, c->starttls);
	family(t, "starttlsd_tls_handshakes_total", "counter", "TLS handshakes by result.");
	by_table(t, "starttlsd_tls_handshakes_total", "result", handshake_results, METRICS_HANDSHAKE_RESULTS,
	         c->handshakes);
	family(t, "starttlsd_tls_established_total", "counter",
	       "TLS handshakes that succeeded, by protocol version and bulk cipher (pairs seen so far).");
	for (size_t i = 0; i < METRICS_TLS_VERSIONS; i++)
		for (size_t j = 0; j < METRICS_CIPHERS; j++)
			if (c->established[i][j])
				counter(t, "starttlsd_tls_established_total", "version", tls_versions[i], "cipher", ciphers[j],
				        c->established[i][j]);
	family(t, "starttlsd_tls_resumed_total", "counter", "TLS handshakes that resumed a session.");
	counter(t, "starttlsd_tls_resumed_total", NULL, NULL, NULL, NULL, c->resumed);
}

static void render_sessions(struct text *t, const struct metrics_view *v)
{
	const struct metrics_counters *c = &v->sum->counters;
	family(t, "starttlsd_sessions_ended_total", "counter", "Sessions ended, by the end= of their log line.");
	by_table(t, "starttlsd_sessions_ended_total", "reason", end_reasons, METRICS_END_REASONS, c->ended);
	family(t, "starttlsd_messages_total", "counter", "Messages the backend accepted.");
	counter(t, "starttlsd_messages_total", NULL, NULL, NULL, NULL, c->messages);
	family(t, "starttlsd_relayed_bytes_total", "counter",
	       "Bytes written to the backend and to the client (before TLS encryption).");
	by_table(t, "starttlsd_relayed_bytes_total", "direction", directions, METRICS_DIRECTIONS, c->bytes);
	family(t, "starttlsd_backend_connect_failures_total", "counter",
	       "Sessions whose backend could not be reached or did not greet in time.");
	counter(t, "starttlsd_backend_connect_failures_total", NULL, NULL, NULL, NULL, c->backend_connect_failures);
	family(t, "starttlsd_refusals_total", "counter", "Commands and messages the proxy refused itself.");
	by_table(t, "starttlsd_refusals_total", "reason", refusals, METRICS_REFUSALS, c->refusals);
	family(t, "starttlsd_reloads_total", "counter", "Configuration reloads (SIGHUP) by result.");
	by_table(t, "starttlsd_reloads_total", "result", reload_results, METRICS_RELOAD_RESULTS, c->reloads);
}

static void render_certs(struct text *t, const struct metrics_view *v)
{
	family(t, "starttlsd_certificate_expiry_seconds", "gauge",
	       "When each certificate in force expires, in seconds since the epoch.");
	for (size_t i = 0; i < v->n_certs; i++)
		sample(t, "starttlsd_certificate_expiry_seconds", "listener", v->certs[i].listener, "cert",
		       v->certs[i].path, v->certs[i].expires);
	family(t, "starttlsd_ocsp_response_age_seconds", "gauge",
	       "Age of each stapled OCSP response (now minus its thisUpdate).");
	for (size_t i = 0; i < v->n_certs; i++)
		if (v->certs[i].ocsp_this_update >= 0)
			sample(t, "starttlsd_ocsp_response_age_seconds", "listener", v->certs[i].listener, "cert",
			       v->certs[i].path, v->now - v->certs[i].ocsp_this_update);
}

size_t metrics_render(const struct metrics_view *v, char *out, size_t cap)
{
	struct text t = { out, cap, 0, cap == 0 };
	family(&t, "starttlsd_build_info", "gauge", "Versions of starttlsd and of the libraries it runs with.");
	put(&t, "starttlsd_build_info{version=");
	put_label_value(&t, v->version);
	put(&t, ",gnutls=");
	put_label_value(&t, v->gnutls_version);
	put(&t, ",libev=");
	put_label_value(&t, v->libev_version);
	put(&t, "} 1\n");
	render_listeners(&t, v);
	render_tls(&t, v);
	render_sessions(&t, v);
	render_certs(&t, v);
	return t.overflow ? 0 : t.len;
}
