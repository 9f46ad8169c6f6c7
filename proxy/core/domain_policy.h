/* domain_policy.h - a session's decisions per recipient domain (DANE, RFC
 * 7672), and the two parsers they need: the domain of a RCPT TO address,
 * and a domain name in DNS wire form (an MX record's exchange)
 *
 * With dane = yes the session holds a client's RCPT whose domain it has not
 * decided yet (session.h, session_domain_wanted) until the edge has looked
 * the domain up in DNS and checked the destination against it. The
 * decisions stay for the session, at most DOMAIN_DECISIONS_MAX of them: the
 * oldest gives way, and its domain is looked up again when it comes back.
 */
#ifndef STARTTLSD_DOMAIN_POLICY_H
#define STARTTLSD_DOMAIN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A domain name is at most 253 octets in text (RFC 1035 section 2.3.4,
 * without the root's dot), plus the NUL. */
#define DOMAIN_NAME_MAX 256
#define DOMAIN_DECISIONS_MAX 16

enum domain_verdict {
	DOMAIN_OK,         /* the RCPT goes to the destination */
	DOMAIN_DEFER_DANE, /* 450 4.7.5: DANE applies and is not met */
	DOMAIN_DEFER_DNS,  /* 451 4.4.3: DNS could not say */
};

struct domain_decision {
	char name[DOMAIN_NAME_MAX];
	enum domain_verdict verdict;
};

struct domain_decisions {
	char wanted[DOMAIN_NAME_MAX]; /* the held RCPT's domain; "" when nothing is held */
	struct domain_decision known[DOMAIN_DECISIONS_MAX];
	size_t n_known;
	size_t oldest; /* the slot the next decision takes once all are full */
};

/* rcpt_domain - the domain of RCPT arguments ARGS (LEN bytes, "TO:<path>
 * [params]", RFC 5321 section 4.1.1.3) into NAME, in lower case without a
 * trailing dot; false when there is none that DNS could decide: the
 * special "<Postmaster>", an address literal ("[192.0.2.1]"), a domain
 * outside letters, digits, "-" and "." (an SMTPUTF8 U-label is not turned
 * into its A-label), or a path that does not parse */
bool rcpt_domain(const uint8_t *args, size_t len, char name[DOMAIN_NAME_MAX]);

/* dns_wire_name - the domain name in DNS wire form at P (N bytes: length
 * octets and labels, ending with the root's zero; no compression pointer,
 * libunbound's rdata holds none) as text into NAME, lower case, without
 * the root's dot ("" for the root itself); its wire length in *USED_R.
 * False when it does not parse or a label holds anything but letters,
 * digits, "-" and "_". */
bool dns_wire_name(const uint8_t *p, size_t n, char name[DOMAIN_NAME_MAX], size_t *used_r);

void domain_decisions_init(struct domain_decisions *d);

/* domain_decisions_find - NAME's verdict, if decided in this session */
bool domain_decisions_find(const struct domain_decisions *d, const char *name, enum domain_verdict *verdict_r);

/* domain_decisions_add - NAME decided VERDICT; the oldest gives way when all are full */
void domain_decisions_add(struct domain_decisions *d, const char *name, enum domain_verdict verdict);

#endif
