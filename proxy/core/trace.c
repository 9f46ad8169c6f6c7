/* trace.c - the Received trace line (see trace.h) */
#include "trace.h"

#include <stdio.h>
#include <string.h>

#define HELO_SHOWN_MAX 255

/* safe_helo - the client's HELO name with every risky byte replaced */
static void safe_helo(const char *helo, char *out, size_t cap)
{
	size_t n = 0;
	for (; helo[n] && n < cap - 1 && n < HELO_SHOWN_MAX; n++) {
		char c = helo[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		          strchr(".-_:[]", c);
		out[n] = ok ? c : '?';
	}
	out[n] = '\0';
	if (n == 0)
		snprintf(out, cap, "unknown");
}

size_t trace_received(const struct trace_facts *f, char *buf, size_t cap)
{
	char helo[HELO_SHOWN_MAX + 1], addr[80];
	safe_helo(f->helo, helo, sizeof helo);
	if (strncmp(f->client_addr, "IPV6:", 5) == 0)
		snprintf(addr, sizeof addr, "IPv6:%s", f->client_addr + 5);
	else
		snprintf(addr, sizeof addr, "%s", f->client_addr);

	const char *protocol = !f->esmtp                          ? "SMTP"
	                       : f->tls_suite && f->authenticated ? "ESMTPSA"
	                       : f->tls_suite                     ? "ESMTPS"
	                       : f->authenticated                 ? "ESMTPA"
	                                                          : "ESMTP";
	char tls[128] = "";
	if (f->tls_suite)
		snprintf(tls, sizeof tls, "\r\n\ttls %s", f->tls_suite);
	int n = snprintf(buf, cap, "Received: from %s ([%s])\r\n\tby %s (starttlsd) with %s%s;\r\n\t%s\r\n", helo,
	                 addr, f->by, protocol, tls, f->date);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
