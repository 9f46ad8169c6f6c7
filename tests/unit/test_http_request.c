/* test_http_request.c - the metrics listener's request parser: every
 * verdict, each complete request also offered at every shorter length
 * (incomplete, never answered early), and a head that overfills the limit */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "http_request.h"

static const struct {
	const char *request;
	enum http_verdict want;
} cases[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_METRICS },
	{ "GET /metrics HTTP/1.0\r\n\r\n", HTTP_METRICS },
	{ "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", HTTP_METRICS },
	{ "GET /healthz HTTP/1.1\r\nAccept: */*\r\n\r\n", HTTP_HEALTHZ },
	{ "GET /healthz HTTP/1.1\n\n", HTTP_HEALTHZ },
	{ "GET / HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND },
	{ "GET /metricsx HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND },
	{ "GET /metrics/ HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n", HTTP_METHOD_NOT_ALLOWED },
	{ "HEAD /healthz HTTP/1.1\r\n\r\n", HTTP_METHOD_NOT_ALLOWED },
	{ "get /metrics HTTP/1.1\r\n\r\n", HTTP_METHOD_NOT_ALLOWED },
	{ "DELETE /nothing HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND },
	{ "GET  /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST },
	{ "GET metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST },
	{ "GET http://a/metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST },
	{ "GET /metrics HTTP/2.0\r\n\r\n", HTTP_BAD_REQUEST },
	{ "GET /metrics\r\n\r\n", HTTP_BAD_REQUEST },
	{ "GET /met\x01rics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST },
	{ "\r\n\r\n", HTTP_BAD_REQUEST },
	{ " GET /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST },
	{ "GET /metrics HTTP/1.1 \r\n\r\n", HTTP_BAD_REQUEST },
};

static void test_cases(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const uint8_t *p = (const uint8_t *)cases[i].request;
		size_t n = strlen(cases[i].request);
		CHECK(http_request_check(p, n) == cases[i].want, cases[i].request);
		/* Nothing is decided before the empty line has arrived. */
		for (size_t k = 0; k + 1 < n; k++)
			if (http_request_check(p, k) != HTTP_INCOMPLETE)
				CHECK(!"a prefix is not incomplete", cases[i].request);
	}
}

static void test_too_large(void)
{
	static uint8_t head[HTTP_REQUEST_MAX + 16];
	const char *start = "GET /metrics HTTP/1.1\r\n";
	memset(head, 'a', sizeof head);
	memcpy(head, start, strlen(start));
	CHECK(http_request_check(head, HTTP_REQUEST_MAX - 1) == HTTP_INCOMPLETE, "one byte short of the limit");
	CHECK(http_request_check(head, HTTP_REQUEST_MAX) == HTTP_HEAD_TOO_LARGE, "full without an end");
	memcpy(head + HTTP_REQUEST_MAX + 4, "\r\n\r\n", 4);
	CHECK(http_request_check(head, sizeof head) == HTTP_HEAD_TOO_LARGE, "an end past the limit");
	memcpy(head + HTTP_REQUEST_MAX - 4, "\r\n\r\n", 4);
	CHECK(http_request_check(head, HTTP_REQUEST_MAX) == HTTP_METRICS, "an end right at the limit");
}

static void test_status_lines(void)
{
	CHECK(strcmp(http_status_line(HTTP_HEAD_TOO_LARGE), "431 Request Header Fields Too Large") == 0, NULL);
	CHECK(strcmp(http_status_line(HTTP_METHOD_NOT_ALLOWED), "405 Method Not Allowed") == 0, NULL);
	CHECK(strcmp(http_status_line(HTTP_NOT_FOUND), "404 Not Found") == 0, NULL);
	CHECK(strcmp(http_status_line(HTTP_METRICS), "200 OK") == 0, NULL);
}

void run_http_request_tests(void)
{
	test_cases();
	test_too_large();
	test_status_lines();
}
