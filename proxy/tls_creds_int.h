/* tls_creds_int.h - what tls.c needs to see of tls_creds.c's credentials
 *
 * Private to the two GnuTLS files. The certificates of a listener are kept
 * twice: all together (GnuTLS picks the first whose key type the client
 * supports: the default), and in groups of certificates that share their
 * names, so that SNI chooses the group and GnuTLS the key type within it
 * (RSA beside ECDSA for the same names).
 */
#ifndef STARTTLSD_TLS_CREDS_INT_H
#define STARTTLSD_TLS_CREDS_INT_H

#include <gnutls/gnutls.h>
#include <time.h>

#include "tls.h"

struct tls_cert {
	char **names; /* DNS subjectAltNames, or the CN when there are none */
	size_t n_names;
	gnutls_datum_t leaf_der; /* tells which certificate a session got */
	char spki_sha256_hex[65];
	size_t group;
	time_t expires;          /* for the metrics */
	time_t ocsp_this_update; /* of the stapled response; -1 when none staples */
};

struct tls_cert_group {
	gnutls_certificate_credentials_t certs;
	size_t first; /* index of its first tls_cert: the names */
};

struct tls_creds {
	gnutls_certificate_credentials_t all;
	struct tls_cert certs[CONFIG_MAX_CERTS];
	size_t n_certs;
	struct tls_cert_group groups[CONFIG_MAX_CERTS];
	size_t n_groups;
	gnutls_priority_t priority;
	bool request_client_cert;
};

/* tls_creds_for_name - the credentials for SNI NAME: the group with NAME
 * among its names, else the group a wildcard of it covers, else NULL (the
 * default set) */
gnutls_certificate_credentials_t tls_creds_for_name(const struct tls_creds *creds, const char *name);

#endif
