/* systemd.h - the service manager: readiness notification and socket
 * activation; systemd.c is the only file that uses libsystemd
 *
 * Without NOTIFY_SOCKET every notification does nothing, and without
 * LISTEN_FDS no socket is inherited, so the daemon runs the same outside
 * systemd. Only the process systemd started (the
 * main PID) notifies: a worker under the supervisor never does
 * (supervisor.h).
 */
#ifndef STARTTLSD_SYSTEMD_H
#define STARTTLSD_SYSTEMD_H

#include <stdbool.h>
#include <stddef.h>

#include "listener.h"

/* systemd_inherited_sockets - the listening sockets passed with LISTEN_FDS
 * and their FileDescriptorName= names, made non-blocking, into OUT (MAX
 * entries); *n_r is 0 when none were passed. The variables are unset, so
 * no child sees them. False with a message in ERR. */
bool systemd_inherited_sockets(struct inherited_socket *out, size_t max, size_t *n_r, char *err, size_t errlen);

/* systemd_notify_ready - READY=1 with a STATUS= line made from FMT */
void systemd_notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* systemd_notify_reloading - RELOADING=1 with the CLOCK_MONOTONIC time the
 * reload started, which systemd needs to tell this reload from older ones */
void systemd_notify_reloading(void);

/* systemd_notify_stopping - STOPPING=1 */
void systemd_notify_stopping(void);

#endif
