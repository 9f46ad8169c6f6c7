/* transport_tls.c - a transport over a GnuTLS session (see transport_tls.h)
 *
 * GnuTLS does no socket I/O of its own: its pull reads from the read-ahead
 * buffer, which one recv refills only when it is empty, and its push
 * gathers into the gather buffer until the flush. So a record's header and
 * body never cost two calls, and a handshake flight or a reply with its
 * close_notify leaves in one.
 */
#include "transport_tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A sendmsg from the gather buffer takes at most this many of GnuTLS's
 * pieces along; the rest follows in the next call. */
#define PUSH_IOV_MAX 32
/* Post-handshake messages taken in one read before it says "again" (tls_read) */
#define POST_HANDSHAKE_MAX 16

struct transport_tls {
	struct transport base; /* first: a transport * is one of these */
	gnutls_session_t session;
	struct transport_buffers bufs;
	size_t read_start, read_len; /* unread bytes in bufs.read_ahead */
	size_t gathered;             /* unsent bytes in bufs.gather */
};

static struct transport_tls *tls_of(struct transport *t)
{
	return (struct transport_tls *)t;
}

static const struct transport_tls *const_tls_of(const struct transport *t)
{
	return (const struct transport_tls *)t;
}

/* pull_read_ahead - GnuTLS's reads, served from the read-ahead buffer,
 * which one recv refills only when it is empty */
static ssize_t pull_read_ahead(gnutls_transport_ptr_t ptr, void *data, size_t size)
{
	struct transport_tls *t = ptr;
	if (t->read_len == 0) {
		if (t->base.drained) {
			gnutls_transport_set_errno(t->session, EAGAIN);
			return -1;
		}
		ssize_t n = recv(t->base.fd, t->bufs.read_ahead, t->bufs.read_ahead_cap, 0);
		if (n < 0) {
			t->base.drained = errno == EAGAIN;
			gnutls_transport_set_errno(t->session, errno);
			return -1;
		}
		t->base.drained = (size_t)n < t->bufs.read_ahead_cap;
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
	struct transport_tls *t = ptr;
	(void)ms;
	return t->read_len > 0 || !t->base.drained;
}

/* push_gather - GnuTLS's writes, gathered for the flush; when they do not
 * fit, what is gathered goes out first with as much of them as the socket
 * takes, in one sendmsg */
static ssize_t push_gather(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	struct transport_tls *t = ptr;
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
	ssize_t sent = sendmsg(t->base.fd, &msg, MSG_NOSIGNAL);
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

/* direction - which readiness a GNUTLS_E_AGAIN waits for */
static enum transport_io direction(struct transport_tls *t)
{
	return gnutls_record_get_direction(t->session) ? TRANSPORT_WANT_WRITE : TRANSPORT_WANT_READ;
}

/* handshake_failure - why a handshake failed, in an admin's words */
static const char *handshake_failure(int r)
{
	/* GnuTLS refuses an SNI host_name with any byte but a letter, digit,
	 * '-' or '.' (raw UTF-8, control characters, '_') while it parses the
	 * ClientHello, before the certificate is chosen, and lets no
	 * application take that extension over: RFC 6066 section 3 asks for
	 * an ASCII host name, IDNs as A-labels. */
	if (r == GNUTLS_E_RECEIVED_DISALLOWED_NAME)
		return "SNI server name is not an ASCII DNS host name (RFC 6066 section 3)";
	return gnutls_strerror(r);
}

static enum transport_io tls_flush(struct transport *base, const char **reason_r);

static enum transport_io tls_handshake(struct transport *base, const char **reason_r)
{
	struct transport_tls *t = tls_of(base);
	int r = gnutls_handshake(t->session);
	if (r == GNUTLS_E_SUCCESS)
		return TRANSPORT_OK;
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return direction(t);
	if (!gnutls_error_is_fatal(r))
		return TRANSPORT_WANT_READ; /* a warning alert: go on */
	/* RFC 8446 section 6.2: a fatal error is told to the peer with its
	 * alert; best effort, the connection closes either way. */
	const char *flush_failure;
	(void)gnutls_alert_send_appropriate(t->session, r);
	(void)tls_flush(base, &flush_failure);
	*reason_r = handshake_failure(r);
	return TRANSPORT_ERROR;
}

static enum transport_io tls_read(struct transport *base, void *buf, size_t cap, size_t *n_r,
                                  const char **reason_r)
{
	struct transport_tls *t = tls_of(base);
	/* A TLS 1.3 post-handshake message (a server's NewSessionTicket, a
	 * KeyUpdate) is taken in by one call that then says GNUTLS_E_AGAIN,
	 * however many records are behind it in the read-ahead buffer: poll
	 * cannot see those, so they are read now (a bounded number: each
	 * call takes at least the message it handled). */
	ssize_t r = gnutls_record_recv(t->session, buf, cap);
	for (int again = 0; r == GNUTLS_E_AGAIN && t->read_len > 0 && again < POST_HANDSHAKE_MAX; again++)
		r = gnutls_record_recv(t->session, buf, cap);
	if (r > 0) {
		*n_r = (size_t)r;
		return TRANSPORT_OK;
	}
	if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION)
		return TRANSPORT_EOF;
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return direction(t);
	if (r == GNUTLS_E_REHANDSHAKE) {
		/* Renegotiation is refused: a CPU sink with nothing to gain
		 * for SMTP. */
		*reason_r = "renegotiation refused";
		return TRANSPORT_ERROR;
	}
	if (!gnutls_error_is_fatal((int)r))
		return TRANSPORT_WANT_READ;
	*reason_r = gnutls_strerror((int)r);
	return TRANSPORT_ERROR;
}

static enum transport_io tls_write(struct transport *base, const void *buf, size_t len, size_t *n_r,
                                   const char **reason_r)
{
	struct transport_tls *t = tls_of(base);
	ssize_t r = gnutls_record_send(t->session, buf, len);
	if (r >= 0) {
		*n_r = (size_t)r;
		return TRANSPORT_OK;
	}
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return direction(t);
	*reason_r = gnutls_strerror((int)r);
	return TRANSPORT_ERROR;
}

static enum transport_io tls_flush(struct transport *base, const char **reason_r)
{
	struct transport_tls *t = tls_of(base);
	if (t->gathered == 0)
		return TRANSPORT_OK;
	ssize_t sent = send(t->base.fd, t->bufs.gather, t->gathered, MSG_NOSIGNAL);
	if (sent < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return TRANSPORT_WANT_WRITE;
		*reason_r = strerror(errno);
		return TRANSPORT_ERROR;
	}
	memmove(t->bufs.gather, t->bufs.gather + sent, t->gathered - (size_t)sent);
	t->gathered -= (size_t)sent;
	return t->gathered > 0 ? TRANSPORT_WANT_WRITE : TRANSPORT_OK;
}

static size_t tls_pending(const struct transport *base)
{
	const struct transport_tls *t = const_tls_of(base);
	return gnutls_record_check_pending(t->session) + t->read_len;
}

static size_t tls_unsent(const struct transport *base)
{
	return const_tls_of(base)->gathered;
}

static void tls_bye(struct transport *base)
{
	/* Non-blocking: one attempt; a close_notify that cannot be
	 * gathered now is not worth waiting for. */
	(void)gnutls_bye(tls_of(base)->session, GNUTLS_SHUT_WR);
}

static void tls_release(struct transport *base)
{
	struct transport_tls *t = tls_of(base);
	gnutls_deinit(t->session);
	free(t);
}

static const struct transport_ops tls_ops = {
	.handshake = tls_handshake,
	.read = tls_read,
	.write = tls_write,
	.flush = tls_flush,
	.pending = tls_pending,
	.unsent = tls_unsent,
	.bye = tls_bye,
	.release = tls_release,
};

struct transport *transport_tls_new(gnutls_session_t session, int fd, struct transport_buffers bufs)
{
	struct transport_tls *t = calloc(1, sizeof *t);
	if (!t) {
		gnutls_deinit(session);
		return NULL;
	}
	t->base.ops = &tls_ops;
	t->base.fd = fd;
	t->session = session;
	t->bufs = bufs;
	t->read_len = bufs.read_ahead_len; /* already read: served first */
	gnutls_transport_set_ptr(session, t);
	gnutls_transport_set_pull_function(session, pull_read_ahead);
	gnutls_transport_set_pull_timeout_function(session, pull_ready);
	gnutls_transport_set_vec_push_function(session, push_gather);
	return &t->base;
}

gnutls_session_t transport_tls_session(const struct transport *t)
{
	return const_tls_of(t)->session;
}
