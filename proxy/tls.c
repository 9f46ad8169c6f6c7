/* tls.c - TLS sessions on the client side, on GnuTLS (see tls.h) */
#include "tls_creds_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>

/* A sendmsg from the gather buffer takes at most this many of GnuTLS's
 * pieces along; the rest follows in the next call. */
#define PUSH_IOV_MAX 32

struct tls_conn {
	gnutls_session_t session;
	const struct tls_creds *creds;
	int fd;
	struct tls_buffers bufs;
	size_t read_start, read_len; /* unread bytes in bufs.read_ahead */
	size_t gathered;             /* unsent bytes in bufs.gather */
	bool socket_drained;         /* the last recv got less than asked */
};

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
	struct tls_conn *t = gnutls_session_get_ptr(session);
	char name[256];
	size_t len = sizeof name;
	unsigned type;
	if (gnutls_server_name_get(session, name, &len, &type, 0) < 0 || type != GNUTLS_NAME_DNS)
		return 0;
	gnutls_certificate_credentials_t set = tls_creds_for_name(t->creds, name);
	if (set)
		return gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, set);
	return 0;
}

/* pull_read_ahead - GnuTLS's reads, served from the read-ahead buffer,
 * which one recv refills only when it is empty */
static ssize_t pull_read_ahead(gnutls_transport_ptr_t ptr, void *data, size_t size)
{
	struct tls_conn *t = ptr;
	if (t->read_len == 0) {
		if (t->socket_drained) {
			gnutls_transport_set_errno(t->session, EAGAIN);
			return -1;
		}
		ssize_t n = recv(t->fd, t->bufs.read_ahead, t->bufs.read_ahead_cap, 0);
		if (n < 0) {
			t->socket_drained = errno == EAGAIN;
			gnutls_transport_set_errno(t->session, errno);
			return -1;
		}
		t->socket_drained = (size_t)n < t->bufs.read_ahead_cap;
		t->read_start = 0;
		t->read_len = (size_t)n;
	}
	size_t give = size < t->read_len ? size : t->read_len;
	memcpy(data, t->bufs.read_ahead + t->read_start, give);
	t->read_start += give;
	t->read_len -= give;
	return (ssize_t)give;
}

/* pull_ready - GnuTLS asks whether a read would find data; the event loop
 * does the waiting, so this never waits (with GNUTLS_NONBLOCK it is not
 * called; GnuTLS wants it set along with a pull function) */
static int pull_ready(gnutls_transport_ptr_t ptr, unsigned ms)
{
	struct tls_conn *t = ptr;
	(void)ms;
	return t->read_len > 0 || !t->socket_drained;
}

/* push_gather - GnuTLS's writes, gathered for tls_flush; when they do not
 * fit, what is gathered goes out first with as much of them as the socket
 * takes, in one sendmsg */
static ssize_t push_gather(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	struct tls_conn *t = ptr;
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total <= t->bufs.gather_cap - t->gathered) {
		for (int i = 0; i < iovcnt; i++) {
			memcpy(t->bufs.gather + t->gathered, iov[i].iov_base, iov[i].iov_len);
			t->gathered += iov[i].iov_len;
		}
		return (ssize_t)total;
	}
	struct iovec v[1 + PUSH_IOV_MAX];
	int n = 0;
	if (t->gathered > 0)
		v[n++] = (struct iovec){ t->bufs.gather, t->gathered };
	for (int i = 0; i < iovcnt && i < PUSH_IOV_MAX; i++)
		v[n++] = (struct iovec){ iov[i].iov_base, iov[i].iov_len };
	struct msghdr msg = { .msg_iov = v, .msg_iovlen = (size_t)n };
	ssize_t sent = sendmsg(t->fd, &msg, MSG_NOSIGNAL);
	if (sent < 0) {
		gnutls_transport_set_errno(t->session, errno);
		return -1;
	}
	if ((size_t)sent < t->gathered) {
		memmove(t->bufs.gather, t->bufs.gather + sent, t->gathered - (size_t)sent);
		t->gathered -= (size_t)sent;
		gnutls_transport_set_errno(t->session, EAGAIN);
		return -1;
	}
	size_t taken = (size_t)sent - t->gathered;
	t->gathered = 0;
	if (taken > 0)
		return (ssize_t)taken;
	/* The gathered bytes left, none of these: gather them now. */
	const giovec_t *first = &iov[0];
	taken = first->iov_len < t->bufs.gather_cap ? first->iov_len : t->bufs.gather_cap;
	memcpy(t->bufs.gather, first->iov_base, taken);
	t->gathered = taken;
	return (ssize_t)taken;
}

struct tls_conn *tls_conn_new(struct tls_creds *creds, int fd, struct tls_buffers bufs)
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
	t->creds = creds;
	if (gnutls_priority_set(t->session, creds->priority) < 0 ||
	    gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, creds->all) < 0 ||
	    gnutls_session_ticket_enable_server(t->session, &ticket_master_key) < 0) {
		gnutls_deinit(t->session);
		free(t);
		return NULL;
	}
	gnutls_session_set_ptr(t->session, t);
	gnutls_handshake_set_post_client_hello_function(t->session, choose_certificate);
	/* A requested client certificate is logged, never verified: it
	 * grants nothing here. */
	gnutls_certificate_server_set_request(t->session,
	                                      creds->request_client_cert ? GNUTLS_CERT_REQUEST : GNUTLS_CERT_IGNORE);
	t->fd = fd;
	t->bufs = bufs;
	gnutls_transport_set_ptr(t->session, t);
	gnutls_transport_set_pull_function(t->session, pull_read_ahead);
	gnutls_transport_set_pull_timeout_function(t->session, pull_ready);
	gnutls_transport_set_vec_push_function(t->session, push_gather);
	return t;
}

void tls_socket_readable(struct tls_conn *t)
{
	t->socket_drained = false;
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

/* handshake_failure - why a handshake failed, in an admin's words */
static const char *handshake_failure(int r)
{
	/* GnuTLS refuses an SNI host_name with any byte but a letter, digit,
	 * '-' or '.' (raw UTF-8, control characters, '_') while it parses the
	 * ClientHello, before choose_certificate runs, and lets no application
	 * take that extension over: RFC 6066 section 3 asks for an ASCII host
	 * name, IDNs as A-labels. */
	if (r == GNUTLS_E_RECEIVED_DISALLOWED_NAME)
		return "SNI server name is not an ASCII DNS host name (RFC 6066 section 3)";
	return gnutls_strerror(r);
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
	/* RFC 8446 section 6.2: a fatal error is told to the peer with its
	 * alert; best effort, the connection closes either way. */
	const char *flush_failure;
	(void)gnutls_alert_send_appropriate(t->session, r);
	(void)tls_flush(t, &flush_failure);
	*reason_r = handshake_failure(r);
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
	return gnutls_record_check_pending(t->session) + t->read_len;
}

size_t tls_unsent(struct tls_conn *t)
{
	return t->gathered;
}

enum tls_io tls_flush(struct tls_conn *t, const char **reason_r)
{
	if (t->gathered == 0)
		return TLS_IO_OK;
	ssize_t sent = send(t->fd, t->bufs.gather, t->gathered, MSG_NOSIGNAL);
	if (sent < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return TLS_IO_WANT_WRITE;
		*reason_r = strerror(errno);
		return TLS_IO_ERROR;
	}
	memmove(t->bufs.gather, t->bufs.gather + sent, t->gathered - (size_t)sent);
	t->gathered -= (size_t)sent;
	return t->gathered > 0 ? TLS_IO_WANT_WRITE : TLS_IO_OK;
}

void tls_bye(struct tls_conn *t)
{
	/* Non-blocking: one attempt; a close_notify that cannot be
	 * gathered now is not worth waiting for. */
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

bool tls_resumed(struct tls_conn *t)
{
	return gnutls_session_is_resumed(t->session) != 0;
}

const char *tls_cert_name(struct tls_conn *t)
{
	const gnutls_datum_t *ours = gnutls_certificate_get_ours(t->session);
	const struct tls_creds *creds = t->creds;
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

bool tls_client_cert(struct tls_conn *t, char *subject, size_t subject_len, char *sha256, size_t sha256_len)
{
	unsigned n = 0;
	const gnutls_datum_t *peer = gnutls_certificate_get_peers(t->session, &n);
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
