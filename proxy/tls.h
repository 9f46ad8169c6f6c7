/* tls.h - TLS for the client side; tls.c and tls_creds.c are the only files
 * that use GnuTLS
 *
 * A tls_creds holds one listener's certificates, OCSP responses and priority
 * cache, built once per configuration. A tls_conn is one server-side TLS
 * session on a non-blocking socket. Every I/O call says what it needs next:
 * the caller must wait for readability or writability as told, which covers
 * the TLS trap of a read that needs a write (and the reverse).
 */
#ifndef STARTTLSD_TLS_H
#define STARTTLSD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct tls_creds;
struct tls_conn;

enum tls_io { TLS_IO_OK, TLS_IO_WANT_READ, TLS_IO_WANT_WRITE, TLS_IO_EOF, TLS_IO_ERROR };

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

/* The caller's buffers a session does its socket I/O through: GnuTLS reads
 * records out of READ_AHEAD, which one recv fills as far as the socket
 * allows (a record's header and body, and often the next records, for one
 * call), and what it sends is gathered in GATHER until tls_flush (a whole
 * handshake flight, or a reply and its close_notify, in one sendmsg). */
struct tls_buffers {
	uint8_t *read_ahead;
	size_t read_ahead_cap;
	uint8_t *gather;
	size_t gather_cap;
};

/* tls_conn_new - a server session on FD through BUFS, or NULL */
struct tls_conn *tls_conn_new(struct tls_creds *creds, int fd, struct tls_buffers bufs);
void tls_conn_free(struct tls_conn *t);

/* tls_socket_readable - poll says the socket is readable again: until
 * then, after a recv that returned less than asked, none is tried (level
 * triggered polling tells when more has come) */
void tls_socket_readable(struct tls_conn *t);

/* tls_handshake - one step; on TLS_IO_ERROR *reason_r says why */
enum tls_io tls_handshake(struct tls_conn *t, const char **reason_r);

/* tls_read - decrypted bytes into BUF; *n_r set on TLS_IO_OK */
enum tls_io tls_read(struct tls_conn *t, void *buf, size_t cap, size_t *n_r, const char **reason_r);

/* tls_write - encrypt and send; after a WANT_* the caller offers the same
 * bytes again (GnuTLS already holds them) */
enum tls_io tls_write(struct tls_conn *t, const void *buf, size_t len, size_t *n_r,
                      const char **reason_r);

/* tls_pending - bytes already off the socket that poll cannot see:
 * decrypted inside GnuTLS or still in the read-ahead buffer */
size_t tls_pending(struct tls_conn *t);

/* tls_unsent - gathered bytes that tls_flush has not sent yet */
size_t tls_unsent(struct tls_conn *t);

/* tls_flush - send what is gathered, in one call; TLS_IO_WANT_WRITE when
 * some is left */
enum tls_io tls_flush(struct tls_conn *t, const char **reason_r);

/* tls_bye - gather close_notify, best effort, never blocking; tls_flush
 * sends it */
void tls_bye(struct tls_conn *t);

/* tls_describe - "TLS1.3/AES-256-GCM" for the session log line */
void tls_describe(struct tls_conn *t, char *buf, size_t len);

/* tls_suite - the cipher suite's IANA name, e.g. "TLS_AES_256_GCM_SHA384" */
void tls_suite(struct tls_conn *t, char *buf, size_t len);

/* tls_sni - the server name the client asked for, or "-" */
void tls_sni(struct tls_conn *t, char *buf, size_t len);

/* tls_resumed - the session was resumed from a ticket */
bool tls_resumed(struct tls_conn *t);

/* tls_cert_name - the first name of the certificate this session got, or
 * "-"; it lives as long as the credentials */
const char *tls_cert_name(struct tls_conn *t);

/* tls_client_cert - the subject (RFC 4514) and SHA-256 fingerprint of the
 * certificate the client sent; false when it sent none */
bool tls_client_cert(struct tls_conn *t, char *subject, size_t subject_len, char *sha256,
                     size_t sha256_len);

/* tls_library_version - GnuTLS's version at run time */
const char *tls_library_version(void);

#endif
