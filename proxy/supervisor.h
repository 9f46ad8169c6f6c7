/* supervisor.h - the privileged parent and its workers
 *
 * With workers above 1, or with user set, the daemon's first process stays
 * as a supervisor: it keeps the listening sockets and the loaded
 * configuration, forks the workers (which drop privileges), and does not
 * serve a session itself. Every worker inherits the same sockets and the
 * same session ticket key, so a ticket from one resumes on another.
 *
 * SIGHUP: the supervisor, still root, loads the new generation (keys only
 * root can read included), forks a new set of workers with it, and tells
 * the old ones to retire on their control pipes (worker.h): they stop
 * accepting and exit when their sessions end. SIGTERM, SIGINT: every worker
 * is told to stop; the supervisor exits when they all have, 0 if they all
 * exited 0. A worker that dies is replaced.
 *
 * Start-up, and each reload, is complete once every new worker has said on
 * the pipe that it accepts and every old one that it stopped: only then
 * does the supervisor, the process systemd knows, send READY=1.
 */
#ifndef STARTTLSD_SUPERVISOR_H
#define STARTTLSD_SUPERVISOR_H

#include "server.h"

/* Workers alive at once, current and retiring; also the metrics slots. */
#define SUPERVISOR_MAX_WORKERS 2048

/* supervisor_run - fork N_WORKERS workers and look after them until
 * stopped; the exit status */
int supervisor_run(struct server *srv, unsigned n_workers);

#endif
