/* lenient_reader.h - how a lenient backend reads a command line
 *
 * Modelled on what Postfix's smtpd tokenizer does (smtpd_token.c, read,
 * not copied): leading whitespace is skipped, words end at any ASCII
 * whitespace, and a double-quoted part keeps its blanks. Exim and Sendmail
 * are no stricter. The proxy's grammar (smtp_command.h) must agree with it
 * on the verb of every line it relays: the fuzz harness and the unit tests
 * check that.
 */
#ifndef STARTTLSD_LENIENT_READER_H
#define STARTTLSD_LENIENT_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* lenient_space - what isspace() is in the C locale */
static inline bool lenient_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* lenient_word - the Nth word of LINE (N from 0) into WORD (quotes
 * removed, at most CAP - 1 bytes, NUL-terminated); false when the line
 * has fewer words */
static inline bool lenient_word(const uint8_t *line, size_t len, size_t n, char *word, size_t cap)
{
	size_t i = 0;
	for (size_t w = 0;; w++) {
		while (i < len && lenient_space(line[i]))
			i++;
		if (i == len)
			return false;
		size_t out = 0;
		bool quoted = false;
		while (i < len && (quoted || !lenient_space(line[i]))) {
			if (line[i] == '"')
				quoted = !quoted;
			else if (w == n && out + 1 < cap)
				word[out++] = (char)line[i];
			i++;
		}
		if (w == n) {
			word[out] = '\0';
			return true;
		}
	}
}

#endif
