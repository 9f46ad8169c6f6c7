/* original_dst.c - where a redirected connection was going (see
 * original_dst.h) */
#include "original_dst.h"

#include <netinet/in.h>
#include <string.h>

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

/* same_endpoint - A and B are the same address and port */
static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
	return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

enum original_dst_result original_dst(int fd, struct sockaddr_storage *dst, socklen_t *len_r)
{
	struct sockaddr_storage local;
	socklen_t local_len = sizeof local;
	if (getsockname(fd, (struct sockaddr *)&local, &local_len) < 0)
		return ORIGINAL_DST_NONE;
	memset(dst, 0, sizeof *dst);
	socklen_t len = sizeof *dst;
	int r = local.ss_family == AF_INET6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, dst, &len)
	                                    : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, dst, &len);
	if (r < 0)
		return ORIGINAL_DST_NONE;
	*len_r = len;
	/* Without a redirect conntrack still knows the connection, and its
	 * original destination is the listener: connecting there would
	 * come back here. */
	return same_endpoint(dst, &local) ? ORIGINAL_DST_LOOP : ORIGINAL_DST_OK;
}
