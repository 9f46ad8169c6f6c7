/*
 * starttlsd-healthcheck - the container image's HEALTHCHECK: GET /healthz
 *
 *   starttlsd-healthcheck [ADDR:PORT]
 *
 * Asks starttlsd's metrics listener (the `metrics` key) for /healthz and exits
 * 0 when it answers 200, 1 otherwise (503 with its reason, no answer within
 * 5 seconds, refused), printing the status line or the error. ADDR:PORT
 * defaults to $STARTTLSD_METRICS, then 127.0.0.1:9925; ADDR is an IPv4 or
 * IPv6 literal ([::1]:9925). The runtime image has no shell and no curl, so
 * this is the one extra binary it carries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum { TIMEOUT_SECONDS = 5 };

/* parse_addr - ADDR:PORT (IPv4, or IPv6 in brackets) into *sa_r and *len_r */
static int parse_addr(const char *text, struct sockaddr_storage *sa_r, socklen_t *len_r)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
		return -1;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';

	memset(sa_r, 0, sizeof(*sa_r));
	size_t hlen = strlen(host);
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa_r;
		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
		return 0;
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)sa_r;
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*len_r = sizeof(*sin);
	return 0;
}

int main(int argc, char **argv)
{
	const char *target = argc > 1 ? argv[1] : getenv("STARTTLSD_METRICS");
	if (target == NULL || *target == '\0')
		target = "127.0.0.1:9925";

	struct sockaddr_storage sa;
	socklen_t salen;
	if (argc > 2 || parse_addr(target, &sa, &salen) != 0) {
		fprintf(stderr, "usage: starttlsd-healthcheck [ADDR:PORT] (not '%s')\n", target);
		return 2;
	}

	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "starttlsd-healthcheck: socket: %s\n", strerror(errno));
		return 1;
	}
	/* The metrics listener ends an exchange after 5 seconds itself. */
	struct timeval timeout = {.tv_sec = TIMEOUT_SECONDS};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
		fprintf(stderr, "starttlsd-healthcheck: %s: %s\n", target, strerror(errno));
		return 1;
	}

	static const char request[] = "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n";
	if (send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(request) - 1)) {
		fprintf(stderr, "starttlsd-healthcheck: %s: send: %s\n", target, strerror(errno));
		return 1;
	}

	/* The whole answer is small: the status line and a one-line body. */
	char answer[4096];
	size_t used = 0;
	for (;;) {
		ssize_t n = recv(fd, answer + used, sizeof(answer) - 1 - used, 0);
		if (n < 0) {
			fprintf(stderr, "starttlsd-healthcheck: %s: %s\n", target, strerror(errno));
			return 1;
		}
		if (n == 0 || (used += (size_t)n) == sizeof(answer) - 1)
			break;
	}
	close(fd);
	answer[used] = '\0';

	const char *body = strstr(answer, "\r\n\r\n");
	answer[strcspn(answer, "\r\n")] = '\0';
	printf("%s: %s%s%s", target, answer, body ? " " : "\n", body ? body + 4 : "");
	return strncmp(answer, "HTTP/1.1 200 ", 13) == 0 || strncmp(answer, "HTTP/1.0 200 ", 13) == 0 ? 0 : 1;
}
