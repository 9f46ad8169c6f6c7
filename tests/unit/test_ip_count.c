/* test_ip_count.c - connections per client address: limits, IPv6 per /64,
 * a full table, and long random runs against a plain array as the model */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "ip_count.h"

static struct ip_count_table table;

static struct ip_count_key v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint32_t listener)
{
	const uint8_t addr[4] = {a, b, c, d};
	struct ip_count_key k;
	ip_count_key(false, addr, listener, &k);
	return k;
}

static struct ip_count_key v6(const char *hex32, uint32_t listener)
{
	uint8_t addr[16];
	for (size_t i = 0; i < 16; i++)
		sscanf(hex32 + 2 * i, "%2hhx", &addr[i]);
	struct ip_count_key k;
	ip_count_key(true, addr, listener, &k);
	return k;
}

/* test_limit - admitted up to the limit, refused beyond, admitted again after a release */
static void test_limit(void)
{
	memset(&table, 0, sizeof table);
	ip_count_init(&table, 1);
	struct ip_count_key a = v4(127, 0, 0, 2, 0), b = v4(127, 0, 0, 3, 0), other = v4(127, 0, 0, 2, 1);
	for (int i = 0; i < 3; i++)
		CHECK(ip_count_acquire(&table, &a, 3) == IP_COUNT_ADMITTED, "up to the limit");
	CHECK(ip_count_acquire(&table, &a, 3) == IP_COUNT_OVER_LIMIT && ip_count_get(&table, &a) == 3,
	      "beyond it");
	CHECK(ip_count_acquire(&table, &b, 3) == IP_COUNT_ADMITTED, "another address is counted apart");
	CHECK(ip_count_acquire(&table, &other, 3) == IP_COUNT_ADMITTED, "another listener is counted apart");
	ip_count_release(&table, &a);
	CHECK(ip_count_get(&table, &a) == 2 && ip_count_acquire(&table, &a, 3) == IP_COUNT_ADMITTED,
	      "released");
	CHECK(ip_count_acquire(&table, &b, 0) == IP_COUNT_OVER_LIMIT, "a limit of 0 admits nothing");
	for (int i = 0; i < 3; i++)
		ip_count_release(&table, &a);
	ip_count_release(&table, &b);
	ip_count_release(&table, &other);
	CHECK(table.keys == 0 && ip_count_get(&table, &a) == 0, "empty again");
}

/* test_keys - IPv6 counts per /64; an IPv4-mapped address is the IPv4 one */
static void test_keys(void)
{
	struct ip_count_key a = v6("20010db8000000010000000000000001", 0);
	struct ip_count_key b = v6("20010db800000001ffffffffffffffff", 0);
	struct ip_count_key c = v6("20010db8000000020000000000000001", 0);
	CHECK(memcmp(&a, &b, sizeof a) == 0, "one /64, one key");
	CHECK(memcmp(&a, &c, sizeof a) != 0, "the next /64, another key");
	struct ip_count_key mapped = v6("00000000000000000000ffffc0000207", 0), plain = v4(192, 0, 2, 7, 0);
	CHECK(memcmp(&mapped, &plain, sizeof mapped) == 0, "::ffff:192.0.2.7 is 192.0.2.7");
	struct ip_count_key near = v4(192, 0, 2, 8, 0);
	CHECK(memcmp(&near, &plain, sizeof near) != 0, "IPv4 counts per address");
}

/* test_full - a new key beyond IP_COUNT_MAX_KEYS is refused, known ones go on */
static void test_full(void)
{
	memset(&table, 0, sizeof table);
	ip_count_init(&table, 2);
	for (uint32_t i = 0; i < IP_COUNT_MAX_KEYS; i++) {
		struct ip_count_key k = v4(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 0);
		if (ip_count_acquire(&table, &k, 1) != IP_COUNT_ADMITTED) {
			CHECK(false, "room up to IP_COUNT_MAX_KEYS");
			return;
		}
	}
	struct ip_count_key extra = v4(11, 0, 0, 0, 0), known = v4(10, 0, 0, 5, 0);
	CHECK(ip_count_acquire(&table, &extra, 5) == IP_COUNT_TABLE_FULL, "a new key in a full table");
	CHECK(ip_count_acquire(&table, &known, 2) == IP_COUNT_ADMITTED, "a known key in a full table");
	ip_count_release(&table, &known);
	ip_count_release(&table, &known);
	CHECK(ip_count_acquire(&table, &extra, 5) == IP_COUNT_ADMITTED, "room again after a key left");
}

/* test_model - random acquires and releases over few home slots (seed 0,
 * addresses that share their high bits) against counts kept in an array:
 * backward-shift deletion must never lose or move a key out of reach */
static void test_model(void)
{
	enum { KEYS = 3000, STEPS = 200000 };
	static unsigned model[KEYS];
	memset(model, 0, sizeof model);
	memset(&table, 0, sizeof table);
	ip_count_init(&table, 0);
	uint64_t rng = 88172645463325252u;
	bool ok = true;
	for (int step = 0; step < STEPS && ok; step++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		unsigned n = (unsigned)(rng % KEYS);
		struct ip_count_key k = v4(172, 16, (uint8_t)(n >> 8), (uint8_t)n, n % 3);
		if ((rng >> 32) % 2 && model[n] > 0) {
			ip_count_release(&table, &k);
			model[n]--;
		} else {
			enum ip_count_result r = ip_count_acquire(&table, &k, 4);
			ok = r == (model[n] < 4 ? IP_COUNT_ADMITTED : IP_COUNT_OVER_LIMIT);
			model[n] += r == IP_COUNT_ADMITTED;
		}
	}
	CHECK(ok, "every acquire answered as the model says");
	size_t keys = 0;
	for (unsigned n = 0; n < KEYS; n++) {
		struct ip_count_key k = v4(172, 16, (uint8_t)(n >> 8), (uint8_t)n, n % 3);
		ok &= ip_count_get(&table, &k) == model[n];
		keys += model[n] > 0;
	}
	CHECK(ok && table.keys == keys, "every count as the model's");
}

void run_ip_count_tests(void)
{
	test_limit();
	test_keys();
	test_full();
	test_model();
}
