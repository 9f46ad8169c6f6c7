/* tls.h - TLS for the client side; tls.c, tls_creds.c and transport_tls.c
 * are the only files that use GnuTLS
 *
 * A tls_creds holds one listener's certificates, OCSP responses and priority
 * cache, built once per configuration. tls_server_new makes one server-side
 * TLS session on a non-blocking socket, as a transport (transport.h) that
 * conn.c reads and writes like the plain one.
 */
#ifndef STARTTLSD_TLS_H
#define STARTTLSD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "transport.h"

struct tls_creds;

/* tls_warning_fn - receives "FILE:LINE: warning: ..." */
typedef void tls_warning_fn(void *ctx, const char *line);

/* tls_global_init - once at start-up, before any worker is forked: it also
 * makes the session ticket master key that every worker shares */
bool tls_global_init(char *err, size_t errlen);

/* tls_creds_load - every cert (and ocsp) of listener L and its priority;
 * on failure "FILE:LINE: message" on the offending line */
struct tls_creds *tls_creds_load(const struct config_listener *l, const char *filename,
                                 tls_warning_fn *warn, void *warn_ctx, char *err, size_t errlen);
void tls_creds_free(struct tls_creds *creds);

/* tls_creds_same_keys - A and B hold the same set of public keys (a key
 * change breaks published DANE TLSA 3 1 1 records) */
bool tls_creds_same_keys(const struct tls_creds *a, const struct tls_creds *b);

/* tls_tlsa_fn - one certificate name and its TLSA 3 1 1 data (64 hex digits) */
typedef void tls_tlsa_fn(void *ctx, const char *name, const char *spki_sha256_hex);

/* tls_creds_tlsa - call FN for every DNS name of every certificate */
void tls_creds_tlsa(const struct tls_creds *creds, tls_tlsa_fn *fn, void *ctx);

/* tls_creds_cert_dates - when the certificate of cert line INDEX expires,
 * and the thisUpdate of its stapled OCSP response (-1 when none staples);
 * seconds since the epoch */
void tls_creds_cert_dates(const struct tls_creds *creds, size_t index, int64_t *expires_r,
                          int64_t *ocsp_this_update_r);

/* tls_server_new - the client side's TLS: a server session for CREDS on FD
 * through BUFS (transport.h), or NULL */
struct transport *tls_server_new(struct tls_creds *creds, int fd, struct transport_buffers bufs);

/* The facts of a session tls_server_new made, once its handshake is done. */

/* tls_describe - "TLS1.3/AES-256-GCM" for the session log line */
void tls_describe(const struct transport *t, char *buf, size_t len);

/* tls_suite - the cipher suite's IANA name, e.g. "TLS_AES_256_GCM_SHA384" */
void tls_suite(const struct transport *t, char *buf, size_t len);

/* tls_sni - the server name the client asked for, or "-" */
void tls_sni(const struct transport *t, char *buf, size_t len);

/* tls_resumed - the session was resumed from a ticket */
bool tls_resumed(const struct transport *t);

/* tls_cert_name - the first name of the certificate this session got, or
 * "-"; it lives as long as the credentials */
const char *tls_cert_name(const struct transport *t);

/* tls_client_cert - the subject (RFC 4514) and SHA-256 fingerprint of the
 * certificate the client sent; false when it sent none */
bool tls_client_cert(const struct transport *t, char *subject, size_t subject_len, char *sha256,
                     size_t sha256_len);

/* tls_library_version - GnuTLS's version at run time */
const char *tls_library_version(void);

#endif
