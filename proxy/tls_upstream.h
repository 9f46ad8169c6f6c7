/* tls_upstream.h - TLS towards an outbound listener's relay (the client
 * side of TLS), on GnuTLS
 *
 * A tls_upstream holds one outbound listener's trust anchors (the system's
 * store, or ca = FILE), its client certificate (upstream_cert), its priority
 * and the name to verify, built once per configuration like tls_creds, so a
 * reload swaps them with the generation. Each outbound session gets a
 * CLIENT gnutls_session_t from tls_upstream_session(), with SNI and, unless
 * verify = no, GnuTLS's own chain and name check in the handshake
 * (gnutls_session_set_verify_cert: RFC 5280 chain, RFC 6125 name), so a
 * relay that fails the check fails the handshake and no byte of mail is
 * ever written to it. The transport (transport_tls) does the I/O.
 */
#ifndef STARTTLSD_TLS_UPSTREAM_H
#define STARTTLSD_TLS_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <gnutls/gnutls.h>

#include "config.h"
#include "upstream_opening.h"

struct tls_upstream;

/* tls_upstream_load - listener L's trust anchors, client certificate and
 * priority; NULL with "FILE:LINE: message" in ERR (on the ca,
 * upstream_cert or priority line, or the section's for the system store) */
struct tls_upstream *tls_upstream_load(const struct config_listener *l, const char *filename, char *err,
                                       size_t errlen);
void tls_upstream_free(struct tls_upstream *u);

/* tls_upstream_name - the name verified and sent as SNI */
const char *tls_upstream_name(const struct tls_upstream *u);

/* tls_upstream_session - a new client session, not yet started, offering
 * the relay's last ticket when upstream_resumption is on (and keeping the
 * tickets it sends); false when GnuTLS could not make one (out of memory) */
bool tls_upstream_session(struct tls_upstream *u, gnutls_session_t *session_r);

/* tls_upstream_established - a handshake of U's passed: keep what resumes
 * it (TLS 1.2; a TLS 1.3 relay's tickets come later and are kept as they
 * come) */
void tls_upstream_established(struct tls_upstream *u, gnutls_session_t session);

/* tls_upstream_result - what a handshake that ended (OK or not) means for
 * the opening: verified, failed, or a certificate that did not pass the
 * check (GnuTLS's verification status says which failure it was) */
enum opening_tls_result tls_upstream_result(gnutls_session_t session, bool ok);

/* tls_upstream_verified - "ca" or "none" for the session line's verified= */
const char *tls_upstream_verified(const struct tls_upstream *u);

/* tls_upstream_why_untrusted - after OPENING_TLS_NOT_TRUSTED, GnuTLS's
 * words for why, e.g. "The certificate is NOT trusted. The name in the
 * certificate does not match the expected." */
void tls_upstream_why_untrusted(gnutls_session_t session, char *buf, size_t len);

/* tls_upstream_describe - "TLS1.3/AES-256-GCM" for the session line */
void tls_upstream_describe(gnutls_session_t session, char *buf, size_t len);

#endif
