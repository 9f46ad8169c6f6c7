/* smtp_reply.c - parsing one SMTP reply line */
#include "smtp_reply.h"

bool smtp_reply_parse(const uint8_t *line, size_t len, struct smtp_reply_line *r)
{
	if (len < 3)
		return false;
	/* Reply codes are 2yz to 5yz with y in 0..5 (RFC 5321 section 4.2.1). */
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    line[2] < '0' || line[2] > '9')
		return false;
	r->code = (unsigned)(line[0] - '0') * 100 + (unsigned)(line[1] - '0') * 10 +
	          (unsigned)(line[2] - '0');
	if (len == 3) {
		r->last = true;
		r->text = 3;
		return true;
	}
	if (line[3] != ' ' && line[3] != '-')
		return false;
	r->last = line[3] == ' ';
	r->text = 4;
	return true;
}
