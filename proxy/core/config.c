/* config.c - the configuration file parser (see config.h) */
#include "config.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_MAX_BYTES 4096
#define DURATION_MAX (7u * 24 * 3600)
/* min_data_rate: a gigabyte a second is beyond any SMTP client */
#define DATA_RATE_MAX (1000u * 1000 * 1000)
/* Connection counts: far beyond what descriptors allow on one machine */
#define CONNECTIONS_MAX (10u * 1000 * 1000)
#define HANDSHAKES_DEFAULT 64

struct parse_ctx {
	const char *filename;
	int line;
	char *err;
	size_t errlen;
};

/* fail - write "FILE:LINE: message" and return false */
static bool fail(struct parse_ctx *ctx, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool fail(struct parse_ctx *ctx, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(ctx->err, ctx->errlen, "%s:%d: %s", ctx->filename, line, msg);
	return false;
}

/* copy_value - VALUE into a fixed field, refusing to truncate */
static bool copy_value(struct parse_ctx *ctx, char *dst, size_t cap, const char *value, const char *what)
{
	size_t n = strlen(value);
	if (n >= cap)
		return fail(ctx, ctx->line, "%s is too long (at most %zu bytes)", what, cap - 1);
	memcpy(dst, value, n + 1);
	return true;
}

/* ---- typed value parsers ---- */

static bool parse_bool(struct parse_ctx *ctx, const char *value, bool *out)
{
	if (strcmp(value, "yes") == 0)
		*out = true;
	else if (strcmp(value, "no") == 0)
		*out = false;
	else
		return fail(ctx, ctx->line, "expected yes or no, not '%s'", value);
	return true;
}

/* parse_uint - decimal, at most MAX */
static bool parse_uint(const char *s, size_t len, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

/* duration_seconds - VALUE as seconds: a number, or a number with s, m or h */
static bool duration_seconds(const char *value, unsigned *out)
{
	size_t len = strlen(value);
	unsigned long unit = 1, v;
	if (len > 0) {
		switch (value[len - 1]) {
		case 's': unit = 1; len--; break;
		case 'm': unit = 60; len--; break;
		case 'h': unit = 3600; len--; break;
		default: break;
		}
	}
	if (!parse_uint(value, len, DURATION_MAX, &v) || v * unit > DURATION_MAX)
		return false;
	*out = (unsigned)(v * unit);
	return true;
}

/* parse_duration - seconds, or a number with s, m or h; more than zero */
static bool parse_duration(struct parse_ctx *ctx, const char *value, unsigned *out)
{
	unsigned seconds;
	if (!duration_seconds(value, &seconds) || seconds == 0)
		return fail(ctx, ctx->line, "bad duration '%s' (seconds, or a number with s, m or h; "
		            "more than 0, at most 7 days)", value);
	*out = seconds;
	return true;
}

/* parse_limit_duration - a duration where 0 turns the limit off */
static bool parse_limit_duration(struct parse_ctx *ctx, const char *value, unsigned *out)
{
	if (!duration_seconds(value, out))
		return fail(ctx, ctx->line, "bad duration '%s' (seconds, or a number with s, m or h; "
		            "0 for none, at most 7 days)", value);
	return true;
}

/* parse_port - 0 to 65535 */
static bool parse_port(struct parse_ctx *ctx, const char *s, char *out, size_t cap)
{
	unsigned long port;
	size_t len = strlen(s);
	if (len >= cap || !parse_uint(s, len, 65535, &port))
		return fail(ctx, ctx->line, "bad port '%s'", s);
	memcpy(out, s, len + 1);
	return true;
}

/* parse_host_port - "HOST:PORT", "[V6]:PORT" or "*:PORT" */
static bool parse_host_port(struct parse_ctx *ctx, const char *value, char *host, size_t host_cap,
                            char *port, size_t port_cap)
{
	const char *colon;
	const char *h = value;
	size_t hlen;
	if (value[0] == '[') {
		const char *close = strchr(value, ']');
		if (!close || close[1] != ':')
			return fail(ctx, ctx->line, "bad address '%s' (expected [IPV6]:PORT)", value);
		h = value + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(value, ':');
		if (!colon)
			return fail(ctx, ctx->line, "bad address '%s' (expected ADDR:PORT)", value);
		hlen = (size_t)(colon - value);
		if (memchr(value, ':', hlen))
			return fail(ctx, ctx->line, "bad address '%s' (put an IPv6 address in brackets)", value);
	}
	if (hlen == 0)
		return fail(ctx, ctx->line, "bad address '%s' (no host)", value);
	if (hlen >= host_cap)
		return fail(ctx, ctx->line, "host name too long in '%s'", value);
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	return parse_port(ctx, colon + 1, port, port_cap);
}

/* ---- key handlers ---- */

typedef bool key_fn(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *value);

static bool key_user(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)l;
	cfg->user_line = ctx->line;
	return copy_value(ctx, cfg->user, sizeof cfg->user, v, "user");
}

static bool key_workers(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	unsigned long n;
	(void)l;
	if (strcmp(v, "auto") == 0) {
		cfg->workers = 0;
		return true;
	}
	if (!parse_uint(v, strlen(v), CONFIG_MAX_WORKERS, &n) || n == 0)
		return fail(ctx, ctx->line, "workers must be auto or 1 to %d, not '%s'", CONFIG_MAX_WORKERS, v);
	cfg->workers = (unsigned)n;
	return true;
}

static bool key_log_level(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	(void)l;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(v, names[i]) == 0) {
			cfg->log_level = (enum config_log_level)i;
			return true;
		}
	}
	return fail(ctx, ctx->line, "log_level must be error, warning, info or debug, not '%s'", v);
}

static bool key_pid_file(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)l;
	return copy_value(ctx, cfg->pid_file, sizeof cfg->pid_file, v, "pid_file");
}

static bool key_drain_timeout(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                              const char *v)
{
	(void)l;
	return parse_duration(ctx, v, &cfg->drain_timeout);
}

static bool key_listen(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	if (l->n_listen == CONFIG_MAX_LISTEN)
		return fail(ctx, ctx->line, "too many listen lines (at most %d)", CONFIG_MAX_LISTEN);
	struct config_listen *a = &l->listen[l->n_listen];
	if (!parse_host_port(ctx, v, a->host, sizeof a->host, a->port, sizeof a->port))
		return false;
	a->line = ctx->line;
	l->n_listen++;
	return true;
}

static bool key_backend(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	struct config_backend *b = &l->backend;
	b->line = ctx->line;
	if (strncmp(v, "unix:", 5) == 0) {
		b->is_unix = true;
		if (v[5] != '/')
			return fail(ctx, ctx->line, "unix socket path must be absolute, not '%s'", v + 5);
		return copy_value(ctx, b->path, sizeof b->path, v + 5, "unix socket path");
	}
	b->is_unix = false;
	b->original_destination = strcmp(v, "original-destination") == 0;
	if (b->original_destination)
		return true;
	if (strcmp(v, "*") == 0 || strncmp(v, "*:", 2) == 0)
		return fail(ctx, ctx->line, "backend needs a host, not '*'");
	return parse_host_port(ctx, v, b->host, sizeof b->host, b->port, sizeof b->port);
}

static bool key_tls(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	if (strcmp(v, "starttls") == 0)
		l->tls = CONFIG_TLS_STARTTLS;
	else if (strcmp(v, "implicit") == 0)
		l->tls = CONFIG_TLS_IMPLICIT;
	else
		return fail(ctx, ctx->line, "tls must be starttls or implicit, not '%s'", v);
	return true;
}

/* parse_cert_paths - "CHAIN.pem [KEY.pem]" into C */
static bool parse_cert_paths(struct parse_ctx *ctx, const char *v, struct config_cert *c)
{
	size_t chain_len = strcspn(v, " \t");
	const char *key = v + chain_len;
	key += strspn(key, " \t");
	if (strcspn(key, " \t") != strlen(key))
		return fail(ctx, ctx->line, "cert takes CHAIN.pem and an optional KEY.pem");
	if (chain_len >= sizeof c->chain || strlen(key) >= sizeof c->key)
		return fail(ctx, ctx->line, "certificate path too long");
	memcpy(c->chain, v, chain_len);
	c->chain[chain_len] = '\0';
	strcpy(c->key, key);
	c->line = ctx->line;
	return true;
}

static bool key_cert(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	if (l->n_certs == CONFIG_MAX_CERTS)
		return fail(ctx, ctx->line, "too many cert lines (at most %d)", CONFIG_MAX_CERTS);
	if (!parse_cert_paths(ctx, v, &l->certs[l->n_certs]))
		return false;
	l->n_certs++;
	return true;
}

/* key_ocsp - the OCSP response for the cert line just above it */
static bool key_ocsp(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	if (l->n_certs == 0)
		return fail(ctx, ctx->line, "ocsp belongs right after the cert line it staples for");
	struct config_cert *c = &l->certs[l->n_certs - 1];
	if (c->ocsp_line)
		return fail(ctx, ctx->line, "second ocsp for the cert on line %d", c->line);
	c->ocsp_line = ctx->line;
	return copy_value(ctx, c->ocsp, sizeof c->ocsp, v, "ocsp path");
}

static bool key_client_cert(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                            const char *v)
{
	(void)cfg;
	if (strcmp(v, "no") == 0)
		l->request_client_cert = false;
	else if (strcmp(v, "request") == 0)
		l->request_client_cert = true;
	else
		return fail(ctx, ctx->line, "client_cert must be no or request, not '%s'", v);
	return true;
}

static bool key_priority(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	l->priority_line = ctx->line;
	return copy_value(ctx, l->priority, sizeof l->priority, v, "priority");
}

static bool key_require_tls(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                            const char *v)
{
	(void)cfg;
	l->require_tls_line = ctx->line;
	return parse_bool(ctx, v, &l->require_tls);
}

static bool key_auth_before_tls(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                const char *v)
{
	(void)cfg;
	return parse_bool(ctx, v, &l->auth_before_tls);
}

static bool key_client_addr(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                            const char *v)
{
	static const char *const names[] = { "none", "xclient", "proxy-v1", "proxy-v2", "transparent" };
	(void)cfg;
	l->client_addr_line = ctx->line;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(v, names[i]) == 0) {
			l->client_addr = (enum config_client_addr)i;
			return true;
		}
	}
	return fail(ctx, ctx->line, "client_addr must be none, xclient, proxy-v1, proxy-v2 or transparent, not '%s'",
	            v);
}

static bool key_accept_proxy(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                             const char *v)
{
	(void)cfg;
	l->accept_proxy_line = ctx->line;
	return parse_bool(ctx, v, &l->accept_proxy);
}

/* parse_network - "ADDR[/PREFIX]" */
static bool parse_network(struct parse_ctx *ctx, const char *word, struct config_network *net)
{
	char addr[64];
	const char *slash = strchr(word, '/');
	size_t alen = slash ? (size_t)(slash - word) : strlen(word);
	if (alen >= sizeof addr)
		return fail(ctx, ctx->line, "bad network '%s'", word);
	memcpy(addr, word, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, net->addr) == 1)
		net->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, net->addr) == 1)
		net->family = AF_INET6;
	else
		return fail(ctx, ctx->line, "bad network '%s' (expected ADDR or ADDR/PREFIX)", word);
	unsigned long max = net->family == AF_INET ? 32 : 128, prefix = max;
	if (slash && (!parse_uint(slash + 1, strlen(slash + 1), max, &prefix) ||
	              (slash[1] == '0' && slash[2] != '\0')))
		return fail(ctx, ctx->line, "bad prefix length in '%s'", word);
	net->prefix = (unsigned)prefix;
	return true;
}

static bool key_proxy_from(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	char words[CONFIG_PRIORITY_MAX];
	if (!copy_value(ctx, words, sizeof words, v, "proxy_from"))
		return false;
	for (char *save = NULL, *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (l->n_proxy_from == CONFIG_MAX_NETWORKS)
			return fail(ctx, ctx->line, "too many networks in proxy_from (at most %d)", CONFIG_MAX_NETWORKS);
		if (!parse_network(ctx, w, &l->proxy_from[l->n_proxy_from]))
			return false;
		l->n_proxy_from++;
	}
	return true;
}

bool config_network_contains(const struct config_network *net, int family, const unsigned char *addr)
{
	if (family != net->family)
		return false;
	unsigned full = net->prefix / 8, rest = net->prefix % 8;
	if (memcmp(net->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xFFu << (8 - rest));
	return (net->addr[full] & mask) == (addr[full] & mask);
}

static bool key_trace_header(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                             const char *v)
{
	(void)cfg;
	return parse_bool(ctx, v, &l->trace_header);
}

static bool key_connect_timeout(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                const char *v)
{
	(void)cfg;
	return parse_duration(ctx, v, &l->connect_timeout);
}

static bool key_handshake_timeout(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                  const char *v)
{
	(void)cfg;
	return parse_duration(ctx, v, &l->handshake_timeout);
}

static bool key_idle_timeout(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                             const char *v)
{
	(void)cfg;
	return parse_duration(ctx, v, &l->idle_timeout);
}

static bool key_session_timeout(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                const char *v)
{
	(void)cfg;
	return parse_limit_duration(ctx, v, &l->session_timeout);
}

static bool key_min_data_rate(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                              const char *v)
{
	unsigned long rate;
	(void)cfg;
	if (!parse_uint(v, strlen(v), DATA_RATE_MAX, &rate))
		return fail(ctx, ctx->line, "min_data_rate must be 0 to %u bytes per second, not '%s'",
		            DATA_RATE_MAX, v);
	l->min_data_rate = (unsigned)rate;
	return true;
}

static bool key_min_data_rate_grace(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                    const char *v)
{
	(void)cfg;
	return parse_limit_duration(ctx, v, &l->min_data_rate_grace);
}

static bool key_watch_files(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                            const char *v)
{
	(void)l;
	return parse_limit_duration(ctx, v, &cfg->watch_files);
}

static bool key_metrics(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)l;
	cfg->metrics.line = ctx->line;
	return parse_host_port(ctx, v, cfg->metrics.host, sizeof cfg->metrics.host, cfg->metrics.port,
	                       sizeof cfg->metrics.port);
}

/* parse_count - a number of connections, 0 to CONNECTIONS_MAX */
static bool parse_count(struct parse_ctx *ctx, const char *key, const char *value, unsigned long min,
                        unsigned *out)
{
	unsigned long n;
	if (!parse_uint(value, strlen(value), CONNECTIONS_MAX, &n) || n < min)
		return fail(ctx, ctx->line, "%s must be %lu to %u, not '%s'", key, min, CONNECTIONS_MAX, value);
	*out = (unsigned)n;
	return true;
}

static bool key_max_connections(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                const char *v)
{
	unsigned long n = 0;
	(void)l;
	if (strcmp(v, "auto") != 0 && (!parse_uint(v, strlen(v), CONNECTIONS_MAX, &n) || n == 0))
		return fail(ctx, ctx->line, "max_connections must be auto or 1 to %u, not '%s'", CONNECTIONS_MAX, v);
	cfg->max_connections = (unsigned)n;
	return true;
}

static bool key_max_handshakes(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                               const char *v)
{
	(void)l;
	return parse_count(ctx, "max_handshakes", v, 1, &cfg->max_handshakes);
}

static bool key_max_per_ip(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	return parse_count(ctx, "max_per_ip", v, 0, &l->max_per_ip);
}

static bool key_direction(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	l->direction_line = ctx->line;
	if (strcmp(v, "inbound") == 0)
		l->direction = CONFIG_INBOUND;
	else if (strcmp(v, "outbound") == 0)
		l->direction = CONFIG_OUTBOUND;
	else
		return fail(ctx, ctx->line, "direction must be inbound or outbound, not '%s'", v);
	return true;
}

static bool key_upstream_tls(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                             const char *v)
{
	(void)cfg;
	l->upstream_tls_line = ctx->line;
	if (strcmp(v, "starttls") == 0)
		l->upstream_tls = CONFIG_TLS_STARTTLS;
	else if (strcmp(v, "implicit") == 0)
		l->upstream_tls = CONFIG_TLS_IMPLICIT;
	else if (strcmp(v, "opportunistic") == 0)
		l->upstream_tls = CONFIG_TLS_OPPORTUNISTIC;
	else
		return fail(ctx, ctx->line, "upstream_tls must be starttls, implicit or opportunistic, not '%s'", v);
	return true;
}

/* key_upstream_name - a DNS name or an IP address: letters, digits, "-",
 * "." and ":", so that it can go into SNI and the log as it is */
static bool key_upstream_name(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                              const char *v)
{
	(void)cfg;
	if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:") != strlen(v) ||
	    strlen(v) > 253)
		return fail(ctx, ctx->line, "upstream_name must be a host name or an IP address, not '%s'", v);
	l->upstream_name_line = ctx->line;
	return copy_value(ctx, l->upstream_name, sizeof l->upstream_name, v, "upstream_name");
}

static bool key_ca(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	l->ca_line = ctx->line;
	return copy_value(ctx, l->ca, sizeof l->ca, v, "ca path");
}

static bool key_verify(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	l->verify_line = ctx->line;
	return parse_bool(ctx, v, &l->verify);
}

static bool key_fallback_plaintext(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                   const char *v)
{
	(void)cfg;
	l->fallback_plaintext_line = ctx->line;
	return parse_bool(ctx, v, &l->fallback_plaintext);
}

static bool key_upstream_resumption(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                    const char *v)
{
	(void)cfg;
	l->upstream_resumption_line = ctx->line;
	return parse_bool(ctx, v, &l->upstream_resumption);
}

static bool key_upstream_cert(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                              const char *v)
{
	(void)cfg;
	return parse_cert_paths(ctx, v, &l->upstream_cert);
}

static bool key_dane(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l, const char *v)
{
	(void)cfg;
	l->dane_line = ctx->line;
	return parse_bool(ctx, v, &l->dane);
}

/* key_dns_resolver - an IP address, with "@PORT" when not 53 (libunbound's
 * forwarder form: ub_ctx_set_fwd) */
static bool key_dns_resolver(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                             const char *v)
{
	(void)cfg;
	char host[CONFIG_HOST_MAX];
	unsigned char addr[16];
	const char *at = strchr(v, '@');
	size_t host_len = at ? (size_t)(at - v) : strlen(v);
	unsigned long port = 53;
	bool ok = host_len < sizeof host;
	if (ok) {
		memcpy(host, v, host_len);
		host[host_len] = '\0';
		ok = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	}
	if (ok && at)
		ok = parse_uint(at + 1, strlen(at + 1), 65535, &port) && port > 0;
	if (!ok)
		return fail(ctx, ctx->line, "dns_resolver must be an IP address, with @PORT if not 53, not '%s'", v);
	l->dns_resolver_line = ctx->line;
	return copy_value(ctx, l->dns_resolver, sizeof l->dns_resolver, v, "dns_resolver");
}

static bool key_dns_trust_anchor(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                                 const char *v)
{
	(void)cfg;
	l->dns_trust_anchor_line = ctx->line;
	return copy_value(ctx, l->dns_trust_anchor, sizeof l->dns_trust_anchor, v, "dns_trust_anchor path");
}

static bool key_dns_timeout(struct parse_ctx *ctx, struct config *cfg, struct config_listener *l,
                            const char *v)
{
	(void)cfg;
	l->dns_timeout_line = ctx->line;
	return parse_duration(ctx, v, &l->dns_timeout);
}

enum key_scope { SCOPE_GLOBAL, SCOPE_LISTENER };
/* Which listeners a listener key belongs to (direction) */
enum key_use { USE_ANY, USE_INBOUND, USE_OUTBOUND };

/* The key table: every key, where it may stand, whether it may repeat. */
static const struct key_def {
	const char *name;
	enum key_scope scope;
	key_fn *parse;
	bool repeatable;
	enum key_use use;
} key_table[] = {
	{ "user", SCOPE_GLOBAL, key_user, false, USE_ANY },
	{ "workers", SCOPE_GLOBAL, key_workers, false, USE_ANY },
	{ "log_level", SCOPE_GLOBAL, key_log_level, false, USE_ANY },
	{ "pid_file", SCOPE_GLOBAL, key_pid_file, false, USE_ANY },
	{ "drain_timeout", SCOPE_GLOBAL, key_drain_timeout, false, USE_ANY },
	{ "listen", SCOPE_LISTENER, key_listen, true, USE_ANY },
	{ "backend", SCOPE_LISTENER, key_backend, false, USE_ANY },
	{ "tls", SCOPE_LISTENER, key_tls, false, USE_INBOUND },
	{ "cert", SCOPE_LISTENER, key_cert, true, USE_INBOUND },
	{ "ocsp", SCOPE_LISTENER, key_ocsp, true, USE_INBOUND },
	{ "priority", SCOPE_LISTENER, key_priority, false, USE_ANY },
	{ "client_cert", SCOPE_LISTENER, key_client_cert, false, USE_INBOUND },
	{ "require_tls", SCOPE_LISTENER, key_require_tls, false, USE_INBOUND },
	{ "auth_before_tls", SCOPE_LISTENER, key_auth_before_tls, false, USE_INBOUND },
	{ "client_addr", SCOPE_LISTENER, key_client_addr, false, USE_INBOUND },
	{ "accept_proxy", SCOPE_LISTENER, key_accept_proxy, false, USE_INBOUND },
	{ "proxy_from", SCOPE_LISTENER, key_proxy_from, true, USE_INBOUND },
	{ "trace_header", SCOPE_LISTENER, key_trace_header, false, USE_INBOUND },
	{ "connect_timeout", SCOPE_LISTENER, key_connect_timeout, false, USE_ANY },
	{ "handshake_timeout", SCOPE_LISTENER, key_handshake_timeout, false, USE_ANY },
	{ "idle_timeout", SCOPE_LISTENER, key_idle_timeout, false, USE_ANY },
	{ "session_timeout", SCOPE_LISTENER, key_session_timeout, false, USE_ANY },
	{ "min_data_rate", SCOPE_LISTENER, key_min_data_rate, false, USE_ANY },
	{ "min_data_rate_grace", SCOPE_LISTENER, key_min_data_rate_grace, false, USE_ANY },
	{ "metrics", SCOPE_GLOBAL, key_metrics, false, USE_ANY },
	{ "watch_files", SCOPE_GLOBAL, key_watch_files, false, USE_ANY },
	{ "max_connections", SCOPE_GLOBAL, key_max_connections, false, USE_ANY },
	{ "max_handshakes", SCOPE_GLOBAL, key_max_handshakes, false, USE_ANY },
	{ "max_per_ip", SCOPE_LISTENER, key_max_per_ip, false, USE_ANY },
	{ "direction", SCOPE_LISTENER, key_direction, false, USE_ANY },
	{ "upstream_tls", SCOPE_LISTENER, key_upstream_tls, false, USE_OUTBOUND },
	{ "upstream_name", SCOPE_LISTENER, key_upstream_name, false, USE_OUTBOUND },
	{ "ca", SCOPE_LISTENER, key_ca, false, USE_OUTBOUND },
	{ "verify", SCOPE_LISTENER, key_verify, false, USE_OUTBOUND },
	{ "upstream_cert", SCOPE_LISTENER, key_upstream_cert, false, USE_OUTBOUND },
	{ "fallback_plaintext", SCOPE_LISTENER, key_fallback_plaintext, false, USE_OUTBOUND },
	{ "upstream_resumption", SCOPE_LISTENER, key_upstream_resumption, false, USE_OUTBOUND },
	{ "dane", SCOPE_LISTENER, key_dane, false, USE_OUTBOUND },
	{ "dns_resolver", SCOPE_LISTENER, key_dns_resolver, false, USE_OUTBOUND },
	{ "dns_trust_anchor", SCOPE_LISTENER, key_dns_trust_anchor, false, USE_OUTBOUND },
	{ "dns_timeout", SCOPE_LISTENER, key_dns_timeout, false, USE_OUTBOUND },
};
#define N_KEYS (sizeof key_table / sizeof key_table[0])
_Static_assert(N_KEYS <= 64, "a key seen once is one bit of a uint64_t");

/* ---- the file ---- */

static void listener_defaults(struct config_listener *l)
{
	memset(l, 0, sizeof *l);
	l->tls = CONFIG_TLS_STARTTLS;
	l->client_addr = CONFIG_CLIENT_ADDR_NONE;
	l->connect_timeout = 30;
	l->handshake_timeout = 30;
	l->idle_timeout = 300;
	l->session_timeout = 3600;
	l->min_data_rate = 256;
	l->min_data_rate_grace = 30;
	l->upstream_tls = CONFIG_TLS_STARTTLS;
	l->verify = true;
	l->upstream_resumption = true;
	snprintf(l->dns_trust_anchor, sizeof l->dns_trust_anchor, "%s", CONFIG_DNS_TRUST_ANCHOR_DEFAULT);
	l->dns_timeout = 10;
}

/* finish_dane - the DNS keys serve dane = yes, and dane the transparent
 * listener alone: a smarthost's name is verified with its CA already */
static bool finish_dane(struct parse_ctx *ctx, struct config_listener *l)
{
	if (l->dane && !l->backend.original_destination)
		return fail(ctx, l->dane_line, "dane = yes needs backend = original-destination (DANE is checked "
		            "per recipient domain against the destination the MTA chose)");
	const int lines[] = { l->dns_resolver_line, l->dns_trust_anchor_line, l->dns_timeout_line };
	const char *const names[] = { "dns_resolver", "dns_trust_anchor", "dns_timeout" };
	for (size_t i = 0; i < 3; i++)
		if (lines[i] && !l->dane)
			return fail(ctx, lines[i], "%s has no use without dane = yes", names[i]);
	return true;
}

/* finish_original_destination - backend = original-destination: the
 * destination is any host, known only by its address, so there is no name
 * to check a certificate against: the TLS is unauthenticated (verified=none,
 * RFC 7435 opportunistic security) */
static bool finish_original_destination(struct parse_ctx *ctx, struct config_listener *l)
{
	if (l->upstream_tls_line == 0)
		l->upstream_tls = CONFIG_TLS_OPPORTUNISTIC;
	if (l->upstream_tls == CONFIG_TLS_IMPLICIT)
		return fail(ctx, l->upstream_tls_line,
		            "upstream_tls = implicit does not fit backend = original-destination (port 25 "
		            "speaks STARTTLS); use opportunistic or starttls");
	if (l->upstream_name_line)
		return fail(ctx, l->upstream_name_line, "upstream_name has no use with backend = original-destination");
	if (l->ca_line)
		return fail(ctx, l->ca_line, "ca has no use with backend = original-destination (no name to check)");
	if (l->verify_line && l->verify)
		return fail(ctx, l->verify_line,
		            "verify = yes needs a name to check; backend = original-destination has only an address");
	if (l->fallback_plaintext_line && l->upstream_tls != CONFIG_TLS_OPPORTUNISTIC)
		return fail(ctx, l->fallback_plaintext_line, "fallback_plaintext needs upstream_tls = opportunistic");
	/* A ticket belongs to one server; destinations are many, and a
	 * resumed session shows no certificate to check against a policy. */
	if (l->upstream_resumption_line && l->upstream_resumption)
		return fail(ctx, l->upstream_resumption_line,
		            "upstream_resumption needs one upstream relay, not backend = original-destination");
	l->upstream_resumption = false;
	l->verify = false;
	return true;
}

/* finish_outbound - an outbound listener's keys fit together */
static bool finish_outbound(struct parse_ctx *ctx, struct config_listener *l)
{
	if (l->inbound_key)
		return fail(ctx, l->inbound_key_line, "%s is for inbound listeners, and '%s' has direction = outbound",
		            l->inbound_key, l->name);
	if (!finish_dane(ctx, l))
		return false;
	if (l->backend.original_destination)
		return finish_original_destination(ctx, l);
	if (l->upstream_tls == CONFIG_TLS_OPPORTUNISTIC)
		return fail(ctx, l->upstream_tls_line, "upstream_tls = opportunistic needs backend = original-destination");
	if (l->fallback_plaintext_line)
		return fail(ctx, l->fallback_plaintext_line, "fallback_plaintext needs backend = original-destination");
	if (l->backend.is_unix)
		return fail(ctx, l->backend.line, "an outbound listener's backend is its upstream relay: HOST:PORT");
	if (l->ca_line && !l->verify)
		return fail(ctx, l->ca_line, "ca has no use with verify = no");
	return true;
}

/* finish_listener - the required keys are there, and they fit the direction */
static bool finish_listener(struct parse_ctx *ctx, struct config_listener *l)
{
	if (l->n_listen == 0)
		return fail(ctx, l->line, "listener '%s' has no listen line", l->name);
	if (l->backend.line == 0)
		return fail(ctx, l->line, "listener '%s' has no backend line", l->name);
	if (l->direction == CONFIG_OUTBOUND)
		return finish_outbound(ctx, l);
	if (l->outbound_key)
		return fail(ctx, l->outbound_key_line, "%s is for outbound listeners (direction = outbound)",
		            l->outbound_key);
	if (l->backend.original_destination)
		return fail(ctx, l->backend.line, "backend = original-destination needs direction = outbound");
	if (l->n_certs == 0)
		return fail(ctx, l->line, "listener '%s' has no cert line", l->name);
	if (l->n_proxy_from > 0 && !l->accept_proxy)
		return fail(ctx, l->line, "listener '%s' has proxy_from without accept_proxy = yes", l->name);
	return true;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* strip_comment - "#" at the start or after a blank starts a comment */
static void strip_comment(char *s)
{
	for (char *p = s; *p; p++) {
		if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
	}
}

/* parse_section - "[NAME]" opens a listener */
static bool parse_section(struct parse_ctx *ctx, struct config *cfg, char *s)
{
	size_t n = strlen(s);
	if (s[n - 1] != ']')
		return fail(ctx, ctx->line, "bad section header (expected [NAME])");
	s[n - 1] = '\0';
	char *name = trim(s + 1);
	if (!*name)
		return fail(ctx, ctx->line, "empty section name");
	if (cfg->n_listeners == CONFIG_MAX_LISTENERS)
		return fail(ctx, ctx->line, "too many listeners (at most %d)", CONFIG_MAX_LISTENERS);
	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (strcmp(cfg->listeners[i].name, name) == 0)
			return fail(ctx, ctx->line, "duplicate listener name '%s'", name);
	struct config_listener *l = &cfg->listeners[cfg->n_listeners];
	listener_defaults(l);
	if (!copy_value(ctx, l->name, sizeof l->name, name, "listener name"))
		return false;
	l->line = ctx->line;
	cfg->n_listeners++;
	return true;
}

/* parse_key_line - "key = value" */
static bool parse_key_line(struct parse_ctx *ctx, struct config *cfg, char *s, uint64_t *seen)
{
	char *eq = strchr(s, '=');
	if (!eq)
		return fail(ctx, ctx->line, "expected 'key = value' or '[NAME]'");
	*eq = '\0';
	char *key = trim(s), *value = trim(eq + 1);
	const struct key_def *def = NULL;
	size_t idx = 0;
	for (; idx < N_KEYS; idx++) {
		if (strcmp(key_table[idx].name, key) == 0) {
			def = &key_table[idx];
			break;
		}
	}
	if (!def)
		return fail(ctx, ctx->line, "unknown key '%s'", key);
	if (!*value)
		return fail(ctx, ctx->line, "%s has no value", key);
	struct config_listener *l = cfg->n_listeners ? &cfg->listeners[cfg->n_listeners - 1] : NULL;
	if (def->scope == SCOPE_GLOBAL && l)
		return fail(ctx, ctx->line, "%s is a global key: put it before the first [section]", key);
	if (def->scope == SCOPE_LISTENER && !l)
		return fail(ctx, ctx->line, "%s belongs in a [listener] section", key);
	if (!def->repeatable && (*seen & ((uint64_t)1 << idx)))
		return fail(ctx, ctx->line, "%s given twice", key);
	*seen |= (uint64_t)1 << idx;
	if (def->use == USE_INBOUND && l && !l->inbound_key) {
		l->inbound_key = def->name;
		l->inbound_key_line = ctx->line;
	}
	if (def->use == USE_OUTBOUND && l && !l->outbound_key) {
		l->outbound_key = def->name;
		l->outbound_key_line = ctx->line;
	}
	return def->parse(ctx, cfg, l, value);
}

bool config_parse(const char *text, size_t len, const char *filename, struct config *cfg_r, char *err,
                  size_t errlen)
{
	struct parse_ctx ctx = { filename, 0, err, errlen };
	char line[LINE_MAX_BYTES + 1];
	uint64_t global_seen = 0, section_seen = 0;

	memset(cfg_r, 0, sizeof *cfg_r);
	cfg_r->log_level = CONFIG_LOG_INFO;
	cfg_r->drain_timeout = 60;
	cfg_r->max_handshakes = HANDSHAKES_DEFAULT;

	size_t pos = 0;
	while (pos < len) {
		ctx.line++;
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		if (n > LINE_MAX_BYTES)
			return fail(&ctx, ctx.line, "line too long (at most %d bytes)", LINE_MAX_BYTES);
		if (memchr(text + pos, '\0', n))
			return fail(&ctx, ctx.line, "NUL byte in the file");
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + (nl ? 1 : 0);

		strip_comment(line);
		char *s = trim(line);
		if (!*s)
			continue;
		if (*s == '[') {
			if (cfg_r->n_listeners && !finish_listener(&ctx, &cfg_r->listeners[cfg_r->n_listeners - 1]))
				return false;
			if (!parse_section(&ctx, cfg_r, s))
				return false;
			section_seen = 0;
			continue;
		}
		if (!parse_key_line(&ctx, cfg_r, s, cfg_r->n_listeners ? &section_seen : &global_seen))
			return false;
	}
	if (cfg_r->n_listeners == 0)
		return fail(&ctx, ctx.line ? ctx.line : 1, "no listener section ([NAME] with listen, backend and cert)");
	if (!finish_listener(&ctx, &cfg_r->listeners[cfg_r->n_listeners - 1]))
		return false;
	for (size_t i = 0; i < cfg_r->n_listeners; i++) {
		const struct config_listener *l = &cfg_r->listeners[i];
		/* Connecting from a foreign address takes CAP_NET_ADMIN,
		 * which running as another user gives up. */
		if (l->client_addr == CONFIG_CLIENT_ADDR_TRANSPARENT && cfg_r->user[0])
			return fail(&ctx, l->client_addr_line, "client_addr = transparent cannot be used with user");
		if (l->client_addr == CONFIG_CLIENT_ADDR_TRANSPARENT && l->backend.is_unix)
			return fail(&ctx, l->client_addr_line, "client_addr = transparent needs a TCP backend");
	}
	return true;
}

/* is_loopback_backend - the backend is reached over loopback */
static bool is_loopback_backend(const struct config_backend *b)
{
	return b->is_unix || strncmp(b->host, "127.", 4) == 0 || strcmp(b->host, "::1") == 0 ||
	       strcasecmp(b->host, "localhost") == 0 || strncasecmp(b->host, "::ffff:127.", 11) == 0;
}

/* outbound_warnings - an outbound listener on every address, or with
 * certificate checks off */
static void outbound_warnings(const struct config_listener *l, const char *filename, config_warning_fn *warn,
                              void *ctx)
{
	char msg[1024];
	for (size_t j = 0; j < l->n_listen; j++) {
		const char *h = l->listen[j].host;
		if (strcmp(h, "*") != 0 && strcmp(h, "::") != 0 && strcmp(h, "0.0.0.0") != 0)
			continue;
		snprintf(msg, sizeof msg,
		         "%s:%d: warning: listener '%s': an outbound listener on every address lets anyone who "
		         "reaches it send through the upstream relay as this host (its address, its upstream_cert); "
		         "listen on loopback or the LAN address the legacy server uses",
		         filename, l->listen[j].line, l->name);
		warn(ctx, msg);
		break;
	}
	if (!l->verify && !l->backend.original_destination) {
		snprintf(msg, sizeof msg,
		         "%s:%d: warning: listener '%s': verify = no: the upstream's certificate is not checked, "
		         "so anyone on the path can pose as the relay and read the mail and the AUTH passwords",
		         filename, l->line, l->name);
		warn(ctx, msg);
	}
}

void config_warnings(const struct config *cfg, const char *filename, config_warning_fn *warn, void *ctx)
{
	char msg[1024];
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		if (l->direction == CONFIG_OUTBOUND) {
			outbound_warnings(l, filename, warn, ctx);
			if (l->backend.original_destination && !cfg->user[0]) {
				snprintf(msg, sizeof msg,
				         "%s:%d: warning: listener '%s': backend = original-destination without user: "
				         "packaging/outbound-redirect tells the proxy's own connections by the user its "
				         "workers run as, so without one they come back to it in a loop",
				         filename, l->backend.line, l->name);
				warn(ctx, msg);
			}
			continue;
		}
		if (l->client_addr == CONFIG_CLIENT_ADDR_NONE && is_loopback_backend(&l->backend)) {
			snprintf(msg, sizeof msg,
			         "%s:%d: warning: listener '%s': with client_addr = none every session reaches "
			         "the backend from a local address, so a backend that trusts local addresses "
			         "for relaying becomes an open relay; remove loopback from its trusted networks "
			         "(Postfix: mynetworks) or pass the client's address with client_addr",
			         filename, l->backend.line, l->name);
			warn(ctx, msg);
		}
		if (!l->require_tls)
			continue;
		for (size_t j = 0; j < l->n_listen; j++) {
			if (strcmp(l->listen[j].port, "25") != 0)
				continue;
			snprintf(msg, sizeof msg,
			         "%s:%d: warning: listener '%s': require_tls = yes on port 25: RFC 3207 section 4 "
			         "forbids a publicly referenced server to require STARTTLS for local delivery",
			         filename, l->require_tls_line, l->name);
			warn(ctx, msg);
			break;
		}
	}
}
