/* smtp_command.h - the SMTP command table and the one command-line grammar
 *
 * The proxy checks commands so that the backend never executes one it did
 * not check; that holds only if the backend reads every relayed line as the
 * same verb. Real backends are lenient: Postfix's tokenizer skips leading
 * whitespace and splits words on any whitespace, Exim and Sendmail do much
 * the same. So the proxy accepts only lines that every such reader splits
 * the way it does, and refuses the rest with 500 5.5.2:
 *
 *   command-line = verb [ SP arguments ]        (RFC 5321 section 4.1.1)
 *   verb         = 1*( ALPHA / DIGIT / "-" )    starting the line
 *   arguments    = *( %x20-7E / %x80-FF )       SP, printable ASCII, UTF-8
 *
 * No leading whitespace, no HT, VT, FF, CR, NUL or any other control
 * character anywhere, and the verb ends at SP or at the end of the line.
 * The line itself ends at LF (a CR before it is the usual CR LF). A line
 * that passes is relayed as received (BDAT is rebuilt from its parsed
 * size, see session.c), so what the backend parses is what the proxy
 * parsed.
 */
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
	const uint8_t *args; /* after the verb's SP, leading and trailing SPs cut */
	size_t args_len;
};

/* smtp_command_parse - LINE (LEN bytes, terminator removed) under the
 * grammar above; false when it does not follow it */
bool smtp_command_parse(const uint8_t *line, size_t len, struct smtp_command *cmd_r);

/* smtp_line_has_control - LINE holds a byte the grammar refuses anywhere
 * (a C0 control or DEL): a backend might end or split the line there */
bool smtp_line_has_control(const uint8_t *line, size_t len);

/* smtp_command_is_auth - the line starts with the AUTH verb (it may run to
 * SESSION_AUTH_LINE_MAX octets: RFC 4954 section 4) */
bool smtp_command_is_auth(const uint8_t *line, size_t len);

/* smtp_bdat_parse - "BDAT" arguments: SIZE [SP LAST] (RFC 3030 section 2) */
bool smtp_bdat_parse(const uint8_t *args, size_t len, uint64_t *size_r, bool *last_r);

#endif
