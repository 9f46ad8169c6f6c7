/* worker.h - one event loop that accepts and serves sessions
 *
 * Alone (workers = 1 and no user) the worker is the whole daemon and
 * reloads on SIGHUP itself. Under the supervisor (supervisor.h) it was
 * forked with its generation loaded, drops privileges, ignores SIGHUP (the
 * parent reloads and forks new workers) and takes the supervisor's
 * commands from a control pipe of its own: retire (stop accepting and exit
 * once the last session has ended) and stop (what SIGTERM does). Commands,
 * not signals: the supervisor stays root, the worker does not, and root
 * signalling another user takes CAP_KILL. The close of that pipe (the
 * supervisor died) means stop too. SIGQUIT still retires it and SIGTERM
 * still stops it. It tells the supervisor on a shared pipe when it starts
 * and when it stops accepting, so the supervisor knows when start-up or a
 * reload is complete.
 */
#ifndef STARTTLSD_WORKER_H
#define STARTTLSD_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "server.h"

/* What a supervised worker tells the supervisor: fewer bytes than
 * PIPE_BUF, so each is one atomic write. */
enum worker_report { WORKER_ACCEPTING, WORKER_RETIRED };
struct worker_message {
	pid_t pid;
	enum worker_report report;
};

/* What the supervisor tells a worker, one byte each on its control pipe. */
enum worker_command { WORKER_RETIRE = 'R', WORKER_STOP = 'S' };

/* worker_signals - every signal the daemon handles (TERM, INT, HUP, QUIT,
 * CHLD): blocked from start-up until a loop waits for them, so that one
 * that comes early waits instead of killing the process */
void worker_signals(sigset_t *set);

/* worker_run - serve until stopped or retired; the exit status.
 * PIPE_FD is the supervisor's report pipe and CONTROL_FD this worker's
 * control pipe, or both -1 for a worker on its own. */
int worker_run(struct server *srv, int pipe_fd, int control_fd);

#endif
