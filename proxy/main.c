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
#include "listener.h"
#include "log.h"
#include "server.h"
#include "tls.h"

#define STARTTLSD_VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/starttlsd/starttlsd.conf"
#define CONFIG_FILE_MAX (1024 * 1024)
#define ERR_MAX 2048

static void usage(void)
{
	fprintf(stderr, "usage: starttlsd [-f] [-c FILE]\n"
	                "       starttlsd -t [-c FILE]\n"
	                "       starttlsd -V\n");
	exit(1);
}

/* read_file - the whole configuration file, bounded */
static char *read_file(const char *path, size_t *len_r, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s:0: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	char *text = malloc(CONFIG_FILE_MAX + 1);
	size_t n = text ? fread(text, 1, CONFIG_FILE_MAX + 1, f) : 0;
	bool bad = ferror(f) || !text;
	fclose(f);
	if (bad || n > CONFIG_FILE_MAX) {
		snprintf(err, errlen, "%s:0: %s", path, bad ? "cannot read" : "file too large (at most 1 MiB)");
		free(text);
		return NULL;
	}
	*len_r = n;
	return text;
}

/* print_warning - start-up warnings go to the log, or stderr for -t */
static void print_warning(void *ctx, const char *line)
{
	if (ctx)
		fprintf(stderr, "%s\n", line);
	else
		log_warning("%s", line);
}

/* check_supported - keys this version parses but does not implement yet are
 * refused rather than ignored: ignoring client_addr would hide the open-relay
 * danger the admin meant to close */
static bool check_supported(const struct config *cfg, const char *path, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		if (l->client_addr != CONFIG_CLIENT_ADDR_NONE) {
			snprintf(err, errlen, "%s:%d: client_addr other than none is not supported in this version",
			         path, l->client_addr_line);
			return false;
		}
		if (l->accept_proxy) {
			snprintf(err, errlen, "%s:%d: accept_proxy = yes is not supported in this version", path,
			         l->accept_proxy_line);
			return false;
		}
	}
	return true;
}

/* load - configuration, credentials and backend addresses, all or nothing */
static bool load(struct server *srv, const char *path, bool to_stderr, char *err, size_t errlen)
{
	size_t len;
	char *text = read_file(path, &len, err, errlen);
	if (!text)
		return false;
	srv->cfg = calloc(1, sizeof *srv->cfg);
	bool ok = srv->cfg && config_parse(text, len, path, srv->cfg, err, errlen);
	free(text);
	if (!ok)
		return false;
	if (!check_supported(srv->cfg, path, err, errlen))
		return false;
	void *warn_ctx = to_stderr ? srv : NULL;
	config_warnings(srv->cfg, path, print_warning, warn_ctx);

	srv->n_listeners = srv->cfg->n_listeners;
	for (size_t i = 0; i < srv->n_listeners; i++) {
		struct listener *l = &srv->listeners[i];
		l->cfg = &srv->cfg->listeners[i];
		l->server = srv;
		l->creds = tls_creds_load(l->cfg, path, print_warning, warn_ctx, err, errlen);
		if (!l->creds)
			return false;
		if (!backend_resolve(&l->cfg->backend, path, &l->backend, err, errlen))
			return false;
	}
	return true;
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
	listener_close_all(srv);
	conn_shutdown_all(srv);
	if (srv->n_conns == 0) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	ev_timer_init(&srv->drain_timer, on_drain_timeout, srv->cfg->drain_timeout, 0);
	srv->drain_timer.data = srv;
	ev_timer_start(loop, &srv->drain_timer);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	log_info("reload is not implemented yet; configuration unchanged");
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	bool foreground = false, check_only = false;
	int opt;
	while ((opt = getopt(argc, argv, "fc:tV")) != -1) {
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
	if (!load(&srv, path, true, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check_only)
		return 0;
	if (srv.cfg->workers > 1)
		fprintf(stderr, "starttlsd: warning: this version runs one worker process (workers = %u)\n",
		        srv.cfg->workers);

	log_setup(true, (enum log_level)srv.cfg->log_level);
	for (size_t i = 0; i < srv.n_listeners; i++) {
		if (!listener_bind(&srv.listeners[i], path, err, sizeof err)) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (!foreground) {
		daemonize();
		log_setup(false, (enum log_level)srv.cfg->log_level);
	}
	if (srv.cfg->user[0])
		drop_privileges(srv.cfg->user);
	if (srv.cfg->pid_file[0])
		write_pid_file(srv.cfg->pid_file);

	srv.loop = ev_default_loop(EVFLAG_AUTO);
	ev_signal_init(&srv.sig_term, on_stop, SIGTERM);
	ev_signal_init(&srv.sig_int, on_stop, SIGINT);
	ev_signal_init(&srv.sig_hup, on_hup, SIGHUP);
	srv.sig_term.data = srv.sig_int.data = srv.sig_hup.data = &srv;
	ev_signal_start(srv.loop, &srv.sig_term);
	ev_signal_start(srv.loop, &srv.sig_int);
	ev_signal_start(srv.loop, &srv.sig_hup);
	listener_start_all(&srv);
	log_info("starttlsd %s started", STARTTLSD_VERSION);

	ev_run(srv.loop, 0);

	log_info("stopped");
	ev_timer_stop(srv.loop, &srv.drain_timer);
	for (size_t i = 0; i < srv.n_listeners; i++)
		tls_creds_free(srv.listeners[i].creds);
	if (srv.cfg->pid_file[0])
		unlink(srv.cfg->pid_file);
	free(srv.cfg);
	return 0;
}
