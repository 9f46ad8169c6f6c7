/* metrics.h - the counters every worker keeps, and their Prometheus text
 *
 * Pure: the layout of one worker's counters, the fixed label sets, the
 * sums over workers and the text exposition format 0.0.4. The edge
 * (metrics_shm.h) places one struct metrics_slot per worker in memory
 * shared with the supervisor, which sums them for a scrape (exporter.h).
 *
 * Each slot is written by its worker alone and read by the supervisor:
 * single-writer counters, so a relaxed load and store are enough (no
 * locked instruction, no system call per event). Every label value comes
 * from a table here or from the configuration, never from a peer, so the
 * number of series is bounded.
 */
#ifndef STARTTLSD_METRICS_H
#define STARTTLSD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Listener names kept across reloads, so that a listener's counters go on
 * under its name; beyond this, new names share the last entry. */
#define METRICS_MAX_LISTENERS 64
#define METRICS_OTHER_LISTENER "(other)"

enum metrics_refused_reason {
	METRICS_REFUSED_MAX_CONNECTIONS,
	METRICS_REFUSED_MAX_PER_IP,
	METRICS_REFUSED_MAX_HANDSHAKES,
	METRICS_REFUSED_REASONS
};

enum metrics_handshake_result {
	METRICS_HANDSHAKE_OK,
	METRICS_HANDSHAKE_FAILED,
	METRICS_HANDSHAKE_TIMEOUT,
	METRICS_HANDSHAKE_RESULTS
};

/* Commands and messages the session refused (struct session_stats). */
enum metrics_refusal {
	METRICS_REFUSAL_MUST_STARTTLS,            /* 530 */
	METRICS_REFUSAL_AUTH_NEEDS_TLS,           /* 538 */
	METRICS_REFUSAL_CLIENT_XCLIENT,           /* 550 */
	METRICS_REFUSAL_SMUGGLING,                /* 554 and close */
	METRICS_REFUSAL_PLAINTEXT_AFTER_STARTTLS, /* sessions whose pipelined bytes were dropped */
	METRICS_REFUSALS
};

enum metrics_direction { METRICS_TO_BACKEND, METRICS_TO_CLIENT, METRICS_DIRECTIONS };

/* How an outbound session's upstream hop went: its log line's verified=
 * (ca, dane, none) when it got TLS, plaintext when it did not (tls=none) */
enum metrics_upstream_hop {
	METRICS_UPSTREAM_CA,
	METRICS_UPSTREAM_DANE,
	METRICS_UPSTREAM_UNVERIFIED,
	METRICS_UPSTREAM_PLAINTEXT,
	METRICS_UPSTREAM_HOPS
};

enum metrics_reload_result { METRICS_RELOAD_OK, METRICS_RELOAD_FAILED, METRICS_RELOAD_RESULTS };

#define METRICS_TLS_VERSIONS 5  /* TLS1.0 to TLS1.3, other */
#define METRICS_CIPHERS 8       /* the bulk ciphers GnuTLS can offer, other */
#define METRICS_END_REASONS 35  /* the session log line's end= values, other */

/* Counters only: they never go down, and a worker's are added to the
 * retired sum when it exits. Every field is a uint64_t (metrics_fold). */
struct metrics_counters {
	uint64_t accepted[METRICS_MAX_LISTENERS];
	uint64_t refused[METRICS_MAX_LISTENERS][METRICS_REFUSED_REASONS];
	uint64_t upstream_sessions[METRICS_MAX_LISTENERS][METRICS_UPSTREAM_HOPS];
	uint64_t upstream_tls[METRICS_MAX_LISTENERS][METRICS_TLS_VERSIONS]; /* the TLS hops of those */
	uint64_t starttls;
	uint64_t handshakes[METRICS_HANDSHAKE_RESULTS];
	uint64_t established[METRICS_TLS_VERSIONS][METRICS_CIPHERS];
	uint64_t resumed;
	uint64_t ended[METRICS_END_REASONS];
	uint64_t messages;
	uint64_t bytes[METRICS_DIRECTIONS];
	uint64_t backend_connect_failures;
	uint64_t refusals[METRICS_REFUSALS];
	uint64_t reloads[METRICS_RELOAD_RESULTS]; /* the supervisor's, in the retired sum */
};

/* What a live worker shows and an exited one takes along. */
struct metrics_gauges {
	uint64_t open[METRICS_MAX_LISTENERS]; /* modulo 2^64: +1 at accept, -1 at close */
	/* seconds since the epoch when the backend last greeted, for healthz */
	uint64_t backend_ok_at[METRICS_MAX_LISTENERS];
};

struct metrics_slot {
	struct metrics_counters counters;
	struct metrics_gauges gauges;
};

/* metrics_add - COUNTER += N; its one writer is the caller */
static inline void metrics_add(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* metrics_set - GAUGE = V; its one writer is the caller */
static inline void metrics_set(uint64_t *gauge, uint64_t v)
{
	__atomic_store_n(gauge, v, __ATOMIC_RELAXED);
}

/* metrics_get - a counter another process may be writing */
static inline uint64_t metrics_get(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* metrics_listener_index - NAME's entry in NAMES, added when new */
size_t metrics_listener_index(char names[METRICS_MAX_LISTENERS][CONFIG_NAME_MAX], const char *name);

/* metrics_tls_index - the version and cipher of a session described as
 * "TLS1.3/AES-256-GCM" (tls_describe); unknown ones are "other" */
void metrics_tls_index(const char *desc, size_t *version_r, size_t *cipher_r);

/* metrics_end_reason_index - the end= value REASON, or "other" */
size_t metrics_end_reason_index(const char *reason);

/* metrics_upstream_hop - the row of an outbound session's verified= value
 * ("ca", "dane", "none"); NULL for a session that stayed in plaintext */
enum metrics_upstream_hop metrics_upstream_hop(const char *verified);

/* metrics_fold - TOTAL += every counter of FROM */
void metrics_fold(struct metrics_counters *total, const struct metrics_counters *from);

/* metrics_gather - the sum of the counters of RETIRED and of N live SLOTS,
 * and of their gauges (open: a sum; backend_ok_at: the latest) */
void metrics_gather(const struct metrics_counters *retired, const struct metrics_slot *slots, size_t n,
                    struct metrics_slot *sum_r);

/* One certificate's facts, for the expiry and OCSP gauges. */
struct metrics_cert {
	const char *listener;
	const char *path;          /* as on its cert line */
	int64_t expires;           /* seconds since the epoch */
	int64_t ocsp_this_update;  /* of the stapled response; -1 when none staples */
};

/* Everything one scrape shows. */
struct metrics_view {
	const struct metrics_slot *sum;
	const char (*listener_names)[CONFIG_NAME_MAX]; /* METRICS_MAX_LISTENERS, "" unused */
	const struct metrics_cert *certs;
	size_t n_certs;
	int64_t now; /* seconds since the epoch, for the OCSP response age */
	const char *version, *gnutls_version, *libev_version;
};

/* metrics_render - VIEW as Prometheus text format 0.0.4 into OUT; its
 * length, or 0 when it does not fit in CAP */
size_t metrics_render(const struct metrics_view *view, char *out, size_t cap);

#endif
