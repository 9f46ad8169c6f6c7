/* tls.c - TLS for the client side, on GnuTLS (see tls.h) */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/* TLS 1.2 and 1.3 only (RFC 8996), forward-secret key exchange, AEAD
 * ciphers; the server's order wins. */
#define DEFAULT_PRIORITY                                                                                 \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-RSA:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
	"+CHACHA20-POLY1305:%SERVER_PRECEDENCE"

/* A certificate that expires within this many days is worth a warning. */
#define EXPIRY_WARNING_DAYS 14

struct tls_creds {
	gnutls_certificate_credentials_t certs;
	gnutls_priority_t priority;
};

struct tls_conn {
	gnutls_session_t session;
};

bool tls_global_init(char *err, size_t errlen)
{
	int r = gnutls_global_init();
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

/* check_expiry - warn about the first certificate of CHAIN_PATH expiring soon */
static void check_expiry(gnutls_certificate_credentials_t certs, unsigned index, const char *path,
                         const char *filename, int line, tls_warning_fn *warn, void *warn_ctx)
{
	gnutls_x509_crt_t *chain = NULL;
	unsigned chain_len = 0;
	if (gnutls_certificate_get_x509_crt(certs, index, &chain, &chain_len) < 0 || chain_len == 0)
		return;
	time_t expires = gnutls_x509_crt_get_expiration_time(chain[0]);
	time_t now = time(NULL);
	if (expires != (time_t)-1 && expires - now < EXPIRY_WARNING_DAYS * 24 * 3600) {
		char when[32], msg[1200];
		struct tm tm;
		gmtime_r(&expires, &tm);
		strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
		snprintf(msg, sizeof msg, "%s:%d: warning: certificate %s %s %s", filename, line, path,
		         expires <= now ? "has expired on" : "expires on", when);
		warn(warn_ctx, msg);
	}
	for (unsigned i = 0; i < chain_len; i++)
		gnutls_x509_crt_deinit(chain[i]);
	gnutls_free(chain);
}

/* load_error - why a certificate or key did not load, in an admin's words */
static const char *load_error(int r)
{
	switch (r) {
	case GNUTLS_E_FILE_ERROR:
		return "cannot read the file";
	case GNUTLS_E_CERTIFICATE_KEY_MISMATCH:
		return "the key does not match the certificate";
	case GNUTLS_E_DECRYPTION_FAILED:
		return "the key is encrypted (a passphrase is not supported)";
	case GNUTLS_E_BASE64_DECODING_ERROR:
	case GNUTLS_E_ASN1_DER_ERROR:
	case GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR:
		return "not a PEM certificate or key";
	default:
		return gnutls_strerror(r);
	}
}

struct tls_creds *tls_creds_load(const struct config_listener *l, const char *filename,
                                 tls_warning_fn *warn, void *warn_ctx, char *err, size_t errlen)
{
	struct tls_creds *creds = calloc(1, sizeof *creds);
	if (!creds || gnutls_certificate_allocate_credentials(&creds->certs) < 0) {
		snprintf(err, errlen, "%s:%d: out of memory", filename, l->line);
		free(creds);
		return NULL;
	}
	for (size_t i = 0; i < l->n_certs; i++) {
		const struct config_cert *c = &l->certs[i];
		const char *key = c->key[0] ? c->key : c->chain;
		int r = gnutls_certificate_set_x509_key_file2(creds->certs, c->chain, key, GNUTLS_X509_FMT_PEM,
		                                               NULL, 0);
		if (r < 0) {
			snprintf(err, errlen, "%s:%d: certificate %s with key %s: %s", filename, c->line, c->chain,
			         key, load_error(r));
			tls_creds_free(creds);
			return NULL;
		}
		check_expiry(creds->certs, (unsigned)r, c->chain, filename, c->line, warn, warn_ctx);
	}

	const char *priority = l->priority[0] ? l->priority : DEFAULT_PRIORITY;
	const char *err_pos = NULL;
	int r = gnutls_priority_init(&creds->priority, priority, &err_pos);
	if (r < 0) {
		snprintf(err, errlen, "%s:%d: bad priority string at '%s': %s", filename,
		         l->priority_line ? l->priority_line : l->line, err_pos ? err_pos : priority,
		         gnutls_strerror(r));
		creds->priority = NULL;
		tls_creds_free(creds);
		return NULL;
	}
	return creds;
}

void tls_creds_free(struct tls_creds *creds)
{
	if (!creds)
		return;
	if (creds->priority)
		gnutls_priority_deinit(creds->priority);
	gnutls_certificate_free_credentials(creds->certs);
	free(creds);
}

struct tls_conn *tls_conn_new(struct tls_creds *creds, int fd)
{
	struct tls_conn *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	/* No GNUTLS_ENABLE_EARLY_DATA: SMTP commands are not replay-safe
	 * (RFC 8446 section 8), so 0-RTT data is refused. */
	if (gnutls_init(&t->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
		free(t);
		return NULL;
	}
	if (gnutls_priority_set(t->session, creds->priority) < 0 ||
	    gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, creds->certs) < 0) {
		gnutls_deinit(t->session);
		free(t);
		return NULL;
	}
	gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_IGNORE);
	gnutls_transport_set_int(t->session, fd);
	return t;
}

void tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return;
	gnutls_deinit(t->session);
	free(t);
}

/* direction - which readiness a GNUTLS_E_AGAIN waits for */
static enum tls_io direction(struct tls_conn *t)
{
	return gnutls_record_get_direction(t->session) ? TLS_IO_WANT_WRITE : TLS_IO_WANT_READ;
}

enum tls_io tls_handshake(struct tls_conn *t, const char **reason_r)
{
	int r = gnutls_handshake(t->session);
	if (r == GNUTLS_E_SUCCESS)
		return TLS_IO_OK;
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return direction(t);
	if (!gnutls_error_is_fatal(r))
		return TLS_IO_WANT_READ; /* a warning alert: go on */
	*reason_r = gnutls_strerror(r);
	return TLS_IO_ERROR;
}

enum tls_io tls_read(struct tls_conn *t, void *buf, size_t cap, size_t *n_r, const char **reason_r)
{
	ssize_t r = gnutls_record_recv(t->session, buf, cap);
	if (r > 0) {
		*n_r = (size_t)r;
		return TLS_IO_OK;
	}
	if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION)
		return TLS_IO_EOF;
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return direction(t);
	if (r == GNUTLS_E_REHANDSHAKE) {
		/* Client-initiated renegotiation is refused: a CPU sink
		 * with nothing to gain for SMTP. */
		*reason_r = "client-initiated renegotiation refused";
		return TLS_IO_ERROR;
	}
	if (!gnutls_error_is_fatal((int)r))
		return TLS_IO_WANT_READ;
	*reason_r = gnutls_strerror((int)r);
	return TLS_IO_ERROR;
}

enum tls_io tls_write(struct tls_conn *t, const void *buf, size_t len, size_t *n_r,
                      const char **reason_r)
{
	ssize_t r = gnutls_record_send(t->session, buf, len);
	if (r >= 0) {
		*n_r = (size_t)r;
		return TLS_IO_OK;
	}
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return direction(t);
	*reason_r = gnutls_strerror((int)r);
	return TLS_IO_ERROR;
}

size_t tls_pending(struct tls_conn *t)
{
	return gnutls_record_check_pending(t->session);
}

void tls_bye(struct tls_conn *t)
{
	/* Non-blocking: one attempt; a close_notify that cannot be sent
	 * now is not worth waiting for. */
	(void)gnutls_bye(t->session, GNUTLS_SHUT_WR);
}

void tls_describe(struct tls_conn *t, char *buf, size_t len)
{
	const char *version = gnutls_protocol_get_name(gnutls_protocol_get_version(t->session));
	const char *cipher = gnutls_cipher_get_name(gnutls_cipher_get(t->session));
	snprintf(buf, len, "%s/%s", version ? version : "?", cipher ? cipher : "?");
	for (char *p = buf; *p; p++)
		if (*p == ' ')
			*p = '-';
}

void tls_suite(struct tls_conn *t, char *buf, size_t len)
{
	const char *name = gnutls_ciphersuite_get(t->session);
	snprintf(buf, len, "%s", name ? name : "unknown");
}

void tls_sni(struct tls_conn *t, char *buf, size_t len)
{
	size_t n = len;
	unsigned type;
	if (len == 0)
		return;
	if (gnutls_server_name_get(t->session, buf, &n, &type, 0) < 0 || type != GNUTLS_NAME_DNS || n == 0) {
		snprintf(buf, len, "-");
		return;
	}
	/* The name is the client's: keep the log line one token. */
	for (char *p = buf; *p; p++)
		if (*p <= ' ' || *p > '~')
			*p = '?';
}
