/* data_scanner.h - finds the end of a DATA message and SMTP smuggling
 *
 * The end-of-DATA rule (RFC 5321 section 4.1.1.4), which must agree with
 * what the backend will see:
 *
 *   The message ends at the first CR LF "." CR LF. The body starts at the
 *   beginning of a line, so a body that opens with "." CR LF is empty.
 *
 * SMTP smuggling (CVE-2023-51764 class, THREATS.md S41): a lenient backend
 * also takes a "." line bounded by a bare LF or a bare CR as the end, and
 * then runs what follows as commands that the proxy never saw. So, in strict
 * mode, a "." that stands between two line breaks where either break is not
 * CR LF ("\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\rX",
 * ...) is reported as DATA_SMUGGLING before any byte of the pattern's "."
 * is settled. Bare CR and bare LF elsewhere are message content and pass.
 *
 * Settling: scanning returns how many of the offered bytes are settled.
 * A "." at the start of a line (and a CR after it) is held back, unsettled,
 * until the next byte says what it is; the caller keeps unsettled bytes and
 * offers them again with more input. So nothing that might turn out to be a
 * smuggled terminator is ever passed on.
 */
#ifndef STARTTLSD_DATA_SCANNER_H
#define STARTTLSD_DATA_SCANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum data_scan_result { DATA_MORE, DATA_END, DATA_SMUGGLING };

enum data_scan_state {
	SCAN_BOL,        /* after CR LF, or at the start of the body */
	SCAN_TEXT,       /* inside a line */
	SCAN_CR,         /* after a CR whose follower is unknown */
	SCAN_BARE_LF,    /* after an LF not preceded by CR */
	SCAN_DOT_BOL,    /* held: "." after CR LF */
	SCAN_DOT_BOL_CR, /* held: "." CR after CR LF */
	SCAN_DOT_BARE,   /* held: "." after a bare CR or bare LF */
};

struct data_scanner {
	enum data_scan_state state;
	bool strict; /* report smuggling; false: only find the real end */
};

/* data_scanner_init - a scanner at the start of a message body */
void data_scanner_init(struct data_scanner *sc, bool strict);

/* data_scan - scan P[0..N); returns the settled byte count. With DATA_END
 * the count ends just after the terminating LF; with DATA_SMUGGLING it ends
 * before the pattern's "." (the scanner is then spent). */
size_t data_scan(struct data_scanner *sc, const uint8_t *p, size_t n,
                 enum data_scan_result *result_r);

#endif
