/* generation.h - one loaded configuration: its listeners, credentials and
 * backend addresses
 *
 * SIGHUP builds a whole new generation beside the one in force and swaps it
 * in only once all of it has loaded (hitch's two-phase commit). Every
 * connection holds a reference to the generation it was accepted under, so
 * established sessions keep their configuration and credentials until they
 * end; a generation is freed when its last reference goes.
 */
#ifndef STARTTLSD_GENERATION_H
#define STARTTLSD_GENERATION_H

#include <stdbool.h>
#include <stddef.h>

#include "server.h"

/* generation_warning_fn - receives "FILE:LINE: warning: ..." */
typedef void generation_warning_fn(void *ctx, const char *line);

/* generation_load - read PATH: configuration, certificates, keys and OCSP
 * responses, backend addresses; no socket is touched. NULL with
 * "FILE:LINE: message" in ERR. */
struct generation *generation_load(struct server *srv, const char *path, generation_warning_fn *warn,
                                   void *warn_ctx, char *err, size_t errlen);

/* generation_reload - SIGHUP: load a whole new generation beside the one in
 * force, give it its sockets, and make it current only if all of it
 * loaded; otherwise log why and keep the old one */
bool generation_reload(struct server *srv);

void generation_ref(struct generation *gen);

/* generation_unref - drop a reference; the last one frees it all */
void generation_unref(struct generation *gen);

#endif
