/* smtp_reply.h - parsing one SMTP reply line (RFC 5321 section 4.2) */
#ifndef STARTTLSD_SMTP_REPLY_H
#define STARTTLSD_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct smtp_reply_line {
	unsigned code; /* 200..599 */
	bool last;     /* "ddd " or "ddd": the final line of the reply */
	size_t text;   /* offset of the text after the separator */
};

/* smtp_reply_parse - LINE (LEN bytes, terminator removed) as a reply line;
 * false when it is not one */
bool smtp_reply_parse(const uint8_t *line, size_t len, struct smtp_reply_line *r);

#endif
