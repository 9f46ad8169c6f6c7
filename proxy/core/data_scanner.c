/* data_scanner.c - end of DATA and smuggling detection (rule in the header) */
#include "data_scanner.h"

#include <string.h>

void data_scanner_init(struct data_scanner *sc, bool strict)
{
	sc->state = SCAN_BOL;
	sc->strict = strict;
}

/* is_held - states whose last bytes are not yet settled */
static bool is_held(enum data_scan_state st)
{
	return st == SCAN_DOT_BOL || st == SCAN_DOT_BOL_CR || st == SCAN_DOT_BARE;
}

/* step_text - the next state from a state where no "." is held */
static enum data_scan_state step_text(enum data_scan_state st, uint8_t c)
{
	if (c == '\r')
		return SCAN_CR;
	if (c == '\n')
		return st == SCAN_CR ? SCAN_BOL : SCAN_BARE_LF;
	if (c == '.') {
		if (st == SCAN_BOL)
			return SCAN_DOT_BOL;
		if (st == SCAN_CR || st == SCAN_BARE_LF)
			return SCAN_DOT_BARE;
	}
	return SCAN_TEXT;
}

/* next_break - the first CR or LF in P[I..N), or N; most message bytes
 * are text, and memchr passes over them many at a time */
static size_t next_break(const uint8_t *p, size_t i, size_t n)
{
	const uint8_t *lf = memchr(p + i, '\n', n - i);
	size_t end = lf ? (size_t)(lf - p) : n;
	const uint8_t *cr = memchr(p + i, '\r', end - i);
	return cr ? (size_t)(cr - p) : end;
}

size_t data_scan(struct data_scanner *sc, const uint8_t *p, size_t n,
                 enum data_scan_result *result_r)
{
	enum data_scan_state st = sc->state;
	enum data_scan_state settled_state = st;
	size_t settled = 0;

	/* Held bytes are never part of P's settled prefix on entry: the caller
	 * offers them again, so the scanner restarts from the state before them. */
	for (size_t i = 0; i < n; i++) {
		if (st == SCAN_TEXT) {
			/* Inside a line nothing but a line break matters. */
			i = next_break(p, i, n);
			settled = i;
			settled_state = SCAN_TEXT;
			if (i == n)
				break;
		}
		uint8_t c = p[i];
		bool line_break = c == '\r' || c == '\n';

		switch (st) {
		case SCAN_DOT_BOL:
			if (c == '\r')
				st = SCAN_DOT_BOL_CR;
			else if (c == '\n')
				goto smuggling; /* CR LF "." LF */
			else
				st = SCAN_TEXT; /* "..", ".x": an ordinary line */
			break;
		case SCAN_DOT_BOL_CR:
			if (c == '\n') {
				sc->state = SCAN_BOL;
				*result_r = DATA_END;
				return i + 1;
			}
			goto smuggling; /* CR LF "." CR, the CR bare */
		case SCAN_DOT_BARE:
			if (line_break)
				goto smuggling; /* bare break "." break */
			st = SCAN_TEXT;
			break;
		case SCAN_BOL:
		case SCAN_TEXT:
		case SCAN_CR:
		case SCAN_BARE_LF:
			st = step_text(st, c);
			break;
		}
		if (!is_held(st)) {
			settled = i + 1;
			settled_state = st;
		}
		continue;

	smuggling:
		if (sc->strict) {
			sc->state = settled_state;
			*result_r = DATA_SMUGGLING;
			return settled;
		}
		/* Discarding: only CR LF "." CR LF ends the message; the byte
		 * that broke the pattern starts over as text. */
		st = step_text(SCAN_TEXT, c);
		if (!is_held(st)) {
			settled = i + 1;
			settled_state = st;
		}
	}
	sc->state = settled_state;
	*result_r = DATA_MORE;
	return settled;
}
