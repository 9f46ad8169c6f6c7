/* exporter.c - the metrics listener (see exporter.h) */
#include "exporter.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_request.h"
#include "listener.h"
#include "log.h"
#include "metrics_shm.h"
#include "version.h"

/* The largest body: every listener's counters and every certificate's
 * gauges fit with room to spare (metrics_render says when not). */
#define BODY_MAX (256 * 1024)
#define HEADER_MAX 256

struct scraper {
	int fd; /* -1: a free entry */
	time_t deadline;
	uint8_t in[HTTP_REQUEST_MAX];
	size_t in_len;
	char *out; /* the whole answer once the request is known */
	size_t out_len, out_sent;
};

struct backend_check {
	int fd; /* -1: none running */
	time_t started;
	time_t ok_at; /* the last connect that succeeded */
};

static int listen_fd = -1;
static struct scraper scrapers[EXPORTER_MAX_SCRAPERS];
static struct backend_check checks[METRICS_MAX_LISTENERS];

bool exporter_open(struct server *srv, char *err, size_t errlen)
{
	for (size_t i = 0; i < EXPORTER_MAX_SCRAPERS; i++)
		scrapers[i].fd = -1;
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++)
		checks[i].fd = -1;
	const struct config_listen *a = &srv->current->cfg.metrics;
	if (!a->host[0])
		return true;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	int r = getaddrinfo(strcmp(a->host, "*") == 0 ? NULL : a->host, a->port, &hints, &res);
	if (r != 0) {
		snprintf(err, errlen, "%s:%d: metrics %s: %s", srv->config_path, a->line, a->host, gai_strerror(r));
		return false;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "%s:%d: cannot listen on metrics %s:%s: %s", srv->config_path, a->line, a->host,
		         a->port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return false;
	}
	freeaddrinfo(res);
	struct sockaddr_storage bound;
	socklen_t len = sizeof bound;
	char where[80];
	getsockname(fd, (struct sockaddr *)&bound, &len);
	format_addr((struct sockaddr *)&bound, where, sizeof where);
	log_info("metrics: /metrics and /healthz on %s", where);
	listen_fd = fd;
	return true;
}

static void scraper_close(struct scraper *s)
{
	close(s->fd);
	s->fd = -1;
	free(s->out);
	s->out = NULL;
}

void exporter_close(void)
{
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
	for (size_t i = 0; i < EXPORTER_MAX_SCRAPERS; i++)
		if (scrapers[i].fd >= 0)
			scraper_close(&scrapers[i]);
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++) {
		if (checks[i].fd >= 0)
			close(checks[i].fd);
		checks[i].fd = -1;
	}
}

size_t exporter_pollfds(struct pollfd *fds, int *timeout_ms_r)
{
	size_t n = 0;
	*timeout_ms_r = -1;
	if (listen_fd < 0)
		return 0;
	/* Once a second: request deadlines and backend checks are in seconds. */
	*timeout_ms_r = 1000;
	fds[n++] = (struct pollfd){ listen_fd, POLLIN, 0 };
	for (size_t i = 0; i < EXPORTER_MAX_SCRAPERS; i++)
		if (scrapers[i].fd >= 0)
			fds[n++] = (struct pollfd){ scrapers[i].fd, scrapers[i].out ? POLLOUT : POLLIN, 0 };
	for (size_t i = 0; i < METRICS_MAX_LISTENERS; i++)
		if (checks[i].fd >= 0)
			fds[n++] = (struct pollfd){ checks[i].fd, POLLOUT, 0 };
	return n;
}

/* revents_of - what the wait saw on FD */
static short revents_of(const struct pollfd *fds, size_t n, int fd)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i].fd == fd)
			return fds[i].revents;
	return 0;
}

/* backend_seen - when the backend of listener row M last greeted a
 * worker's session or accepted a check */
static time_t backend_seen(size_t m)
{
	time_t seen = checks[m].ok_at;
	for (size_t s = 0; s < metrics_region->slots_used; s++) {
		time_t w = (time_t)metrics_get(&metrics_region->slots[s].gauges.backend_ok_at[m]);
		if (w > seen)
			seen = w;
	}
	return seen;
}

/* ---- the answers ---- */

/* render_metrics - the whole /metrics body into BODY; its length, or 0 */
static size_t render_metrics(struct server *srv, char *body, size_t cap)
{
	static struct metrics_slot sum;
	static struct metrics_cert certs[CONFIG_MAX_LISTENERS * CONFIG_MAX_CERTS];
	struct metrics_region *r = metrics_region;
	metrics_gather(&r->retired, r->slots, r->slots_used, &sum);
	size_t n_certs = 0;
	const struct generation *gen = srv->current;
	for (size_t i = 0; i < gen->n_listeners; i++) {
		const struct listener *l = &gen->listeners[i];
		for (size_t j = 0; j < l->cfg->n_certs; j++) {
			struct metrics_cert *c = &certs[n_certs++];
			c->listener = l->cfg->name;
			c->path = l->cfg->certs[j].chain;
			tls_creds_cert_dates(l->creds, j, &c->expires, &c->ocsp_this_update);
		}
	}
	char libev[32];
	snprintf(libev, sizeof libev, "%d.%d", ev_version_major(), ev_version_minor());
	struct metrics_view view = {
		.sum = &sum,
		.listener_names = (const char(*)[CONFIG_NAME_MAX])r->listener_names,
		.certs = certs,
		.n_certs = n_certs,
		.now = (int64_t)time(NULL),
		.version = STARTTLSD_VERSION,
		.gnutls_version = tls_library_version(),
		.libev_version = libev,
	};
	return metrics_render(&view, body, cap);
}

/* health_problem - why the daemon is not healthy, or NULL */
static const char *health_problem(struct server *srv, const struct exporter_status *st, char *buf, size_t len)
{
	if (st->stopping)
		return "shutting down";
	if (st->accepting_workers == 0)
		return "no worker accepts connections";
	time_t now = time(NULL);
	const struct generation *gen = srv->current;
	for (size_t i = 0; i < gen->n_listeners; i++) {
		if (now - backend_seen(gen->listeners[i].metrics_index) > EXPORTER_HEALTH_WINDOW) {
			snprintf(buf, len, "listener %s: backend not reached within %ds", gen->listeners[i].cfg->name,
			         EXPORTER_HEALTH_WINDOW);
			return buf;
		}
	}
	return NULL;
}

/* answer - the response to VERDICT, whole, for S to send */
static void answer(struct server *srv, struct scraper *s, enum http_verdict verdict,
                   const struct exporter_status *st)
{
	static char body[BODY_MAX];
	const char *status = http_status_line(verdict);
	const char *type = "text/plain; charset=utf-8";
	size_t body_len;
	if (verdict == HTTP_METRICS) {
		type = "text/plain; version=0.0.4; charset=utf-8";
		body_len = render_metrics(srv, body, sizeof body);
		if (body_len == 0) {
			log_error("metrics: the text does not fit in %d bytes", BODY_MAX);
			status = "500 Internal Server Error";
			body_len = (size_t)snprintf(body, sizeof body, "metrics too large\n");
		}
	} else if (verdict == HTTP_HEALTHZ) {
		char why[CONFIG_NAME_MAX + 80];
		const char *problem = health_problem(srv, st, why, sizeof why);
		if (problem)
			status = "503 Service Unavailable";
		body_len = (size_t)snprintf(body, sizeof body, "%s\n", problem ? problem : "ok");
	} else {
		body_len = (size_t)snprintf(body, sizeof body, "%s\n", status + 4);
	}
	s->out = malloc(HEADER_MAX + body_len);
	if (!s->out) {
		scraper_close(s);
		return;
	}
	int h = snprintf(s->out, HEADER_MAX,
	                 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
	                 status, type, body_len, verdict == HTTP_METHOD_NOT_ALLOWED ? "Allow: GET\r\n" : "");
	memcpy(s->out + h, body, body_len);
	s->out_len = (size_t)h + body_len;
	s->out_sent = 0;
}

/* ---- scrapers ---- */

static void scraper_io(struct server *srv, struct scraper *s, short revents, const struct exporter_status *st)
{
	if (!s->out && (revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = recv(s->fd, s->in + s->in_len, sizeof s->in - s->in_len, 0);
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				scraper_close(s);
			return;
		}
		s->in_len += (size_t)n;
		enum http_verdict verdict = http_request_check(s->in, s->in_len);
		if (verdict == HTTP_INCOMPLETE)
			return;
		answer(srv, s, verdict, st);
		if (s->fd < 0)
			return;
	}
	if (s->out) {
		ssize_t n = send(s->fd, s->out + s->out_sent, s->out_len - s->out_sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0 || (s->out_sent += (size_t)n) == s->out_len)
			scraper_close(s);
	}
}

static void accept_scrapers(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct scraper *s = NULL;
		for (size_t i = 0; i < EXPORTER_MAX_SCRAPERS && !s; i++)
			if (scrapers[i].fd < 0)
				s = &scrapers[i];
		if (!s) {
			close(fd); /* enough scrapers already: never a queue */
			continue;
		}
		s->fd = fd;
		s->in_len = 0;
		s->deadline = time(NULL) + EXPORTER_TIMEOUT_SECONDS;
	}
}

/* ---- backend checks ---- */

/* run_checks - finish, time out and start the backend checks of the
 * current listeners */
static void run_checks(struct server *srv, const struct pollfd *fds, size_t n)
{
	time_t now = time(NULL);
	const struct generation *gen = srv->current;
	for (size_t i = 0; i < gen->n_listeners; i++) {
		const struct listener *l = &gen->listeners[i];
		struct backend_check *c = &checks[l->metrics_index];
		if (c->fd >= 0) {
			bool done = revents_of(fds, n, c->fd) != 0;
			if (done && backend_connect_result(c->fd) == 0)
				c->ok_at = now;
			if (done || now - c->started >= EXPORTER_CHECK_SECONDS) {
				close(c->fd);
				c->fd = -1;
			}
			continue;
		}
		if (now - backend_seen(l->metrics_index) < EXPORTER_CHECK_SECONDS ||
		    now - c->started < EXPORTER_CHECK_SECONDS)
			continue;
		size_t used;
		c->started = now;
		c->fd = backend_connect(&l->backend, 0, NULL, &used);
	}
}

void exporter_step(struct server *srv, const struct pollfd *fds, size_t n, const struct exporter_status *status)
{
	if (listen_fd < 0)
		return;
	time_t now = time(NULL);
	for (size_t i = 0; i < EXPORTER_MAX_SCRAPERS; i++) {
		struct scraper *s = &scrapers[i];
		if (s->fd < 0)
			continue;
		short revents = revents_of(fds, n, s->fd);
		if (revents)
			scraper_io(srv, s, revents, status);
		if (s->fd >= 0 && now >= s->deadline)
			scraper_close(s);
	}
	run_checks(srv, fds, n);
	if (revents_of(fds, n, listen_fd))
		accept_scrapers();
}
