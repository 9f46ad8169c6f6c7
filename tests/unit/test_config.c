/* test_config.c - the configuration parser: valid files field by field,
 * invalid ones with their exact "FILE:LINE: message" */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "harness.h"

#define MINIMAL "[mx]\nlisten = 127.0.0.1:25\nbackend = 127.0.0.1:10025\ncert = /c.pem /k.pem\n"

static struct config cfg;
static char err[1024];

static bool parse(const char *text)
{
	err[0] = '\0';
	return config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof err);
}

/* test_valid - defaults and every value form */
static void test_valid(void)
{
	CHECK(parse(MINIMAL), err);
	const struct config_listener *l = &cfg.listeners[0];
	CHECK(cfg.n_listeners == 1 && strcmp(l->name, "mx") == 0, "name");
	CHECK(cfg.log_level == CONFIG_LOG_INFO && cfg.workers == 0 && cfg.drain_timeout == 60 && cfg.watch_files == 0,
	      "global defaults");
	CHECK(l->tls == CONFIG_TLS_STARTTLS && !l->require_tls && !l->auth_before_tls, "listener defaults");
	CHECK(l->client_addr == CONFIG_CLIENT_ADDR_NONE && !l->accept_proxy && !l->trace_header,
	      "client address and trace defaults");
	CHECK(l->connect_timeout == 30 && l->handshake_timeout == 30 && l->idle_timeout == 300, "timeouts");
	CHECK(strcmp(l->listen[0].host, "127.0.0.1") == 0 && strcmp(l->listen[0].port, "25") == 0, "listen");
	CHECK(strcmp(l->backend.host, "127.0.0.1") == 0 && strcmp(l->backend.port, "10025") == 0, "backend");
	CHECK(strcmp(l->certs[0].chain, "/c.pem") == 0 && strcmp(l->certs[0].key, "/k.pem") == 0, "cert");
	CHECK(l->line == 1 && l->backend.line == 3 && l->certs[0].line == 4, "line numbers");

	CHECK(parse("# comment\r\nuser = mail\r\nworkers = 4\r\nlog_level = debug\r\npid_file = /run/s.pid\r\n"
	            "drain_timeout = 2m\r\n\r\n[a b] # trailing comment\r\nlisten = [::1]:0\r\nlisten = *:465\r\n"
	            "listen = localhost:2525\r\nbackend = unix:/run/mta.sock\r\ntls = implicit\r\n"
	            "cert = /one.pem\r\ncert = /two.pem /two.key\r\npriority = NORMAL:-VERS-TLS1.2\r\n"
	            "require_tls = yes\r\nauth_before_tls = yes\r\nclient_addr = proxy-v2\r\n"
	            "accept_proxy = yes\r\nconnect_timeout = 10s\r\nhandshake_timeout = 1h\r\n"
	            "idle_timeout = 90\r\n[second]\nlisten=127.0.0.2:25\nbackend=[::1]:25\ncert=/x.pem\n"),
	      err);
	l = &cfg.listeners[0];
	CHECK(strcmp(cfg.user, "mail") == 0 && cfg.workers == 4 && cfg.log_level == CONFIG_LOG_DEBUG, "globals");
	CHECK(strcmp(cfg.pid_file, "/run/s.pid") == 0 && cfg.drain_timeout == 120, "pid_file, drain");
	CHECK(cfg.n_listeners == 2 && strcmp(l->name, "a b") == 0, "two listeners");
	CHECK(l->n_listen == 3 && strcmp(l->listen[0].host, "::1") == 0 && strcmp(l->listen[0].port, "0") == 0,
	      "IPv6 listen without brackets, port 0");
	CHECK(strcmp(l->listen[1].host, "*") == 0 && strcmp(l->listen[2].host, "localhost") == 0, "* and name");
	CHECK(l->backend.is_unix && strcmp(l->backend.path, "/run/mta.sock") == 0, "unix backend");
	CHECK(l->tls == CONFIG_TLS_IMPLICIT && l->n_certs == 2 && l->certs[0].key[0] == '\0', "tls, certs");
	CHECK(strcmp(l->priority, "NORMAL:-VERS-TLS1.2") == 0 && l->priority_line == 16, "priority");
	CHECK(l->require_tls && l->auth_before_tls && l->accept_proxy, "booleans");
	CHECK(l->client_addr == CONFIG_CLIENT_ADDR_PROXY_V2, "client_addr");
	CHECK(l->connect_timeout == 10 && l->handshake_timeout == 3600 && l->idle_timeout == 90, "durations");
	CHECK(strcmp(cfg.listeners[1].backend.host, "::1") == 0, "IPv6 backend");

	CHECK(parse(MINIMAL "cert = /r.pem /r.key\nocsp = /r.der\nclient_cert = request\n"), err);
	l = &cfg.listeners[0];
	CHECK(l->n_certs == 2 && l->certs[0].ocsp[0] == '\0' && l->certs[0].ocsp_line == 0, "no ocsp on the first");
	CHECK(strcmp(l->certs[1].ocsp, "/r.der") == 0 && l->certs[1].ocsp_line == 6, "ocsp on the cert above");
	CHECK(l->request_client_cert, "client_cert = request");
	CHECK(parse(MINIMAL) && !cfg.listeners[0].request_client_cert, "client_cert defaults to no");

	l = &cfg.listeners[0];
	CHECK(parse(MINIMAL), err);
	CHECK(l->session_timeout == 3600 && l->min_data_rate == 256 && l->min_data_rate_grace == 30,
	      "session and data rate limits default to 1h, 256 bytes/s after 30s");
	CHECK(parse(MINIMAL "session_timeout = 20m\nmin_data_rate = 1000\nmin_data_rate_grace = 2s\n"), err);
	CHECK(l->session_timeout == 1200 && l->min_data_rate == 1000 && l->min_data_rate_grace == 2, "limits set");
	CHECK(parse(MINIMAL "session_timeout = 0\nmin_data_rate = 0\nmin_data_rate_grace = 0\n"), err);
	CHECK(l->session_timeout == 0 && l->min_data_rate == 0 && l->min_data_rate_grace == 0, "0 turns them off");

	CHECK(parse(MINIMAL), err);
	CHECK(cfg.max_connections == 0 && cfg.max_handshakes == 64 && l->max_per_ip == 0,
	      "connection limits default to auto, 64 handshakes, no per-IP limit");
	CHECK(parse("max_connections = 5000\nmax_handshakes = 8\n" MINIMAL "max_per_ip = 10\n"), err);
	CHECK(cfg.max_connections == 5000 && cfg.max_handshakes == 8 && l->max_per_ip == 10, "limits set");
	CHECK(parse("max_connections = auto\n" MINIMAL "max_per_ip = 0\n"), err);
	CHECK(cfg.max_connections == 0 && l->max_per_ip == 0, "auto, and 0 turns max_per_ip off");
}

/* test_watch_files - a duration, 0 for off */
static void test_watch_files(void)
{
	CHECK(parse("watch_files = 30s\n" MINIMAL) && cfg.watch_files == 30, err);
	CHECK(parse("watch_files = 0\n" MINIMAL) && cfg.watch_files == 0, err);
	CHECK(!parse("watch_files = soon\n" MINIMAL), "watch_files = soon refused");
}

static const struct {
	const char *text;
	const char *error;
} invalid[] = {
	{ "", "t.conf:1: no listener section ([NAME] with listen, backend and cert)" },
	{ "log_level = info\n", "t.conf:1: no listener section ([NAME] with listen, backend and cert)" },
	{ MINIMAL "colour = blue\n", "t.conf:5: unknown key 'colour'" },
	{ MINIMAL "require_tls = maybe\n", "t.conf:5: expected yes or no, not 'maybe'" },
	{ MINIMAL "idle_timeout = 5 minutes\n", "t.conf:5: bad duration '5 minutes' (seconds, or a number with s, m or h; more than 0, at most 7 days)" },
	{ MINIMAL "idle_timeout = 0\n", "t.conf:5: bad duration '0' (seconds, or a number with s, m or h; more than 0, at most 7 days)" },
	{ MINIMAL "idle_timeout = 99999999999999999999\n", "t.conf:5: bad duration '99999999999999999999' (seconds, or a number with s, m or h; more than 0, at most 7 days)" },
	{ MINIMAL "session_timeout = -1\n", "t.conf:5: bad duration '-1' (seconds, or a number with s, m or h; 0 for none, at most 7 days)" },
	{ MINIMAL "session_timeout = 8d\n", "t.conf:5: bad duration '8d' (seconds, or a number with s, m or h; 0 for none, at most 7 days)" },
	{ MINIMAL "session_timeout = 169h\n", "t.conf:5: bad duration '169h' (seconds, or a number with s, m or h; 0 for none, at most 7 days)" },
	{ MINIMAL "min_data_rate_grace = s\n", "t.conf:5: bad duration 's' (seconds, or a number with s, m or h; 0 for none, at most 7 days)" },
	{ MINIMAL "min_data_rate = 1k\n", "t.conf:5: min_data_rate must be 0 to 1000000000 bytes per second, not '1k'" },
	{ MINIMAL "min_data_rate = 1000000001\n", "t.conf:5: min_data_rate must be 0 to 1000000000 bytes per second, not '1000000001'" },
	{ MINIMAL "min_data_rate = 1\nmin_data_rate = 2\n", "t.conf:6: min_data_rate given twice" },
	{ MINIMAL "tls = starttls\ntls = implicit\n", "t.conf:6: tls given twice" },
	{ "max_connections = 0\n" MINIMAL, "t.conf:1: max_connections must be auto or 1 to 10000000, not '0'" },
	{ "max_connections = 10000001\n" MINIMAL, "t.conf:1: max_connections must be auto or 1 to 10000000, not '10000001'" },
	{ "max_handshakes = 0\n" MINIMAL, "t.conf:1: max_handshakes must be 1 to 10000000, not '0'" },
	{ MINIMAL "max_per_ip = -1\n", "t.conf:5: max_per_ip must be 0 to 10000000, not '-1'" },
	{ MINIMAL "max_connections = 10\n", "t.conf:5: max_connections is a global key: put it before the first [section]" },
	{ "max_per_ip = 10\n" MINIMAL, "t.conf:1: max_per_ip belongs in a [listener] section" },
	{ MINIMAL "tls = ssl\n", "t.conf:5: tls must be starttls or implicit, not 'ssl'" },
	{ MINIMAL "user = mail\n", "t.conf:5: user is a global key: put it before the first [section]" },
	{ "listen = 127.0.0.1:25\n", "t.conf:1: listen belongs in a [listener] section" },
	{ "[mx]\nbackend = 127.0.0.1:10025\ncert = /c.pem\n", "t.conf:1: listener 'mx' has no listen line" },
	{ "[mx]\nlisten = 127.0.0.1:25\ncert = /c.pem\n[b]\n", "t.conf:1: listener 'mx' has no backend line" },
	{ "[mx]\nlisten = 127.0.0.1:25\nbackend = 127.0.0.1:1\n", "t.conf:1: listener 'mx' has no cert line" },
	{ MINIMAL "listen = 127.0.0.1:65536\n", "t.conf:5: bad port '65536'" },
	{ MINIMAL "listen = 127.0.0.1\n", "t.conf:5: bad address '127.0.0.1' (expected ADDR:PORT)" },
	{ MINIMAL "listen = ::1:25\n", "t.conf:5: bad address '::1:25' (put an IPv6 address in brackets)" },
	{ MINIMAL "listen = [::1]25\n", "t.conf:5: bad address '[::1]25' (expected [IPV6]:PORT)" },
	{ MINIMAL "listen = :25\n", "t.conf:5: bad address ':25' (no host)" },
	{ "[mx]\nlisten = 127.0.0.1:25\nbackend = unix:run/mta.sock\n", "t.conf:3: unix socket path must be absolute, not 'run/mta.sock'" },
	{ "[mx]\nlisten = 127.0.0.1:25\nbackend = *:25\n", "t.conf:3: backend needs a host, not '*'" },
	{ MINIMAL "cert = /a /b /c\n", "t.conf:5: cert takes CHAIN.pem and an optional KEY.pem" },
	{ MINIMAL "[mx]\n", "t.conf:5: duplicate listener name 'mx'" },
	{ MINIMAL "[ ]\n", "t.conf:5: empty section name" },
	{ MINIMAL "[mx\n", "t.conf:5: bad section header (expected [NAME])" },
	{ MINIMAL "just words\n", "t.conf:5: expected 'key = value' or '[NAME]'" },
	{ MINIMAL "priority =\n", "t.conf:5: priority has no value" },
	{ "workers = 0\n" MINIMAL, "t.conf:1: workers must be auto or 1 to 256, not '0'" },
	{ "log_level = loud\n" MINIMAL, "t.conf:1: log_level must be error, warning, info or debug, not 'loud'" },
	{ MINIMAL "client_addr = haproxy\n", "t.conf:5: client_addr must be none, xclient, proxy-v1, proxy-v2 or transparent, not 'haproxy'" },
	{ "user = mail\n" MINIMAL "client_addr = transparent\n", "t.conf:6: client_addr = transparent cannot be used with user" },
	{ "[mx]\nlisten = *:25\nbackend = unix:/run/s\ncert = /c\nclient_addr = transparent\n", "t.conf:5: client_addr = transparent needs a TCP backend" },
	{ MINIMAL "accept_proxy = yes\nproxy_from = 10.0.0.0/33\n", "t.conf:6: bad prefix length in '10.0.0.0/33'" },
	{ MINIMAL "accept_proxy = yes\nproxy_from = 10.0.0.0/08\n", "t.conf:6: bad prefix length in '10.0.0.0/08'" },
	{ MINIMAL "accept_proxy = yes\nproxy_from = lb.example\n", "t.conf:6: bad network 'lb.example' (expected ADDR or ADDR/PREFIX)" },
	{ MINIMAL "proxy_from = 10.0.0.1\n", "t.conf:1: listener 'mx' has proxy_from without accept_proxy = yes" },
	{ MINIMAL "trace_header = sometimes\n", "t.conf:5: expected yes or no, not 'sometimes'" },
	{ "[mx]\nlisten = *:25\nbackend = 127.0.0.1:1\nocsp = /o.der\ncert = /c\n", "t.conf:4: ocsp belongs right after the cert line it staples for" },
	{ MINIMAL "ocsp = /a.der\nocsp = /b.der\n", "t.conf:6: second ocsp for the cert on line 4" },
	{ MINIMAL "client_cert = require\n", "t.conf:5: client_cert must be no or request, not 'require'" },
};

/* test_invalid - each bad file, with its exact message and line */
static void test_invalid(void)
{
	for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
		bool ok = parse(invalid[i].text);
		CHECK(!ok, invalid[i].error);
		CHECK_BYTES(err, strlen(err), invalid[i].error, strlen(invalid[i].error), invalid[i].text);
	}

	/* Too long for a field: refused, never cut short. */
	static char text[8192];
	char name[100];
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	snprintf(text, sizeof text, "[%s]\n", name);
	CHECK(!parse(text) && strstr(err, "t.conf:1: listener name is too long"), err);

	/* A NUL byte is an error, and nothing is read past the length. */
	static const char with_nul[] = MINIMAL "tls = implicit\0\n";
	CHECK(!config_parse(with_nul, sizeof with_nul - 1, "t.conf", &cfg, err, sizeof err), "NUL");
	CHECK(strcmp(err, "t.conf:5: NUL byte in the file") == 0, err);
	/* Only LEN bytes are read: cut after "tls = ", the key has no value. */
	CHECK(!config_parse(MINIMAL "tls = implicit", strlen(MINIMAL) + 6, "t.conf", &cfg, err, sizeof err),
	      "length respected");
	CHECK(strcmp(err, "t.conf:5: tls has no value") == 0, err);
}

static char warnings[4096];

static void collect(void *ctx, const char *line)
{
	(void)ctx;
	strncat(warnings, line, sizeof warnings - strlen(warnings) - 2);
	strcat(warnings, "\n");
}

/* test_warnings - the open-relay and port 25 require_tls warnings */
static void test_warnings(void)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{ MINIMAL, "t.conf:3: warning: listener 'mx': with client_addr = none every session reaches the "
		           "backend from a local address, so a backend that trusts local addresses for relaying "
		           "becomes an open relay; remove loopback from its trusted networks (Postfix: mynetworks) "
		           "or pass the client's address with client_addr\n" },
		{ "[mx]\nlisten = *:25\nbackend = 192.0.2.1:25\ncert = /c.pem\nrequire_tls = yes\n",
		  "t.conf:5: warning: listener 'mx': require_tls = yes on port 25: RFC 3207 section 4 forbids a "
		  "publicly referenced server to require STARTTLS for local delivery\n" },
		{ "[mx]\nlisten = *:587\nbackend = 192.0.2.1:25\ncert = /c.pem\nrequire_tls = yes\n", "" },
		{ "[mx]\nlisten = *:25\nbackend = mail.example.org:25\ncert = /c.pem\n", "" },
		{ "[mx]\nlisten = *:25\nbackend = 127.0.0.1:25\ncert = /c.pem\nclient_addr = xclient\n", "" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		warnings[0] = '\0';
		CHECK(parse(cases[i].text), err);
		config_warnings(&cfg, "t.conf", collect, NULL);
		CHECK_BYTES(warnings, strlen(warnings), cases[i].want, strlen(cases[i].want), cases[i].text);
	}
}

/* test_networks - proxy_from parsing and matching */
static void test_networks(void)
{
	CHECK(parse(MINIMAL "accept_proxy = yes\nproxy_from = 192.0.2.0/24 2001:db8::/32\nproxy_from = 198.51.100.7\n"),
	      err);
	const struct config_listener *l = &cfg.listeners[0];
	CHECK(l->n_proxy_from == 3 && l->proxy_from[2].prefix == 32 && l->proxy_from[1].prefix == 32, "networks");
	static const struct {
		int family;
		const char *addr;
		bool in[3];
	} cases[] = {
		{ AF_INET, "192.0.2.200", { true, false, false } },
		{ AF_INET, "192.0.3.1", { false, false, false } },
		{ AF_INET, "198.51.100.7", { false, false, true } },
		{ AF_INET, "198.51.100.8", { false, false, false } },
		{ AF_INET6, "2001:db8:ffff::1", { false, true, false } },
		{ AF_INET6, "2001:db9::1", { false, false, false } },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned char a[16];
		inet_pton(cases[i].family, cases[i].addr, a);
		for (size_t j = 0; j < 3; j++)
			CHECK(config_network_contains(&l->proxy_from[j], cases[i].family, a) == cases[i].in[j],
			      cases[i].addr);
	}
	CHECK(parse(MINIMAL "accept_proxy = yes\nproxy_from = 0.0.0.0/0 10.1.2.3/20\n"), err);
	unsigned char any[4] = { 203, 0, 113, 9 }, near[4] = { 10, 1, 15, 255 }, far[4] = { 10, 1, 16, 0 };
	CHECK(config_network_contains(&cfg.listeners[0].proxy_from[0], AF_INET, any), "/0 holds everything");
	CHECK(config_network_contains(&cfg.listeners[0].proxy_from[1], AF_INET, near), "/20 inside");
	CHECK(!config_network_contains(&cfg.listeners[0].proxy_from[1], AF_INET, far), "/20 outside");
}

#define OUTBOUND "[relay]\nlisten = 127.0.0.1:2525\ndirection = outbound\nbackend = smtp.example.net:587\n"

/* test_outbound - direction = outbound: its keys, defaults, and the keys
 * of the other direction refused on their own line */
static void test_outbound(void)
{
	CHECK(parse(OUTBOUND), err);
	const struct config_listener *l = &cfg.listeners[0];
	CHECK(l->direction == CONFIG_OUTBOUND && l->direction_line == 3 && l->n_certs == 0, "no cert needed");
	CHECK(l->upstream_tls == CONFIG_TLS_STARTTLS && l->verify && !l->ca[0] && !l->upstream_name[0] &&
	      !l->upstream_cert.chain[0], "outbound defaults: STARTTLS, verified against the system's CAs");
	CHECK(parse(MINIMAL) && cfg.listeners[0].direction == CONFIG_INBOUND, "inbound by default");

	CHECK(parse(OUTBOUND "upstream_tls = implicit\nupstream_name = relay.example.net\nca = /etc/ca.pem\n"
	                     "upstream_cert = /me.pem /me.key\npriority = NORMAL:-VERS-ALL:+VERS-TLS1.3\n"
	                     "connect_timeout = 10s\n"),
	      err);
	CHECK(l->upstream_tls == CONFIG_TLS_IMPLICIT && strcmp(l->upstream_name, "relay.example.net") == 0,
	      "upstream_tls, upstream_name");
	CHECK(strcmp(l->ca, "/etc/ca.pem") == 0 && l->ca_line == 7, "ca");
	CHECK(strcmp(l->upstream_cert.chain, "/me.pem") == 0 && strcmp(l->upstream_cert.key, "/me.key") == 0 &&
	      l->upstream_cert.line == 8, "upstream_cert");
	CHECK(strcmp(l->priority, "NORMAL:-VERS-ALL:+VERS-TLS1.3") == 0 && l->connect_timeout == 10,
	      "priority and timeouts apply to both directions");
	CHECK(parse(OUTBOUND "verify = no\n") && !l->verify, "verify = no when written");
	CHECK(parse(OUTBOUND) && l->upstream_resumption, "a smarthost's sessions resume by default");
	CHECK(parse(OUTBOUND "upstream_resumption = no\n") && !l->upstream_resumption, "upstream_resumption = no");
	/* Keys may come before direction. */
	CHECK(parse("[r]\nupstream_name = 192.0.2.1\nlisten = 127.0.0.1:25\nbackend = 192.0.2.1:465\n"
	            "direction = outbound\n"),
	      err);

#define WORLD "[world]\nlisten = 127.0.0.1:10025\ndirection = outbound\nbackend = original-destination\n"
	CHECK(parse(WORLD), err);
	CHECK(l->backend.original_destination && l->upstream_tls == CONFIG_TLS_OPPORTUNISTIC && !l->verify &&
	      !l->fallback_plaintext && !l->upstream_resumption,
	      "original-destination: opportunistic, unauthenticated, no fallback, no resumption");
	CHECK(parse(WORLD "upstream_resumption = no\n"), err);
	CHECK(parse(WORLD "fallback_plaintext = yes\n") && l->fallback_plaintext, "fallback_plaintext");
	CHECK(parse(WORLD "upstream_tls = starttls\nverify = no\n") && l->upstream_tls == CONFIG_TLS_STARTTLS, err);
	CHECK(parse(WORLD) && !l->dane && l->dns_timeout == 10 &&
	      strcmp(l->dns_trust_anchor, "/usr/share/dns/root.key") == 0 && !l->dns_resolver[0],
	      "dane defaults");
	CHECK(parse(WORLD "dane = yes\ndns_resolver = 127.0.0.1@5353\ndns_trust_anchor = /ta.key\n"
	                  "dns_timeout = 3s\n") &&
	      l->dane && strcmp(l->dns_resolver, "127.0.0.1@5353") == 0 &&
	      strcmp(l->dns_trust_anchor, "/ta.key") == 0 && l->dns_timeout == 3 && l->dns_trust_anchor_line == 7,
	      err);
	CHECK(parse(WORLD "dane = yes\ndns_resolver = ::1\n"), err);

	static const struct {
		const char *text;
		const char *error;
	} invalid_outbound[] = {
		{ WORLD "upstream_tls = implicit\n",
		  "t.conf:5: upstream_tls = implicit does not fit backend = original-destination (port 25 speaks "
		  "STARTTLS); use opportunistic or starttls" },
		{ WORLD "verify = yes\n",
		  "t.conf:5: verify = yes needs a name to check; backend = original-destination has only an address" },
		{ WORLD "ca = /ca.pem\n", "t.conf:5: ca has no use with backend = original-destination (no name to check)" },
		{ WORLD "upstream_resumption = yes\n",
		  "t.conf:5: upstream_resumption needs one upstream relay, not backend = original-destination" },
		{ WORLD "upstream_name = a.example\n", "t.conf:5: upstream_name has no use with backend = original-destination" },
		{ WORLD "upstream_tls = starttls\nfallback_plaintext = yes\n",
		  "t.conf:6: fallback_plaintext needs upstream_tls = opportunistic" },
		{ OUTBOUND "upstream_tls = opportunistic\n",
		  "t.conf:5: upstream_tls = opportunistic needs backend = original-destination" },
		{ OUTBOUND "fallback_plaintext = no\n", "t.conf:5: fallback_plaintext needs backend = original-destination" },
		{ OUTBOUND "dane = yes\n",
		  "t.conf:5: dane = yes needs backend = original-destination (DANE is checked per recipient domain "
		  "against the destination the MTA chose)" },
		{ WORLD "dns_timeout = 5\n", "t.conf:5: dns_timeout has no use without dane = yes" },
		{ WORLD "dane = no\ndns_resolver = 192.0.2.1\n", "t.conf:6: dns_resolver has no use without dane = yes" },
		{ WORLD "dane = yes\ndns_resolver = resolver.example\n",
		  "t.conf:6: dns_resolver must be an IP address, with @PORT if not 53, not 'resolver.example'" },
		{ WORLD "dane = yes\ndns_resolver = 127.0.0.1@0\n",
		  "t.conf:6: dns_resolver must be an IP address, with @PORT if not 53, not '127.0.0.1@0'" },
		{ "[in]\nlisten = 127.0.0.1:25\nbackend = 127.0.0.1:2525\ncert = /c.pem\ndane = yes\n",
		  "t.conf:5: dane is for outbound listeners (direction = outbound)" },
		{ "[mx]\nlisten = 127.0.0.1:25\nbackend = original-destination\ncert = /c.pem /k.pem\n",
		  "t.conf:3: backend = original-destination needs direction = outbound" },
		{ OUTBOUND "cert = /c.pem\n", "t.conf:5: cert is for inbound listeners, and 'relay' has direction = outbound" },
		{ "[relay]\ntls = implicit\nlisten = 127.0.0.1:2525\nbackend = a:1\ndirection = outbound\n",
		  "t.conf:2: tls is for inbound listeners, and 'relay' has direction = outbound" },
		{ OUTBOUND "client_addr = xclient\n",
		  "t.conf:5: client_addr is for inbound listeners, and 'relay' has direction = outbound" },
		{ OUTBOUND "accept_proxy = yes\n",
		  "t.conf:5: accept_proxy is for inbound listeners, and 'relay' has direction = outbound" },
		{ OUTBOUND "require_tls = yes\n",
		  "t.conf:5: require_tls is for inbound listeners, and 'relay' has direction = outbound" },
		{ OUTBOUND "trace_header = yes\n",
		  "t.conf:5: trace_header is for inbound listeners, and 'relay' has direction = outbound" },
		{ MINIMAL "upstream_tls = starttls\n", "t.conf:5: upstream_tls is for outbound listeners (direction = outbound)" },
		{ MINIMAL "verify = no\n", "t.conf:5: verify is for outbound listeners (direction = outbound)" },
		{ MINIMAL "ca = /ca.pem\n", "t.conf:5: ca is for outbound listeners (direction = outbound)" },
		{ "[r]\nlisten = 127.0.0.1:25\ndirection = outbound\nbackend = unix:/run/x\n",
		  "t.conf:4: an outbound listener's backend is its upstream relay: HOST:PORT" },
		{ OUTBOUND "ca = /ca.pem\nverify = no\n", "t.conf:5: ca has no use with verify = no" },
		{ OUTBOUND "direction = inbound\n", "t.conf:5: direction given twice" },
		{ OUTBOUND "upstream_tls = tls\n", "t.conf:5: upstream_tls must be starttls, implicit or opportunistic, not 'tls'" },
		{ OUTBOUND "upstream_name = a b\n",
		  "t.conf:5: upstream_name must be a host name or an IP address, not 'a b'" },
		{ OUTBOUND "upstream_cert = /a /b /c\n", "t.conf:5: cert takes CHAIN.pem and an optional KEY.pem" },
		{ "[r]\nlisten = 127.0.0.1:25\ndirection = sideways\n",
		  "t.conf:3: direction must be inbound or outbound, not 'sideways'" },
		{ "[r]\ndirection = outbound\nlisten = 127.0.0.1:25\n", "t.conf:1: listener 'r' has no backend line" },
	};
	for (size_t i = 0; i < sizeof invalid_outbound / sizeof invalid_outbound[0]; i++) {
		CHECK(!parse(invalid_outbound[i].text), invalid_outbound[i].error);
		CHECK_BYTES(err, strlen(err), invalid_outbound[i].error, strlen(invalid_outbound[i].error), invalid_outbound[i].text);
	}

	/* Warnings: every address, and verify = no; no open-relay warning
	 * (the backend is a remote relay, not the server behind). */
	warnings[0] = '\0';
	CHECK(parse("[r]\nlisten = *:2525\ndirection = outbound\nbackend = 127.0.0.1:587\nverify = no\n"), err);
	config_warnings(&cfg, "t.conf", collect, NULL);
	static const char want[] =
		"t.conf:2: warning: listener 'r': an outbound listener on every address lets anyone who reaches it "
		"send through the upstream relay as this host (its address, its upstream_cert); listen on loopback "
		"or the LAN address the legacy server uses\n"
		"t.conf:1: warning: listener 'r': verify = no: the upstream's certificate is not checked, so anyone "
		"on the path can pose as the relay and read the mail and the AUTH passwords\n";
	CHECK_BYTES(warnings, strlen(warnings), want, strlen(want), "outbound warnings");
	warnings[0] = '\0';
	CHECK(parse(OUTBOUND), err);
	config_warnings(&cfg, "t.conf", collect, NULL);
	CHECK(warnings[0] == '\0', warnings);

	/* original-destination: no verify warning (there is no name), but
	 * one without user (the redirect could not skip the proxy). */
	warnings[0] = '\0';
	CHECK(parse(WORLD), err);
	config_warnings(&cfg, "t.conf", collect, NULL);
	static const char want_user[] =
		"t.conf:4: warning: listener 'world': backend = original-destination without user: "
		"packaging/outbound-redirect tells the proxy's own connections by the user its workers run as, "
		"so without one they come back to it in a loop\n";
	CHECK_BYTES(warnings, strlen(warnings), want_user, strlen(want_user), "original-destination warnings");
	warnings[0] = '\0';
	CHECK(parse("user = _starttlsd\n" WORLD), err);
	config_warnings(&cfg, "t.conf", collect, NULL);
	CHECK(warnings[0] == '\0', warnings);
}

void run_config_tests(void)
{
	test_outbound();
	test_networks();
	test_valid();
	test_watch_files();
	test_invalid();
	test_warnings();
}
