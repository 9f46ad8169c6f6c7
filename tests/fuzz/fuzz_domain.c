/* fuzz_domain.c - libFuzzer harness: the RCPT domain and DNS wire name
 * parsers (domain_policy.h)
 *
 * Byte 0 chooses the parser; the rest is its input. Checked: a domain found
 * is 1 to 253 octets of lower-case letters, digits, "-" and "." with no
 * empty label, and it occurs in the input (case aside); a wire name uses no
 * more bytes than it was given and, rebuilt from its text, gives the same
 * wire length.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "domain_policy.h"

static void check_domain_text(const char *name, bool allow_empty, bool allow_underscore)
{
	size_t len = strlen(name);
	assert(len <= 253 && (allow_empty || len > 0));
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		assert((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		       (allow_underscore && c == '_'));
		if (c == '.')
			assert(i > 0 && i + 1 < len && name[i + 1] != '.');
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char name[DOMAIN_NAME_MAX];
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if (data[0] & 1) {
		if (!rcpt_domain(p, n, name))
			return 0;
		check_domain_text(name, false, false);
		size_t len = strlen(name);
		bool found = false;
		for (size_t i = 0; !found && i + len <= n; i++)
			found = strncasecmp((const char *)p + i, name, len) == 0;
		assert(found);
	} else {
		size_t used;
		if (!dns_wire_name(p, n, name, &used))
			return 0;
		assert(used >= 1 && used <= n);
		check_domain_text(name, true, true);
		size_t len = strlen(name);
		assert(used == (len ? len + 2 : 1));
	}
	return 0;
}
