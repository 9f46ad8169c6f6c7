/* tls.c - TLS sessions on the client side, on GnuTLS (see tls.h) */
#include "tls_creds_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "transport_tls.h"

/* The session ticket master key: made once before any worker is forked, so
 * every worker takes every ticket. GnuTLS derives the key that actually
 * encrypts tickets from it and rotates that key every ticket lifetime
 * (gnutls_db_set_cache_expiration, 6 hours by default). No session cache
 * is kept on the server. */
static gnutls_datum_t ticket_master_key;

bool tls_global_init(char *err, size_t errlen)
{
	int r = gnutls_global_init();
	if (r == 0)
		r = gnutls_session_ticket_key_generate(&ticket_master_key);
	if (r < 0) {
		snprintf(err, errlen, "GnuTLS initialisation failed: %s", gnutls_strerror(r));
		return false;
	}
	return true;
}

const char *tls_library_version(void)
{
	return gnutls_check_version(NULL);
}

/* choose_certificate - after the ClientHello: the set of certificates its
 * server name asks for; GnuTLS then picks by key type within the set */
static int choose_certificate(gnutls_session_t session)
{
	const struct tls_creds *creds = gnutls_session_get_ptr(session);
	char name[256];
	size_t len = sizeof name;
	unsigned type;
	if (gnutls_server_name_get(session, name, &len, &type, 0) < 0 || type != GNUTLS_NAME_DNS)
		return 0;
	gnutls_certificate_credentials_t set = tls_creds_for_name(creds, name);
	if (set)
		return gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, set);
	return 0;
}

struct transport *tls_server_new(struct tls_creds *creds, int fd, struct transport_buffers bufs)
{
	gnutls_session_t session;
	/* No GNUTLS_ENABLE_EARLY_DATA: SMTP commands are not replay-safe
	 * (RFC 8446 section 8), so 0-RTT data is refused. */
	if (gnutls_init(&session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0)
		return NULL;
	if (gnutls_priority_set(session, creds->priority) < 0 ||
	    gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, creds->all) < 0 ||
	    gnutls_session_ticket_enable_server(session, &ticket_master_key) < 0) {
		gnutls_deinit(session);
		return NULL;
	}
	gnutls_session_set_ptr(session, creds);
	gnutls_handshake_set_post_client_hello_function(session, choose_certificate);
	/* A requested client certificate is logged, never verified: it
	 * grants nothing here. */
	gnutls_certificate_server_set_request(session,
	                                      creds->request_client_cert ? GNUTLS_CERT_REQUEST : GNUTLS_CERT_IGNORE);
	return transport_tls_new(session, fd, bufs);
}

void tls_describe(const struct transport *t, char *buf, size_t len)
{
	const char *version = gnutls_protocol_get_name(gnutls_protocol_get_version(transport_tls_session(t)));
	const char *cipher = gnutls_cipher_get_name(gnutls_cipher_get(transport_tls_session(t)));
	snprintf(buf, len, "%s/%s", version ? version : "?", cipher ? cipher : "?");
	for (char *p = buf; *p; p++)
		if (*p == ' ')
			*p = '-';
}

void tls_suite(const struct transport *t, char *buf, size_t len)
{
	const char *name = gnutls_ciphersuite_get(transport_tls_session(t));
	snprintf(buf, len, "%s", name ? name : "unknown");
}

void tls_sni(const struct transport *t, char *buf, size_t len)
{
	size_t n = len;
	unsigned type;
	if (len == 0)
		return;
	if (gnutls_server_name_get(transport_tls_session(t), buf, &n, &type, 0) < 0 || type != GNUTLS_NAME_DNS || n == 0) {
		snprintf(buf, len, "-");
		return;
	}
	/* The name is the client's: keep the log line one token. */
	for (char *p = buf; *p; p++)
		if (*p <= ' ' || *p > '~')
			*p = '?';
}

bool tls_resumed(const struct transport *t)
{
	return gnutls_session_is_resumed(transport_tls_session(t)) != 0;
}

const char *tls_cert_name(const struct transport *t)
{
	const gnutls_datum_t *ours = gnutls_certificate_get_ours(transport_tls_session(t));
	const struct tls_creds *creds = gnutls_session_get_ptr(transport_tls_session(t));
	for (size_t i = 0; ours && i < creds->n_certs; i++) {
		const struct tls_cert *c = &creds->certs[i];
		if (c->leaf_der.size == ours->size && memcmp(c->leaf_der.data, ours->data, ours->size) == 0 &&
		    c->n_names > 0)
			return c->names[0];
	}
	return "-";
}

/* printable - keep a client's certificate subject on one log line */
static void printable(char *s)
{
	for (; *s; s++)
		if (*s < ' ' || *s > '~' || *s == '"')
			*s = '?';
}

bool tls_client_cert(const struct transport *t, char *subject, size_t subject_len, char *sha256, size_t sha256_len)
{
	unsigned n = 0;
	const gnutls_datum_t *peer = gnutls_certificate_get_peers(transport_tls_session(t), &n);
	if (!peer || n == 0)
		return false;
	unsigned char hash[32];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, peer[0].data, peer[0].size, hash) < 0)
		return false;
	for (size_t i = 0; i < sizeof hash && 3 * i + 3 <= sha256_len; i++)
		snprintf(sha256 + 3 * i, 4, i + 1 < sizeof hash ? "%02X:" : "%02X", hash[i]);
	gnutls_x509_crt_t crt;
	gnutls_datum_t dn = { NULL, 0 };
	snprintf(subject, subject_len, "?");
	if (gnutls_x509_crt_init(&crt) == 0) {
		if (gnutls_x509_crt_import(crt, &peer[0], GNUTLS_X509_FMT_DER) == 0 &&
		    gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0)
			snprintf(subject, subject_len, "%.*s", (int)dn.size, (const char *)dn.data);
		gnutls_free(dn.data);
		gnutls_x509_crt_deinit(crt);
	}
	printable(subject);
	return true;
}
