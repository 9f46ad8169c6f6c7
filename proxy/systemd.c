/* systemd.c - readiness notification and socket activation (see systemd.h) */
#include "systemd.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <systemd/sd-daemon.h>

bool systemd_inherited_sockets(struct inherited_socket *out, size_t max, size_t *n_r, char *err, size_t errlen)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	*n_r = 0;
	if (n < 0) {
		snprintf(err, errlen, "socket activation: LISTEN_FDS: %s", strerror(-n));
		return false;
	}
	bool ok = true;
	for (int i = 0; i < n && ok; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		/* Without LISTEN_FDNAMES libsystemd names every socket "unknown". */
		const char *name = names[i];
		if ((size_t)i == max) {
			snprintf(err, errlen, "socket activation: more than %zu sockets passed", max);
			ok = false;
		} else if (strlen(name) >= sizeof out[i].name) {
			snprintf(err, errlen, "socket activation: socket %.*s... (fd %d): name longer than any listener's",
			         (int)sizeof out[i].name, name, fd);
			ok = false;
		} else if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			snprintf(err, errlen, "socket activation: socket %s (fd %d) is not a listening stream socket",
			         name, fd);
			ok = false;
		} else {
			/* The accept loop takes connections until EAGAIN. */
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
			out[i].fd = fd;
			snprintf(out[i].name, sizeof out[i].name, "%s", name);
			(*n_r)++;
		}
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ok;
}

void systemd_notify_ready(const char *fmt, ...)
{
	char status[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(status, sizeof status, fmt, ap);
	va_end(ap);
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void systemd_notify_reloading(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	sd_notifyf(0, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
	           (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000ULL);
}

void systemd_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}
