/* transport_tls.h - a transport over a GnuTLS session, either end
 *
 * For the files that make GnuTLS sessions (tls.c for the client side's
 * server sessions; an upstream's client sessions likewise): make and
 * configure a gnutls_session_t with GNUTLS_NONBLOCK (priorities,
 * credentials, server name, verification: gnutls_session_set_verify_cert
 * for a client), then hand it over here. The transport sets the session's
 * transport functions (a pull that reads ahead from BUFS.read_ahead, a push
 * that gathers into BUFS.gather) and owns the session from then on:
 * transport_release() calls gnutls_deinit. The session's user pointer
 * (gnutls_session_set_ptr) stays the caller's.
 *
 *     gnutls_session_t s;
 *     gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
 *     ... priorities, credentials, SNI, verification ...
 *     struct transport *t = transport_tls_new(s, fd, bufs);
 *     transport_handshake(t, &reason) until TRANSPORT_OK
 *
 * A handshake that fails sends the alert GnuTLS finds appropriate before it
 * reports TRANSPORT_ERROR; *reason_r then names the failure (a certificate
 * that does not verify included).
 */
#ifndef STARTTLSD_TRANSPORT_TLS_H
#define STARTTLSD_TRANSPORT_TLS_H

#include <gnutls/gnutls.h>

#include "transport.h"

/* transport_tls_new - a transport on FD through BUFS for SESSION, which it
 * takes over (even on failure: NULL, the session deinitialised) */
struct transport *transport_tls_new(gnutls_session_t session, int fd, struct transport_buffers bufs);

/* transport_tls_session - the session of a transport made above */
gnutls_session_t transport_tls_session(const struct transport *t);

#endif
