/* original_dst.h - where a redirected connection was going (netfilter's
 * SO_ORIGINAL_DST), for backend = original-destination */
#ifndef STARTTLSD_ORIGINAL_DST_H
#define STARTTLSD_ORIGINAL_DST_H

#include <stdbool.h>
#include <sys/socket.h>

enum original_dst_result {
	ORIGINAL_DST_OK,
	ORIGINAL_DST_NONE, /* no conntrack entry: the connection was not redirected */
	ORIGINAL_DST_LOOP, /* it was going to this very socket: not redirected either */
};

/* original_dst - the destination of accepted socket FD before the nat
 * redirect (IPv4: SO_ORIGINAL_DST, IPv6: IP6T_SO_ORIGINAL_DST), into DST */
enum original_dst_result original_dst(int fd, struct sockaddr_storage *dst, socklen_t *len_r);

#endif
