/* test_smtp_command.c - the one command-line grammar (smtp_command.h)
 *
 * Every whitespace and control character before, inside and after each
 * verb is refused; the lines that pass are read by a lenient, Postfix-like
 * reader as the same verb the proxy reads. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../fuzz/lenient_reader.h"
#include "harness.h"
#include "session_driver.h"
#include "smtp_command.h"

/* A command line of each verb the proxy treats apart, and one it does not. */
static const char *const verb_lines[] = {
	"EHLO client.test", "HELO client.test", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>",
	"DATA",             "BDAT 5 LAST",      "RSET",                 "NOOP",
	"QUIT",             "AUTH PLAIN AGF0",  "STARTTLS",             "XCLIENT ADDR=6.6.6.6",
	"XFORWARD ADDR=6.6.6.6", "VRFY postmaster",
};

enum position { BEFORE, INSIDE_VERB, AS_SEPARATOR, AFTER_SEPARATOR, AT_END, POSITIONS };

/* grammar_line_with - LINE with C put at POS into OUT; its length */
static size_t grammar_line_with(const char *line, enum position pos, char c, char *out, size_t cap)
{
	size_t len = strlen(line);
	const char *sp = strchr(line, ' ');
	size_t verb_len = sp ? (size_t)(sp - line) : len;
	size_t at = pos == BEFORE ? 0 : pos == INSIDE_VERB ? 2 : pos == AS_SEPARATOR ? verb_len
	          : pos == AFTER_SEPARATOR ? (sp ? verb_len + 1 : len) : len;
	/* As the separator it replaces the SP; everywhere else it is added. */
	size_t skip = pos == AS_SEPARATOR && sp ? 1 : 0;
	if (len + 1 > cap)
		return 0;
	memcpy(out, line, at);
	out[at] = c;
	memcpy(out + at + 1, line + at + skip, len - at - skip);
	return len + 1 - skip;
}

/* is_control - what the grammar refuses: C0 controls and DEL */
static bool is_control(int c)
{
	return c < 0x20 || c == 0x7F;
}

static void test_controls_refused(void)
{
	char line[128], ctx[160];
	struct smtp_command cmd;
	for (size_t v = 0; v < sizeof verb_lines / sizeof verb_lines[0]; v++) {
		for (int pos = 0; pos < POSITIONS; pos++) {
			for (int c = 0; c < 0x80; c++) {
				if (!is_control(c) && !(c == ' ' && pos == BEFORE))
					continue;
				size_t n = grammar_line_with(verb_lines[v], (enum position)pos, (char)c, line, sizeof line);
				snprintf(ctx, sizeof ctx, "%s with 0x%02x at position %d", verb_lines[v], c, pos);
				CHECK(!smtp_command_parse((const uint8_t *)line, n, &cmd), ctx);
			}
		}
	}
}

/* test_session_refuses - the same lines sent to a session, whole and one
 * byte at a time: each gets 500 5.5.2 and nothing reaches the backend,
 * and the session reads the next command as before */
static void test_session_refuses(bool trickle)
{
	static struct driver d;
	static char to_client[DRIVER_OUT_CAP], to_backend[DRIVER_OUT_CAP];
	char line[128], ctx[160], actions[256];
	size_t client_len, backend_len;
	const char *refused = "500 5.5.2 Syntax error in command line\r\n";
	struct session_policy policy = { .tls_mode = SESSION_STARTTLS, .auth_before_tls = true };

	for (size_t v = 0; v < sizeof verb_lines / sizeof verb_lines[0]; v++) {
		for (int pos = 0; pos < POSITIONS; pos++) {
			for (int c = 0; c < 0x80; c++) {
				/* LF ends the line: it is no character inside one. */
				if (c == '\n' || (!is_control(c) && !(c == ' ' && pos == BEFORE)))
					continue;
				size_t n = grammar_line_with(verb_lines[v], (enum position)pos, (char)c, line,
				                             sizeof line - 2);
				memcpy(line + n, "\r\n", 2);
				snprintf(ctx, sizeof ctx, "session: %s with 0x%02x at position %d%s", verb_lines[v], c,
				         pos, trickle ? ", trickled" : "");
				driver_init(&d, &policy);
				driver_backend(&d, "220 hi\r\n", 8, trickle);
				driver_client(&d, "EHLO c\r\n", 8, trickle);
				driver_backend(&d, "250-hi\r\n250 PIPELINING\r\n", 25, trickle);
				driver_take(&d, to_client, &client_len, to_backend, &backend_len, actions, sizeof actions);

				driver_client(&d, line, n + 2, trickle);
				driver_client(&d, "NOOP\r\n", 6, trickle);
				driver_take(&d, to_client, &client_len, to_backend, &backend_len, actions, sizeof actions);
				CHECK_BYTES(to_client, client_len, refused, strlen(refused), ctx);
				CHECK_BYTES(to_backend, backend_len, "NOOP\r\n", 6, ctx);
				CHECK(actions[0] == '\0', ctx);
			}
		}
	}
}

static const struct {
	const char *line;
	bool ok;
	enum smtp_verb verb;
	const char *args;
} cases[] = {
	{ "EHLO client.test", true, VERB_EHLO, "client.test" },
	{ "ehlo client.test", true, VERB_EHLO, "client.test" },
	{ "MAIL FROM:<a@x>  SIZE=10  ", true, VERB_MAIL, "FROM:<a@x>  SIZE=10" },
	{ "MAIL  FROM:<a@x>", true, VERB_MAIL, "FROM:<a@x>" },
	{ "RCPT TO:<j\xc3\xb6rg@b\xc3\xbc" "cher.test>", true, VERB_RCPT, "TO:<j\xc3\xb6rg@b\xc3\xbc" "cher.test>" },
	{ "DATA", true, VERB_DATA, "" },
	{ "DATA ", true, VERB_DATA, "" },
	{ "STARTTLS", true, VERB_STARTTLS, "" },
	{ "X-LINK2STATE LAST", true, VERB_OTHER, "LAST" },
	{ "EH LO x", true, VERB_OTHER, "LO x" }, /* "EH" to every reader */
	{ "", false, VERB_OTHER, "" },
	{ " ", false, VERB_OTHER, "" },
	{ ".", false, VERB_OTHER, "" },
	{ "MAIL:FROM:<a@x>", false, VERB_OTHER, "" },
	{ "\"XCLIENT\" ADDR=6.6.6.6", false, VERB_OTHER, "" },
	{ "<XCLIENT> ADDR=6.6.6.6", false, VERB_OTHER, "" },
	{ "XCL\xc3\x8d" "ENT ADDR=6.6.6.6", false, VERB_OTHER, "" },
	{ "\xef\xbb\xbfXCLIENT ADDR=6.6.6.6", false, VERB_OTHER, "" },
};

static void test_cases(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct smtp_command cmd;
		const char *line = cases[i].line;
		bool ok = smtp_command_parse((const uint8_t *)line, strlen(line), &cmd);
		CHECK(ok == cases[i].ok, line);
		if (!ok || !cases[i].ok)
			continue;
		CHECK(cmd.verb == cases[i].verb, line);
		CHECK_BYTES(cmd.args, cmd.args_len, cases[i].args, strlen(cases[i].args), line);
		/* A lenient reader finds the same verb. */
		char word[64];
		size_t verb_len = strcspn(line, " ");
		CHECK(lenient_word((const uint8_t *)line, strlen(line), 0, word, sizeof word) &&
		              strlen(word) == verb_len && strncasecmp(word, line, verb_len) == 0,
		      line);
	}
}

static const struct {
	const char *args;
	bool ok;
	unsigned long long size;
	bool last;
} bdat_cases[] = {
	{ "5", true, 5, false },        { "5 LAST", true, 5, true },   { "005  last", true, 5, true },
	{ "0 LAST", true, 0, true },    { "5LAST", false, 0, false },  { "LAST", false, 0, false },
	{ "-5", false, 0, false },      { "5 LAST x", false, 0, false }, { "1234567890123456789", false, 0, false },
};

static void test_bdat(void)
{
	for (size_t i = 0; i < sizeof bdat_cases / sizeof bdat_cases[0]; i++) {
		uint64_t size = 0;
		bool last = false;
		const char *a = bdat_cases[i].args;
		bool ok = smtp_bdat_parse((const uint8_t *)a, strlen(a), &size, &last);
		CHECK(ok == bdat_cases[i].ok, a);
		if (ok && bdat_cases[i].ok)
			CHECK(size == bdat_cases[i].size && last == bdat_cases[i].last, a);
	}
}

void run_smtp_command_tests(void)
{
	test_controls_refused();
	test_session_refuses(false);
	test_session_refuses(true);
	test_cases();
	test_bdat();
}
