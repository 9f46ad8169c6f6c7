/* session_driver.h - a tiny edge for unit tests: keeps unused input and
 * offers it again, drains output into growing strings, records actions.
 * It feeds bytes whole or one at a time, so every case also runs trickled. */
#ifndef STARTTLSD_SESSION_DRIVER_H
#define STARTTLSD_SESSION_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"

#define DRIVER_INPUT_CAP (SESSION_LINE_MAX * 4)
#define DRIVER_OUT_CAP (1u << 16)

struct driver {
	struct session s;
	uint8_t client_in[DRIVER_INPUT_CAP];
	size_t client_in_len;
	uint8_t backend_in[DRIVER_INPUT_CAP];
	size_t backend_in_len;
	char to_client[DRIVER_OUT_CAP];
	size_t to_client_len;
	char to_backend[DRIVER_OUT_CAP];
	size_t to_backend_len;
	char actions[256]; /* "START_TLS DROP_BACKEND ..." */
	bool closed;
	bool tls_pending;
};

void driver_init(struct driver *d, const struct session_policy *policy);

/* driver_client / driver_backend - bytes arrive; TRICKLE feeds one at a time.
 * Returns false when the driver's own input buffer would overflow (the edge
 * then stops reading: the test sees it as backpressure). */
bool driver_client(struct driver *d, const void *p, size_t n, bool trickle);
bool driver_backend(struct driver *d, const void *p, size_t n, bool trickle);

/* driver_pump - feed, drain and apply actions until nothing moves */
void driver_pump(struct driver *d);

/* driver_take - move the collected output out (for per-step comparison) */
void driver_take(struct driver *d, char *client_r, size_t *client_len_r, char *backend_r,
                 size_t *backend_len_r, char *actions_r, size_t actions_cap);

#endif
