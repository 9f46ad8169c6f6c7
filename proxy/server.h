/* server.h - what the event loop owns: the configuration in force, the
 * listeners, the live connections */
#ifndef STARTTLSD_SERVER_H
#define STARTTLSD_SERVER_H

#include <ev.h>
#include <stdbool.h>

#include "backend.h"
#include "config.h"
#include "ip_count.h"
#include "tls.h"

struct conn;
struct server;
struct tls_upstream;
struct dns;

struct listen_socket {
	ev_io io; /* first: the watcher's address is the socket's */
	int fd;
	struct listener *owner;
	const struct config_listen *addr; /* the listen line it serves; NULL when inherited */
};

/* One [section]: its sockets, credentials and backend. */
struct listener {
	const struct config_listener *cfg;
	struct tls_creds *creds;          /* inbound: the certificates served; NULL outbound */
	struct tls_upstream *upstream;    /* outbound: TLS towards the relay; NULL inbound */
	/* dane = yes: the trust anchors read at load (dns.h), and this
	 * worker's resolver, made on first use; NULL otherwise */
	char *dns_anchors;
	struct dns *dns;
	struct backend_addrs backend;
	struct listen_socket sockets[CONFIG_MAX_LISTEN * 2];
	size_t n_sockets;
	struct server *server;
	struct generation *gen;
	size_t metrics_index; /* its counters' row (metrics_shm.h) */
};

/* One loaded configuration (generation.h). */
struct generation {
	unsigned refs; /* the server's while in force, and one per connection */
	struct config cfg;
	struct listener listeners[CONFIG_MAX_LISTENERS];
	size_t n_listeners;
	unsigned serial; /* 1 at start-up, one more per reload */
	bool sockets_inherited; /* from systemd (socket activation), never bound here */
};

struct server {
	struct ev_loop *loop;
	const char *config_path;
	bool log_to_stderr;
	char hostname[256]; /* the proxy's own EHLO name towards an XCLIENT backend */
	char date[64];      /* RFC 5322 date-time for trace lines, refreshed each second */
	long date_second;
	struct generation *current; /* in force for new connections */
	struct conn *conns; /* every live connection, for shutdown */
	size_t n_conns;
	size_t n_conns_peak; /* the most since memory was last given back */
	long worker_pid; /* for log lines: asked once, not once per session */
	bool draining; /* accepts no more; the loop ends with the last session */
	bool stopping; /* SIGTERM: idle sessions got 421, drain_timer runs */
	ev_timer drain_timer;
	ev_timer accept_pause; /* after EMFILE: accept again a little later */
	ev_tstamp accept_backoff; /* its current length; 0 while accepts succeed */
	bool accept_starved; /* out of descriptors, logged once until an accept succeeds */
	unsigned connections_auto; /* max_connections = auto: from RLIMIT_NOFILE (worker.c) */
	unsigned handshakes; /* TLS handshakes in progress in this worker (max_handshakes) */
	unsigned handshake_turns_left;  /* in the loop iteration below (listener_handshake_turn) */
	unsigned handshake_turns_iteration;
	struct ip_count_table *per_ip; /* this worker's counts for max_per_ip */
	ev_timer idle_sweep;   /* conn_release_idle_buffers */
	ev_timer file_watch;   /* watch_files, when the worker is the whole daemon */
	uint64_t files_fingerprint; /* the configured files as last loaded or looked at (file_watch.h) */
	ev_signal sig_term, sig_int;
	ev_signal sig_reload; /* SIGHUP alone; SIGQUIT (retire) under the supervisor */
	ev_io control;        /* the supervisor's commands (worker.h), under it */
};

#endif
