/* http_request.h - the one HTTP request the metrics listener understands
 *
 * Pure: bytes from a scraper in, a verdict out. The exporter (exporter.c)
 * reads a request head into a buffer of HTTP_REQUEST_MAX bytes and asks
 * http_request_check() after every read; it never reads a body, answers
 * once and closes (HTTP/1.1 "Connection: close").
 *
 * The request line (RFC 9112 section 3) must be METHOD SP TARGET SP
 * HTTP/1.0 or HTTP/1.1, the head must end with an empty line (CRLF, or LF
 * alone: section 2.2), and TARGET must be in origin form; a query is
 * ignored. Only GET of /metrics and /healthz is served.
 */
#ifndef STARTTLSD_HTTP_REQUEST_H
#define STARTTLSD_HTTP_REQUEST_H

#include <stddef.h>
#include <stdint.h>

/* Request head limit: the request line and every header field. */
#define HTTP_REQUEST_MAX 8192

enum http_verdict {
	HTTP_INCOMPLETE,        /* read on */
	HTTP_METRICS,           /* GET /metrics: 200 */
	HTTP_HEALTHZ,           /* GET /healthz: 200 or 503 */
	HTTP_BAD_REQUEST,       /* 400 */
	HTTP_NOT_FOUND,         /* 404 */
	HTTP_METHOD_NOT_ALLOWED, /* 405 */
	HTTP_HEAD_TOO_LARGE,    /* 431: no end of the head within HTTP_REQUEST_MAX */
};

/* http_request_check - what to answer to the N bytes read so far */
enum http_verdict http_request_check(const uint8_t *p, size_t n);

/* http_status_line - "404 Not Found" for VERDICT (not HTTP_INCOMPLETE) */
const char *http_status_line(enum http_verdict verdict);

#endif
