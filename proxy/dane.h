/* dane.h - one recipient domain's DANE verdict for a transparent session
 * (RFC 7672 section 2), from validated DNS (dns.h) and the destination's
 * certificate chain (tlsa_match.h)
 *
 * For domain D and the destination address the MTA chose:
 *   MX D: bogus -> defer (450 4.7.5); no answer in time, SERVFAIL ->
 *     defer (451 4.4.3); insecure -> ok, no DANE; secure NXDOMAIN or no
 *     MX -> D itself is the one host (RFC 5321 section 5.1)
 *   each MX host H, in turn: its A records (AAAA for an IPv6 destination);
 *     the destination among them and secure -> TLSA _25._tcp.H; among
 *     them but insecure -> ok, no DANE (section 2.2); bogus -> 450 4.7.5
 *     unless another host has the address; none of the hosts has it ->
 *     ok, the destination is not a secure MX host of D (opportunistic)
 *   TLSA: bogus -> 450 4.7.5; failed -> 451 4.4.3; insecure or none ->
 *     ok, no DANE; usable records -> the session must be TLS and the chain
 *     must match (450 4.7.5 otherwise); only unusable records -> TLS is
 *     required but not authenticated (section 3.1.3)
 * The whole lookup has dns_timeout; past it, 451 4.4.3.
 *
 * An MX host that is an alias (CNAME, followed by libunbound, secure
 * throughout) has its TLSA looked up at the expanded name first, then at
 * the alias (section 2.2.2). Not done: a DANE-TA anchor the server does not
 * send (its certificate must be in the chain).
 *
 * Each decision is logged: "dane domain=D mx=H result=... why=...".
 */
#ifndef STARTTLSD_DANE_H
#define STARTTLSD_DANE_H

#include <stdbool.h>
#include <sys/socket.h>

#include <ev.h>
#include <gnutls/gnutls.h>

#include "dns.h"
#include "domain_policy.h"

struct dane_lookup;

/* dane_done_fn - the verdict; MATCHED when DANE applied and the chain
 * matched. Called from the loop, never from dane_start; the lookup is
 * over and may be freed inside it. */
typedef void dane_done_fn(void *arg, enum domain_verdict verdict, bool matched);

struct dane_facts {
	const char *domain;
	const struct sockaddr_storage *destination;
	gnutls_session_t tls; /* NULL: the session with the destination is plaintext */
	double timeout;       /* dns_timeout, seconds */
	const char *peer;     /* the client, for the log */
};

/* dane_start - decide FACTS->domain; NULL when out of memory */
struct dane_lookup *dane_start(struct dns *dns, struct ev_loop *loop, const struct dane_facts *facts,
                               dane_done_fn *done, void *arg);

/* dane_free - cancel what is in flight and free (NULL is fine) */
void dane_free(struct dane_lookup *lk);

#endif
