/* exporter.h - the metrics listener: GET /metrics and GET /healthz
 *
 * Served by the supervisor (metrics = ADDR:PORT makes the daemon keep
 * one), from its poll loop: it holds no session, so a slow or hostile
 * scraper meets only these bounds and never the mail flow. At most
 * EXPORTER_MAX_SCRAPERS connections (more are closed at once), a request
 * head of at most HTTP_REQUEST_MAX bytes (then 431 and close), and
 * EXPORTER_TIMEOUT_SECONDS for the whole exchange; one answer, then close.
 *
 * /metrics is the sum over every worker, live and exited (metrics_shm.h).
 * /healthz is 200 "ok" while a current worker accepts and, for every
 * listener, its backend greeted a worker or accepted the exporter's own
 * connection within EXPORTER_HEALTH_WINDOW seconds; 503 and the first
 * reason otherwise. The exporter connects to a listener's backend (and
 * closes at once) only when no worker's session reached it within the
 * last EXPORTER_CHECK_SECONDS.
 */
#ifndef STARTTLSD_EXPORTER_H
#define STARTTLSD_EXPORTER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "server.h"

#define EXPORTER_MAX_SCRAPERS 4
#define EXPORTER_TIMEOUT_SECONDS 5
#define EXPORTER_CHECK_SECONDS 5
#define EXPORTER_HEALTH_WINDOW (2 * EXPORTER_CHECK_SECONDS)
/* The listening socket, the scrapers, one backend check per listener. */
#define EXPORTER_MAX_FDS (1 + EXPORTER_MAX_SCRAPERS + METRICS_MAX_LISTENERS)

/* What the supervisor knows that the health rule needs. */
struct exporter_status {
	unsigned accepting_workers; /* current workers alive */
	bool stopping;
};

/* exporter_open - listen on the metrics address of SRV's configuration,
 * if it has one; "FILE:LINE: message" on failure */
bool exporter_open(struct server *srv, char *err, size_t errlen);

/* exporter_pollfds - what to wait for (at most EXPORTER_MAX_FDS entries),
 * and how long at most in milliseconds (-1: no limit) */
size_t exporter_pollfds(struct pollfd *fds, int *timeout_ms_r);

/* exporter_step - after the wait: serve scrapers, run backend checks, end
 * what is overdue; FDS as exporter_pollfds() filled them */
void exporter_step(struct server *srv, const struct pollfd *fds, size_t n, const struct exporter_status *status);

/* exporter_close - close every socket of the exporter; in a new worker,
 * so that a scraper never waits on a copy the supervisor closed */
void exporter_close(void);

#endif
