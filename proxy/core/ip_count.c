/* ip_count.c - open connections per client address (see ip_count.h) */
#include "ip_count.h"

#include <string.h>

#include "panic.h"

#define MASK (IP_COUNT_SLOTS - 1)
_Static_assert((IP_COUNT_SLOTS & MASK) == 0, "IP_COUNT_SLOTS is a power of 2");

/* mix - splitmix64's finaliser: every input bit moves every output bit */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9u;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

/* home - the slot where KEY's probe starts */
static size_t home(const struct ip_count_table *t, const struct ip_count_key *key)
{
	uint64_t high, low;
	memcpy(&high, key->addr, 8);
	memcpy(&low, key->addr + 8, 8);
	return (size_t)(mix(mix(t->seed ^ key->listener ^ high) ^ low) & MASK);
}

static bool same(const struct ip_count_key *a, const struct ip_count_key *b)
{
	return a->listener == b->listener && memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* find - KEY's slot, or the free slot that ends its probe */
static size_t find(const struct ip_count_table *t, const struct ip_count_key *key)
{
	size_t i = home(t, key);
	/* At most 3/4 full: a free slot always ends the probe. */
	while (t->slots[i].count > 0 && !same(&t->slots[i].key, key))
		i = (i + 1) & MASK;
	return i;
}

void ip_count_init(struct ip_count_table *t, uint64_t seed)
{
	t->seed = seed;
	t->keys = 0;
}

void ip_count_key(bool ipv6, const uint8_t *addr, uint32_t listener, struct ip_count_key *key_r)
{
	static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(key_r, 0, sizeof *key_r);
	key_r->listener = listener;
	if (!ipv6 || memcmp(addr, v4_mapped, sizeof v4_mapped) == 0) {
		memcpy(key_r->addr, v4_mapped, sizeof v4_mapped);
		memcpy(key_r->addr + 12, ipv6 ? addr + 12 : addr, 4);
	} else {
		memcpy(key_r->addr, addr, 8); /* the /64 */
	}
}

enum ip_count_result ip_count_acquire(struct ip_count_table *t, const struct ip_count_key *key,
                                      unsigned limit)
{
	size_t i = find(t, key);
	struct ip_count_slot *s = &t->slots[i];
	if (s->count >= limit)
		return IP_COUNT_OVER_LIMIT;
	if (s->count == 0) {
		if (t->keys == IP_COUNT_MAX_KEYS)
			return IP_COUNT_TABLE_FULL;
		s->key = *key;
		t->keys++;
	}
	s->count++;
	return IP_COUNT_ADMITTED;
}

void ip_count_release(struct ip_count_table *t, const struct ip_count_key *key)
{
	size_t i = find(t, key);
	PANIC_UNLESS(t->slots[i].count > 0); /* released only what was acquired */
	if (--t->slots[i].count > 0)
		return;
	t->keys--;
	/* Backward-shift deletion: pull later entries of the chain into the
	 * gap unless their probe starts after it, so no lookup stops short. */
	for (size_t j = i;;) {
		j = (j + 1) & MASK;
		if (t->slots[j].count == 0)
			break;
		size_t h = home(t, &t->slots[j].key);
		bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
		if (stays)
			continue;
		t->slots[i] = t->slots[j];
		t->slots[j].count = 0;
		i = j;
	}
}

unsigned ip_count_get(const struct ip_count_table *t, const struct ip_count_key *key)
{
	return t->slots[find(t, key)].count;
}
