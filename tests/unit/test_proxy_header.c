/* test_proxy_header.c - PROXY protocol v1 and v2: every malformed case of
 * the specification, each valid header also offered at every shorter
 * length (incomplete, never accepted early) and with SMTP bytes after it */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proxy_header.h"

static const uint8_t SIG[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* crc32c_table - an independent, table-driven CRC-32C for building headers */
static uint32_t crc32c_table(const uint8_t *p, size_t n)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
			table[i] = c;
		}
	uint32_t crc = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++)
		crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

/* v2 - build a v2 header: command, family/transport byte, address block, TLVs */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *addr, size_t addr_len,
                 const uint8_t *tlvs, size_t tlv_len)
{
	memcpy(out, SIG, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	size_t len = addr_len + tlv_len;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	if (addr_len > 0)
		memcpy(out + 16, addr, addr_len);
	if (tlv_len > 0)
		memcpy(out + 16 + addr_len, tlvs, tlv_len);
	return 16 + len;
}

static const uint8_t V4_ADDRS[12] = { 192, 0, 2, 7, 198, 51, 100, 1, 0xC3, 0x50, 0x00, 0x19 }; /* :50000 -> :25 */

static void check_v4_source(const struct proxy_header *h, const char *ctx)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)&h->source;
	char text[INET_ADDRSTRLEN] = "";
	CHECK(!h->local && in->sin_family == AF_INET, ctx);
	inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
	CHECK(strcmp(text, "192.0.2.7") == 0 && ntohs(in->sin_port) == 50000, ctx);
}

/* expect - whole, every prefix, and with trailing SMTP bytes */
static void expect(const uint8_t *p, size_t n, enum proxy_header_result want, const char *ctx)
{
	struct proxy_header h;
	CHECK(proxy_header_parse(p, n, &h) == want, ctx);
	if (want == PROXY_HEADER_DONE) {
		CHECK(h.length == n, ctx);
		for (size_t k = 1; k < n; k++)
			CHECK(proxy_header_parse(p, k, &h) == PROXY_HEADER_INCOMPLETE, ctx);
		uint8_t more[PROXY_HEADER_MAX + 64];
		memcpy(more, p, n);
		memcpy(more + n, "EHLO x\r\n", 8);
		CHECK(proxy_header_parse(more, n + 8, &h) == PROXY_HEADER_DONE && h.length == n, ctx);
	}
}

static void test_v1(void)
{
	static const struct {
		const char *line;
		enum proxy_header_result want;
	} cases[] = {
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\r\n", PROXY_HEADER_DONE },
		{ "PROXY TCP6 2001:db8::7 2001:db8::1 50000 25\r\n", PROXY_HEADER_DONE },
		{ "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		  PROXY_HEADER_DONE },
		{ "PROXY UNKNOWN\r\n", PROXY_HEADER_DONE },
		{ "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", PROXY_HEADER_DONE },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\n", PROXY_HEADER_INVALID },     /* LF only */
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\r\r\n", PROXY_HEADER_INVALID }, /* CR inside */
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 050000 25\r\n", PROXY_HEADER_INVALID },  /* leading zero */
		{ "PROXY TCP4 192.0.2.07 198.51.100.1 50000 25\r\n", PROXY_HEADER_INVALID },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n", PROXY_HEADER_INVALID },
		{ "PROXY TCP4 2001:db8::7 2001:db8::1 50000 25\r\n", PROXY_HEADER_INVALID }, /* family mismatch */
		{ "PROXY TCP6 192.0.2.7 198.51.100.1 50000 25\r\n", PROXY_HEADER_INVALID },
		{ "PROXY TCP4  192.0.2.7 198.51.100.1 50000 25\r\n", PROXY_HEADER_INVALID }, /* doubled space */
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 50000\r\n", PROXY_HEADER_INVALID },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 50000 25 9\r\n", PROXY_HEADER_INVALID },
		{ "PROXY UDP4 192.0.2.7 198.51.100.1 50000 25\r\n", PROXY_HEADER_INVALID },
		{ "PROXY\r\n", PROXY_HEADER_INVALID },
		{ "proxy TCP4 192.0.2.7 198.51.100.1 50000 25\r\n", PROXY_HEADER_INVALID },
		{ "EHLO client.example\r\n", PROXY_HEADER_INVALID }, /* never guessed */
		{ "\x16\x03\x01\x00\xa5", PROXY_HEADER_INVALID },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect((const uint8_t *)cases[i].line, strlen(cases[i].line), cases[i].want, cases[i].line);

	struct proxy_header h;
	const char *ok = "PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\r\n";
	CHECK(proxy_header_parse((const uint8_t *)ok, strlen(ok), &h) == PROXY_HEADER_DONE, "v1 address");
	check_v4_source(&h, "v1 source");

	/* 107 bytes and still no CR LF: the limit of section 2.1. */
	char longer[200];
	memset(longer, 'x', sizeof longer);
	memcpy(longer, "PROXY TCP6 ", 11);
	CHECK(proxy_header_parse((const uint8_t *)longer, 106, &h) == PROXY_HEADER_INCOMPLETE, "106 bytes");
	CHECK(proxy_header_parse((const uint8_t *)longer, 107, &h) == PROXY_HEADER_INVALID, "107 bytes");
}

static void test_v2(void)
{
	uint8_t hdr[PROXY_HEADER_MAX + 16], tlv[64];
	struct proxy_header h;
	size_t n;

	CHECK(crc32c_table((const uint8_t *)"123456789", 9) == 0xE3069283u, "CRC-32C test vector");

	n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, NULL, 0);
	expect(hdr, n, PROXY_HEADER_DONE, "v2 TCP4");
	proxy_header_parse(hdr, n, &h);
	check_v4_source(&h, "v2 source");

	uint8_t v6[36] = { 0x20, 0x01, 0x0d, 0xb8 };
	v6[15] = 7;
	v6[32] = 0xC3, v6[33] = 0x50, v6[35] = 25;
	n = v2(hdr, 0x21, 0x21, v6, sizeof v6, NULL, 0);
	expect(hdr, n, PROXY_HEADER_DONE, "v2 TCP6");
	proxy_header_parse(hdr, n, &h);
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&h.source;
	CHECK(!h.local && in6->sin6_family == AF_INET6 && in6->sin6_addr.s6_addr[15] == 7 &&
	              ntohs(in6->sin6_port) == 50000, "v2 TCP6 source");

	n = v2(hdr, 0x20, 0x00, NULL, 0, NULL, 0);
	expect(hdr, n, PROXY_HEADER_DONE, "v2 LOCAL");
	proxy_header_parse(hdr, n, &h);
	CHECK(h.local, "v2 LOCAL is local");

	n = v2(hdr, 0x20, 0x11, V4_ADDRS, sizeof V4_ADDRS, NULL, 0);
	proxy_header_parse(hdr, n, &h);
	CHECK(h.local, "v2 LOCAL with addresses is still local");

	uint8_t unix_addrs[216] = { '/' };
	n = v2(hdr, 0x21, 0x31, unix_addrs, sizeof unix_addrs, NULL, 0);
	expect(hdr, n, PROXY_HEADER_DONE, "v2 AF_UNIX");
	proxy_header_parse(hdr, n, &h);
	CHECK(h.local, "v2 AF_UNIX counts as local");

	/* TLVs skipped by length: an ALPN and an SSL TLV. */
	static const uint8_t tlvs[] = { 0x01, 0x00, 0x04, 's', 'm', 't', 'p', 0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0 };
	n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, tlvs, sizeof tlvs);
	expect(hdr, n, PROXY_HEADER_DONE, "v2 with TLVs");

	/* CRC32C: right, then wrong. */
	memcpy(tlv, (const uint8_t[]){ 0x03, 0x00, 0x04, 0, 0, 0, 0 }, 7);
	n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, tlv, 7);
	uint32_t crc = crc32c_table(hdr, n);
	hdr[n - 4] = (uint8_t)(crc >> 24), hdr[n - 3] = (uint8_t)(crc >> 16);
	hdr[n - 2] = (uint8_t)(crc >> 8), hdr[n - 1] = (uint8_t)crc;
	expect(hdr, n, PROXY_HEADER_DONE, "v2 CRC32C right");
	hdr[n - 1] ^= 1;
	expect(hdr, n, PROXY_HEADER_INVALID, "v2 CRC32C wrong");

	static const struct {
		uint8_t ver_cmd, fam;
		size_t addr_len;
		const char *what;
	} bad[] = {
		{ 0x11, 0x11, 12, "version 1 in a v2 header" },
		{ 0x31, 0x11, 12, "version 3" },
		{ 0x22, 0x11, 12, "command 2" },
		{ 0x21, 0x41, 12, "family 4" },
		{ 0x21, 0x13, 12, "transport 3" },
		{ 0x21, 0x11, 8, "IPv4 address block too short" },
		{ 0x21, 0x21, 12, "IPv6 address block too short" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint8_t addrs[36] = { 0 };
		n = v2(hdr, bad[i].ver_cmd, bad[i].fam, addrs, bad[i].addr_len, NULL, 0);
		expect(hdr, n, PROXY_HEADER_INVALID, bad[i].what);
	}

	/* A TLV whose length runs past the header. */
	static const uint8_t overrun[] = { 0x01, 0x00, 0x09, 'x' };
	n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, overrun, sizeof overrun);
	expect(hdr, n, PROXY_HEADER_INVALID, "TLV overrun");

	/* A length field beyond PROXY_HEADER_MAX is refused before waiting for it. */
	memcpy(hdr, SIG, 12);
	hdr[12] = 0x21, hdr[13] = 0x11, hdr[14] = 0xFF, hdr[15] = 0xFF;
	CHECK(proxy_header_parse(hdr, 16, &h) == PROXY_HEADER_INVALID, "huge length");

	/* The signature with one byte changed is not a header. */
	n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, NULL, 0);
	hdr[5] ^= 0x40;
	CHECK(proxy_header_parse(hdr, n, &h) == PROXY_HEADER_INVALID, "bad signature");

	CHECK(proxy_header_could_be(SIG, 3) && proxy_header_could_be((const uint8_t *)"PROX", 4) &&
	              !proxy_header_could_be((const uint8_t *)"EHLO", 4),
	      "could_be");
}

/* put_tlv - TYPE, a 16-bit length and LEN bytes of VALUE at OUT; the size */
static size_t put_tlv(uint8_t *out, uint8_t type, const void *value, size_t len)
{
	out[0] = type;
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)len;
	memcpy(out + 3, value, len);
	return 3 + len;
}

/* test_v2_large - a header of several KiB, as cloud load balancers send:
 * AWS (PP2_TYPE_AWS, a VPC endpoint id), GCP (a PSC connection id), a
 * unique id, a large vendor TLV and a CRC32C over all of it */
static void test_v2_large(void)
{
	static uint8_t hdr[PROXY_HEADER_MAX + 16], tlvs[PROXY_HEADER_MAX];
	static uint8_t big[2900];
	struct proxy_header h;
	size_t t = 0;
	t += put_tlv(tlvs + t, 0xEA, "\x01vpce-0123456789abcdef0", 23);
	t += put_tlv(tlvs + t, 0xE0, "\x00\x00\x00\x00\x12\x34\x56\x78", 8);
	memset(big, 'u', 128);
	t += put_tlv(tlvs + t, 0x05, big, 128); /* PP2_TYPE_UNIQUE_ID, its maximum */
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7);
	t += put_tlv(tlvs + t, 0xE1, big, sizeof big);
	size_t crc_at = t;
	t += put_tlv(tlvs + t, 0x03, "\0\0\0\0", 4);
	size_t n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, tlvs, t);
	uint32_t crc = crc32c_table(hdr, n);
	uint8_t *value = hdr + 16 + sizeof V4_ADDRS + crc_at + 3;
	value[0] = (uint8_t)(crc >> 24), value[1] = (uint8_t)(crc >> 16), value[2] = (uint8_t)(crc >> 8);
	value[3] = (uint8_t)crc;
	CHECK(n > 3000 && n < 3200, "a 3 KiB header");
	expect(hdr, n, PROXY_HEADER_DONE, "v2 with 3 KiB of TLVs"); /* whole, every prefix, then SMTP */
	proxy_header_parse(hdr, n, &h);
	check_v4_source(&h, "v2 with 3 KiB of TLVs");
	value[3] ^= 1;
	expect(hdr, n, PROXY_HEADER_INVALID, "v2 with 3 KiB of TLVs, CRC32C off by one bit");

	/* PROXY_HEADER_MAX exactly is taken; one byte more is refused
	 * from its fixed part alone, before the rest is waited for. */
	memset(tlvs, 0, sizeof tlvs);
	size_t fill = PROXY_HEADER_MAX - 16 - sizeof V4_ADDRS - 3;
	put_tlv(tlvs, 0xE1, tlvs + 3, fill);
	n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, tlvs, 3 + fill);
	CHECK(n == PROXY_HEADER_MAX && proxy_header_parse(hdr, n, &h) == PROXY_HEADER_DONE, "PROXY_HEADER_MAX");
	put_tlv(tlvs, 0xE1, tlvs + 3, fill + 1);
	n = v2(hdr, 0x21, 0x11, V4_ADDRS, sizeof V4_ADDRS, tlvs, 3 + fill + 1);
	CHECK(proxy_header_parse(hdr, 16, &h) == PROXY_HEADER_INVALID, "PROXY_HEADER_MAX + 1, fixed part");
	CHECK(proxy_header_parse(hdr, n, &h) == PROXY_HEADER_INVALID, "PROXY_HEADER_MAX + 1, whole");
}

/* sa - an IPv4 or IPv6 socket address from text */
static struct sockaddr_storage sa(const char *addr, unsigned port)
{
	struct sockaddr_storage out;
	memset(&out, 0, sizeof out);
	struct sockaddr_in *in = (struct sockaddr_in *)&out;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out;
	if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
	} else {
		inet_pton(AF_INET6, addr, &in6->sin6_addr);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
	}
	return out;
}

/* test_write - headers written for the backend read back as written */
static void test_write(void)
{
	static const struct {
		const char *src, *dst;
		const char *v1;
	} cases[] = {
		{ "192.0.2.7", "198.51.100.1", "PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\r\n" },
		{ "2001:db8::7", "2001:db8::1", "PROXY TCP6 2001:db8::7 2001:db8::1 50000 25\r\n" },
		{ "::ffff:192.0.2.7", "::ffff:198.51.100.1", "PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\r\n" },
		{ "192.0.2.7", "2001:db8::1", "PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 50000 25\r\n" },
	};
	uint8_t buf[PROXY_HEADER_MAX];
	struct proxy_header h;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sockaddr_storage src = sa(cases[i].src, 50000), dst = sa(cases[i].dst, 25);
		size_t n = proxy_header_write_v1(&src, &dst, buf, sizeof buf);
		CHECK_BYTES(buf, n, cases[i].v1, strlen(cases[i].v1), cases[i].src);
		CHECK(proxy_header_parse(buf, n, &h) == PROXY_HEADER_DONE && !h.local, cases[i].src);

		struct proxy_tls_facts tls = { "TLS1.3", "AES-256-GCM", "mx.example.org" };
		n = proxy_header_write_v2(&src, &dst, i % 2 ? &tls : NULL, buf, sizeof buf);
		CHECK(n > 16 && proxy_header_parse(buf, n, &h) == PROXY_HEADER_DONE && h.length == n, cases[i].src);
		uint8_t again[PROXY_HEADER_MAX];
		size_t m = proxy_header_write_v1(&h.source, &h.destination, again, sizeof again);
		CHECK_BYTES(again, m, cases[i].v1, strlen(cases[i].v1), "v2 carries the same addresses");
		if (i % 2)
			CHECK(memmem(buf, n, "\x02\x00\x0emx.example.org", 17) && memmem(buf, n, "TLS1.3", 6) &&
			              memmem(buf, n, "AES-256-GCM", 11),
			      "v2 TLS facts");
	}
	/* The longest SNI name and TLS facts fit PROXY_HEADER_WRITE_MAX. */
	char name[256], facts[123]; /* version and cipher: PP2_TYPE_SSL of 255 bytes */
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	memset(facts, 'f', sizeof facts - 1);
	facts[sizeof facts - 1] = '\0';
	struct proxy_tls_facts longest = { facts, facts, name };
	struct sockaddr_storage src6 = sa("2001:db8::7", 1), dst6 = sa("2001:db8::1", 2);
	uint8_t small[PROXY_HEADER_WRITE_MAX];
	size_t written = proxy_header_write_v2(&src6, &dst6, &longest, small, sizeof small);
	CHECK(written > 16 + 36 + 255 && written <= sizeof small, "longest header for the backend fits");
	CHECK(proxy_header_parse(small, written, &h) == PROXY_HEADER_DONE && h.length == written,
	      "longest header for the backend parses");

	struct sockaddr_storage unix_addr = { .ss_family = AF_UNIX }, v4 = sa("192.0.2.7", 1);
	CHECK(proxy_header_write_v1(&unix_addr, &v4, buf, sizeof buf) == 0, "not IP: nothing written");
}

void run_proxy_header_tests(void)
{
	test_v1();
	test_v2();
	test_v2_large();
	test_write();
}
