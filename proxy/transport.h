/* transport.h - one byte stream on a non-blocking socket, plain or TLS
 *
 * Both sides of a connection, the client's and the backend's, are a
 * transport, so that conn.c relays through one code path whichever side
 * speaks TLS (nginx's recv/send pointers, Redis' connection types). Two
 * implementations: the plain one here (transport_plain_init) and the GnuTLS
 * one (transport_tls.h), which does its socket I/O through the connection's
 * own buffers.
 *
 * Every call says what it needs next: TRANSPORT_WANT_READ or _WANT_WRITE
 * means wait for that readiness and call again. A TLS read can want a write
 * and a TLS write a read (the renegotiation and key-update traps); the
 * caller waits for what it is told, never for what it asked.
 *
 * Readiness: a read that returns less than it was offered has drained the
 * socket, so the transport tries no further recv until transport_readable()
 * says poll saw the socket readable again (level-triggered polling wakes
 * the loop while data waits). transport_pending() counts the bytes already
 * off the socket that poll cannot see.
 */
#ifndef STARTTLSD_TRANSPORT_H
#define STARTTLSD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

enum transport_io { TRANSPORT_OK, TRANSPORT_WANT_READ, TRANSPORT_WANT_WRITE, TRANSPORT_EOF, TRANSPORT_ERROR };

struct transport;

struct transport_ops {
	/* handshake - one step; a plain transport has none (TRANSPORT_OK) */
	enum transport_io (*handshake)(struct transport *t, const char **reason_r);
	/* read - up to CAP bytes into BUF, *n_r set on TRANSPORT_OK */
	enum transport_io (*read)(struct transport *t, void *buf, size_t cap, size_t *n_r,
	                          const char **reason_r);
	/* write - LEN bytes from BUF, *n_r taken on TRANSPORT_OK; after a
	 * WANT_* the same bytes are offered again (GnuTLS holds them) */
	enum transport_io (*write)(struct transport *t, const void *buf, size_t len, size_t *n_r,
	                           const char **reason_r);
	/* flush - send what writes gathered, in one call; WANT_WRITE when
	 * some is left */
	enum transport_io (*flush)(struct transport *t, const char **reason_r);
	/* pending - bytes off the socket but not yet read (poll cannot see) */
	size_t (*pending)(const struct transport *t);
	/* unsent - bytes gathered that flush has not sent */
	size_t (*unsent)(const struct transport *t);
	/* bye - gather the end of the stream (close_notify), never blocking;
	 * flush sends it. A plain transport has nothing to say. */
	void (*bye)(struct transport *t);
	/* release - free what the implementation allocated; the socket is
	 * the caller's */
	void (*release)(struct transport *t);
};

/* The connection's buffers a TLS transport does its socket I/O through:
 * GnuTLS reads records out of READ_AHEAD, which one recv fills as far as
 * the socket allows (a record's header and body, and often the next
 * records, for one call); the first READ_AHEAD_LEN bytes are already there
 * (what came behind a PROXY header: the ClientHello). What GnuTLS sends is
 * gathered in GATHER until the flush (a whole handshake flight, or a reply
 * and its close_notify, in one sendmsg). */
struct transport_buffers {
	unsigned char *read_ahead;
	size_t read_ahead_cap, read_ahead_len;
	unsigned char *gather;
	size_t gather_cap;
};

/* The part every implementation shares; a TLS transport embeds it first. */
struct transport {
	const struct transport_ops *ops;
	int fd;
	bool drained; /* the last recv got less than asked: wait for poll */
};

/* transport_plain_init - T reads and writes FD as it is; after a
 * TRANSPORT_ERROR errno is what the socket call set */
void transport_plain_init(struct transport *t, int fd);

/* transport_readable - poll says T's socket is readable again */
static inline void transport_readable(struct transport *t)
{
	t->drained = false;
}

static inline enum transport_io transport_handshake(struct transport *t, const char **reason_r)
{
	return t->ops->handshake(t, reason_r);
}

static inline enum transport_io transport_read(struct transport *t, void *buf, size_t cap, size_t *n_r,
                                               const char **reason_r)
{
	return t->ops->read(t, buf, cap, n_r, reason_r);
}

static inline enum transport_io transport_write(struct transport *t, const void *buf, size_t len,
                                                size_t *n_r, const char **reason_r)
{
	return t->ops->write(t, buf, len, n_r, reason_r);
}

static inline enum transport_io transport_flush(struct transport *t, const char **reason_r)
{
	return t->ops->flush(t, reason_r);
}

static inline size_t transport_pending(const struct transport *t)
{
	return t->ops->pending(t);
}

static inline size_t transport_unsent(const struct transport *t)
{
	return t->ops->unsent(t);
}

static inline void transport_bye(struct transport *t)
{
	t->ops->bye(t);
}

/* transport_release - T's own memory goes; NULL is fine */
static inline void transport_release(struct transport *t)
{
	if (t)
		t->ops->release(t);
}

#endif
