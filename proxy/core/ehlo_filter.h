/* ehlo_filter.h - which backend EHLO capability lines a client may see
 *
 * INTERFACE.md: STARTTLS is the proxy's to offer (RFC 3207), so the
 * backend's own is always dropped; XCLIENT and XFORWARD are for the proxy
 * alone; AUTH (and the old "AUTH=" form) is hidden before TLS unless
 * auth_before_tls = yes (RFC 4954 section 4). REQUIRETLS is never shown,
 * before or after TLS: a server that accepts it must relay the message only
 * over TLS, with REQUIRETLS, on every later hop (RFC 8689 sections 4.1 and
 * 4.2.1), and the proxy's own next hop, to the backend, is plaintext.
 */
#ifndef STARTTLSD_EHLO_FILTER_H
#define STARTTLSD_EHLO_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ehlo_view {
	bool tls_active;
	bool show_auth_before_tls;
};

/* ehlo_keep_line - whether capability TEXT (after "250-") is shown */
bool ehlo_keep_line(const uint8_t *text, size_t len, const struct ehlo_view *view);

/* ehlo_keyword_is - TEXT's keyword (up to a blank or "=") is KEYWORD, any case */
bool ehlo_keyword_is(const uint8_t *text, size_t len, const char *keyword);

#endif
