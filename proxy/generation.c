/* generation.c - one loaded configuration (see generation.h) */
#include "generation.h"

#include "file_read.h"

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
		l->creds = tls_creds_load(l->cfg, path, warn, warn_ctx, err, errlen);
		if (!l->creds || !backend_resolve(&l->cfg->backend, path, &l->backend, err, errlen)) {
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
	for (size_t i = 0; i < gen->n_listeners; i++)
		tls_creds_free(gen->listeners[i].creds);
	free(gen);
}
