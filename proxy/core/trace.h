/* trace.h - the Received trace line the proxy adds with trace_header = yes
 *
 * RFC 5321 section 4.4: "Received: from HELO ([ADDR]) by HOST (starttlsd)
 * with PROTOCOL" and the date; PROTOCOL is ESMTP, ESMTPS or ESMTPSA (RFC
 * 3848), SMTP after HELO; inside TLS a "tls" clause names the cipher suite
 * (RFC 8314 section 4.3). The client's HELO name is the client's: anything
 * but letters, digits and ".-_:[]" in it becomes "?", so it can neither end
 * the header nor fake another clause.
 */
#ifndef STARTTLSD_TRACE_H
#define STARTTLSD_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#define TRACE_LINE_MAX 1024

struct trace_facts {
	const char *helo;        /* the client's EHLO or HELO argument, or "" */
	bool esmtp;              /* EHLO rather than HELO */
	const char *client_addr; /* "192.0.2.7" or "IPV6:2001:db8::7" */
	const char *by;          /* the proxy's host name */
	const char *tls_suite;   /* NULL without TLS */
	bool authenticated;
	const char *date;        /* RFC 5322 date-time */
};

/* trace_received - the header field, CR LF ended, into BUF; its length, or 0
 * if CAP is too small */
size_t trace_received(const struct trace_facts *f, char *buf, size_t cap);

#endif
