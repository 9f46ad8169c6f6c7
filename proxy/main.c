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
#include "generation.h"
#include "listener.h"
#include "exporter.h"
#include "file_watch.h"
#include "log.h"
#include "metrics_shm.h"
#include "server.h"
#include "supervisor.h"
#include "systemd.h"
#include "tls.h"
#include "version.h"
#include "worker.h"

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

/* print_warning - warnings at start-up and from -t go to stderr (a
 * reload's go to the log: generation.c) */
static void print_warning(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "%s\n", line);
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
			if (!seen && l->creds) /* an outbound listener serves no certificate */
				tls_creds_tlsa(l->creds, print_tlsa, &ctx);
		}
	}
}

/* take_sockets - the sockets systemd passed (socket activation), which
 * replace the listen lines, or new ones for the listen lines */
static bool take_sockets(struct generation *gen, const char *path, char *err, size_t errlen)
{
	struct inherited_socket inherited[CONFIG_MAX_LISTENERS * CONFIG_MAX_LISTEN * 2];
	size_t n;
	if (!systemd_inherited_sockets(inherited, sizeof inherited / sizeof inherited[0], &n, err, errlen))
		return false;
	if (n > 0)
		return listener_take_inherited(gen, inherited, n, path, err, errlen);
	return listener_bind_all(gen, NULL, path, err, errlen);
}

/* worker_count - workers = auto is one per CPU */
static unsigned worker_count(const struct config *cfg)
{
	if (cfg->workers > 0)
		return cfg->workers;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus < 1 ? 1 : cpus > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : (unsigned)cpus;
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
	srv.current = generation_load(&srv, path, print_warning, NULL, err, sizeof err);
	if (!srv.current) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	/* Checked here, not only when a worker drops to it: a worker that
	 * cannot start would be replaced over and over. */
	const char *user = srv.current->cfg.user;
	if (user[0] && !getpwnam(user)) {
		fprintf(stderr, "%s:%d: user %s does not exist\n", path, srv.current->cfg.user_line, user);
		generation_unref(srv.current);
		return 1;
	}
	if (print_tlsa_only)
		print_tlsa_records(srv.current);
	if (check_only || print_tlsa_only) {
		generation_unref(srv.current);
		return 0;
	}
	const struct config *cfg = &srv.current->cfg;

	sigset_t handled;
	worker_signals(&handled);
	sigprocmask(SIG_BLOCK, &handled, NULL);

	srv.log_to_stderr = true;
	log_setup(true, (enum log_level)cfg->log_level);
	/* Metrics are served by the supervisor, from counters shared with
	 * every worker it forks; the workers read each other's open
	 * connections for max_connections (metrics_shm.h). */
	bool metrics = cfg->metrics.host[0] != '\0';
	unsigned workers = worker_count(cfg);
	bool supervised = workers > 1 || cfg->user[0] || metrics;
	if (!take_sockets(srv.current, path, err, sizeof err) ||
	    !metrics_shm_setup(supervised ? SUPERVISOR_MAX_WORKERS : 1, supervised, err, sizeof err) ||
	    !exporter_open(&srv, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	metrics_shm_bind(srv.current);
	srv.files_fingerprint = file_watch_fingerprint(&srv);
	signal(SIGPIPE, SIG_IGN);
	if (!foreground) {
		daemonize();
		srv.log_to_stderr = false;
		log_setup(false, (enum log_level)cfg->log_level);
	}
	char pid_file[CONFIG_PATH_MAX];
	snprintf(pid_file, sizeof pid_file, "%s", cfg->pid_file);
	if (pid_file[0])
		write_pid_file(pid_file);
	log_info("starttlsd %s started", STARTTLSD_VERSION);

	int status = supervised ? supervisor_run(&srv, workers) : worker_run(&srv, -1, -1);

	log_info("stopped");
	if (pid_file[0])
		unlink(pid_file);
	return status;
}
