/* worker.h - one event loop that accepts and serves sessions
 *
 * Alone (workers = 1 and no user) the worker is the whole daemon and
 * reloads on SIGHUP itself. Under the supervisor (supervisor.h) it was
 * forked with its generation loaded, drops privileges, ignores SIGHUP (the
 * parent reloads and forks new workers) and retires on SIGQUIT: it stops
 * accepting, says so on the supervisor's pipe, and exits once its last
 * session has ended.
 */
#ifndef STARTTLSD_WORKER_H
#define STARTTLSD_WORKER_H

#include <signal.h>
#include <stdbool.h>

#include "server.h"

/* worker_signals - every signal the daemon handles (TERM, INT, HUP, QUIT,
 * CHLD): blocked from start-up until a loop waits for them, so that one
 * that comes early waits instead of killing the process */
void worker_signals(sigset_t *set);

/* worker_run - serve until stopped or retired; the exit status.
 * RETIRED_FD is the supervisor's pipe, or -1 for a worker on its own. */
int worker_run(struct server *srv, int retired_fd);

#endif
