/* dns.h - validating DNS lookups for a worker, on libunbound
 *
 * One struct dns per outbound listener with dane = yes, in each worker,
 * made on first use (libunbound's resolving thread must start in the
 * worker, after the fork) and freed with the listener's generation, so a
 * reload builds it again from the new configuration. Lookups are
 * asynchronous: libunbound's thread resolves and validates (DNSSEC, from
 * the listener's trust anchors), the worker's loop watches its pipe
 * (ub_fd) with an ev_io, and ub_process() hands each result to its
 * callback. The worker never blocks on DNS.
 *
 * The trust anchors are read when the configuration loads (dns_anchors_load),
 * before the workers give up their privileges, so -t and a reload report a
 * bad file on its line.
 */
#ifndef STARTTLSD_DNS_H
#define STARTTLSD_DNS_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>
#include <unbound.h>

#include "config.h"

struct dns;

/* dns_anchors_load - the DS and DNSKEY records of L's dns_trust_anchor (one
 * record a line, zone file form, ";" comments), NUL-separated and ending
 * with an empty one; NULL with "FILE:LINE: message" in ERR */
char *dns_anchors_load(const struct config_listener *l, const char *filename, char *err, size_t errlen);

/* dns_new - a validating resolver for L in LOOP: forwarding to
 * dns_resolver, or to the resolvers of /etc/resolv.conf; NULL with the
 * reason in ERR */
struct dns *dns_new(struct ev_loop *loop, const struct config_listener *l, const char *anchors, char *err,
                    size_t errlen);

/* dns_free - stop watching, cancel what is left, free (NULL is fine) */
void dns_free(struct dns *d);

/* dns_done_fn - a lookup ended: ERR is libunbound's error (0: RESULT is
 * there, for the callee to free with ub_resolve_free) */
typedef void dns_done_fn(void *arg, int err, struct ub_result *result);

/* dns_lookup - NAME's records of RRTYPE, class IN; DONE is called later,
 * from the loop, never from inside this call. False with the reason in
 * *WHY_R when it could not start. *ID_R is for dns_cancel. */
bool dns_lookup(struct dns *d, const char *name, int rrtype, dns_done_fn *done, void *arg, int *id_r,
                const char **why_r);

/* dns_cancel - lookup ID's callback will not be called */
void dns_cancel(struct dns *d, int id);

#endif
