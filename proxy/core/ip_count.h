/* ip_count.h - open connections per client address, in a table of fixed size
 *
 * Pure: the counts behind max_per_ip. A key is a listener (its metrics
 * index, stable across reloads) and a client address: IPv4 addresses count
 * one by one, IPv6 ones per /64, the smallest network a site is given
 * (RFC 6177), inside which one host can take as many addresses as it likes.
 * An IPv4-mapped IPv6 address is the IPv4 address.
 *
 * Open addressing with linear probing and backward-shift deletion: no
 * allocation, no tombstones. The table holds at most IP_COUNT_MAX_KEYS keys
 * (3/4 full, so probe chains stay short); a new key beyond that is
 * refused, so its memory never grows with what peers do. Keys are hashed
 * with a secret seed so that a peer cannot aim its addresses at one chain.
 */
#ifndef STARTTLSD_IP_COUNT_H
#define STARTTLSD_IP_COUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IP_COUNT_SLOTS    16384 /* a power of 2 */
#define IP_COUNT_MAX_KEYS (IP_COUNT_SLOTS / 4 * 3)

struct ip_count_key {
	uint8_t addr[16]; /* IPv6, the /64 alone; IPv4 as ::ffff:a.b.c.d */
	uint32_t listener;
};

struct ip_count_table {
	uint64_t seed;
	size_t keys;
	struct ip_count_slot {
		struct ip_count_key key;
		uint32_t count; /* 0: a free slot */
	} slots[IP_COUNT_SLOTS];
};

enum ip_count_result { IP_COUNT_ADMITTED, IP_COUNT_OVER_LIMIT, IP_COUNT_TABLE_FULL };

/* ip_count_init - an empty table hashing with SEED (secret, random). T is
 * zeroed memory (calloc): only the slots that get used are ever written,
 * so untouched pages stay unmapped. */
void ip_count_init(struct ip_count_table *t, uint64_t seed);

/* ip_count_key - the key of ADDR (4 bytes when IPV6 is false, 16 when
 * true) on LISTENER */
void ip_count_key(bool ipv6, const uint8_t *addr, uint32_t listener, struct ip_count_key *key_r);

/* ip_count_acquire - one more connection for KEY if it has fewer than
 * LIMIT; nothing changes when it is refused */
enum ip_count_result ip_count_acquire(struct ip_count_table *t, const struct ip_count_key *key,
                                      unsigned limit);

/* ip_count_release - one connection fewer for KEY, which was acquired */
void ip_count_release(struct ip_count_table *t, const struct ip_count_key *key);

/* ip_count_get - KEY's connections */
unsigned ip_count_get(const struct ip_count_table *t, const struct ip_count_key *key);

#endif
