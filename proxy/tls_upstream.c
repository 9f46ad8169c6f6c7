/* tls_upstream.c - TLS towards an outbound listener's relay (see
 * tls_upstream.h) */
#include "tls_upstream.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/x509.h>

/* TLS 1.2 and 1.3 only (RFC 8996), forward-secret key exchange, AEAD
 * ciphers: what the relays that demand TLS (Microsoft 365, Gmail) offer. */
#define DEFAULT_PRIORITY \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-RSA:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"

struct tls_upstream {
	gnutls_certificate_credentials_t creds;
	gnutls_priority_t priority;
	char name[CONFIG_HOST_MAX];
	bool name_is_address; /* no SNI for an IP address (RFC 6066 section 3) */
	bool verify;
	/* upstream_resumption: the relay's last ticket, in this worker's
	 * memory (each worker keeps its own after the fork) */
	bool resume;
	gnutls_datum_t ticket;
};

/* fail_at - "FILE:LINE: message" into ERR; NULL for the caller to return */
__attribute__((format(printf, 5, 6))) static struct tls_upstream *
fail_at(struct tls_upstream *u, char *err, size_t errlen, const char *filename, const char *fmt, ...)
{
	char text[1500];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s:%s", filename, text);
	tls_upstream_free(u);
	return NULL;
}

/* is_address - NAME is an IPv4 or IPv6 address */
static bool is_address(const char *name)
{
	unsigned char a[16];
	return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

struct tls_upstream *tls_upstream_load(const struct config_listener *l, const char *filename, char *err,
                                       size_t errlen)
{
	struct tls_upstream *u = calloc(1, sizeof *u);
	if (!u || gnutls_certificate_allocate_credentials(&u->creds) < 0)
		return fail_at(u, err, errlen, filename, "%d: out of memory", l->line);
	snprintf(u->name, sizeof u->name, "%s", l->upstream_name[0] ? l->upstream_name : l->backend.host);
	u->name_is_address = is_address(u->name);
	u->verify = l->verify;
	u->resume = l->upstream_resumption;

	if (l->verify && l->ca[0]) {
		int r = gnutls_certificate_set_x509_trust_file(u->creds, l->ca, GNUTLS_X509_FMT_PEM);
		if (r <= 0)
			return fail_at(u, err, errlen, filename, "%d: ca %s: %s", l->ca_line, l->ca,
			               r == 0 ? "no CA certificate in it" : gnutls_strerror(r));
	} else if (l->verify) {
		int r = gnutls_certificate_set_x509_system_trust(u->creds);
		if (r <= 0)
			return fail_at(u, err, errlen, filename,
			               "%d: listener '%s': the system trust store has no CA certificate (%s); "
			               "install ca-certificates or set ca",
			               l->line, l->name, r == 0 ? "empty" : gnutls_strerror(r));
	}
	const struct config_cert *c = &l->upstream_cert;
	if (c->chain[0]) {
		int r = gnutls_certificate_set_x509_key_file2(u->creds, c->chain, c->key[0] ? c->key : c->chain,
		                                              GNUTLS_X509_FMT_PEM, NULL, 0);
		if (r < 0)
			return fail_at(u, err, errlen, filename, "%d: upstream_cert %s: %s", c->line, c->chain,
			               r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH ? "the key does not match the certificate"
			                                                      : gnutls_strerror(r));
	}
	const char *where = NULL;
	int r = gnutls_priority_init2(&u->priority, l->priority[0] ? l->priority : DEFAULT_PRIORITY, &where, 0);
	if (r < 0)
		return fail_at(u, err, errlen, filename, "%d: bad priority string at '%s'", l->priority_line,
		               where ? where : "");
	return u;
}

void tls_upstream_free(struct tls_upstream *u)
{
	if (!u)
		return;
	if (u->priority)
		gnutls_priority_deinit(u->priority);
	if (u->creds)
		gnutls_certificate_free_credentials(u->creds);
	gnutls_free(u->ticket.data);
	free(u);
}

const char *tls_upstream_name(const struct tls_upstream *u)
{
	return u->name;
}

/* keep_resumption_data - what resumes SESSION replaces the last. Only a
 * session whose handshake passed the certificate check has any: a TLS 1.2
 * relay's ticket and a TLS 1.3 relay's NewSessionTicket both come after
 * the check (the first before its Finished, the second after the
 * handshake), so a resumed session inherits that verification. */
static void keep_resumption_data(struct tls_upstream *u, gnutls_session_t session)
{
	gnutls_datum_t data;
	if (gnutls_session_get_data2(session, &data) < 0)
		return; /* nothing new to resume with; the session goes on */
	gnutls_free(u->ticket.data);
	u->ticket = data;
}

/* on_tls13_ticket - a TLS 1.3 relay sends its tickets after the handshake */
static int on_tls13_ticket(gnutls_session_t session, unsigned htype, unsigned when, unsigned incoming,
                           const gnutls_datum_t *msg)
{
	(void)htype, (void)when, (void)incoming, (void)msg;
	if (gnutls_protocol_get_version(session) == GNUTLS_TLS1_3)
		keep_resumption_data(gnutls_session_get_ptr(session), session);
	return 0;
}

bool tls_upstream_session(struct tls_upstream *u, gnutls_session_t *session_r)
{
	gnutls_session_t s;
	if (gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0)
		return false;
	bool ok = gnutls_priority_set(s, u->priority) >= 0 &&
	          gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, u->creds) >= 0 &&
	          (u->name_is_address || !u->name[0] || gnutls_server_name_set(s, GNUTLS_NAME_DNS, u->name, strlen(u->name)) >= 0);
	/* The chain against the trust anchors and the name against the
	 * certificate, inside the handshake: a relay that fails never gets
	 * a record of ours after its Finished. An address is matched against
	 * the certificate's IP addresses. */
	if (ok && u->verify)
		gnutls_session_set_verify_cert(s, u->name, 0);
	/* RFC 8446 section 2.2: a ticket resumes without the certificate
	 * exchange, the costliest part of an outbound handshake (the chain
	 * check). A ticket the relay no longer takes costs nothing: it falls
	 * back to a full handshake, verified as always. */
	if (ok && u->resume) {
		gnutls_session_set_ptr(s, u);
		gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET, GNUTLS_HOOK_POST,
		                                   on_tls13_ticket);
		if (u->ticket.size)
			ok = gnutls_session_set_data(s, u->ticket.data, u->ticket.size) >= 0;
	}
	if (!ok) {
		gnutls_deinit(s);
		return false;
	}
	*session_r = s;
	return true;
}

void tls_upstream_established(struct tls_upstream *u, gnutls_session_t session)
{
	/* TLS 1.2 resumption data are whole only once the handshake is */
	if (u->resume && gnutls_protocol_get_version(session) != GNUTLS_TLS1_3)
		keep_resumption_data(u, session);
}

/* verify_status - the check's result in the handshake: 0 passed, (unsigned)-1
 * none was made (verify = no, or the handshake ended before it) */
static unsigned verify_status(gnutls_session_t session)
{
	return gnutls_session_get_verify_cert_status(session);
}

enum opening_tls_result tls_upstream_result(gnutls_session_t session, bool ok)
{
	if (ok)
		return OPENING_TLS_VERIFIED;
	unsigned status = verify_status(session);
	return status != 0 && status != (unsigned)-1 ? OPENING_TLS_NOT_TRUSTED : OPENING_TLS_FAILED;
}

const char *tls_upstream_verified(const struct tls_upstream *u)
{
	return u->verify ? "ca" : "none";
}

void tls_upstream_why_untrusted(gnutls_session_t session, char *buf, size_t len)
{
	gnutls_datum_t text = { NULL, 0 };
	if (gnutls_certificate_verification_status_print(verify_status(session), GNUTLS_CRT_X509, &text, 0) < 0 ||
	    !text.data) {
		snprintf(buf, len, "certificate check failed");
		return;
	}
	snprintf(buf, len, "%s", (const char *)text.data);
	gnutls_free(text.data);
}

void tls_upstream_describe(gnutls_session_t session, char *buf, size_t len)
{
	const char *version = gnutls_protocol_get_name(gnutls_protocol_get_version(session));
	const char *cipher = gnutls_cipher_get_name(gnutls_cipher_get(session));
	snprintf(buf, len, "%s/%s", version ? version : "?", cipher ? cipher : "?");
	for (char *p = buf; *p; p++)
		if (*p == ' ')
			*p = '-';
}
