/* smtp_command.c - the SMTP command table and the one command-line grammar */
#include "smtp_command.h"

#include <string.h>
#include <strings.h>

/* The table: what each verb may do where. require_tls is a CMD_BEFORE_TLS
 * test, the post-handshake EHLO rule a CMD_BEFORE_EHLO test. */
static const struct {
	const char *name;
	enum smtp_verb verb;
	unsigned flags;
} command_table[] = {
	{ "EHLO", VERB_EHLO, CMD_BEFORE_TLS | CMD_BEFORE_EHLO | CMD_LAST },
	{ "HELO", VERB_HELO, CMD_BEFORE_TLS | CMD_BEFORE_EHLO | CMD_LAST },
	{ "MAIL", VERB_MAIL, 0 },
	{ "RCPT", VERB_RCPT, 0 },
	{ "DATA", VERB_DATA, CMD_LAST },
	{ "BDAT", VERB_BDAT, 0 },
	{ "RSET", VERB_RSET, CMD_BEFORE_TLS | CMD_BEFORE_EHLO },
	{ "NOOP", VERB_NOOP, CMD_BEFORE_TLS | CMD_BEFORE_EHLO },
	{ "QUIT", VERB_QUIT, CMD_BEFORE_TLS | CMD_BEFORE_EHLO | CMD_LAST },
	{ "AUTH", VERB_AUTH, CMD_LAST },
	{ "STARTTLS", VERB_STARTTLS, CMD_BEFORE_TLS | CMD_LAST },
	{ "XCLIENT", VERB_XCLIENT, CMD_PROXY_ONLY },
	{ "XFORWARD", VERB_XFORWARD, CMD_PROXY_ONLY },
};

/* is_verb_char - ALPHA, DIGIT or "-" */
static bool is_verb_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* is_control - a byte that some backend reads as a separator or a line
 * end: C0 controls (HT, VT, FF, CR, NUL, ...) and DEL */
static bool is_control(uint8_t c)
{
	return c < 0x20 || c == 0x7F;
}

bool smtp_command_parse(const uint8_t *line, size_t len, struct smtp_command *cmd_r)
{
	size_t verb_len = 0;
	while (verb_len < len && is_verb_char(line[verb_len]))
		verb_len++;
	if (verb_len == 0 || (verb_len < len && line[verb_len] != ' '))
		return false;
	if (smtp_line_has_control(line + verb_len, len - verb_len))
		return false;

	cmd_r->verb = VERB_OTHER;
	cmd_r->flags = 0;
	for (size_t i = 0; i < sizeof command_table / sizeof command_table[0]; i++) {
		const char *name = command_table[i].name;
		if (strlen(name) == verb_len && strncasecmp(name, (const char *)line, verb_len) == 0) {
			cmd_r->verb = command_table[i].verb;
			cmd_r->flags = command_table[i].flags;
			break;
		}
	}

	size_t start = verb_len;
	while (start < len && line[start] == ' ')
		start++;
	size_t end = len;
	while (end > start && line[end - 1] == ' ')
		end--;
	cmd_r->args = line + start;
	cmd_r->args_len = end - start;
	return true;
}

bool smtp_line_has_control(const uint8_t *line, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (is_control(line[i]))
			return true;
	return false;
}

bool smtp_command_is_auth(const uint8_t *line, size_t len)
{
	return len >= 5 && strncasecmp((const char *)line, "AUTH ", 5) == 0;
}

bool smtp_bdat_parse(const uint8_t *args, size_t len, uint64_t *size_r, bool *last_r)
{
	/* 18 digits cannot overflow uint64_t; no real chunk comes near. */
	enum { MAX_DIGITS = 18 };
	size_t i = 0;
	uint64_t size = 0;

	while (i < len && args[i] >= '0' && args[i] <= '9') {
		if (i == MAX_DIGITS)
			return false;
		size = size * 10 + (uint64_t)(args[i] - '0');
		i++;
	}
	if (i == 0)
		return false;

	size_t rest = i;
	while (rest < len && args[rest] == ' ')
		rest++;
	if (rest == len) {
		*last_r = false;
	} else if (rest > i && len - rest == 4 && strncasecmp((const char *)args + rest, "LAST", 4) == 0) {
		*last_r = true;
	} else {
		return false;
	}
	*size_r = size;
	return true;
}
