/* supervisor.c - the privileged parent and its workers (see supervisor.h) */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exporter.h"
#include "file_watch.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "metrics_shm.h"
#include "systemd.h"
#include "worker.h"

/* Workers alive at once, current and retiring: reloads that come faster
 * than old sessions end are refused beyond this. */
#define MAX_CHILDREN SUPERVISOR_MAX_WORKERS
/* A worker that dies sooner than this after its start is replaced only
 * after this long, so a worker that cannot start does not spin. */
#define RESPAWN_DELAY_SECONDS 1

struct child {
	pid_t pid; /* 0: a free slot */
	int control_fd; /* the write end of its control pipe (worker.h), -1 with no worker */
	time_t started;
	bool retiring;
	bool accepting; /* from its WORKER_ACCEPTING until its WORKER_RETIRED */
};

/* Set by the signal handlers, read by the loop in supervisor_run. */
static volatile sig_atomic_t got_hup, got_stop, got_child; /* got_stop: the signal's number */

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_child = 1;
	else
		got_stop = sig;
}

/* monotonic_seconds - a clock that no date change moves */
static time_t monotonic_seconds(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec;
}

static struct child children[MAX_CHILDREN];
static bool worker_failed;
/* Workers say here when they start and stop accepting (worker.h). */
static int report_pipe[2] = { -1, -1 };
/* Start-up, and then each reload, is settled once every current worker
 * accepts and no retiring one does; then systemd hears READY=1. */
enum phase { PHASE_STARTING, PHASE_RELOADING, PHASE_SETTLED };
static enum phase phase = PHASE_STARTING;

/* spawn_into - a worker in slot C, counting into the metrics slot of the
 * same index, with a control pipe of its own: the supervisor tells it to
 * retire or stop by writing there, not by a signal, which from root to a
 * worker that became `user` would take CAP_KILL */
static void spawn_into(struct server *srv, struct child *c)
{
	size_t slot = (size_t)(c - children);
	int control[2];
	c->pid = 0;
	c->started = time(NULL);
	c->retiring = false;
	c->accepting = false;
	if (pipe2(control, O_NONBLOCK | O_CLOEXEC) < 0) {
		log_error("pipe: %s", strerror(errno));
		return;
	}
	metrics_shm_claim(slot);
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		close(control[0]);
		close(control[1]);
		return;
	}
	if (pid == 0) {
		signal(SIGCHLD, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		close(report_pipe[0]);
		close(control[1]);
		/* Only the supervisor may hold a worker's write end: the worker
		 * reads its end's close as the supervisor's death. */
		for (size_t i = 0; i < MAX_CHILDREN; i++)
			if (children[i].control_fd >= 0)
				close(children[i].control_fd);
		exporter_close();
		metrics_shm_use_slot(slot);
		exit(worker_run(srv, report_pipe[1], control[0]));
	}
	close(control[0]);
	c->pid = pid;
	c->control_fd = control[1];
}

static unsigned free_slots(void)
{
	unsigned n = 0;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		n += children[i].pid == 0;
	return n;
}

static void spawn_all(struct server *srv, unsigned n)
{
	for (size_t i = 0; i < MAX_CHILDREN && n > 0; i++) {
		if (children[i].pid == 0) {
			spawn_into(srv, &children[i]);
			n--;
		}
	}
}

/* reap - collect every exited child; replace a current worker that died
 * unless the daemon is stopping */
static void reap(struct server *srv, bool stopping)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			worker_failed = true;
		size_t i = 0;
		while (i < MAX_CHILDREN && children[i].pid != pid)
			i++;
		if (i == MAX_CHILDREN)
			continue;
		struct child *c = &children[i];
		c->pid = 0;
		close(c->control_fd);
		c->control_fd = -1;
		metrics_shm_fold(i);
		if (stopping || c->retiring)
			continue;
		if (WIFSIGNALED(status))
			log_error("worker %ld killed by signal %d; starting another", (long)pid, WTERMSIG(status));
		else
			log_error("worker %ld exited with status %d; starting another", (long)pid, WEXITSTATUS(status));
		if (time(NULL) - c->started < RESPAWN_DELAY_SECONDS)
			sleep(RESPAWN_DELAY_SECONDS);
		spawn_into(srv, c);
	}
}

static unsigned live_children(void)
{
	return MAX_CHILDREN - free_slots();
}

/* current_workers - workers alive that are not retiring */
static unsigned current_workers(void)
{
	unsigned n = 0;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		n += children[i].pid > 0 && !children[i].retiring;
	return n;
}

/* tell_children - COMMAND to every child, or to the current ones only
 * (one byte: a pipe holds thousands, so the write does not block) */
static void tell_children(enum worker_command command, bool current_only)
{
	uint8_t byte = (uint8_t)command;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0 && !(current_only && children[i].retiring) &&
		    write(children[i].control_fd, &byte, 1) != 1)
			log_error("cannot tell worker %ld: %s", (long)children[i].pid, strerror(errno));
}

static void notify_ready(const struct server *srv, unsigned n_workers)
{
	systemd_notify_ready("generation %u, %u worker(s)", srv->current->serial, n_workers);
}

/* reload - new workers on the new generation; the old ones retire */
static bool reload(struct server *srv, unsigned n_workers)
{
	if (free_slots() < n_workers) {
		log_error("reload refused: %u older workers still finish their sessions", live_children());
		metrics_add(&metrics_region->retired.reloads[METRICS_RELOAD_FAILED], 1);
		return false;
	}
	if (!generation_reload(srv))
		return false;
	tell_children(WORKER_RETIRE, true);
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		children[i].retiring = children[i].pid > 0;
	phase = PHASE_RELOADING;
	spawn_all(srv, n_workers);
	return true;
}

/* read_reports - workers that started or stopped accepting */
static void read_reports(void)
{
	struct worker_message m;
	while (read(report_pipe[0], &m, sizeof m) == sizeof m)
		for (size_t i = 0; i < MAX_CHILDREN; i++)
			if (children[i].pid == m.pid)
				children[i].accepting = m.report == WORKER_ACCEPTING;
}

/* check_settled - once every current worker accepts and no retiring one
 * does, log a reload and tell systemd the daemon is ready */
static void check_settled(const struct server *srv, unsigned n_workers)
{
	if (phase == PHASE_SETTLED)
		return;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0 && children[i].accepting == children[i].retiring)
			return; /* a current worker not accepting yet, or a retiring one still accepting */
	if (phase == PHASE_RELOADING)
		log_info("reloaded %s", srv->config_path);
	phase = PHASE_SETTLED;
	notify_ready(srv, n_workers);
}

int supervisor_run(struct server *srv, unsigned n_workers)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* These signals stay blocked but while ppoll waits (SIGQUIT is only
	 * for workers: blocked here for good). */
	int signals[] = { SIGHUP, SIGTERM, SIGINT, SIGCHLD };
	sigset_t blocked, waiting;
	worker_signals(&blocked);
	sigprocmask(SIG_BLOCK, &blocked, &waiting);
	for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
		sigaction(signals[i], &sa, NULL);
		sigdelset(&waiting, signals[i]);
	}

	if (pipe2(report_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		log_error("pipe: %s", strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		children[i].control_fd = -1;
	spawn_all(srv, n_workers);
	log_info("supervisor %ld: %u worker(s)%s%s", (long)getpid(), n_workers,
	         srv->current->cfg.user[0] ? " as user " : "", srv->current->cfg.user);
	bool stopping = false;
	unsigned watch_seconds = srv->current->cfg.watch_files;
	time_t next_watch = monotonic_seconds() + watch_seconds;
	for (;;) {
		struct pollfd fds[1 + EXPORTER_MAX_FDS];
		int timeout_ms;
		fds[0] = (struct pollfd){ report_pipe[0], POLLIN, 0 };
		size_t n = 1 + exporter_pollfds(fds + 1, &timeout_ms);
		if (watch_seconds > 0) {
			time_t left = next_watch - monotonic_seconds();
			int watch_ms = left > 0 ? (int)left * 1000 : 0;
			if (timeout_ms < 0 || watch_ms < timeout_ms)
				timeout_ms = watch_ms;
		}
		struct timespec timeout = { timeout_ms / 1000, (timeout_ms % 1000) * 1000000L };
		if (!got_hup && !got_stop && !got_child)
			ppoll(fds, n, timeout_ms < 0 ? NULL : &timeout, &waiting);
		if (fds[0].revents)
			read_reports();
		if (got_child) {
			got_child = 0;
			reap(srv, stopping);
		}
		if (got_stop) {
			int sig = got_stop;
			got_stop = 0; /* a second SIGTERM changes nothing */
			if (!stopping) {
				stopping = true;
				phase = PHASE_SETTLED; /* no READY=1 after STOPPING=1 */
				systemd_notify_stopping();
				listener_close_all(srv, srv->current); /* refuse new connections now */
				log_info("signal %d: shutting down %u worker(s)", sig, live_children());
				tell_children(WORKER_STOP, false);
			}
		}
		if (got_hup) {
			got_hup = 0;
			if (!stopping) {
				systemd_notify_reloading();
				/* Refused: in service as before, unless an earlier
				 * reload still settles and will say so. */
				if (!reload(srv, n_workers) && phase == PHASE_SETTLED)
					notify_ready(srv, n_workers);
			}
		}
		if (watch_seconds > 0 && !stopping && monotonic_seconds() >= next_watch) {
			next_watch = monotonic_seconds() + watch_seconds;
			file_watch_check(srv); /* a change comes back as SIGHUP */
		}
		check_settled(srv, n_workers);
		struct exporter_status status = { current_workers(), stopping };
		exporter_step(srv, fds + 1, n - 1, &status);
		if (stopping && live_children() == 0)
			break;
	}
	exporter_close();
	generation_unref(srv->current);
	return worker_failed ? 1 : 0;
}
