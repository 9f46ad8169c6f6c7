/* main.c - command line, start-up, signals (INTERFACE.md "Command line") */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "conn.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "tls.h"

#define STARTTLSD_VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/starttlsd/starttlsd.conf"
#define ERR_MAX 2048

static void usage(void)
{
	fprintf(stderr, "usage: starttlsd [-f] [-c FILE]\n"
	                "       starttlsd -t [-c FILE]\n"
	                "       starttlsd -T [-c FILE]\n"
	                "       starttlsd -V\n");
	exit(1);
}

/* print_warning - start-up warnings go to the log, or stderr for -t */
static void print_warning(void *ctx, const char *line)
{
	if (ctx)
		fprintf(stderr, "%s\n", line);
	else
		log_warning("%s", line);
}

/* drop_privileges - become USER and its groups, for good */
static void drop_privileges(const char *user)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		fprintf(stderr, "starttlsd: user %s does not exist\n", user);
		exit(1);
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "starttlsd: cannot become user %s: %s\n", user, strerror(errno));
		exit(1);
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		fprintf(stderr, "starttlsd: still root after dropping privileges\n");
		abort();
	}
}

/* daemonize - detach from the terminal; the parent exits 0 */
static void daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "starttlsd: fork: %s\n", strerror(errno));
		exit(1);
	}
	if (pid > 0)
		_exit(0);
	setsid();
	if (chdir("/") < 0)
		exit(1);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

static void write_pid_file(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		log_error("pid_file %s: %s", path, strerror(errno));
		return;
	}
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
}

struct tlsa_ctx {
	const char *port;
};

static void print_tlsa(void *ctx, const char *name, const char *spki_sha256_hex)
{
	const struct tlsa_ctx *t = ctx;
	/* A TLSA record cannot sit at a wildcard owner name (RFC 7671
	 * section 4): publish it at each host name the wildcard covers. */
	if (name[0] == '*')
		printf("; %s: publish _%s._tcp.HOST. IN TLSA 3 1 1 %s for each HOST it covers\n", name, t->port,
		       spki_sha256_hex);
	else
		printf("_%s._tcp.%s. IN TLSA 3 1 1 %s\n", t->port, name, spki_sha256_hex);
}

/* print_tlsa_records - starttlsd -T: DANE-EE(3) SPKI(1) SHA-256(1) records
 * for every certificate and port (RFC 7672 section 3.1) */
static void print_tlsa_records(const struct generation *gen)
{
	for (size_t i = 0; i < gen->n_listeners; i++) {
		const struct listener *l = &gen->listeners[i];
		printf("; listener %s\n", l->cfg->name);
		for (size_t j = 0; j < l->cfg->n_listen; j++) {
			const char *port = l->cfg->listen[j].port;
			bool seen = false;
			for (size_t k = 0; k < j; k++)
				seen = seen || strcmp(l->cfg->listen[k].port, port) == 0;
			struct tlsa_ctx ctx = { port };
			if (!seen)
				tls_creds_tlsa(l->creds, print_tlsa, &ctx);
		}
	}
}

/* warn_key_changes - a listener whose keys changed breaks the DANE TLSA
 * records published for it until they are updated */
static void warn_key_changes(const struct generation *old, const struct generation *gen)
{
	for (size_t i = 0; i < gen->n_listeners; i++)
		for (size_t j = 0; j < old->n_listeners; j++)
			if (strcmp(gen->listeners[i].cfg->name, old->listeners[j].cfg->name) == 0 &&
			    !tls_creds_same_keys(gen->listeners[i].creds, old->listeners[j].creds))
				log_warning("listener %s: its key changed; update any published DANE TLSA records "
				            "(starttlsd -T prints the new ones)",
				            gen->listeners[i].cfg->name);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	struct server *srv = w->data;
	log_info("drain_timeout reached: closing %zu remaining session(s)", srv->n_conns);
	conn_close_all(srv);
	ev_break(loop, EVBREAK_ALL);
}

/* on_stop - SIGTERM, SIGINT: stop accepting, let transactions finish */
static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	struct server *srv = w->data;
	if (srv->draining)
		return;
	log_info("signal %d: shutting down", w->signum);
	srv->draining = true;
	listener_close_all(srv, srv->current);
	conn_shutdown_all(srv);
	if (srv->n_conns == 0) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	ev_timer_init(&srv->drain_timer, on_drain_timeout, srv->current->cfg.drain_timeout, 0);
	srv->drain_timer.data = srv;
	ev_timer_start(loop, &srv->drain_timer);
}

/* on_hup - SIGHUP: load a whole new generation beside the one in force and
 * swap it in only if all of it loaded; sessions keep the one they started
 * with */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	struct server *srv = w->data;
	char err[ERR_MAX];
	if (srv->draining)
		return;
	struct generation *old = srv->current;
	struct generation *gen = generation_load(srv, srv->config_path, print_warning, NULL, err, sizeof err);
	if (!gen || !listener_bind_all(gen, old, srv->config_path, err, sizeof err)) {
		log_error("reload refused, the configuration in force stays: %s", err);
		if (gen)
			generation_unref(gen);
		return;
	}
	if (strcmp(gen->cfg.user, old->cfg.user) != 0 || gen->cfg.workers != old->cfg.workers)
		log_warning("user and workers changes take effect at the next restart");
	warn_key_changes(old, gen);
	srv->current = gen;
	listener_close_all(srv, old); /* only the sockets the new one did not take */
	generation_unref(old);
	log_setup(srv->log_to_stderr, (enum log_level)gen->cfg.log_level);
	listener_start_all(srv);
	log_info("reloaded %s", srv->config_path);
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	bool foreground = false, check_only = false, print_tlsa_only = false;
	int opt;
	while ((opt = getopt(argc, argv, "fc:tTV")) != -1) {
		switch (opt) {
		case 'f':
			foreground = true;
			break;
		case 'c':
			path = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'T':
			print_tlsa_only = true;
			break;
		case 'V':
			printf("starttlsd %s (GnuTLS %s, libev %d.%d)\n", STARTTLSD_VERSION, tls_library_version(),
			       ev_version_major(), ev_version_minor());
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	static struct server srv;
	char err[ERR_MAX];
	log_setup(true, LOG_LEVEL_INFO);
	if (!tls_global_init(err, sizeof err)) {
		fprintf(stderr, "starttlsd: %s\n", err);
		return 1;
	}
	srv.config_path = path;
	if (gethostname(srv.hostname, sizeof srv.hostname - 1) < 0 || !srv.hostname[0])
		snprintf(srv.hostname, sizeof srv.hostname, "localhost");
	srv.current = generation_load(&srv, path, print_warning, &srv, err, sizeof err);
	if (!srv.current) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (print_tlsa_only)
		print_tlsa_records(srv.current);
	if (check_only || print_tlsa_only) {
		generation_unref(srv.current);
		return 0;
	}
	const struct config *cfg = &srv.current->cfg;
	if (cfg->workers > 1)
		fprintf(stderr, "starttlsd: warning: this version runs one worker process (workers = %u)\n",
		        cfg->workers);

	/* A signal that comes once the sockets are announced but before the
	 * loop watches for it waits instead of killing the process. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGHUP);
	sigprocmask(SIG_BLOCK, &stop_signals, NULL);

	srv.log_to_stderr = true;
	log_setup(true, (enum log_level)cfg->log_level);
	if (!listener_bind_all(srv.current, NULL, path, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!foreground) {
		daemonize();
		srv.log_to_stderr = false;
		log_setup(false, (enum log_level)cfg->log_level);
	}
	if (cfg->user[0])
		drop_privileges(cfg->user);
	if (cfg->pid_file[0])
		write_pid_file(cfg->pid_file);

	srv.loop = ev_default_loop(EVFLAG_AUTO);
	ev_signal_init(&srv.sig_term, on_stop, SIGTERM);
	ev_signal_init(&srv.sig_int, on_stop, SIGINT);
	ev_signal_init(&srv.sig_hup, on_hup, SIGHUP);
	srv.sig_term.data = srv.sig_int.data = srv.sig_hup.data = &srv;
	ev_signal_start(srv.loop, &srv.sig_term);
	ev_signal_start(srv.loop, &srv.sig_int);
	ev_signal_start(srv.loop, &srv.sig_hup);
	sigprocmask(SIG_UNBLOCK, &stop_signals, NULL);
	listener_start_all(&srv);
	log_info("starttlsd %s started", STARTTLSD_VERSION);

	ev_run(srv.loop, 0);

	log_info("stopped");
	ev_timer_stop(srv.loop, &srv.drain_timer);
	if (srv.current->cfg.pid_file[0])
		unlink(srv.current->cfg.pid_file);
	generation_unref(srv.current);
	return 0;
}
