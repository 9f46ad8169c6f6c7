/* transport_plain.c - a socket's bytes as they are (see transport.h) */
#include "transport.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/* plain_handshake - plaintext has none */
static enum transport_io plain_handshake(struct transport *t, const char **reason_r)
{
	(void)t;
	(void)reason_r;
	return TRANSPORT_OK;
}

static enum transport_io plain_read(struct transport *t, void *buf, size_t cap, size_t *n_r,
                                    const char **reason_r)
{
	if (t->drained)
		return TRANSPORT_WANT_READ; /* no recv that would only say EAGAIN */
	ssize_t n = recv(t->fd, buf, cap, 0);
	if (n > 0) {
		t->drained = (size_t)n < cap;
		*n_r = (size_t)n;
		return TRANSPORT_OK;
	}
	if (n == 0)
		return TRANSPORT_EOF;
	if (errno == EAGAIN || errno == EINTR) {
		t->drained = errno == EAGAIN;
		return TRANSPORT_WANT_READ;
	}
	*reason_r = strerror(errno);
	return TRANSPORT_ERROR;
}

static enum transport_io plain_write(struct transport *t, const void *buf, size_t len, size_t *n_r,
                                     const char **reason_r)
{
	ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
	if (n >= 0) {
		*n_r = (size_t)n;
		return TRANSPORT_OK;
	}
	if (errno == EAGAIN || errno == EINTR)
		return TRANSPORT_WANT_WRITE;
	*reason_r = strerror(errno);
	return TRANSPORT_ERROR;
}

/* plain_flush - every write went straight out */
static enum transport_io plain_flush(struct transport *t, const char **reason_r)
{
	(void)t;
	(void)reason_r;
	return TRANSPORT_OK;
}

static size_t plain_nothing(const struct transport *t)
{
	(void)t;
	return 0;
}

static void plain_bye(struct transport *t)
{
	(void)t;
}

/* plain_release - it lives in its owner's memory */
static void plain_release(struct transport *t)
{
	(void)t;
}

static const struct transport_ops plain_ops = {
	.handshake = plain_handshake,
	.read = plain_read,
	.write = plain_write,
	.flush = plain_flush,
	.pending = plain_nothing,
	.unsent = plain_nothing,
	.bye = plain_bye,
	.release = plain_release,
};

void transport_plain_init(struct transport *t, int fd)
{
	t->ops = &plain_ops;
	t->fd = fd;
	t->drained = false;
}
