/* fuzz_config.c - libFuzzer harness for the configuration parser
 *
 * Any input either parses into a configuration that keeps the parser's
 * promises (every listener complete, counts in bounds), or fails with a
 * message that starts with the file name and a line number. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

static void ignore_warning(void *ctx, const char *line)
{
	(void)ctx;
	assert(strncmp(line, "f.conf:", 7) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg;
	char err[512];
	if (!config_parse((const char *)data, size, "f.conf", &cfg, err, sizeof err)) {
		assert(strncmp(err, "f.conf:", 7) == 0 && err[7] >= '0' && err[7] <= '9');
		return 0;
	}
	assert(cfg.n_listeners >= 1 && cfg.n_listeners <= CONFIG_MAX_LISTENERS);
	for (size_t i = 0; i < cfg.n_listeners; i++) {
		const struct config_listener *l = &cfg.listeners[i];
		assert(l->n_listen >= 1 && l->n_listen <= CONFIG_MAX_LISTEN);
		/* An outbound listener has no certificate of its own to serve,
		 * a TCP upstream, and no key meant for the other direction. */
		if (l->direction == CONFIG_OUTBOUND)
			assert(l->n_certs == 0 && !l->backend.is_unix && !l->inbound_key);
		else
			assert(l->n_certs >= 1 && l->n_certs <= CONFIG_MAX_CERTS && !l->outbound_key);
		assert(l->backend.line > 0 && l->name[0] != '\0');
		assert(l->idle_timeout > 0 && l->connect_timeout > 0 && l->handshake_timeout > 0);
	}
	config_warnings(&cfg, "f.conf", ignore_warning, NULL);
	return 0;
}
