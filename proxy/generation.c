/* generation.c - one loaded configuration (see generation.h) */
#include "generation.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE_MAX (1024 * 1024)

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

struct generation *generation_load(struct server *srv, const char *path, generation_warning_fn *warn,
                                   void *warn_ctx, char *err, size_t errlen)
{
	size_t len;
	char *text = read_file(path, &len, err, errlen);
	if (!text)
		return NULL;
	struct generation *gen = calloc(1, sizeof *gen);
	if (!gen) {
		snprintf(err, errlen, "%s:0: out of memory", path);
		free(text);
		return NULL;
	}
	gen->refs = 1;
	bool ok = config_parse(text, len, path, &gen->cfg, err, errlen);
	free(text);
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
