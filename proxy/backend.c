/* backend.c - where the plaintext server is, and connecting to it */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

bool backend_resolve(const struct config_backend *b, const char *filename, struct backend_addrs *out,
                     char *err, size_t errlen)
{
	out->n = 0;
	if (b->original_destination)
		return true; /* each connection's own (original_dst.h) */
	memset(out, 0, sizeof *out);
	if (b->is_unix) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&out->addr[0];
		if (strlen(b->path) >= sizeof sun->sun_path) {
			snprintf(err, errlen, "%s:%d: unix socket path too long", filename, b->line);
			return false;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, b->path);
		out->len[0] = sizeof *sun;
		out->n = 1;
		return true;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
	int r = getaddrinfo(b->host, b->port, &hints, &res);
	if (r != 0) {
		snprintf(err, errlen, "%s:%d: backend %s: %s", filename, b->line, b->host, gai_strerror(r));
		return false;
	}
	for (struct addrinfo *ai = res; ai && out->n < BACKEND_MAX_ADDRS; ai = ai->ai_next) {
		memcpy(&out->addr[out->n], ai->ai_addr, ai->ai_addrlen);
		out->len[out->n] = ai->ai_addrlen;
		out->n++;
	}
	freeaddrinfo(res);
	return true;
}

/* bind_foreign - bind FD to SOURCE, an address of another host's (the
 * client's), port chosen by the system; the routing that brings the
 * replies back is packaging/transparent-routing's */
static bool bind_foreign(int fd, const struct sockaddr_storage *source)
{
	int one = 1;
	struct sockaddr_storage from = *source;
	socklen_t len;
	if (from.ss_family == AF_INET) {
		((struct sockaddr_in *)&from)->sin_port = 0;
		len = sizeof(struct sockaddr_in);
		if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one) < 0)
			return false;
	} else {
		((struct sockaddr_in6 *)&from)->sin6_port = 0;
		len = sizeof(struct sockaddr_in6);
		if (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one) < 0)
			return false;
	}
	return bind(fd, (const struct sockaddr *)&from, len) == 0;
}

int backend_connect(const struct backend_addrs *a, size_t index, const struct sockaddr_storage *source,
                    size_t *index_r)
{
	for (size_t i = index; i < a->n; i++) {
		int family = a->addr[i].ss_family;
		if (source && source->ss_family != family)
			continue; /* an IPv4 client cannot reach an IPv6 backend from its own address */
		int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (family != AF_UNIX) {
			/* SMTP is a dialogue of short lines: never wait to fill a segment. */
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		}
		if (source && !bind_foreign(fd, source)) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (connect(fd, (const struct sockaddr *)&a->addr[i], a->len[i]) == 0 || errno == EINPROGRESS) {
			*index_r = i;
			return fd;
		}
		close(fd);
	}
	return -1;
}

int backend_connect_result(int fd)
{
	int error = 0;
	socklen_t len = sizeof error;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
		return errno;
	return error;
}
