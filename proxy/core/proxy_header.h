/* proxy_header.h - the PROXY protocol header a load balancer puts before
 * a connection (haproxy's proxy-protocol.txt, versions 1 and 2)
 *
 * Pure: bytes in, addresses out. The receiver never guesses: with
 * accept_proxy = yes a connection must start with a complete, valid header
 * (section 2), or it is closed without a reply.
 *
 * Version 1: one line "PROXY TCP4|TCP6|UNKNOWN ...\r\n" of at most 107
 * bytes; single spaces, no leading zeros in ports, addresses of the family
 * named, CR LF only. UNKNOWN means: use the connection's own addresses.
 * Version 2: the 12-byte signature, version 2, command LOCAL (use the
 * connection's own addresses) or PROXY; TCP or UDP over IPv4 or IPv6 carry
 * addresses, AF_UNSPEC and AF_UNIX are taken as LOCAL. TLVs are skipped by
 * their length, except a CRC32C TLV, which must match (section 2.2.5).
 */
#ifndef STARTTLSD_PROXY_HEADER_H
#define STARTTLSD_PROXY_HEADER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header accepted: v1's 107 bytes, or v2's 16 plus its length
 * field. Load balancers' TLVs (AWS VPC endpoint ids, GCP PSC ids, unique
 * ids, certificates in PP2_TYPE_SSL) make v2 headers of several KiB, and
 * HAProxy accepts more than 4 KiB; the edge reads one into a client input
 * buffer of this size. A v2 length beyond this ends the connection. */
#define PROXY_HEADER_MAX 16384

/* The longest header proxy_header_write_v2() makes: addresses, an SNI name
 * of at most 255 bytes as PP2_TYPE_AUTHORITY and a PP2_TYPE_SSL of at most
 * 256 */
#define PROXY_HEADER_WRITE_MAX (16 + 36 + (3 + 255) + (3 + 256))

enum proxy_header_result { PROXY_HEADER_INCOMPLETE, PROXY_HEADER_DONE, PROXY_HEADER_INVALID };

struct proxy_header {
	bool local; /* LOCAL or UNKNOWN: the connection's own addresses count */
	struct sockaddr_storage source;
	struct sockaddr_storage destination;
	size_t length; /* bytes of the header, to consume */
};

/* proxy_header_parse - P[0..N) from the start of a connection */
enum proxy_header_result proxy_header_parse(const uint8_t *p, size_t n, struct proxy_header *h_r);

/* proxy_header_could_be - P[0..N) is the start of a v1 or v2 header: lets a
 * listener refuse a header from a peer that may not send one */
bool proxy_header_could_be(const uint8_t *p, size_t n);

/* TLS facts for a v2 header's PP2_TYPE_SSL TLV (section 2.2.5); NULL
 * members are left out */
struct proxy_tls_facts {
	const char *version; /* e.g. "TLS1.3" */
	const char *cipher;
	const char *sni;     /* sent as PP2_TYPE_AUTHORITY */
};

/* proxy_header_write_v1 - "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" into
 * BUF (CAP bytes); a v4-mapped IPv6 address is written as IPv4, and mixed
 * families as IPv6. Returns the length, 0 when the addresses are not IP. */
size_t proxy_header_write_v1(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                             uint8_t *buf, size_t cap);

/* proxy_header_write_v2 - the binary header, PROXY command over TCP, with
 * TLS facts when TLS is not NULL; the same address rules */
size_t proxy_header_write_v2(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                             const struct proxy_tls_facts *tls, uint8_t *buf, size_t cap);

#endif
