/* supervisor.c - the privileged parent and its workers (see supervisor.h) */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exporter.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "metrics_shm.h"
#include "worker.h"

/* Workers alive at once, current and retiring: reloads that come faster
 * than old sessions end are refused beyond this. */
#define MAX_CHILDREN SUPERVISOR_MAX_WORKERS
/* A worker that dies sooner than this after its start is replaced only
 * after this long, so a worker that cannot start does not spin. */
#define RESPAWN_DELAY_SECONDS 1

struct child {
	pid_t pid; /* 0: a free slot */
	time_t started;
	bool retiring;
	bool accepting; /* until a retiring worker says it stopped */
};

/* Set by the signal handlers, read by the loop in supervisor_run. */
static volatile sig_atomic_t got_hup, got_stop, got_child;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_child = 1;
	else
		got_stop = 1;
}

static struct child children[MAX_CHILDREN];
static bool worker_failed;
/* Retiring workers write their PID here once they no longer accept. */
static int retired_pipe[2] = { -1, -1 };
/* A reload is complete when no retiring worker accepts any more. */
static bool reload_pending;

/* spawn - a worker that counts into metrics slot SLOT */
static pid_t spawn(struct server *srv, size_t slot)
{
	metrics_shm_claim(slot);
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		return 0;
	}
	if (pid == 0) {
		signal(SIGCHLD, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		close(retired_pipe[0]);
		exporter_close();
		metrics_shm_use_slot(slot);
		exit(worker_run(srv, retired_pipe[1]));
	}
	return pid;
}

static unsigned free_slots(void)
{
	unsigned n = 0;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		n += children[i].pid == 0;
	return n;
}

static void spawn_into(struct server *srv, struct child *c)
{
	c->pid = spawn(srv, (size_t)(c - children));
	c->started = time(NULL);
	c->retiring = false;
	c->accepting = true;
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

/* signal_children - SIG to every child, or to the current ones only */
static void signal_children(int sig, bool current_only)
{
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0 && !(current_only && children[i].retiring))
			kill(children[i].pid, sig);
}

/* reload - new workers on the new generation; the old ones retire */
static void reload(struct server *srv, unsigned n_workers)
{
	if (free_slots() < n_workers) {
		log_error("reload refused: %u older workers still finish their sessions", live_children());
		metrics_add(&metrics_region->retired.reloads[METRICS_RELOAD_FAILED], 1);
		return;
	}
	if (!generation_reload(srv))
		return;
	signal_children(SIGQUIT, true);
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		children[i].retiring = children[i].pid > 0;
	reload_pending = true;
	spawn_all(srv, n_workers);
}

/* read_retired - the PIDs of workers that stopped accepting */
static void read_retired(void)
{
	pid_t pid;
	while (read(retired_pipe[0], &pid, sizeof pid) == sizeof pid)
		for (size_t i = 0; i < MAX_CHILDREN; i++)
			if (children[i].pid == pid)
				children[i].accepting = false;
}

/* check_reload_done - log the reload once only the new workers accept */
static void check_reload_done(const struct server *srv)
{
	if (!reload_pending)
		return;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0 && children[i].retiring && children[i].accepting)
			return;
	reload_pending = false;
	log_info("reloaded %s", srv->config_path);
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

	if (pipe2(retired_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		log_error("pipe: %s", strerror(errno));
		return 1;
	}
	srv->shares_sockets = n_workers > 1;
	spawn_all(srv, n_workers);
	log_info("supervisor %ld: %u worker(s)%s%s", (long)getpid(), n_workers,
	         srv->current->cfg.user[0] ? " as user " : "", srv->current->cfg.user);
	bool stopping = false;
	for (;;) {
		struct pollfd fds[1 + EXPORTER_MAX_FDS];
		int timeout_ms;
		fds[0] = (struct pollfd){ retired_pipe[0], POLLIN, 0 };
		size_t n = 1 + exporter_pollfds(fds + 1, &timeout_ms);
		struct timespec timeout = { timeout_ms / 1000, (timeout_ms % 1000) * 1000000L };
		if (!got_hup && !got_stop && !got_child)
			ppoll(fds, n, timeout_ms < 0 ? NULL : &timeout, &waiting);
		if (fds[0].revents)
			read_retired();
		if (got_child) {
			got_child = 0;
			reap(srv, stopping);
		}
		if (got_stop) {
			got_stop = 0; /* a second SIGTERM changes nothing */
			if (!stopping) {
				stopping = true;
				reload_pending = false;
				listener_close_all(srv, srv->current); /* refuse new connections now */
				log_info("shutting down %u worker(s)", live_children());
				signal_children(SIGTERM, false);
			}
		}
		if (got_hup) {
			got_hup = 0;
			if (!stopping)
				reload(srv, n_workers);
		}
		check_reload_done(srv);
		struct exporter_status status = { current_workers(), stopping };
		exporter_step(srv, fds + 1, n - 1, &status);
		if (stopping && live_children() == 0)
			break;
	}
	exporter_close();
	generation_unref(srv->current);
	return worker_failed ? 1 : 0;
}
