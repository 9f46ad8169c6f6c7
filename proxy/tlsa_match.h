/* tlsa_match.h - a TLS peer's certificate chain against DANE TLSA
 * records (RFC 6698, as RFC 7672 section 3 has SMTP use them), on GnuTLS
 *
 * Only DANE-TA(2) and DANE-EE(3) are usable for SMTP (RFC 7672 section
 * 3.1.3: PKIX-TA(0) and PKIX-EE(1) are unusable, there being no CA that
 * every MTA trusts). DANE-EE matches the end entity's certificate or key
 * and nothing else: no name, no expiry (section 3.1.1). DANE-TA matches a
 * certificate the server sent above its own (section 3.1.2 asks servers to
 * send it), which then serves as the one trust anchor for the chain below
 * it, and the end entity's name must be one of the reference identifiers
 * (section 3.2.2: the MX host, the recipient domain). Digests are GnuTLS's;
 * certificates and keys are read by GnuTLS, never here.
 */
#ifndef STARTTLSD_TLSA_MATCH_H
#define STARTTLSD_TLSA_MATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

enum tlsa_match_result {
	TLSA_MATCHED_EE, /* a DANE-EE record matched */
	TLSA_MATCHED_TA, /* a DANE-TA record matched, the chain and a name verified */
	TLSA_NO_MATCH,
};

/* tlsa_usable - RDATA (LEN bytes) is a TLSA record SMTP can use: usage
 * DANE-TA or DANE-EE, selector Cert(0) or SPKI(1), matching type Full(0),
 * SHA2-256(1) or SHA2-512(2), with data of the right length */
bool tlsa_usable(const uint8_t *rdata, size_t len);

/* tlsa_match - CHAIN (N DER certificates, the peer's first) against the
 * usable records among RECORDS (N_RECORDS rdata of LENS bytes); NAMES
 * (N_NAMES) are the reference identifiers for DANE-TA */
enum tlsa_match_result tlsa_match(const gnutls_datum_t *chain, unsigned n, char *const *records, const int *lens,
                                  size_t n_records, const char *const *names, size_t n_names);

#endif
