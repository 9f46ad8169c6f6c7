/* metrics_shm.h - the workers' counters in memory shared with the supervisor
 *
 * Before the first fork the daemon maps one region: the listener names,
 * the retired sum, and one struct metrics_slot per worker slot (the
 * supervisor's child table). A worker counts into its own slot with plain
 * relaxed stores, no system call; when it exits the supervisor folds its
 * counters into the retired sum and clears the slot for the next worker,
 * so a total (retired + live slots) never goes backwards across reloads
 * and restarts. Without a supervisor the region is private and has one
 * slot. The workers read each other's open-connection gauges for
 * max_connections, so under a supervisor the region is shared with or
 * without metrics.
 */
#ifndef STARTTLSD_METRICS_SHM_H
#define STARTTLSD_METRICS_SHM_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "server.h"

/* The region (metrics_shm_setup). */
struct metrics_region {
	char listener_names[METRICS_MAX_LISTENERS][CONFIG_NAME_MAX]; /* the supervisor writes them */
	struct metrics_counters retired; /* exited workers', and the supervisor's own */
	size_t slots_used;               /* slots below this may hold counts */
	struct metrics_slot slots[];
};

/* The region, and this process's slot in it. */
extern struct metrics_region *metrics_region;
extern struct metrics_slot *metrics_mine;

/* metrics_shm_setup - map the region for N_SLOTS workers, shared with
 * children when SHARED; false with ERR filled when it cannot be had */
bool metrics_shm_setup(size_t n_slots, bool shared, char *err, size_t errlen);

/* metrics_shm_bind - give every listener of GEN its index among the names */
void metrics_shm_bind(struct generation *gen);

/* metrics_shm_claim - the supervisor, before it forks a worker for slot
 * INDEX: scrapes read that slot from now on */
void metrics_shm_claim(size_t index);

/* metrics_shm_use_slot - in a new worker: count into slot INDEX */
void metrics_shm_use_slot(size_t index);

/* metrics_shm_fold - slot INDEX's worker has exited: keep its counters */
void metrics_shm_fold(size_t index);

/* metrics_shm_open_connections - client connections open now in every
 * live worker, for max_connections: a sum over the slots in use */
uint64_t metrics_shm_open_connections(void);

/* metrics_count_refused - a limit refused a connection on L before the
 * session began (the limits count here; README "Monitoring") */
static inline void metrics_count_refused(const struct listener *l, enum metrics_refused_reason reason)
{
	metrics_add(&metrics_mine->counters.refused[l->metrics_index][reason], 1);
}

#endif
