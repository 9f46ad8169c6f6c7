/* proxy_header.c - the PROXY protocol header, versions 1 and 2 (see the header) */
#include "proxy_header.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define V1_MAX 107 /* section 2.1: the longest v1 line, CR LF included */

static const uint8_t v2_signature[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
	                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

enum { V2_CMD_LOCAL = 0x0, V2_CMD_PROXY = 0x1 };
enum { V2_AF_UNSPEC = 0x0, V2_AF_INET = 0x1, V2_AF_INET6 = 0x2, V2_AF_UNIX = 0x3 };
enum { V2_TRANSPORT_UNSPEC = 0x0, V2_TRANSPORT_STREAM = 0x1, V2_TRANSPORT_DGRAM = 0x2 };
enum { PP2_TYPE_CRC32C = 0x03 };

/* ---- version 1 ---- */

/* v1_port - decimal 0..65535 without leading zeros */
static bool v1_port(const char *s, uint16_t *port_r)
{
	size_t len = strlen(s);
	unsigned long v = 0;
	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port_r = (uint16_t)v;
	return true;
}

/* v1_address - ADDR and PORT of FAMILY into SA */
static bool v1_address(int family, const char *addr, const char *port, struct sockaddr_storage *sa)
{
	uint16_t p;
	if (!v1_port(port, &p))
		return false;
	memset(sa, 0, sizeof *sa);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		in->sin_family = AF_INET;
		in->sin_port = htons(p);
		return inet_pton(AF_INET, addr, &in->sin_addr) == 1;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(p);
	return inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1;
}

/* parse_v1 - "PROXY TCP4 SRC DST SPORT DPORT\r\n" */
static enum proxy_header_result parse_v1(const uint8_t *p, size_t n, struct proxy_header *h)
{
	size_t limit = n < V1_MAX ? n : V1_MAX;
	const uint8_t *lf = memchr(p, '\n', limit);
	if (!lf)
		return n >= V1_MAX ? PROXY_HEADER_INVALID : PROXY_HEADER_INCOMPLETE;
	size_t len = (size_t)(lf - p);
	if (len == 0 || p[len - 1] != '\r')
		return PROXY_HEADER_INVALID; /* CR LF only, never a bare LF */

	char line[V1_MAX + 1];
	memcpy(line, p, len - 1);
	line[len - 1] = '\0';
	if (memchr(line, '\0', len - 1) || memchr(line, '\r', len - 1))
		return PROXY_HEADER_INVALID;
	h->length = len + 1;

	/* Split on single spaces: an empty field means a doubled space. */
	char *fields[7];
	size_t count = 0;
	for (char *f = line, *sp; count < 7; f = sp + 1) {
		fields[count++] = f;
		sp = strchr(f, ' ');
		if (!sp)
			break;
		*sp = '\0';
	}
	if (count < 2 || strcmp(fields[0], "PROXY") != 0)
		return PROXY_HEADER_INVALID;
	if (strcmp(fields[1], "UNKNOWN") == 0) {
		/* Section 2.1: the rest of the line is to be ignored. */
		h->local = true;
		return PROXY_HEADER_DONE;
	}
	int family;
	if (strcmp(fields[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(fields[1], "TCP6") == 0)
		family = AF_INET6;
	else
		return PROXY_HEADER_INVALID;
	/* Exactly four more fields, none empty (a doubled space). */
	if (count != 6)
		return PROXY_HEADER_INVALID;
	for (size_t i = 2; i < count; i++)
		if (fields[i][0] == '\0')
			return PROXY_HEADER_INVALID;
	h->local = false;
	if (!v1_address(family, fields[2], fields[4], &h->source) ||
	    !v1_address(family, fields[3], fields[5], &h->destination))
		return PROXY_HEADER_INVALID;
	return PROXY_HEADER_DONE;
}

/* ---- version 2 ---- */

/* crc32c - CRC-32C (Castagnoli), bitwise: headers are short */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* check_tlvs - walk the TLVs of a v2 header; a CRC32C TLV must match */
static bool check_tlvs(const uint8_t *header, size_t total, size_t tlv_start)
{
	size_t pos = tlv_start;
	while (pos < total) {
		if (total - pos < 3)
			return false;
		uint8_t type = header[pos];
		size_t len = (size_t)header[pos + 1] << 8 | header[pos + 2];
		if (len > total - pos - 3)
			return false;
		if (type == PP2_TYPE_CRC32C) {
			if (len != 4)
				return false;
			/* The checksum covers the header with its own value zeroed. */
			static const uint8_t zero[4];
			uint32_t crc = crc32c(0, header, pos + 3);
			crc = crc32c(crc, zero, 4);
			crc = crc32c(crc, header + pos + 7, total - pos - 7);
			uint32_t sent = (uint32_t)header[pos + 3] << 24 | (uint32_t)header[pos + 4] << 16 |
			                (uint32_t)header[pos + 5] << 8 | header[pos + 6];
			if (crc != sent)
				return false;
		}
		pos += 3 + len;
	}
	return true;
}

/* parse_v2 - the binary header */
static enum proxy_header_result parse_v2(const uint8_t *p, size_t n, struct proxy_header *h)
{
	if (n < 16)
		return PROXY_HEADER_INCOMPLETE;
	uint8_t version = p[12] >> 4, command = p[12] & 0x0F;
	uint8_t family = p[13] >> 4, transport = p[13] & 0x0F;
	size_t total = 16 + ((size_t)p[14] << 8 | p[15]);
	if (version != 2 || (command != V2_CMD_LOCAL && command != V2_CMD_PROXY))
		return PROXY_HEADER_INVALID;
	if (family > V2_AF_UNIX || transport > V2_TRANSPORT_DGRAM)
		return PROXY_HEADER_INVALID;
	if (total > PROXY_HEADER_MAX)
		return PROXY_HEADER_INVALID;
	if (n < total)
		return PROXY_HEADER_INCOMPLETE;
	h->length = total;

	size_t addr_len = family == V2_AF_INET ? 12 : family == V2_AF_INET6 ? 36 : family == V2_AF_UNIX ? 216 : 0;
	if (total - 16 < addr_len)
		return PROXY_HEADER_INVALID;
	if (!check_tlvs(p, total, 16 + addr_len))
		return PROXY_HEADER_INVALID;

	h->local = command == V2_CMD_LOCAL || family == V2_AF_UNSPEC || family == V2_AF_UNIX ||
	           transport == V2_TRANSPORT_UNSPEC;
	if (h->local)
		return PROXY_HEADER_DONE;
	const uint8_t *a = p + 16;
	memset(&h->source, 0, sizeof h->source);
	memset(&h->destination, 0, sizeof h->destination);
	if (family == V2_AF_INET) {
		struct sockaddr_in *src = (struct sockaddr_in *)&h->source;
		struct sockaddr_in *dst = (struct sockaddr_in *)&h->destination;
		src->sin_family = dst->sin_family = AF_INET;
		memcpy(&src->sin_addr, a, 4);
		memcpy(&dst->sin_addr, a + 4, 4);
		memcpy(&src->sin_port, a + 8, 2);
		memcpy(&dst->sin_port, a + 10, 2);
	} else {
		struct sockaddr_in6 *src = (struct sockaddr_in6 *)&h->source;
		struct sockaddr_in6 *dst = (struct sockaddr_in6 *)&h->destination;
		src->sin6_family = dst->sin6_family = AF_INET6;
		memcpy(&src->sin6_addr, a, 16);
		memcpy(&dst->sin6_addr, a + 16, 16);
		memcpy(&src->sin6_port, a + 32, 2);
		memcpy(&dst->sin6_port, a + 34, 2);
	}
	return PROXY_HEADER_DONE;
}

enum proxy_header_result proxy_header_parse(const uint8_t *p, size_t n, struct proxy_header *h_r)
{
	size_t sig = n < sizeof v2_signature ? n : sizeof v2_signature;
	if (memcmp(p, v2_signature, sig) == 0)
		return n < sizeof v2_signature ? PROXY_HEADER_INCOMPLETE : parse_v2(p, n, h_r);
	size_t pre = n < 6 ? n : 6;
	if (memcmp(p, "PROXY ", pre) == 0)
		return n < 6 ? PROXY_HEADER_INCOMPLETE : parse_v1(p, n, h_r);
	return PROXY_HEADER_INVALID;
}

bool proxy_header_could_be(const uint8_t *p, size_t n)
{
	size_t sig = n < sizeof v2_signature ? n : sizeof v2_signature;
	size_t pre = n < 6 ? n : 6;
	return n > 0 && (memcmp(p, v2_signature, sig) == 0 || memcmp(p, "PROXY ", pre) == 0);
}

/* ---- writing, for client_addr = proxy-v1 or proxy-v2 ---- */

enum { PP2_TYPE_AUTHORITY = 0x02, PP2_TYPE_SSL = 0x20, PP2_SUBTYPE_SSL_VERSION = 0x21,
       PP2_SUBTYPE_SSL_CIPHER = 0x23, PP2_CLIENT_SSL = 0x01 };

/* ip_pair - SRC and DST as one family: v4-mapped IPv6 becomes IPv4, and
 * if the families still differ IPv4 becomes v4-mapped IPv6 */
static bool ip_pair(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                    struct sockaddr_storage out[2])
{
	const struct sockaddr_storage *in[2] = { src, dst };
	for (int i = 0; i < 2; i++) {
		out[i] = *in[i];
		if (out[i].ss_family == AF_INET6) {
			struct sockaddr_in6 a6 = *(const struct sockaddr_in6 *)in[i];
			if (IN6_IS_ADDR_V4MAPPED(&a6.sin6_addr)) {
				struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = a6.sin6_port };
				memcpy(&a4.sin_addr, a6.sin6_addr.s6_addr + 12, 4);
				memset(&out[i], 0, sizeof out[i]);
				memcpy(&out[i], &a4, sizeof a4);
			}
		} else if (out[i].ss_family != AF_INET) {
			return false;
		}
	}
	if (out[0].ss_family == out[1].ss_family)
		return true;
	for (int i = 0; i < 2; i++) {
		if (out[i].ss_family != AF_INET)
			continue;
		struct sockaddr_in a4 = *(const struct sockaddr_in *)&out[i];
		struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = a4.sin_port };
		a6.sin6_addr.s6_addr[10] = a6.sin6_addr.s6_addr[11] = 0xFF;
		memcpy(a6.sin6_addr.s6_addr + 12, &a4.sin_addr, 4);
		memset(&out[i], 0, sizeof out[i]);
		memcpy(&out[i], &a6, sizeof a6);
	}
	return true;
}

size_t proxy_header_write_v1(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                             uint8_t *buf, size_t cap)
{
	struct sockaddr_storage a[2];
	char text[2][INET6_ADDRSTRLEN];
	unsigned port[2];
	if (!ip_pair(src, dst, a))
		return 0;
	bool v4 = a[0].ss_family == AF_INET;
	for (int i = 0; i < 2; i++) {
		const void *addr = v4 ? (const void *)&((const struct sockaddr_in *)&a[i])->sin_addr
		                      : (const void *)&((const struct sockaddr_in6 *)&a[i])->sin6_addr;
		inet_ntop(a[i].ss_family, addr, text[i], sizeof text[i]);
		port[i] = ntohs(v4 ? ((const struct sockaddr_in *)&a[i])->sin_port
		                   : ((const struct sockaddr_in6 *)&a[i])->sin6_port);
	}
	int n = snprintf((char *)buf, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", text[0], text[1],
	                 port[0], port[1]);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* put_tlv - one TLV at BUF+*POS; false when it does not fit */
static bool put_tlv(uint8_t *buf, size_t cap, size_t *pos, uint8_t type, const void *value, size_t len)
{
	if (len > 0xFFFF || cap - *pos < 3 + len)
		return false;
	buf[*pos] = type;
	buf[*pos + 1] = (uint8_t)(len >> 8);
	buf[*pos + 2] = (uint8_t)len;
	memcpy(buf + *pos + 3, value, len);
	*pos += 3 + len;
	return true;
}

size_t proxy_header_write_v2(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                             const struct proxy_tls_facts *tls, uint8_t *buf, size_t cap)
{
	struct sockaddr_storage a[2];
	if (!ip_pair(src, dst, a) || cap < 16 + 36)
		return 0;
	bool v4 = a[0].ss_family == AF_INET;
	memcpy(buf, v2_signature, sizeof v2_signature);
	buf[12] = 0x20 | V2_CMD_PROXY;
	buf[13] = (uint8_t)((v4 ? V2_AF_INET : V2_AF_INET6) << 4 | V2_TRANSPORT_STREAM);
	size_t pos = 16;
	if (v4) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a[0], *d4 = (const struct sockaddr_in *)&a[1];
		memcpy(buf + pos, &s4->sin_addr, 4);
		memcpy(buf + pos + 4, &d4->sin_addr, 4);
		memcpy(buf + pos + 8, &s4->sin_port, 2);
		memcpy(buf + pos + 10, &d4->sin_port, 2);
		pos += 12;
	} else {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a[0], *d6 = (const struct sockaddr_in6 *)&a[1];
		memcpy(buf + pos, &s6->sin6_addr, 16);
		memcpy(buf + pos + 16, &d6->sin6_addr, 16);
		memcpy(buf + pos + 32, &s6->sin6_port, 2);
		memcpy(buf + pos + 34, &d6->sin6_port, 2);
		pos += 36;
	}
	if (tls) {
		if (tls->sni && !put_tlv(buf, cap, &pos, PP2_TYPE_AUTHORITY, tls->sni, strlen(tls->sni)))
			return 0;
		/* PP2_TYPE_SSL: client flags, verify result (0: no client
		 * certificate failed), then sub-TLVs. */
		uint8_t ssl[256];
		size_t ssl_len = 5;
		ssl[0] = PP2_CLIENT_SSL;
		memset(ssl + 1, 0, 4);
		if ((tls->version && !put_tlv(ssl, sizeof ssl, &ssl_len, PP2_SUBTYPE_SSL_VERSION, tls->version,
		                              strlen(tls->version))) ||
		    (tls->cipher && !put_tlv(ssl, sizeof ssl, &ssl_len, PP2_SUBTYPE_SSL_CIPHER, tls->cipher,
		                             strlen(tls->cipher))) ||
		    !put_tlv(buf, cap, &pos, PP2_TYPE_SSL, ssl, ssl_len))
			return 0;
	}
	size_t len = pos - 16;
	buf[14] = (uint8_t)(len >> 8);
	buf[15] = (uint8_t)len;
	return pos;
}
