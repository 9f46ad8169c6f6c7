/* ehlo_filter.c - which backend EHLO capability lines a client may see */
#include "ehlo_filter.h"

#include <string.h>
#include <strings.h>

enum hide_when { HIDE_ALWAYS, HIDE_AUTH_BEFORE_TLS };

static const struct {
	const char *keyword;
	enum hide_when when;
} hidden_capabilities[] = {
	{ "STARTTLS", HIDE_ALWAYS },
	{ "XCLIENT", HIDE_ALWAYS },
	{ "XFORWARD", HIDE_ALWAYS },
	{ "AUTH", HIDE_AUTH_BEFORE_TLS },
	{ "REQUIRETLS", HIDE_ALWAYS },
};

bool ehlo_keyword_is(const uint8_t *text, size_t len, const char *keyword)
{
	size_t kw_len = 0;
	while (kw_len < len && text[kw_len] != ' ' && text[kw_len] != '\t' && text[kw_len] != '=')
		kw_len++;
	return kw_len == strlen(keyword) && strncasecmp((const char *)text, keyword, kw_len) == 0;
}

bool ehlo_keep_line(const uint8_t *text, size_t len, const struct ehlo_view *view)
{
	for (size_t i = 0; i < sizeof hidden_capabilities / sizeof hidden_capabilities[0]; i++) {
		if (!ehlo_keyword_is(text, len, hidden_capabilities[i].keyword))
			continue;
		switch (hidden_capabilities[i].when) {
		case HIDE_ALWAYS:
			return false;
		case HIDE_AUTH_BEFORE_TLS:
			return view->tls_active || view->show_auth_before_tls;
		}
	}
	return true;
}
