/* worker.c - one event loop that accepts and serves sessions (see worker.h) */
#include "worker.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "conn.h"
#include "file_watch.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "systemd.h"

/* drop_privileges - become USER and its groups, for good */
static bool drop_privileges(const char *user)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		log_error("user %s does not exist", user);
		return false;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error("cannot become user %s: %s", user, strerror(errno));
		return false;
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		log_error("still root after dropping privileges");
		abort();
	}
	return true;
}

/* Descriptors that max_connections = auto keeps out of sessions: the
 * listening sockets, the event loop's and the log's, files read at reload. */
#define RESERVED_DESCRIPTORS 32

/* connections_from_rlimit - max_connections = auto: each session holds two
 * descriptors (client and backend), so (RLIMIT_NOFILE - 32) / 2, at least 1 */
static unsigned connections_from_rlimit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 2u * UINT_MAX)
		return UINT_MAX;
	return rl.rlim_cur > RESERVED_DESCRIPTORS + 2 ? (unsigned)((rl.rlim_cur - RESERVED_DESCRIPTORS) / 2) : 1;
}

/* prepare_limits - what max_connections = auto and max_per_ip need */
static bool prepare_limits(struct server *srv)
{
	srv->connections_auto = connections_from_rlimit();
	if (srv->current->cfg.max_connections == 0)
		log_info("max_connections = auto: %u", srv->connections_auto);
	/* calloc maps it lazily: only the pages of addresses seen get resident. */
	srv->per_ip = calloc(1, sizeof *srv->per_ip);
	uint64_t seed;
	if (!srv->per_ip || getrandom(&seed, sizeof seed, 0) != sizeof seed) {
		log_error("cannot set up the per-address counts: %s", strerror(errno));
		return false;
	}
	ip_count_init(srv->per_ip, seed);
	return true;
}

/* The supervisor's pipe (worker.h), or -1 for a worker on its own, which
 * is then the process systemd knows and notifies it itself. */
static int supervisor_fd = -1;

/* report - tell the supervisor this worker accepts, or no longer does */
static void report(enum worker_report what)
{
	struct worker_message m = { getpid(), what };
	if (write(supervisor_fd, &m, sizeof m) != sizeof m)
		log_error("worker %ld: cannot tell the supervisor: %s", (long)m.pid, strerror(errno));
}

/* notify_ready - READY=1 for a worker on its own */
static void notify_ready(const struct server *srv)
{
	systemd_notify_ready("generation %u, %zu session(s) open", srv->current->serial, srv->n_conns);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	struct server *srv = w->data;
	log_info("drain_timeout reached: closing %zu remaining session(s)", srv->n_conns);
	conn_close_all(srv);
	ev_break(loop, EVBREAK_ALL);
}

/* stop_accepting - close this process's listening sockets; once the last
 * session ends, the loop ends (conn.c) */
static bool stop_accepting(struct server *srv)
{
	srv->draining = true;
	listener_close_all(srv, srv->current);
	if (srv->n_conns > 0)
		return false;
	ev_break(srv->loop, EVBREAK_ALL);
	return true;
}

/* shut_down - stop accepting, answer idle sessions 421, let transactions
 * finish within drain_timeout */
static void shut_down(struct server *srv)
{
	if (srv->stopping)
		return;
	if (supervisor_fd < 0)
		systemd_notify_stopping();
	srv->stopping = true;
	if (stop_accepting(srv))
		return;
	conn_shutdown_all(srv);
	ev_timer_init(&srv->drain_timer, on_drain_timeout, srv->current->cfg.drain_timeout, 0);
	srv->drain_timer.data = srv;
	ev_timer_start(srv->loop, &srv->drain_timer);
}

/* retire - after a reload newer workers accept; sessions here go on until
 * they end by themselves */
static void retire(struct server *srv)
{
	if (srv->draining)
		return;
	log_debug("worker %ld: retiring with %zu session(s)", (long)getpid(), srv->n_conns);
	stop_accepting(srv);
	report(WORKER_RETIRED);
}

/* on_stop - SIGTERM, SIGINT */
static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	struct server *srv = w->data;
	if (!srv->stopping)
		log_info("signal %d: shutting down", w->signum);
	shut_down(srv);
}

/* on_retire - SIGQUIT */
static void on_retire(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	retire(w->data);
}

/* on_control - the supervisor's commands on the control pipe; its close
 * means the supervisor is gone, and a worker does not serve on alone */
static void on_control(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct server *srv = w->data;
	uint8_t commands[16];
	ssize_t n = read(w->fd, commands, sizeof commands);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ev_io_stop(loop, w);
		if (!srv->stopping)
			log_info("worker %ld: the supervisor is gone; shutting down", (long)getpid());
		shut_down(srv);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (commands[i] == WORKER_RETIRE) {
			retire(srv);
		} else if (commands[i] == WORKER_STOP) {
			if (!srv->stopping)
				log_info("worker %ld: told to shut down", (long)getpid());
			shut_down(srv);
		}
	}
}

static void on_idle_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_release_idle_buffers(w->data);
}

/* on_hup - SIGHUP when the worker is the whole daemon */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	struct server *srv = w->data;
	if (srv->draining)
		return;
	systemd_notify_reloading();
	if (generation_reload(srv)) {
		listener_update_all(srv);
		log_info("reloaded %s", srv->config_path);
	}
	notify_ready(srv); /* reloaded or refused: either way in service again */
}

void worker_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGCHLD);
}

/* on_file_watch - watch_files: a look at the configured files */
static void on_file_watch(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	file_watch_check(w->data);
}

int worker_run(struct server *srv, int pipe_fd, int control_fd)
{
	bool supervised = pipe_fd >= 0;
	supervisor_fd = pipe_fd;
	const struct config *cfg = &srv->current->cfg;
	if ((cfg->user[0] && !drop_privileges(cfg->user)) || !prepare_limits(srv))
		return 1;
	srv->loop = ev_default_loop(EVFLAG_AUTO);
	ev_signal_init(&srv->sig_term, on_stop, SIGTERM);
	ev_signal_init(&srv->sig_int, on_stop, SIGINT);
	if (supervised) {
		signal(SIGHUP, SIG_IGN);
		ev_signal_init(&srv->sig_reload, on_retire, SIGQUIT);
	} else {
		ev_signal_init(&srv->sig_reload, on_hup, SIGHUP);
	}
	srv->sig_term.data = srv->sig_int.data = srv->sig_reload.data = srv;
	ev_signal_start(srv->loop, &srv->sig_term);
	ev_signal_start(srv->loop, &srv->sig_int);
	ev_signal_start(srv->loop, &srv->sig_reload);
	if (supervised) {
		ev_io_init(&srv->control, on_control, control_fd, EV_READ);
		srv->control.data = srv;
		ev_io_start(srv->loop, &srv->control);
	}

	sigset_t handled;
	worker_signals(&handled);
	sigprocmask(SIG_UNBLOCK, &handled, NULL);
	srv->worker_pid = (long)getpid();
	ev_timer_init(&srv->idle_sweep, on_idle_sweep, IDLE_SWEEP_SECONDS, IDLE_SWEEP_SECONDS);
	srv->idle_sweep.data = srv;
	ev_timer_start(srv->loop, &srv->idle_sweep);
	if (!supervised && cfg->watch_files > 0) {
		ev_timer_init(&srv->file_watch, on_file_watch, cfg->watch_files, cfg->watch_files);
		srv->file_watch.data = srv;
		ev_timer_start(srv->loop, &srv->file_watch);
	}
	listener_update_all(srv);
	if (supervised) {
		log_debug("worker %ld: accepting as uid %ld", (long)getpid(), (long)getuid());
		report(WORKER_ACCEPTING);
	} else {
		notify_ready(srv);
	}

	ev_run(srv->loop, 0);

	ev_timer_stop(srv->loop, &srv->drain_timer);
	ev_timer_stop(srv->loop, &srv->idle_sweep);
	ev_io_stop(srv->loop, &srv->control);
	generation_unref(srv->current);
	free(srv->per_ip);
	return 0;
}
