/* tlsa_match.c - a certificate chain against TLSA records (see tlsa_match.h) */
#include "tlsa_match.h"

#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

enum { USAGE_DANE_TA = 2, USAGE_DANE_EE = 3 };
enum { SELECTOR_CERT = 0, SELECTOR_SPKI = 1 };
enum { MATCH_FULL = 0, MATCH_SHA256 = 1, MATCH_SHA512 = 2 };

/* The longest chain looked at: a leaf, intermediates, the trust anchor. */
#define CHAIN_MAX 8

bool tlsa_usable(const uint8_t *rdata, size_t len)
{
	if (len < 4 || (rdata[0] != USAGE_DANE_TA && rdata[0] != USAGE_DANE_EE) ||
	    (rdata[1] != SELECTOR_CERT && rdata[1] != SELECTOR_SPKI))
		return false;
	switch (rdata[2]) {
	case MATCH_FULL:
		return true;
	case MATCH_SHA256:
		return len - 3 == 32;
	case MATCH_SHA512:
		return len - 3 == 64;
	default:
		return false;
	}
}

/* spki - CERT's SubjectPublicKeyInfo, DER, into OUT (gnutls_free it) */
static bool spki(const gnutls_datum_t *cert, gnutls_datum_t *out)
{
	gnutls_x509_crt_t crt = NULL;
	gnutls_pubkey_t key = NULL;
	bool ok = gnutls_x509_crt_init(&crt) >= 0 && gnutls_x509_crt_import(crt, cert, GNUTLS_X509_FMT_DER) >= 0 &&
	          gnutls_pubkey_init(&key) >= 0 && gnutls_pubkey_import_x509(key, crt, 0) >= 0 &&
	          gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, out) >= 0;
	if (key)
		gnutls_pubkey_deinit(key);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	return ok;
}

/* record_matches - CERT against one usable record RDATA (LEN bytes) */
static bool record_matches(const gnutls_datum_t *cert, const uint8_t *rdata, size_t len)
{
	gnutls_datum_t selected = *cert, key = { NULL, 0 };
	if (rdata[1] == SELECTOR_SPKI) {
		if (!spki(cert, &key))
			return false;
		selected = key;
	}
	const uint8_t *want = rdata + 3;
	size_t want_len = len - 3;
	uint8_t digest[64];
	bool match = false;
	if (rdata[2] == MATCH_FULL) {
		match = selected.size == want_len && memcmp(selected.data, want, want_len) == 0;
	} else {
		gnutls_digest_algorithm_t alg = rdata[2] == MATCH_SHA256 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA512;
		match = gnutls_hash_fast(alg, selected.data, selected.size, digest) >= 0 &&
		        memcmp(digest, want, want_len) == 0;
	}
	gnutls_free(key.data);
	return match;
}

/* chain_below_anchor - CHAIN[0..TA-1] verifies with CHAIN[TA] as the only
 * trust anchor, and CHAIN[0] carries one of NAMES */
static bool chain_below_anchor(const gnutls_datum_t *chain, unsigned ta, const char *const *names, size_t n_names)
{
	gnutls_x509_crt_t crts[CHAIN_MAX] = { NULL };
	gnutls_x509_trust_list_t list = NULL;
	bool ok = true;
	for (unsigned i = 0; i <= ta && ok; i++)
		ok = gnutls_x509_crt_init(&crts[i]) >= 0 && gnutls_x509_crt_import(crts[i], &chain[i], GNUTLS_X509_FMT_DER) >= 0;
	ok = ok && gnutls_x509_trust_list_init(&list, 0) >= 0;
	/* The list owns the anchor from here (freed by its deinit). */
	if (ok && gnutls_x509_trust_list_add_cas(list, &crts[ta], 1, 0) == 1)
		crts[ta] = NULL;
	else
		ok = false;
	unsigned status = 1;
	ok = ok && gnutls_x509_trust_list_verify_crt2(list, crts, ta, NULL, 0, 0, &status, NULL) >= 0 && status == 0;
	bool named = false;
	for (size_t i = 0; ok && !named && i < n_names; i++)
		named = gnutls_x509_crt_check_hostname2(crts[0], names[i], 0) != 0;
	if (list)
		gnutls_x509_trust_list_deinit(list, 1);
	for (unsigned i = 0; i <= ta; i++)
		if (crts[i])
			gnutls_x509_crt_deinit(crts[i]);
	return ok && named;
}

enum tlsa_match_result tlsa_match(const gnutls_datum_t *chain, unsigned n, char *const *records, const int *lens,
                                  size_t n_records, const char *const *names, size_t n_names)
{
	if (n > CHAIN_MAX)
		n = CHAIN_MAX;
	for (size_t r = 0; r < n_records; r++) {
		const uint8_t *rdata = (const uint8_t *)records[r];
		size_t len = (size_t)lens[r];
		if (n == 0 || !tlsa_usable(rdata, len))
			continue;
		if (rdata[0] == USAGE_DANE_EE && record_matches(&chain[0], rdata, len))
			return TLSA_MATCHED_EE;
		if (rdata[0] != USAGE_DANE_TA)
			continue;
		for (unsigned ta = 1; ta < n; ta++)
			if (record_matches(&chain[ta], rdata, len) && chain_below_anchor(chain, ta, names, n_names))
				return TLSA_MATCHED_TA;
	}
	return TLSA_NO_MATCH;
}
