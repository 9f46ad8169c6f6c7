/* smtp_command.h - the SMTP command table and command-line parsing */
#ifndef STARTTLSD_SMTP_COMMAND_H
#define STARTTLSD_SMTP_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
	VERB_EHLO,
	VERB_HELO,
	VERB_MAIL,
	VERB_RCPT,
	VERB_DATA,
	VERB_BDAT,
	VERB_RSET,
	VERB_NOOP,
	VERB_QUIT,
	VERB_AUTH,
	VERB_STARTTLS,
	VERB_XCLIENT,
	VERB_XFORWARD,
	VERB_OTHER, /* VRFY, EXPN, HELP, ETRN, anything unknown: relayed as is */
};

/* Command flags */
#define CMD_BEFORE_TLS  0x01u /* allowed before TLS when require_tls = yes (RFC 3207 section 4) */
#define CMD_BEFORE_EHLO 0x02u /* allowed inside TLS before the new EHLO (RFC 3207 section 4.2) */
#define CMD_LAST        0x04u /* its reply decides how the next client bytes are read */
#define CMD_PROXY_ONLY  0x08u /* reserved for the proxy: refused, never relayed */

struct smtp_command {
	enum smtp_verb verb;
	unsigned flags;
	const uint8_t *args; /* after the verb and its blanks, trailing blanks cut */
	size_t args_len;
};

/* smtp_command_parse - classify LINE (LEN bytes, terminator removed) */
void smtp_command_parse(const uint8_t *line, size_t len, struct smtp_command *cmd_r);

/* smtp_bdat_parse - "BDAT" arguments: SIZE [LAST] (RFC 3030 section 2) */
bool smtp_bdat_parse(const uint8_t *args, size_t len, uint64_t *size_r, bool *last_r);

#endif
