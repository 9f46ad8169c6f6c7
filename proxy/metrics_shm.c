/* metrics_shm.c - the shared counters (see metrics_shm.h) */
#include "metrics_shm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

struct metrics_region *metrics_region;
struct metrics_slot *metrics_mine;

bool metrics_shm_setup(size_t n_slots, bool shared, char *err, size_t errlen)
{
	/* Pages never touched (slots of workers never started) cost nothing. */
	size_t size = sizeof *metrics_region + n_slots * sizeof(struct metrics_slot);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS,
	               -1, 0);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %zu bytes for the metrics: %s", size, strerror(errno));
		return false;
	}
	metrics_region = p;
	metrics_shm_claim(0); /* a daemon without a supervisor is its one worker */
	metrics_shm_use_slot(0);
	return true;
}

void metrics_shm_bind(struct generation *gen)
{
	for (size_t i = 0; i < gen->n_listeners; i++)
		gen->listeners[i].metrics_index =
		        metrics_listener_index(metrics_region->listener_names, gen->listeners[i].cfg->name);
}

void metrics_shm_claim(size_t index)
{
	if (index >= metrics_region->slots_used)
		metrics_region->slots_used = index + 1;
}

void metrics_shm_use_slot(size_t index)
{
	metrics_mine = &metrics_region->slots[index];
}

uint64_t metrics_shm_open_connections(void)
{
	uint64_t open = 0; /* each gauge modulo 2^64 (metrics.h), and so is the sum */
	size_t n = __atomic_load_n(&metrics_region->slots_used, __ATOMIC_RELAXED);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < METRICS_MAX_LISTENERS; j++)
			open += metrics_get(&metrics_region->slots[i].gauges.open[j]);
	return open;
}

void metrics_shm_fold(size_t index)
{
	struct metrics_slot *slot = &metrics_region->slots[index];
	metrics_fold(&metrics_region->retired, &slot->counters);
	memset(slot, 0, sizeof *slot);
}
