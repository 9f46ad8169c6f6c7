/* dane.c - one recipient domain's DANE verdict (see dane.h) */
#include "dane.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "tlsa_match.h"

/* MX hosts looked at for one domain; more than any real domain lists. */
#define MX_MAX 16
/* The destination's certificates kept: a leaf, intermediates, an anchor. */
#define CHAIN_KEPT 8

enum rr_type { RR_A = 1, RR_MX = 15, RR_AAAA = 28, RR_TLSA = 52 };
enum { RCODE_NOERROR = 0, RCODE_NXDOMAIN = 3 };

struct dane_lookup {
	struct dns *dns;
	struct ev_loop *loop;
	ev_timer timer;
	dane_done_fn *done;
	void *arg;
	int query;
	bool query_active;
	char domain[DOMAIN_NAME_MAX];
	char peer[64];
	/* the destination: its address for the A/AAAA comparison */
	int family;
	uint8_t address[16];
	/* its certificate chain, copied: the connection may go meanwhile */
	bool tls;
	gnutls_datum_t chain[CHAIN_KEPT];
	unsigned chain_len;
	char hosts[MX_MAX][DOMAIN_NAME_MAX];
	size_t n_hosts, host;
	const char *bogus_host; /* an MX host whose addresses were bogus */
	/* the destination's MX host, when it is an alias: the name its CNAME
	 * chain ends at, the first TLSA base domain (RFC 7672 section 2.2.2) */
	char canonical[DOMAIN_NAME_MAX];
	bool tlsa_at_canonical;
};

/* finish - log, then hand the verdict over: the last thing the lookup does */
static void finish(struct dane_lookup *lk, enum domain_verdict verdict, bool matched, const char *mx,
                   const char *why)
{
	static const char *const names[] = { [DOMAIN_OK] = "ok", [DOMAIN_DEFER_DANE] = "defer-dane",
		                             [DOMAIN_DEFER_DNS] = "defer-dns" };
	ev_timer_stop(lk->loop, &lk->timer);
	if (lk->query_active)
		dns_cancel(lk->dns, lk->query);
	lk->query_active = false;
	log_info("client %s: dane domain=%s mx=%s result=%s%s why=%s", lk->peer, lk->domain, mx ? mx : "-",
	         names[verdict], matched ? " verified=dane" : "", why);
	lk->done(lk->arg, verdict, matched);
}

static void on_mx(void *arg, int err, struct ub_result *r);
static void on_address(void *arg, int err, struct ub_result *r);
static void on_tlsa(void *arg, int err, struct ub_result *r);

/* remember_alias - HOST's address lookup followed CNAMEs to CANON */
static void remember_alias(struct dane_lookup *lk, const char *host, const char *canon)
{
	size_t len = canon ? strlen(canon) : 0;
	if (len > 0 && canon[len - 1] == '.')
		len--;
	lk->canonical[0] = '\0';
	if (len == 0 || len >= sizeof lk->canonical || (strncasecmp(canon, host, len) == 0 && host[len] == '\0'))
		return;
	for (size_t i = 0; i < len; i++)
		lk->canonical[i] = (char)tolower((unsigned char)canon[i]);
	lk->canonical[len] = '\0';
}

/* ask - one query; a failure to start it ends the lookup */
static void ask(struct dane_lookup *lk, const char *name, enum rr_type type, dns_done_fn *fn)
{
	const char *why = NULL;
	lk->query_active = dns_lookup(lk->dns, name, type, fn, lk, &lk->query, &why);
	if (!lk->query_active) {
		char text[DOMAIN_NAME_MAX + 200];
		snprintf(text, sizeof text, "DNS query for %s failed: %s", name, why);
		finish(lk, DOMAIN_DEFER_DNS, false, NULL, text);
	}
}

/* ask_tlsa - TLSA for port 25 at BASE */
static void ask_tlsa(struct dane_lookup *lk, const char *base)
{
	char name[DOMAIN_NAME_MAX + 16];
	snprintf(name, sizeof name, "_25._tcp.%s", base);
	ask(lk, name, RR_TLSA, on_tlsa);
}

/* failure - a result that is neither an answer nor a clean denial: true
 * when the lookup ended on it (bogus: 450; anything else: 451) */
static bool failure(struct dane_lookup *lk, int err, struct ub_result *r, const char *what, const char *mx)
{
	char text[600];
	if (err) {
		snprintf(text, sizeof text, "%s lookup failed: %s", what, ub_strerror(err));
		finish(lk, DOMAIN_DEFER_DNS, false, mx, text);
		return true;
	}
	if (r->bogus) {
		snprintf(text, sizeof text, "%s records are bogus (DNSSEC): %s", what,
		         r->why_bogus ? r->why_bogus : "validation failed");
		ub_resolve_free(r);
		finish(lk, DOMAIN_DEFER_DANE, false, mx, text);
		return true;
	}
	if (r->rcode != RCODE_NOERROR && r->rcode != RCODE_NXDOMAIN) {
		snprintf(text, sizeof text, "%s lookup failed: DNS rcode %d", what, r->rcode);
		ub_resolve_free(r);
		finish(lk, DOMAIN_DEFER_DNS, false, mx, text);
		return true;
	}
	return false;
}

/* next_host - the next MX host's addresses, or the end of the list */
static void next_host(struct dane_lookup *lk)
{
	if (lk->host < lk->n_hosts) {
		ask(lk, lk->hosts[lk->host], lk->family == AF_INET ? RR_A : RR_AAAA, on_address);
		return;
	}
	char text[DOMAIN_NAME_MAX + 100];
	if (lk->bogus_host) {
		snprintf(text, sizeof text, "the addresses of MX host %s are bogus (DNSSEC)", lk->bogus_host);
		finish(lk, DOMAIN_DEFER_DANE, false, lk->bogus_host, text);
		return;
	}
	snprintf(text, sizeof text, "the destination is not an MX host of %s: opportunistic", lk->domain);
	finish(lk, DOMAIN_OK, false, NULL, text);
}

static void on_mx(void *arg, int err, struct ub_result *r)
{
	struct dane_lookup *lk = arg;
	lk->query_active = false;
	if (failure(lk, err, r, "MX", NULL))
		return;
	if (!r->secure) {
		ub_resolve_free(r);
		finish(lk, DOMAIN_OK, false, NULL, "MX records not signed (insecure): no DANE, opportunistic");
		return;
	}
	for (int i = 0; r->havedata && r->data[i] && lk->n_hosts < MX_MAX; i++) {
		size_t used;
		const uint8_t *rdata = (const uint8_t *)r->data[i];
		/* preference (2 octets), then the exchange (RFC 1035 section 3.3.9) */
		if (r->len[i] < 3 || !dns_wire_name(rdata + 2, (size_t)r->len[i] - 2, lk->hosts[lk->n_hosts], &used))
			continue;
		if (lk->hosts[lk->n_hosts][0]) /* "." is a null MX (RFC 7505): no host */
			lk->n_hosts++;
	}
	bool listed = r->havedata;
	ub_resolve_free(r);
	if (!listed) {
		/* No MX at all: the domain itself (RFC 5321 section 5.1). */
		memcpy(lk->hosts[0], lk->domain, sizeof lk->hosts[0]);
		lk->n_hosts = 1;
	}
	next_host(lk);
}

static void on_address(void *arg, int err, struct ub_result *r)
{
	struct dane_lookup *lk = arg;
	lk->query_active = false;
	const char *host = lk->hosts[lk->host];
	if (!err && r->bogus) {
		/* Maybe not the destination's host: the others may still say. */
		ub_resolve_free(r);
		lk->bogus_host = host;
		lk->host++;
		next_host(lk);
		return;
	}
	if (failure(lk, err, r, "address", host))
		return;
	size_t size = lk->family == AF_INET ? 4 : 16;
	bool found = false;
	for (int i = 0; r->havedata && r->data[i] && !found; i++)
		found = (size_t)r->len[i] == size && memcmp(r->data[i], lk->address, size) == 0;
	bool secure = r->secure;
	if (found)
		remember_alias(lk, host, r->canonname);
	ub_resolve_free(r);
	if (!found) {
		lk->host++;
		next_host(lk);
		return;
	}
	if (!secure) {
		/* RFC 7672 section 2.2: TLSA only behind secure addresses. */
		finish(lk, DOMAIN_OK, false, host, "the MX host's address records are not signed: no DANE, opportunistic");
		return;
	}
	/* An alias: TLSA at the name it expands to first, then at the
	 * alias itself if none is there (RFC 7672 section 2.2.2). */
	lk->tlsa_at_canonical = lk->canonical[0] != '\0';
	ask_tlsa(lk, lk->tlsa_at_canonical ? lk->canonical : host);
}

static void on_tlsa(void *arg, int err, struct ub_result *r)
{
	struct dane_lookup *lk = arg;
	lk->query_active = false;
	const char *host = lk->hosts[lk->host];
	if (failure(lk, err, r, "TLSA", host))
		return;
	if (lk->tlsa_at_canonical && r->secure && !r->havedata) {
		ub_resolve_free(r);
		lk->tlsa_at_canonical = false;
		ask_tlsa(lk, host);
		return;
	}
	if (!r->secure || !r->havedata) {
		bool secure = r->secure;
		ub_resolve_free(r);
		finish(lk, DOMAIN_OK, false, host,
		       secure ? "no TLSA records: opportunistic" : "TLSA records not signed: no DANE, opportunistic");
		return;
	}
	size_t n = 0, usable = 0;
	for (; r->data[n]; n++)
		usable += tlsa_usable((const uint8_t *)r->data[n], (size_t)r->len[n]);
	if (!lk->tls) {
		ub_resolve_free(r);
		finish(lk, DOMAIN_DEFER_DANE, false, host,
		       "TLSA records published, but the destination gave no TLS (downgrade refused)");
		return;
	}
	if (usable == 0) {
		ub_resolve_free(r);
		finish(lk, DOMAIN_OK, false, host, "TLSA records all unusable (RFC 7672 3.1.3): TLS, unauthenticated");
		return;
	}
	/* RFC 7672 section 3.2.2: the MX host, its expanded name, the domain */
	const char *names[] = { host, lk->domain, lk->canonical };
	enum tlsa_match_result m =
	        tlsa_match(lk->chain, lk->chain_len, r->data, r->len, n, names, lk->canonical[0] ? 3 : 2);
	ub_resolve_free(r);
	if (m == TLSA_NO_MATCH)
		finish(lk, DOMAIN_DEFER_DANE, false, host, "no usable TLSA record matches the certificate chain");
	else
		finish(lk, DOMAIN_OK, true, host, m == TLSA_MATCHED_EE ? "DANE-EE record matched" : "DANE-TA record matched");
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dane_lookup *lk = w->data;
	(void)loop;
	(void)revents;
	finish(lk, DOMAIN_DEFER_DNS, false, NULL, "DNS did not answer within dns_timeout");
}

/* keep_chain - the destination's certificates, copied */
static bool keep_chain(struct dane_lookup *lk, gnutls_session_t tls)
{
	unsigned n = 0;
	const gnutls_datum_t *peers = gnutls_certificate_get_peers(tls, &n);
	lk->tls = true;
	for (unsigned i = 0; peers && i < n && i < CHAIN_KEPT; i++) {
		lk->chain[i].data = malloc(peers[i].size ? peers[i].size : 1);
		if (!lk->chain[i].data)
			return false;
		memcpy(lk->chain[i].data, peers[i].data, peers[i].size);
		lk->chain[i].size = peers[i].size;
		lk->chain_len++;
	}
	return true;
}

struct dane_lookup *dane_start(struct dns *dns, struct ev_loop *loop, const struct dane_facts *facts,
                               dane_done_fn *done, void *arg)
{
	struct dane_lookup *lk = calloc(1, sizeof *lk);
	if (!lk)
		return NULL;
	lk->dns = dns;
	lk->loop = loop;
	lk->done = done;
	lk->arg = arg;
	snprintf(lk->domain, sizeof lk->domain, "%s", facts->domain);
	snprintf(lk->peer, sizeof lk->peer, "%s", facts->peer);
	const struct sockaddr_storage *d = facts->destination;
	if (d->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)d)->sin6_addr;
		bool mapped = IN6_IS_ADDR_V4MAPPED(a);
		lk->family = mapped ? AF_INET : AF_INET6;
		memcpy(lk->address, mapped ? a->s6_addr + 12 : a->s6_addr, mapped ? 4 : 16);
	} else {
		lk->family = AF_INET;
		memcpy(lk->address, &((const struct sockaddr_in *)d)->sin_addr, 4);
	}
	if (facts->tls && !keep_chain(lk, facts->tls)) {
		dane_free(lk);
		return NULL;
	}
	ev_timer_init(&lk->timer, on_timeout, facts->timeout, 0);
	lk->timer.data = lk;
	ev_timer_start(loop, &lk->timer);
	/* The first query's failure must reach DONE from the loop too. */
	const char *why = NULL;
	lk->query_active = dns_lookup(dns, lk->domain, RR_MX, on_mx, lk, &lk->query, &why);
	if (!lk->query_active) {
		log_error("client %s: dane domain=%s: DNS query failed: %s", lk->peer, lk->domain, why);
		ev_timer_stop(loop, &lk->timer);
		ev_timer_set(&lk->timer, 0, 0); /* the timeout's 451, at once */
		ev_timer_start(loop, &lk->timer);
	}
	return lk;
}

void dane_free(struct dane_lookup *lk)
{
	if (!lk)
		return;
	ev_timer_stop(lk->loop, &lk->timer);
	if (lk->query_active)
		dns_cancel(lk->dns, lk->query);
	for (unsigned i = 0; i < lk->chain_len; i++)
		free(lk->chain[i].data);
	free(lk);
}
