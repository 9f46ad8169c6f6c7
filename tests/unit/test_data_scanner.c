/* test_data_scanner.c - end of DATA and smuggling, at every split */
#include <stdio.h>
#include <string.h>

#include "data_scanner.h"
#include "harness.h"

static const struct {
	const char *body;
	enum data_scan_result result;
	size_t settled; /* bytes before the end (DATA_END: including it) or the pattern */
} cases[] = {
	{ ".\r\n", DATA_END, 3 },
	{ "a\r\n.\r\n", DATA_END, 6 },
	{ "a\r\n.\r\nMAIL", DATA_END, 6 },
	{ "..\r\n.\r\n", DATA_END, 7 },
	{ "a\r\n..\r\n\r\n.\r\n", DATA_END, 12 },
	{ "a\r\r\n.\r\n", DATA_END, 7 },
	{ "a\nb\rc\r\n.\r\n", DATA_END, 10 },
	{ "a\r\n.b\r\n.\r\n", DATA_END, 10 },
	{ "a\r\n.\n", DATA_SMUGGLING, 3 },
	{ "a\n.\n", DATA_SMUGGLING, 2 },
	{ "a\n.\r\n", DATA_SMUGGLING, 2 },
	{ "a\r.\r", DATA_SMUGGLING, 2 },
	{ "a\r.\r\n", DATA_SMUGGLING, 2 },
	{ "a\r.\n", DATA_SMUGGLING, 2 },
	{ "a\r\n.\rx", DATA_SMUGGLING, 3 },
	{ "a\r\n.\r.\r\n", DATA_SMUGGLING, 3 },
	{ ".\n", DATA_SMUGGLING, 0 },
	{ "a\n.x\n.\r\n", DATA_SMUGGLING, 5 },
	{ "no end\r\n", DATA_MORE, 8 },
	{ "held\r\n.", DATA_MORE, 6 },
	{ "held\r\n.\r", DATA_MORE, 6 },
};

/* scan_split - scan BODY in two parts cut at SPLIT, offering unsettled bytes again */
static enum data_scan_result scan_split(const char *body, size_t split, bool strict, size_t *settled_r)
{
	struct data_scanner sc;
	enum data_scan_result r;
	size_t n = strlen(body), done = 0;
	data_scanner_init(&sc, strict);

	done = data_scan(&sc, (const uint8_t *)body, split, &r);
	if (r != DATA_MORE) {
		*settled_r = done;
		return r;
	}
	done += data_scan(&sc, (const uint8_t *)body + done, n - done, &r);
	*settled_r = done;
	return r;
}

void run_data_scanner_tests(void)
{
	char ctx[128];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = strlen(cases[i].body);
		for (size_t split = 0; split <= n; split++) {
			size_t settled;
			enum data_scan_result r = scan_split(cases[i].body, split, true, &settled);
			snprintf(ctx, sizeof ctx, "case %zu split at %zu", i, split);
			CHECK(r == cases[i].result, ctx);
			CHECK(settled == cases[i].settled, ctx);
		}
	}

	/* Discarding after smuggling: only CR LF . CR LF ends the message. */
	const char *tail = "\n.\nMAIL FROM:<e@x>\r\n.\r.\r\nRCPT\r\n.\r\nQUIT\r\n";
	size_t want = strlen(tail) - strlen("QUIT\r\n");
	for (size_t split = 0; split <= strlen(tail); split++) {
		size_t settled;
		enum data_scan_result r = scan_split(tail, split, false, &settled);
		snprintf(ctx, sizeof ctx, "discard split at %zu", split);
		CHECK(r == DATA_END && settled == want, ctx);
	}
}
