/* conn_int.h - the inside of a connection, shared by conn.c (the client
 * side and the relay) and backend_side.c (connecting to the backend and
 * telling it who the client is); nothing else includes it */
#ifndef STARTTLSD_CONN_INT_H
#define STARTTLSD_CONN_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "ip_count.h"
#include "listener.h"
#include "session.h"
#include "transport.h"
#include "upstream_opening.h"

struct dane_lookup;

/* The TLS session's socket buffers (transport.h): reading ahead, a whole
 * record (16,645 bytes at most, RFC 8446 section 5.2) and the next one's
 * header; gathering, a handshake flight with its chain, or a few replies
 * and a close_notify. */
#define TLS_READ_AHEAD_CAP (5 * 4096)
#define TLS_GATHER_CAP 4096

enum side_tls { SIDE_PLAIN, SIDE_HANDSHAKE, SIDE_TLS };

/* One side of a connection: its socket as a transport and what is known of
 * its readiness. The relay reads and writes either side the same way. */
struct conn_side {
	struct transport *t;     /* &plain, a TLS transport, or NULL: no socket */
	struct transport plain;  /* the socket as it is */
	enum side_tls tls;
	ev_io io;
	int events;              /* what io waits for now */
	bool readable, writable; /* poll said so, and no call blocked since */
	bool handshake_wants_write;
	bool read_wants_write, write_wants_read; /* the two TLS traps */
	size_t write_again;      /* bytes a blocked TLS write must offer again */
};

/* Where a redirected connection was going: the one address to connect to,
 * and its text for the logs */
struct original_destination {
	struct backend_addrs addrs;
	char text[INET6_ADDRSTRLEN + 8];
};

struct conn {
	struct conn *prev, *next;
	struct listener *listener;
	struct server *srv;
	int cfd, bfd;
	struct conn_side client, backend;
	bool client_eof;
	bool client_eof_told;    /* session_client_eof() called (tell_client_eof) */
	bool start_tls;  /* ACT_START_TLS: flush the 220, then handshake */
	bool closing;    /* ACT_CLOSE_AFTER_FLUSH: flush, then close */
	bool bye_gathered; /* close_notify is behind the last reply */
	bool lingering;  /* output written; waiting for the client to close */
	bool dead;
	bool backend_connecting, backend_greeted;
	bool awaiting_proxy;     /* accept_proxy: the load balancer's header first */
	bool backend_after_handshake; /* proxy-v2 on implicit TLS carries the TLS facts */
	bool refuse_proxy_header; /* a peer outside proxy_from: a header from it ends it */
	bool refused;            /* by a limit, before its session began: no session line */
	bool per_ip_counted;     /* holds one of per_ip_key's max_per_ip counts */
	struct ip_count_key per_ip_key;
	size_t backend_index;
	ev_timer handshake_timer, connect_timer, idle_timer, linger_timer, proxy_timer;
	ev_timer session_timer;   /* session_timeout, from accept */
	ev_timer data_rate_timer; /* min_data_rate, while a message is open */
	uint64_t bytes_in, bytes_out;
	bool message_open;        /* session_message_open(), as last seen */
	ev_tstamp message_opened_at;
	uint64_t message_bytes;   /* client bytes the session used since then */
	struct sockaddr_storage client_addr, local_addr; /* as the backend is told (client_addr);
	                                                  * local_addr is asked only for that */
	char xclient_addr[INET6_ADDRSTRLEN + 8];
	const char *end_reason;
	char peer[64];
	char tls_desc[64];
	char tls_suite[64];
	char sni[256];
	const char *cert_name; /* the certificate it got (tls_cert_name) */
	bool resumed;
	bool io_since_sweep;   /* conn_release_idle_buffers */
	bool buffers_released;
	size_t cin_len, bin_len;
	/* The session's output buffers and then these: one range of whole
	 * pages to release while idle (CONN_SHIFT). */
	/* direction = outbound: the way to TLS with the relay
	 * (upstream_side.c), and its check once TLS is up; NULL inbound */
	struct upstream_opening *opening;
	const char *upstream_verified;
	struct original_destination *destination; /* backend = original-destination */
	/* dane = yes: the session's verdicts per recipient domain, the
	 * lookup in progress (dane.h), and how DANE went, for verified= */
	struct domain_decisions *domains;
	struct dane_lookup *dane;
	unsigned dane_matched, dane_failed;
	struct session session;
	uint8_t cin[CONN_INPUT_CAP];
	uint8_t bin[CONN_INPUT_CAP];
	uint8_t tls_read_ahead[TLS_READ_AHEAD_CAP];
	uint8_t tls_gather[TLS_GATHER_CAP];
};

/* conn.c */

/* conn_fail - end the connection now, for REASON */
void conn_fail(struct conn *c, const char *reason);

/* conn_side_handshake - one step of S's TLS handshake, when its socket is
 * ready for what the last step asked; TRANSPORT_WANT_READ also when not */
enum transport_io conn_side_handshake(struct conn_side *s, const char **reason_r);

/* upstream_side.c: outbound listeners */

/* upstream_start - the opening begins: connect to the relay */
void upstream_start(struct conn *c);

/* upstream_opening_active - outbound, and TLS with the relay is not up yet:
 * the relay's bytes are the opening's, not the session's */
bool upstream_opening_active(const struct conn *c);

/* upstream_connect_by_write - the connect's end is seen by writability:
 * an implicit-TLS relay does not speak first */
bool upstream_connect_by_write(const struct conn *c);

/* upstream_step - the opening's next move: read replies, write EHLO or
 * STARTTLS, handshake; true when something moved */
bool upstream_step(struct conn *c);

/* upstream_lost - the relay went (or never came) before TLS was up: the
 * client gets the opening's 421; false when the opening is over */
bool upstream_lost(struct conn *c);

/* upstream_handshake_timeout - handshake_timeout ran out on the relay */
void upstream_handshake_timeout(struct conn *c);

/* upstream_domain_policy - ACT_DOMAIN_POLICY: decide the held RCPT's
 * domain (dane.h); the session hears the verdict from the loop */
void upstream_domain_policy(struct conn *c);

/* backend_side.c */

/* backend_start - connect_timeout starts, and the connect to the first
 * address */
void backend_start(struct conn *c);

/* backend_connect_step - the non-blocking connect, once it is over: the
 * PROXY header goes first when the backend is told that way; true when
 * something moved */
bool backend_connect_step(struct conn *c);

/* backend_connect_events - what the connect's end is waited for with:
 * EV_WRITE when a PROXY header goes first, else the greeting's EV_READ */
int backend_connect_events(const struct conn *c);

/* backend_read_failed - a read from the backend failed with ERROR before
 * its greeting: true when that was the connect failing and the next address
 * is being tried */
bool backend_read_failed(struct conn *c, int error);

/* backend_greeted - the first bytes from the backend */
void backend_greeted(struct conn *c);

/* backend_failed - the backend cannot be had: the client gets 421 */
void backend_failed(struct conn *c);

/* backend_close - the backend's socket goes; the client's session stays */
void backend_close(struct conn *c);

#endif
