/* file_watch.c - reload when a file the configuration names changes (see file_watch.h) */
#include "file_watch.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* mix - FNV-1a over the bytes of one value */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3u;
	return h;
}

/* mix_file - PATH as stat() sees it through its links; a missing file
 * counts as a state of its own */
static uint64_t mix_file(uint64_t h, const char *path)
{
	struct stat st;
	if (!path[0])
		return h;
	if (stat(path, &st) < 0)
		return mix(h, "missing", 7);
	uint64_t facts[] = { st.st_dev, st.st_ino, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
		             (uint64_t)st.st_mtim.tv_nsec };
	return mix(h, facts, sizeof facts);
}

uint64_t file_watch_fingerprint(const struct server *srv)
{
	const struct config *cfg = &srv->current->cfg;
	uint64_t h = mix_file(0xcbf29ce484222325u, srv->config_path);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		for (size_t j = 0; j < l->n_certs; j++) {
			h = mix_file(h, l->certs[j].chain);
			h = mix_file(h, l->certs[j].key);
			h = mix_file(h, l->certs[j].ocsp);
		}
		h = mix_file(h, l->ca);
		h = mix_file(h, l->upstream_cert.chain);
		h = mix_file(h, l->upstream_cert.key);
	}
	return h;
}

void file_watch_check(struct server *srv)
{
	uint64_t now = file_watch_fingerprint(srv);
	if (now == srv->files_fingerprint)
		return;
	/* Remembered at once: files that do not load are tried again only
	 * when they change again, not at every look. */
	srv->files_fingerprint = now;
	log_info("watch_files: a configured file changed; reloading");
	kill(getpid(), SIGHUP);
}
