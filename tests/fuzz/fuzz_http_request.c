/* fuzz_http_request.c - libFuzzer harness for the metrics listener's
 * request parser
 *
 * Whatever the input: a verdict other than INCOMPLETE is final (more bytes
 * never change it), INCOMPLETE is only given below HTTP_REQUEST_MAX bytes,
 * and the metrics or health page is only served to a GET. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "http_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum http_verdict v = http_request_check(data, size);
	if (v == HTTP_INCOMPLETE) {
		assert(size < HTTP_REQUEST_MAX);
		return 0;
	}
	assert(http_status_line(v)[0] != '5');
	if (v == HTTP_METRICS || v == HTTP_HEALTHZ)
		assert(size >= 4 && memcmp(data, "GET ", 4) == 0);
	for (size_t k = 1; k < size; k++) {
		enum http_verdict shorter = http_request_check(data, k);
		assert(shorter == HTTP_INCOMPLETE || shorter == v);
	}
	return 0;
}
