/* http_request.c - the metrics listener's request parser (see http_request.h) */
#include "http_request.h"

#include <stdbool.h>
#include <string.h>

/* head_end - bytes up to and including the empty line that ends the head, or 0 */
static size_t head_end(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < n && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* is_tchar - a token character (RFC 9110 section 5.6.2) */
static bool is_tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* word_is - the LEN bytes at P are exactly WORD */
static bool word_is(const uint8_t *p, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(p, word, len) == 0;
}

enum http_verdict http_request_check(const uint8_t *p, size_t n)
{
	size_t end = head_end(p, n);
	if (end == 0)
		return n >= HTTP_REQUEST_MAX ? HTTP_HEAD_TOO_LARGE : HTTP_INCOMPLETE;
	if (end > HTTP_REQUEST_MAX)
		return HTTP_HEAD_TOO_LARGE;
	const uint8_t *nl = memchr(p, '\n', end);
	size_t line_len = (size_t)(nl - p);
	if (line_len > 0 && p[line_len - 1] == '\r')
		line_len--;

	size_t method_len = 0;
	while (method_len < line_len && is_tchar(p[method_len]))
		method_len++;
	if (method_len == 0 || method_len == line_len || p[method_len] != ' ')
		return HTTP_BAD_REQUEST;
	const uint8_t *target = p + method_len + 1;
	const uint8_t *sp = memchr(target, ' ', line_len - method_len - 1);
	if (!sp || target[0] != '/')
		return HTTP_BAD_REQUEST;
	size_t target_len = (size_t)(sp - target);
	const uint8_t *version = sp + 1;
	size_t version_len = line_len - (size_t)(version - p);
	if (!word_is(version, version_len, "HTTP/1.1") && !word_is(version, version_len, "HTTP/1.0"))
		return HTTP_BAD_REQUEST;
	for (size_t i = 0; i < target_len; i++)
		if (target[i] <= ' ' || target[i] >= 0x7f)
			return HTTP_BAD_REQUEST;

	const uint8_t *query = memchr(target, '?', target_len);
	size_t path_len = query ? (size_t)(query - target) : target_len;
	enum http_verdict found = word_is(target, path_len, "/metrics")   ? HTTP_METRICS
	                          : word_is(target, path_len, "/healthz") ? HTTP_HEALTHZ
	                                                                  : HTTP_NOT_FOUND;
	if (found != HTTP_NOT_FOUND && !word_is(p, method_len, "GET"))
		return HTTP_METHOD_NOT_ALLOWED;
	return found;
}

const char *http_status_line(enum http_verdict verdict)
{
	switch (verdict) {
	case HTTP_METRICS:
	case HTTP_HEALTHZ:
		return "200 OK";
	case HTTP_BAD_REQUEST:
		return "400 Bad Request";
	case HTTP_NOT_FOUND:
		return "404 Not Found";
	case HTTP_METHOD_NOT_ALLOWED:
		return "405 Method Not Allowed";
	case HTTP_HEAD_TOO_LARGE:
		return "431 Request Header Fields Too Large";
	case HTTP_INCOMPLETE:
		break;
	}
	return "500 Internal Server Error";
}
