/* generation.c - one loaded configuration (see generation.h) */
#include "generation.h"

#include "dns.h"
#include "file_read.h"
#include "file_watch.h"
#include "listener.h"
#include "log.h"
#include "metrics_shm.h"
#include "tls_upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct generation *generation_load(struct server *srv, const char *path, generation_warning_fn *warn,
                                   void *warn_ctx, char *err, size_t errlen)
{
	struct file_blob text;
	char why[1200];
	if (!file_read(path, &text, why, sizeof why)) {
		snprintf(err, errlen, "%s:0: %s", path, why);
		return NULL;
	}
	struct generation *gen = calloc(1, sizeof *gen);
	if (!gen) {
		snprintf(err, errlen, "%s:0: out of memory", path);
		file_blob_wipe(&text);
		return NULL;
	}
	gen->refs = 1;
	gen->serial = 1;
	bool ok = config_parse(text.data, text.len, path, &gen->cfg, err, errlen);
	file_blob_wipe(&text);
	if (!ok) {
		generation_unref(gen);
		return NULL;
	}
	config_warnings(&gen->cfg, path, warn, warn_ctx);

	for (size_t i = 0; i < gen->cfg.n_listeners; i++) {
		struct listener *l = &gen->listeners[i];
		l->cfg = &gen->cfg.listeners[i];
		l->server = srv;
		l->gen = gen;
		gen->n_listeners++;
		bool tls_ok;
		if (l->cfg->direction == CONFIG_OUTBOUND)
			tls_ok = (l->upstream = tls_upstream_load(l->cfg, path, err, errlen)) != NULL;
		else
			tls_ok = (l->creds = tls_creds_load(l->cfg, path, warn, warn_ctx, err, errlen)) != NULL;
		if (tls_ok && l->cfg->dane)
			tls_ok = (l->dns_anchors = dns_anchors_load(l->cfg, path, err, errlen)) != NULL;
		if (!tls_ok || !backend_resolve(&l->cfg->backend, path, &l->backend, err, errlen)) {
			generation_unref(gen);
			return NULL;
		}
	}
	return gen;
}

void generation_ref(struct generation *gen)
{
	gen->refs++;
}

void generation_unref(struct generation *gen)
{
	if (--gen->refs > 0)
		return;
	for (size_t i = 0; i < gen->n_listeners; i++) {
		tls_creds_free(gen->listeners[i].creds);
		tls_upstream_free(gen->listeners[i].upstream);
		dns_free(gen->listeners[i].dns);
		free(gen->listeners[i].dns_anchors);
	}
	free(gen);
}

static void log_load_warning(void *ctx, const char *line)
{
	(void)ctx;
	log_warning("%s", line);
}

/* warn_key_changes - a listener whose keys changed breaks the DANE TLSA
 * records published for it until they are updated */
static void warn_key_changes(const struct generation *old, const struct generation *gen)
{
	for (size_t i = 0; i < gen->n_listeners; i++)
		for (size_t j = 0; j < old->n_listeners; j++)
			if (gen->listeners[i].creds && old->listeners[j].creds &&
			    strcmp(gen->listeners[i].cfg->name, old->listeners[j].cfg->name) == 0 &&
			    !tls_creds_same_keys(gen->listeners[i].creds, old->listeners[j].creds))
				log_warning("listener %s: its key changed; update any published DANE TLSA records "
				            "(starttlsd -T prints the new ones)",
				            gen->listeners[i].cfg->name);
}

bool generation_reload(struct server *srv)
{
	char err[2048];
	struct generation *old = srv->current;
	struct generation *gen = generation_load(srv, srv->config_path, log_load_warning, NULL, err, sizeof err);
	if (!gen || !listener_bind_all(gen, old, srv->config_path, err, sizeof err)) {
		log_error("reload refused, the configuration in force stays: %s", err);
		if (gen)
			generation_unref(gen);
		metrics_add(&metrics_region->retired.reloads[METRICS_RELOAD_FAILED], 1);
		return false;
	}
	if (strcmp(gen->cfg.user, old->cfg.user) != 0 || gen->cfg.workers != old->cfg.workers ||
	    gen->cfg.watch_files != old->cfg.watch_files)
		log_warning("user, workers and watch_files changes take effect at the next restart");
	if (strcmp(gen->cfg.metrics.host, old->cfg.metrics.host) != 0 ||
	    strcmp(gen->cfg.metrics.port, old->cfg.metrics.port) != 0)
		log_warning("metrics changes take effect at the next restart");
	warn_key_changes(old, gen);
	metrics_shm_bind(gen);
	metrics_add(&metrics_region->retired.reloads[METRICS_RELOAD_OK], 1);
	gen->serial = old->serial + 1;
	srv->current = gen;
	srv->files_fingerprint = file_watch_fingerprint(srv);
	listener_close_all(srv, old); /* only the sockets the new one did not take */
	generation_unref(old);
	log_setup(srv->log_to_stderr, (enum log_level)gen->cfg.log_level);
	return true;
}
