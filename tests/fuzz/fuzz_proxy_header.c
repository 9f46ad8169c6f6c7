/* fuzz_proxy_header.c - libFuzzer harness for the PROXY protocol parser
 *
 * Whatever the input: a DONE header has a length within the input and the
 * limits, never shorter than the smallest header; any prefix of a DONE
 * header is INCOMPLETE, never DONE (nothing is accepted early); a DONE
 * non-local header carries IPv4 or IPv6 addresses. */
#include <assert.h>
#include <stdint.h>

#include "proxy_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h;
	enum proxy_header_result r = proxy_header_parse(data, size, &h);
	if (r != PROXY_HEADER_DONE)
		return 0;
	assert(h.length >= 15 && h.length <= size && h.length <= PROXY_HEADER_MAX);
	if (!h.local)
		assert((h.source.ss_family == AF_INET || h.source.ss_family == AF_INET6) &&
		       h.source.ss_family == h.destination.ss_family);
	struct proxy_header shorter;
	assert(proxy_header_parse(data, h.length - 1, &shorter) == PROXY_HEADER_INCOMPLETE);
	return 0;
}
