/* config.h - the configuration file (INTERFACE.md, starttlsd.conf(5))
 *
 * Pure: config_parse() reads text that the caller has loaded and fills a
 * struct config. Nothing here opens a certificate or resolves a name; the
 * edge loads credentials (tls.c) and reports their errors on the cert line.
 */
#ifndef STARTTLSD_CONFIG_H
#define STARTTLSD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_LISTENERS 32
#define CONFIG_MAX_LISTEN 8
#define CONFIG_MAX_CERTS 8
#define CONFIG_PATH_MAX 1024
#define CONFIG_NAME_MAX 64
#define CONFIG_HOST_MAX 256
#define CONFIG_PRIORITY_MAX 1024
#define CONFIG_MAX_NETWORKS 16
#define CONFIG_MAX_WORKERS 256
/* dns_trust_anchor: the root's key as dns-root-data installs it */
#define CONFIG_DNS_TRUST_ANCHOR_DEFAULT "/usr/share/dns/root.key"

enum config_log_level { CONFIG_LOG_ERROR, CONFIG_LOG_WARNING, CONFIG_LOG_INFO, CONFIG_LOG_DEBUG };
/* opportunistic: upstream_tls only, with backend = original-destination */
enum config_tls_mode { CONFIG_TLS_STARTTLS, CONFIG_TLS_IMPLICIT, CONFIG_TLS_OPPORTUNISTIC };
/* inbound: TLS clients in, a plaintext backend behind. outbound: a legacy
 * plaintext sender in, its TLS upstream relay (the backend) behind. */
enum config_direction { CONFIG_INBOUND, CONFIG_OUTBOUND };
enum config_client_addr { CONFIG_CLIENT_ADDR_NONE, CONFIG_CLIENT_ADDR_XCLIENT,
	                  CONFIG_CLIENT_ADDR_PROXY_V1, CONFIG_CLIENT_ADDR_PROXY_V2,
	                  CONFIG_CLIENT_ADDR_TRANSPARENT };

/* listen = ADDR:PORT. host "*" means every IPv4 and IPv6 address; an IPv6
 * host is stored without its brackets. */
struct config_listen {
	char host[CONFIG_HOST_MAX];
	char port[8];
	int line;
};

/* A network in CIDR form: ADDR/PREFIX, or ADDR alone for one host. */
struct config_network {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct config_cert {
	char chain[CONFIG_PATH_MAX];
	char key[CONFIG_PATH_MAX]; /* "" when the chain file holds the key */
	int line;
	char ocsp[CONFIG_PATH_MAX]; /* DER OCSP response to staple, or "" */
	int ocsp_line;
};

struct config_backend {
	bool is_unix;
	/* backend = original-destination: an outbound listener's connections
	 * go where they were going before a redirect (SO_ORIGINAL_DST) */
	bool original_destination;
	char host[CONFIG_HOST_MAX]; /* TCP: host name or address, no brackets */
	char port[8];
	char path[CONFIG_PATH_MAX]; /* unix:PATH */
	int line;
};

struct config_listener {
	char name[CONFIG_NAME_MAX];
	int line; /* of the [NAME] header */
	enum config_direction direction;
	int direction_line;
	/* The first key of the other direction's kind, for the error that
	 * names its line (keys may come before direction) */
	const char *inbound_key, *outbound_key;
	int inbound_key_line, outbound_key_line;
	struct config_listen listen[CONFIG_MAX_LISTEN];
	size_t n_listen;
	struct config_backend backend;
	enum config_tls_mode tls;
	struct config_cert certs[CONFIG_MAX_CERTS];
	size_t n_certs;
	char priority[CONFIG_PRIORITY_MAX]; /* "" means the built-in default */
	int priority_line;
	bool request_client_cert; /* client_cert = request */
	bool require_tls;
	int require_tls_line;
	bool auth_before_tls;
	enum config_client_addr client_addr;
	int client_addr_line;
	bool accept_proxy;
	int accept_proxy_line;
	bool trace_header;
	struct config_network proxy_from[CONFIG_MAX_NETWORKS]; /* empty: any peer */
	size_t n_proxy_from;
	unsigned connect_timeout;   /* seconds */
	unsigned handshake_timeout; /* seconds */
	unsigned idle_timeout;      /* seconds */
	unsigned session_timeout;   /* seconds from accept; 0: no limit */
	/* While a message is open the client sends at least min_data_rate
	 * bytes a second, counted after the first min_data_rate_grace
	 * seconds; 0: no minimum */
	unsigned min_data_rate;
	unsigned min_data_rate_grace; /* seconds */
	/* Connections at once from one client address (IPv6: one /64) on
	 * this listener, per worker; 0: no limit */
	unsigned max_per_ip;

	/* direction = outbound: the upstream relay is the backend */
	enum config_tls_mode upstream_tls;
	int upstream_tls_line;
	/* original-destination, opportunistic: plaintext also after a
	 * STARTTLS that was offered and then failed */
	bool fallback_plaintext;
	int fallback_plaintext_line;
	int upstream_name_line;
	int verify_line;
	char upstream_name[CONFIG_HOST_MAX]; /* verified and sent as SNI; "" means backend.host */
	char ca[CONFIG_PATH_MAX];            /* trusted CAs (PEM); "" means the system's */
	int ca_line;
	bool verify; /* check the upstream's certificate chain and name */
	struct config_cert upstream_cert; /* chain "" when none is sent */
	/* resume the relay's TLS sessions from its tickets (a smarthost only:
	 * a ticket is the one relay's, verified when it was issued) */
	bool upstream_resumption;
	int upstream_resumption_line;
	/* original-destination: DANE (RFC 7672) for each recipient domain */
	bool dane;
	int dane_line;
	char dns_resolver[CONFIG_HOST_MAX]; /* "ADDR" or "ADDR@PORT"; "" means /etc/resolv.conf's */
	int dns_resolver_line;
	char dns_trust_anchor[CONFIG_PATH_MAX]; /* DS or DNSKEY lines */
	int dns_trust_anchor_line;              /* 0: the default file */
	unsigned dns_timeout;                   /* seconds for one domain's lookups */
	int dns_timeout_line;
};

struct config {
	char user[CONFIG_NAME_MAX]; /* "" when unset */
	int user_line;
	unsigned workers;           /* 0 means auto */
	enum config_log_level log_level;
	char pid_file[CONFIG_PATH_MAX];
	unsigned drain_timeout; /* seconds */
	struct config_listen metrics; /* metrics = ADDR:PORT; host "" when off */
	unsigned max_connections; /* client connections over all workers; 0: auto (the edge sizes it) */
	unsigned max_handshakes;  /* TLS handshakes in progress at once, per worker */
	/* Seconds between looks at the files the configuration names, which
	 * reload it when one changed; 0: only SIGHUP reloads */
	unsigned watch_files;
	struct config_listener listeners[CONFIG_MAX_LISTENERS];
	size_t n_listeners;
};

/* config_parse - parse TEXT (LEN bytes) read from FILENAME into *cfg_r.
 * Returns true on success. On failure writes "FILENAME:LINE: message" into
 * ERR (ERRLEN bytes) and returns false. */
bool config_parse(const char *text, size_t len, const char *filename,
                  struct config *cfg_r, char *err, size_t errlen);

/* config_network_contains - ADDR (LEN bytes: 4 for IPv4, 16 for IPv6) of
 * FAMILY is inside NET */
bool config_network_contains(const struct config_network *net, int family, const unsigned char *addr);

/* config_warning_fn - receives one "FILENAME:LINE: warning: ..." line */
typedef void config_warning_fn(void *ctx, const char *line);

/* config_warnings - the warnings INTERFACE.md asks for that need no file
 * access: client_addr = none in front of a loopback backend (open relay),
 * require_tls = yes on port 25 (RFC 3207 section 4). */
void config_warnings(const struct config *cfg, const char *filename,
                     config_warning_fn *warn, void *ctx);

#endif
