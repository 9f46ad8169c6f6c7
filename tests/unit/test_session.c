/* test_session.c - session transcripts: every case run whole, then with
 * each side's bytes fed one at a time; each step states exactly what
 * each side receives and which actions the edge is asked for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "session_driver.h"

enum step_kind {
	STEP_END = 0,
	CLIENT,       /* bytes from the client */
	BACKEND,      /* bytes from the backend */
	TLS_UP,       /* the handshake finished */
	CLIENT_EOF,
	BACKEND_EOF,
	BACKEND_FAIL,
	IDLE,
	SHUTDOWN,
	TIME_LIMIT,   /* session_time_limit() with the reply in `in` */
};

struct step {
	enum step_kind kind;
	const char *in;
	const char *to_client;
	const char *to_backend;
	const char *actions;
};

struct transcript {
	const char *name;
	struct session_policy policy;
	struct step steps[16];
};

#define STARTTLS_POLICY { .tls_mode = SESSION_STARTTLS }
#define IMPLICIT_POLICY { .tls_mode = SESSION_IMPLICIT }
#define REQUIRE_TLS_POLICY { .tls_mode = SESSION_STARTTLS, .require_tls = true }
#define AUTH_BEFORE_TLS_POLICY { .tls_mode = SESSION_STARTTLS, .auth_before_tls = true }
#define XCLIENT_POLICY { .tls_mode = SESSION_STARTTLS, .xclient = true, .proxy_helo = "proxy.test", \
	                 .client_addr = "IPV6:2001:db8::7", .client_port = 50000 }
#define TRACE_DATE "Sat, 28 Nov 2026 20:58:13 +0000"
#define TRACE_POLICY { .tls_mode = SESSION_STARTTLS, .trace_header = true, .proxy_helo = "proxy.test", \
	               .client_addr = "IPV6:2001:db8::7", .date = TRACE_DATE, .tls_suite = "TLS_AES_256_GCM_SHA384" }
#define TRACE_TLS "Received: from c.test ([IPv6:2001:db8::7])\r\n\tby proxy.test (starttlsd) with ESMTPS\r\n" \
	"\ttls TLS_AES_256_GCM_SHA384;\r\n\t" TRACE_DATE "\r\n"
#define TRACE_PLAIN_HOSTILE "Received: from ev?l???x?.test ([IPv6:2001:db8::7])\r\n\tby proxy.test (starttlsd) with SMTP;\r\n\t" \
	TRACE_DATE "\r\n"
#define XCLIENT_IMPLICIT_POLICY { .tls_mode = SESSION_IMPLICIT, .xclient = true, .proxy_helo = "[192.0.2.1]", \
	                          .client_addr = "192.0.2.7", .client_port = 4242 }

#define GREET { BACKEND, "220 sink.test ESMTP\r\n", "220 sink.test ESMTP\r\n", "", "" }
#define EHLO_CLIENT { CLIENT, "EHLO client.test\r\n", "", "EHLO client.test\r\n", "" }
#define EHLO_PIPELINING_CHUNKING \
	{ BACKEND, "250-sink.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n", \
	  "250-sink.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n", "", "" }
#define EHLO_IN_TLS_PIPELINING_CHUNKING \
	{ BACKEND, "250-sink.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n", \
	  "250-sink.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n", "", "" }
#define STARTTLS_DONE \
	{ CLIENT, "STARTTLS\r\n", "", "RSET\r\n", "" }, \
	{ BACKEND, "250 2.0.0 Ok\r\n", "220 2.0.0 Ready to start TLS\r\n", "", "START_TLS" }, \
	{ TLS_UP, "", "", "", "" }
#define MAIL_RCPT_DATA \
	{ CLIENT, "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n", "", \
	  "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n", "" }, \
	{ BACKEND, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n", \
	  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n", "", "" }
/* Inside TLS, a backend without PIPELINING asks for the AUTH LOGIN user name. */
#define AUTH_LOGIN_IN_TLS \
	GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, STARTTLS_DONE, \
	{ CLIENT, "EHLO c\r\n", "", "EHLO c\r\n", "" }, \
	{ BACKEND, "250 sink.test\r\n", "250 sink.test\r\n", "", "" }, \
	{ CLIENT, "AUTH LOGIN\r\n", "", "AUTH LOGIN\r\n", "" }, \
	{ BACKEND, "334 VXNlcm5hbWU6\r\n", "334 VXNlcm5hbWU6\r\n", "", "" }
#define SMUGGLED_TAIL "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\nforged\r\n.\r\n"
#define SMUGGLING_REFUSED "554 5.7.0 Message refused: a line with a lone dot next to a bare CR or LF\r\n" \
	"421 4.7.0 Closing connection\r\n"

static const struct transcript transcripts[] = {
	{ "greeting passes unchanged", STARTTLS_POLICY, { GREET } },
	{ "commands before the greeting wait for it", STARTTLS_POLICY, {
		{ CLIENT, "EHLO early\r\n", "", "", "" },
		{ BACKEND, "220 hi\r\n", "220 hi\r\n", "EHLO early\r\n", "" } } },
	{ "EHLO before TLS: STARTTLS added last, backend STARTTLS AUTH XCLIENT XFORWARD REQUIRETLS dropped",
	  STARTTLS_POLICY, { GREET, EHLO_CLIENT,
		{ BACKEND, "250-sink.test greets client.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n"
		           "250-AUTH PLAIN LOGIN\r\n250-AUTH=LOGIN\r\n250-XCLIENT NAME ADDR\r\n"
		           "250-xforward NAME\r\n250-REQUIRETLS\r\n250-SIZE 1000\r\n250 CHUNKING\r\n",
		  "250-sink.test greets client.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
		  "250-CHUNKING\r\n250 STARTTLS\r\n", "", "" } } },
	{ "EHLO single-line reply gains STARTTLS", STARTTLS_POLICY, { GREET, EHLO_CLIENT,
		{ BACKEND, "250 sink.test\r\n", "250-sink.test\r\n250 STARTTLS\r\n", "", "" } } },
	{ "EHLO reply with bare LF line ends", STARTTLS_POLICY, { GREET, EHLO_CLIENT,
		{ BACKEND, "250-sink.test\n250 8BITMIME\n", "250-sink.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n", "", "" } } },
	{ "EHLO 5xx passes unchanged", STARTTLS_POLICY, { GREET, EHLO_CLIENT,
		{ BACKEND, "550-5.7.1 no\r\n550 5.7.1 go away\r\n", "550-5.7.1 no\r\n550 5.7.1 go away\r\n", "", "" } } },
	{ "auth_before_tls keeps AUTH before TLS", AUTH_BEFORE_TLS_POLICY, { GREET, EHLO_CLIENT,
		{ BACKEND, "250-sink.test\r\n250 AUTH PLAIN\r\n", "250-sink.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n", "", "" } } },
	{ "EHLO inside TLS: no STARTTLS, AUTH shown, dropped last line fixes the marker",
	  STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, STARTTLS_DONE,
		{ CLIENT, "EHLO client.test\r\n", "", "EHLO client.test\r\n", "" },
		{ BACKEND, "250-sink.test\r\n250-AUTH PLAIN\r\n250-XCLIENT ADDR\r\n250 STARTTLS\r\n",
		  "250-sink.test\r\n250 AUTH PLAIN\r\n", "", "" } } },
	{ "implicit TLS: greeting held until the handshake, no STARTTLS offered", IMPLICIT_POLICY, {
		{ BACKEND, "220 sink.test\r\n", "", "", "" },
		{ TLS_UP, "", "220 sink.test\r\n", "", "" },
		EHLO_CLIENT,
		{ BACKEND, "250-sink.test\r\n250-AUTH PLAIN\r\n250 XFORWARD NAME\r\n",
		  "250-sink.test\r\n250 AUTH PLAIN\r\n", "", "" },
		{ CLIENT, "STARTTLS\r\n", "503 5.5.1 TLS already active\r\n", "", "" } } },

	/* STARTTLS and what comes after it (RFC 3207; THREATS.md S1-S11) */
	{ "STARTTLS resets the backend; the client must EHLO again inside TLS", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, STARTTLS_DONE,
		{ CLIENT, "MAIL FROM:<a@x.test>\r\n", "503 5.5.1 Send EHLO first\r\n", "", "" },
		{ CLIENT, "NOOP\r\n", "", "NOOP\r\n", "" },
		{ BACKEND, "250 2.0.0 Ok\r\n", "250 2.0.0 Ok\r\n", "", "" },
		{ CLIENT, "EHLO again.test\r\n", "", "EHLO again.test\r\n", "" } } },
	{ "S1: STARTTLS\\r\\nRSET\\r\\n in one write: RSET never executed", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "STARTTLS\r\nRSET\r\n", "", "RSET\r\n", "" },
		{ BACKEND, "250 2.0.0 Ok\r\n", "220 2.0.0 Ready to start TLS\r\n", "", "START_TLS" },
		{ TLS_UP, "", "", "", "" },
		{ CLIENT, "EHLO c\r\n", "", "EHLO c\r\n", "" } } },
	{ "S4: STARTTLS\\r\\nMAIL FROM in one write: the backend sees only the proxy's RSET",
	  STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "STARTTLS\r\nMAIL FROM:<att@x>\r\nRCPT TO:<att@x>\r\n", "", "RSET\r\n", "" },
		{ BACKEND, "250 2.0.0 Ok\r\n", "220 2.0.0 Ready to start TLS\r\n", "", "START_TLS" },
		{ TLS_UP, "", "", "", "" },
		{ CLIENT, "RCPT TO:<b@y>\r\n", "503 5.5.1 Send EHLO first\r\n", "", "" } } },
	{ "S6/S7: split writes around and after STARTTLS", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "STAR", "", "", "" },
		{ CLIENT, "TTLS\r\nRS", "", "RSET\r\n", "" },
		{ CLIENT, "ET\r\nNOOP\r\n", "", "", "" },
		{ BACKEND, "250 Ok\r\n", "220 2.0.0 Ready to start TLS\r\n", "", "START_TLS" } } },
	{ "S8: STARTTLS not last in a pipelined group", STARTTLS_POLICY, {
		GREET, { CLIENT, "EHLO a\r\nSTARTTLS\r\nNOOP\r\n", "", "EHLO a\r\n", "" },
		{ BACKEND, "250-sink.test\r\n250 PIPELINING\r\n",
		  "250-sink.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "RSET\r\n", "" },
		{ BACKEND, "250 Ok\r\n", "220 2.0.0 Ready to start TLS\r\n", "", "START_TLS" } } },
	{ "S11: a backend line after the RSET reply never reaches the client", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "STARTTLS\r\n", "", "RSET\r\n", "" },
		{ BACKEND, "250 Ok\r\n250 spoof\r\n", "220 2.0.0 Ready to start TLS\r\n", "", "START_TLS" },
		{ BACKEND, "250 spoof again\r\n", "", "", "" },
		{ TLS_UP, "", "", "", "" },
		{ BACKEND, "250 late spoof\r\n", "", "", "" },
		{ CLIENT, "EHLO c\r\n", "", "EHLO c\r\n", "" },
		{ BACKEND, "250 sink.test\r\n", "250 sink.test\r\n", "", "" } } },
	{ "S9: STARTTLS in lower case is STARTTLS; with an argument 501", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "STARTTLS now\r\n", "501 5.5.4 Syntax error (no parameters allowed)\r\n", "", "" },
		{ CLIENT, "starttls \r\n", "", "RSET\r\n", "" } } },
	{ "S15: STARTTLS inside a transaction", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "MAIL FROM:<a@x>\r\nSTARTTLS\r\n", "", "MAIL FROM:<a@x>\r\n", "" },
		{ BACKEND, "250 Ok\r\n", "250 Ok\r\n503 5.5.1 STARTTLS not allowed during a mail transaction\r\n", "", "" } } },
	{ "S10: STARTTLS inside TLS", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, STARTTLS_DONE,
		{ CLIENT, "EHLO c\r\n", "", "EHLO c\r\n", "" },
		{ BACKEND, "250 sink.test\r\n", "250 sink.test\r\n", "", "" },
		{ CLIENT, "STARTTLS\r\n", "503 5.5.1 TLS already active\r\n", "", "" } } },
	{ "a failed RSET gives 454 and the session stays plaintext", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "STARTTLS\r\n", "", "RSET\r\n", "" },
		{ BACKEND, "451 4.3.0 busy\r\n", "454 4.7.0 TLS not available due to temporary reason\r\n", "", "" },
		{ CLIENT, "NOOP\r\n", "", "NOOP\r\n", "" } } },
	{ "S14: STARTTLS after a successful AUTH", AUTH_BEFORE_TLS_POLICY, {
		GREET, EHLO_CLIENT,
		{ BACKEND, "250 sink.test\r\n", "250-sink.test\r\n250 STARTTLS\r\n", "", "" },
		{ CLIENT, "AUTH PLAIN AGF0dABwdw==\r\n", "", "AUTH PLAIN AGF0dABwdw==\r\n", "" },
		{ BACKEND, "235 2.7.0 Ok\r\n", "235 2.7.0 Ok\r\n", "", "" },
		{ CLIENT, "STARTTLS\r\n", "503 5.5.1 STARTTLS not allowed after authentication\r\n", "", "" } } },

	/* policy refusals (INTERFACE.md) */
	{ "S19: require_tls refuses a pipelined transaction line by line", REQUIRE_TLS_POLICY, {
		GREET,
		{ CLIENT, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhello\r\n.\r\nAUTH PLAIN x\r\nVRFY a\r\n\r\n",
		  "530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"
		  "530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"
		  "500 5.5.2 Syntax error in command line\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"
		  "530 5.7.0 Must issue a STARTTLS command first\r\n500 5.5.2 Syntax error in command line\r\n",
		  "", "" },
		{ CLIENT, "NOOP\r\n", "", "NOOP\r\n", "" },
		{ BACKEND, "250 Ok\r\n", "250 Ok\r\n", "", "" },
		{ CLIENT, "BDAT 5\r\nABCDENOOP\r\n", "530 5.7.0 Must issue a STARTTLS command first\r\n", "NOOP\r\n", "" } } },
	{ "S13: AUTH before TLS gets 538 and is not relayed", STARTTLS_POLICY, {
		GREET, { CLIENT, "AUTH PLAIN AGF0dABwdw==\r\n",
		         "538 5.7.11 Encryption required for requested authentication mechanism\r\n", "", "" } } },
	{ "S37: a client's XCLIENT and XFORWARD, refused in order", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "NOOP\r\nXCLIENT ADDR=1.2.3.4\r\nxforward NAME=x\r\nNOOP\r\n", "", "NOOP\r\nNOOP\r\n", "" },
		{ BACKEND, "250 one\r\n250 two\r\n",
		  "250 one\r\n550 5.7.0 Command not permitted\r\n550 5.7.0 Command not permitted\r\n250 two\r\n", "", "" } } },
	{ "bare CR or NUL inside a command line", STARTTLS_POLICY, {
		GREET, { CLIENT, "MAIL FROM:<a@x>\rRCPT TO:<b@y>\r\n",
		         "500 5.5.2 Syntax error in command line\r\n", "", "" } } },
	{ "a bare LF ends a command, relayed with CR LF", STARTTLS_POLICY, {
		GREET, { CLIENT, "NOOP\n", "", "NOOP\r\n", "" } } },

	/* DATA, smuggling, BDAT (RFC 5321, RFC 3030; THREATS.md S41-S45) */
	{ "DATA relayed byte for byte, dot-stuffing kept", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "Subject: t\r\n\r\n..leading dot\r\n.x\r\nbare\nlf and bare\rcr\r\n\xff\x80\r\n.\r\nQUIT\r\n", "",
		  "Subject: t\r\n\r\n..leading dot\r\n.x\r\nbare\nlf and bare\rcr\r\n\xff\x80\r\n.\r\nQUIT\r\n", "" },
		{ BACKEND, "250 2.0.0 queued\r\n221 2.0.0 Bye\r\n", "250 2.0.0 queued\r\n221 2.0.0 Bye\r\n", "",
		  "CLOSE_AFTER_FLUSH" } } },
	{ "an empty message", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, ".\r\n", "", ".\r\n", "" } } },
	{ "smuggling LF.LF", STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "body\n.\n" SMUGGLED_TAIL, SMUGGLING_REFUSED, "body\n", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "smuggling CR.CR", STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "body\r.\r" SMUGGLED_TAIL, SMUGGLING_REFUSED, "body\r", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "smuggling CRLF.LF", STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "body\r\n.\n" SMUGGLED_TAIL, SMUGGLING_REFUSED, "body\r\n", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "smuggling LF.CRLF", STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "body\n.\r\n" SMUGGLED_TAIL, SMUGGLING_REFUSED, "body\n", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "smuggling CR.CRLF", STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "body\r.\r\n" SMUGGLED_TAIL, SMUGGLING_REFUSED, "body\r", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "smuggling CRLF.CR", STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "body\r\n.\rMAIL FROM:<e@x>\r\n.\r\n", SMUGGLING_REFUSED, "body\r\n", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "smuggling at the very start of the body", STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, ".\n" SMUGGLED_TAIL, SMUGGLING_REFUSED, "", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "S43: BDAT chunk with commands inside is data", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 22 LAST\r\nx\r\nQUIT\r\nSTARTTLS\r\nyyNOOP\r\n", "",
		  "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 22 LAST\r\nx\r\nQUIT\r\nSTARTTLS\r\nyyNOOP\r\n", "" },
		{ BACKEND, "250 a\r\n250 b\r\n250 c\r\n250 d\r\n", "250 a\r\n250 b\r\n250 c\r\n250 d\r\n", "", "" } } },
	{ "S44: pipelined BDAT chunks, first refused, RSET after", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "BDAT 4\r\nABCDBDAT 10 LAST\r\n12345", "", "BDAT 4\r\nABCDBDAT 10 LAST\r\n12345", "" },
		{ CLIENT, "67890", "", "67890", "" },
		{ CLIENT, "RSET\r\n", "", "RSET\r\n", "" },
		{ BACKEND, "503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n250 Ok\r\n",
		  "503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n250 Ok\r\n", "", "" } } },
	{ "S45: BDAT syntax and BDAT 0 LAST", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "BDAT x\r\nBDAT -1\r\nBDAT 1234567890123456789\r\nBDAT 5 FIRST\r\nBDAT 0 LAST\r\n",
		  "501 5.5.4 Syntax error in BDAT parameters\r\n501 5.5.4 Syntax error in BDAT parameters\r\n"
		  "501 5.5.4 Syntax error in BDAT parameters\r\n501 5.5.4 Syntax error in BDAT parameters\r\n",
		  "BDAT 0 LAST\r\n", "" } } },
	{ "BDAT is relayed as the proxy counted it: extra blanks, zeros and case go", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "MAIL FROM:<a@x.test>\r\nBDAT  3  \r\nabcbdat 005 last\r\n12345", "",
		  "MAIL FROM:<a@x.test>\r\nBDAT 3\r\nabcBDAT 5 LAST\r\n12345", "" } } },
	{ "BDAT with a tab is refused, and its chunk is read as commands, never relayed", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "BDAT\t5\r\n", "500 5.5.2 Syntax error in command line\r\n", "", "" } } },
	{ "BDAT to a backend without CHUNKING: refused, chunk dropped", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT,
		{ BACKEND, "250-sink.test\r\n250 PIPELINING\r\n", "250-sink.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "", "" },
		{ CLIENT, "BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n", "502 5.5.1 BDAT not supported\r\n", "NOOP\r\n", "" } } },

	/* pairing and pipelining (RFC 2920) */
	{ "S46: multi-line replies pass in order", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "RCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n", "", "RCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n", "" },
		{ BACKEND, "550-5.1.1 no\r\n550 5.1.1 such user\r\n250 Ok\r\n",
		  "550-5.1.1 no\r\n550 5.1.1 such user\r\n250 Ok\r\n", "", "" } } },
	{ "a backend without PIPELINING gets one command at a time", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT,
		{ BACKEND, "250 sink.test\r\n", "250-sink.test\r\n250 STARTTLS\r\n", "", "" },
		{ CLIENT, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n", "", "MAIL FROM:<a@x>\r\n", "" },
		{ BACKEND, "250 Ok\r\n", "250 Ok\r\n", "RCPT TO:<b@y>\r\n", "" } } },
	{ "AUTH exchange inside TLS", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, STARTTLS_DONE,
		{ CLIENT, "EHLO c\r\n", "", "EHLO c\r\n", "" },
		{ BACKEND, "250-sink.test\r\n250 AUTH PLAIN\r\n", "250-sink.test\r\n250 AUTH PLAIN\r\n", "", "" },
		{ CLIENT, "AUTH PLAIN\r\nAGF0dABwdw==\r\n", "", "AUTH PLAIN\r\n", "" },
		{ BACKEND, "334 \r\n", "334 \r\n", "AGF0dABwdw==\r\n", "" },
		{ BACKEND, "235 2.7.0 Authentication successful\r\n", "235 2.7.0 Authentication successful\r\n", "", "" } } },

	/* client_addr = xclient (Postfix XCLIENT_README; THREATS.md S34-S36) */
	{ "XCLIENT after the greeting, before the client's first command", XCLIENT_POLICY, {
		{ BACKEND, "220 sink.test ESMTP\r\n", "220 sink.test ESMTP\r\n", "EHLO proxy.test\r\n", "" },
		{ CLIENT, "EHLO client.test\r\n", "", "", "" },
		{ BACKEND, "250-sink.test\r\n250-XCLIENT ADDR PORT NAME\r\n250 PIPELINING\r\n", "",
		  "XCLIENT ADDR=IPV6:2001:db8::7 PORT=50000 NAME=[UNAVAILABLE]\r\n", "" },
		{ BACKEND, "220 sink.test ESMTP\r\n", "", "EHLO client.test\r\n", "" },
		{ BACKEND, "250-sink.test\r\n250-XCLIENT ADDR\r\n250 PIPELINING\r\n",
		  "250-sink.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "", "" } } },
	{ "XCLIENT on an implicit listener waits for the handshake", XCLIENT_IMPLICIT_POLICY, {
		{ BACKEND, "220 sink.test\r\n", "", "", "" },
		{ TLS_UP, "", "220 sink.test\r\n", "EHLO [192.0.2.1]\r\n", "" },
		{ BACKEND, "250-sink.test\r\n250 XCLIENT ADDR PORT\r\n", "",
		  "XCLIENT ADDR=192.0.2.7 PORT=4242 NAME=[UNAVAILABLE]\r\n", "" },
		{ BACKEND, "220 again\r\n", "", "", "" },
		{ CLIENT, "NOOP\r\n", "", "NOOP\r\n", "" } } },
	{ "S34: a backend without XCLIENT: 421, fail closed", XCLIENT_POLICY, {
		{ BACKEND, "220 sink.test\r\n", "220 sink.test\r\n", "EHLO proxy.test\r\n", "" },
		{ CLIENT, "MAIL FROM:<a@x>\r\n", "", "", "" },
		{ BACKEND, "250-sink.test\r\n250 PIPELINING\r\n",
		  "421 4.7.0 Backend cannot take the client's address, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "a backend that refuses XCLIENT: 421", XCLIENT_POLICY, {
		{ BACKEND, "220 sink.test\r\n", "220 sink.test\r\n", "EHLO proxy.test\r\n", "" },
		{ BACKEND, "250 XCLIENT ADDR\r\n", "", "XCLIENT ADDR=IPV6:2001:db8::7 PORT=50000 NAME=[UNAVAILABLE]\r\n", "" },
		{ BACKEND, "550 5.7.0 Authentication required\r\n",
		  "421 4.7.0 Backend cannot take the client's address, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },

	/* trace_header (RFC 5321 section 4.4, RFC 3848, RFC 8314 section 4.3) */
	{ "a Received line before a DATA message inside TLS", TRACE_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, STARTTLS_DONE,
		{ CLIENT, "EHLO c.test\r\n", "", "EHLO c.test\r\n", "" },
		EHLO_IN_TLS_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "Subject: x\r\n\r\nhi\r\n.\r\n", "", TRACE_TLS "Subject: x\r\n\r\nhi\r\n.\r\n", "" },
		{ BACKEND, "250 ok\r\n", "250 ok\r\n", "", "" },
		{ CLIENT, "MAIL FROM:<a@x>\r\nBDAT 5 LAST\r\nhello", "",
		  "MAIL FROM:<a@x>\r\nBDAT 153 LAST\r\n" TRACE_TLS "hello", "" } } },
	{ "the trace line defuses a hostile HELO name", TRACE_POLICY, {
		GREET, { CLIENT, "HELO ev(l)\xff<x>.test\r\n", "", "HELO ev(l)\xff<x>.test\r\n", "" },
		{ BACKEND, "250 sink.test\r\n", "250 sink.test\r\n", "", "" },
		{ CLIENT, "DATA\r\n", "", "DATA\r\n", "" },
		{ BACKEND, "354 go\r\n", "354 go\r\n", "", "" },
		{ CLIENT, ".\r\n", "", TRACE_PLAIN_HOSTILE ".\r\n", "" } } },

	/* endings (INTERFACE.md; RFC 5321 section 3.8) */
	{ "backend closes while a reply is owed", STARTTLS_POLICY, {
		GREET, { CLIENT, "NOOP\r\n", "", "NOOP\r\n", "" },
		{ BACKEND_EOF, "", "421 4.4.2 Backend connection lost, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "backend unreachable", STARTTLS_POLICY, {
		{ BACKEND_FAIL, "", "421 4.4.2 Backend not available, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "backend greets with 421", STARTTLS_POLICY, {
		{ BACKEND, "421 4.3.2 busy\r\n", "421 4.3.2 busy\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "backend greets with 554: shown, session goes on", STARTTLS_POLICY, {
		{ BACKEND, "554 5.7.1 go away\r\n", "554 5.7.1 go away\r\n", "", "" },
		{ CLIENT, "QUIT\r\n", "", "QUIT\r\n", "" } } },
	{ "a 354 to RCPT is the backend out of step: 421, backend dropped", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n", "",
		  "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n", "" },
		{ BACKEND, "250 2.1.0 Ok\r\n354 go ahead\r\n",
		  "250 2.1.0 Ok\r\n421 4.4.2 Backend protocol error, closing connection\r\n", "",
		  "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "a 354 to a command the proxy does not know is refused the same way", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "X-DATA\r\n", "", "X-DATA\r\n", "" },
		{ BACKEND, "354 go ahead\r\n", "421 4.4.2 Backend protocol error, closing connection\r\n", "",
		  "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "220 to MAIL, 334 to RCPT, 221 to NOOP: each out of step", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING,
		{ CLIENT, "MAIL FROM:<a@x.test>\r\n", "", "MAIL FROM:<a@x.test>\r\n", "" },
		{ BACKEND, "220 hello again\r\n", "421 4.4.2 Backend protocol error, closing connection\r\n", "",
		  "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "a 334 to RCPT", STARTTLS_POLICY, {
		GREET, { CLIENT, "RCPT TO:<b@y.test>\r\n", "", "RCPT TO:<b@y.test>\r\n", "" },
		{ BACKEND, "334 \r\n", "421 4.4.2 Backend protocol error, closing connection\r\n", "",
		  "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "a 221 to NOOP", STARTTLS_POLICY, {
		GREET, { CLIENT, "NOOP\r\n", "", "NOOP\r\n", "" },
		{ BACKEND, "221 bye\r\n", "421 4.4.2 Backend protocol error, closing connection\r\n", "",
		  "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "a multi-line reply that changes its code: the half-built EHLO reply is never shown", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT,
		{ BACKEND, "250-sink.test\r\n354 PIPELINING\r\n",
		  "421 4.4.2 Backend protocol error, closing connection\r\n", "", "DROP_BACKEND CLOSE_AFTER_FLUSH" } } },
	{ "354 to DATA, 334 and 235 to AUTH, 221 to QUIT are in step", STARTTLS_POLICY, {
		AUTH_LOGIN_IN_TLS,
		{ CLIENT, "dXNlcg==\r\n", "", "dXNlcg==\r\n", "" },
		{ BACKEND, "235 2.7.0 ok\r\n", "235 2.7.0 ok\r\n", "", "" },
		{ CLIENT, "QUIT\r\n", "", "QUIT\r\n", "" },
		{ BACKEND, "221 bye\r\n", "221 bye\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "a SASL response with a control character: the exchange is cancelled", STARTTLS_POLICY, {
		AUTH_LOGIN_IN_TLS,
		{ CLIENT, "dXNl\vcg==\r\nNOOP\r\n", "", "*\r\n", "" },
		{ BACKEND, "501 5.7.0 cancelled\r\n", "500 5.5.2 Syntax error in command line\r\n", "NOOP\r\n", "" },
		{ BACKEND, "250 ok\r\n", "250 ok\r\n", "", "" } } },
	{ "malformed backend reply", STARTTLS_POLICY, {
		{ BACKEND, "hello there\r\n", "421 4.4.2 Backend protocol error, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "client closes after QUIT: the 221 still goes out", STARTTLS_POLICY, {
		GREET, { CLIENT, "QUIT\r\nNOOP\r\n", "", "QUIT\r\n", "" },
		{ CLIENT_EOF, "", "", "", "" },
		{ BACKEND, "221 Bye\r\n", "221 Bye\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "client closes mid-message", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ CLIENT, "partial", "", "partial", "" },
		{ CLIENT_EOF, "", "", "", "CLOSE_NOW" } } },
	{ "idle timeout", STARTTLS_POLICY, {
		GREET, { IDLE, "", "421 4.4.2 Idle timeout, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "shutdown while idle", STARTTLS_POLICY, {
		GREET, { SHUTDOWN, "", "421 4.3.2 Service shutting down, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "shutdown waits for the message to finish", STARTTLS_POLICY, {
		GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, MAIL_RCPT_DATA,
		{ SHUTDOWN, "", "", "", "" },
		{ CLIENT, "x\r\n.\r\n", "", "x\r\n.\r\n", "" },
		{ BACKEND, "250 queued\r\n",
		  "250 queued\r\n421 4.3.2 Service shutting down, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" } } },
	{ "EHLO inside TLS: the backend's REQUIRETLS dropped too (RFC 8689: the backend hop is plaintext)",
	  STARTTLS_POLICY, { GREET, EHLO_CLIENT, EHLO_PIPELINING_CHUNKING, STARTTLS_DONE,
		{ CLIENT, "EHLO client.test\r\n", "", "EHLO client.test\r\n", "" },
		{ BACKEND, "250-sink.test\r\n250-REQUIRETLS\r\n250-PIPELINING\r\n250 requiretls\r\n",
		  "250-sink.test\r\n250 PIPELINING\r\n", "", "" } } },
};

/* apply_step - one event into the driver */
static void apply_step(struct driver *d, const struct step *st, bool trickle)
{
	size_t len = strlen(st->in);
	switch (st->kind) {
	case CLIENT:
		driver_client(d, st->in, len, trickle);
		break;
	case BACKEND:
		driver_backend(d, st->in, len, trickle);
		break;
	case TLS_UP:
		d->tls_pending = false;
		session_tls_established(&d->s);
		break;
	case CLIENT_EOF:
		session_client_eof(&d->s);
		break;
	case BACKEND_EOF:
		session_backend_eof(&d->s);
		break;
	case BACKEND_FAIL:
		session_backend_failed(&d->s);
		break;
	case IDLE:
		session_idle_timeout(&d->s);
		break;
	case SHUTDOWN:
		session_shutdown(&d->s);
		break;
	case TIME_LIMIT:
		session_time_limit(&d->s, st->in, "time-limit");
		break;
	case STEP_END:
		break;
	}
	driver_pump(d);
}

static char out_client[DRIVER_OUT_CAP], out_backend[DRIVER_OUT_CAP];

/* run_transcript - every step's output compared exactly */
static void run_transcript(const struct transcript *t, bool trickle)
{
	static struct driver d;
	char context[512], actions[256];
	size_t client_len, backend_len;

	driver_init(&d, &t->policy);
	for (size_t i = 0; i < sizeof t->steps / sizeof t->steps[0] && t->steps[i].kind != STEP_END; i++) {
		const struct step *st = &t->steps[i];
		apply_step(&d, st, trickle);
		driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
		snprintf(context, sizeof context, "%s, step %zu%s", t->name, i + 1, trickle ? ", trickled" : "");
		CHECK_BYTES(out_client, client_len, st->to_client, strlen(st->to_client), context);
		CHECK_BYTES(out_backend, backend_len, st->to_backend, strlen(st->to_backend), context);
		CHECK_BYTES(actions, strlen(actions), st->actions, strlen(st->actions), context);
	}
	CHECK(buf_valid(&d.s.out_client) && buf_valid(&d.s.out_backend), t->name);
}

/* test_long_lines - an overlong command is refused and its tail never runs */
static void test_long_lines(bool trickle)
{
	static struct driver d;
	static char line[2 * SESSION_LINE_MAX + 12];
	struct session_policy policy = STARTTLS_POLICY;
	char actions[256];
	size_t client_len, backend_len;
	const char *ctx = trickle ? "long line, trickled" : "long line";

	driver_init(&d, &policy);
	driver_backend(&d, "220 hi\r\n", 8, trickle);
	/* The tail of the overlong line looks like a command: it must not run. */
	size_t n = 2 * SESSION_LINE_MAX;
	memset(line, 'A', n);
	memcpy(line + n, "RSET\r\nNOOP\r\n", 12);
	/* The refusal comes once the limit is passed, not at the line's end. */
	driver_client(&d, line, n, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	const char *want_client = "220 hi\r\n500 5.5.2 Line too long\r\n";
	CHECK_BYTES(out_client, client_len, want_client, strlen(want_client), ctx);
	driver_client(&d, line + n, 12, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	CHECK(client_len == 0, ctx);
	CHECK_BYTES(out_backend, backend_len, "NOOP\r\n", 6, ctx);
}

/* test_auth_lines - AUTH lines, SASL responses and challenges may run to
 * 12288 octets (RFC 4954 section 4); other lines stay at SESSION_LINE_MAX */
static void test_auth_lines(bool trickle)
{
	static struct driver d;
	static char line[SESSION_AUTH_LINE_MAX + 16], want[SESSION_AUTH_LINE_MAX + 16];
	struct session_policy policy = { .tls_mode = SESSION_IMPLICIT };
	char actions[256];
	size_t client_len, backend_len;
	const char *ctx = trickle ? "10 KB AUTH lines, trickled" : "10 KB AUTH lines";
	size_t token = 10000;

	driver_init(&d, &policy);
	session_tls_established(&d.s);
	driver_backend(&d, "220 hi\r\n", 8, trickle);
	driver_client(&d, "EHLO c\r\n", 8, trickle);
	driver_backend(&d, "250 hi\r\n", 8, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);

	/* An AUTH command with a 10 KB initial response: relayed whole. */
	memcpy(line, "AUTH GSSAPI ", 12);
	memset(line + 12, 'Q', token);
	memcpy(line + 12 + token, "\r\n", 2);
	driver_client(&d, line, 12 + token + 2, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	CHECK_BYTES(out_backend, backend_len, line, 12 + token + 2, ctx);
	CHECK(client_len == 0, ctx);

	/* A 10 KB challenge and a 10 KB response. */
	memcpy(want, "334 ", 4);
	memset(want + 4, 'C', token);
	memcpy(want + 4 + token, "\r\n", 2);
	driver_backend(&d, want, 4 + token + 2, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	CHECK_BYTES(out_client, client_len, want, 4 + token + 2, ctx);
	memset(line, 'R', token);
	memcpy(line + token, "\r\n", 2);
	driver_client(&d, line, token + 2, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	CHECK_BYTES(out_backend, backend_len, line, token + 2, ctx);
	driver_backend(&d, "235 ok\r\n", 8, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	CHECK_BYTES(out_client, client_len, "235 ok\r\n", 8, ctx);

	/* Any other 10 KB line is too long; so is an AUTH line past 12288. */
	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'N', token);
	memcpy(line + 5 + token, "\r\n", 2);
	driver_client(&d, line, 5 + token + 2, trickle);
	memcpy(line, "AUTH PLAIN ", 11);
	memset(line + 11, 'P', SESSION_AUTH_LINE_MAX);
	memcpy(line + 11 + SESSION_AUTH_LINE_MAX, "\r\n", 2);
	driver_client(&d, line, 11 + SESSION_AUTH_LINE_MAX + 2, trickle);
	driver_client(&d, "RSET\r\n", 6, trickle);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	const char *too_long = "500 5.5.2 Line too long\r\n500 5.5.2 Line too long\r\n";
	CHECK_BYTES(out_client, client_len, too_long, strlen(too_long), ctx);
	CHECK_BYTES(out_backend, backend_len, "RSET\r\n", 6, ctx);
}

/* test_nul_in_command - a NUL inside a command line is refused, not relayed */
static void test_nul_in_command(void)
{
	static struct driver d;
	struct session_policy policy = STARTTLS_POLICY;
	char actions[256];
	size_t client_len, backend_len;
	driver_init(&d, &policy);
	driver_backend(&d, "220 hi\r\n", 8, false);
	driver_client(&d, "NOOP\0RSET\r\n", 11, false);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	const char *want = "220 hi\r\n500 5.5.2 Syntax error in command line\r\n";
	CHECK_BYTES(out_client, client_len, want, strlen(want), "NUL in command");
	CHECK(backend_len == 0, "NUL in command: nothing relayed");
}

/* test_big_message - a message far larger than every buffer passes intact */
static void test_big_message(void)
{
	static struct driver d;
	struct session_policy policy = STARTTLS_POLICY;
	char actions[256];
	size_t client_len, backend_len;
	uint64_t relayed = 0, sent = 0;
	unsigned long sum_in = 0, sum_out = 0;

	driver_init(&d, &policy);
	driver_backend(&d, "220 hi\r\n", 8, false);
	driver_client(&d, "DATA\r\n", 6, false);
	driver_backend(&d, "354 go\r\n", 8, false);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);

	char chunk[1000];
	for (int i = 0; i < 3000; i++) {
		for (size_t j = 0; j < sizeof chunk; j++)
			chunk[j] = (char)((i * 31 + (int)j) % 97 == 0 ? '\n' : 'a' + (i + (int)j) % 26);
		if (i % 7 == 0)
			memcpy(chunk, "\r\n..dots\r\n", 10);
		for (size_t j = 0; j < sizeof chunk; j++)
			sum_in = sum_in * 31 + (unsigned char)chunk[j];
		driver_client(&d, chunk, sizeof chunk, false);
		sent += sizeof chunk;
		driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
		for (size_t j = 0; j < backend_len; j++)
			sum_out = sum_out * 31 + (unsigned char)out_backend[j];
		relayed += backend_len;
	}
	driver_client(&d, "\r\n.\r\n", 5, false);
	driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
	for (size_t j = 0; j < backend_len; j++)
		sum_out = sum_out * 31 + (unsigned char)out_backend[j];
	relayed += backend_len;
	for (const char *p = "\r\n.\r\n"; *p; p++)
		sum_in = sum_in * 31 + (unsigned char)*p;
	sent += 5;
	CHECK(relayed == sent, "big message: every byte relayed");
	CHECK(sum_in == sum_out, "big message: the same bytes in the same order");
}

/* Time limits (min_data_rate, session_timeout): what counts as an open
 * message, and a limit that cuts one off never lets it reach the end. */
#define TOO_SLOW "421 4.4.2 Data rate too low, closing connection\r\n"
#define MAIL_RCPT_PIPELINED \
	{ { CLIENT, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n", "", "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n", "" }, false }, \
	{ { BACKEND, "250 Ok\r\n250 Ok\r\n", "250 Ok\r\n250 Ok\r\n", "", "" }, false }

struct limit_step {
	struct step step;
	bool message_open; /* session_message_open() after the step */
};

static const struct {
	const char *name;
	struct limit_step steps[12];
} limit_cases[] = {
	{ "DATA: open from 354 to the end of data", {
		{ GREET, false }, { EHLO_CLIENT, false }, { EHLO_PIPELINING_CHUNKING, false },
		{ { CLIENT, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n", "",
		    "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n", "" }, false },
		{ { BACKEND, "250 Ok\r\n250 Ok\r\n", "250 Ok\r\n250 Ok\r\n", "", "" }, false },
		{ { BACKEND, "354 go\r\n", "354 go\r\n", "", "" }, true },
		{ { CLIENT, "x\r\n.\r\n", "", "x\r\n.\r\n", "" }, false },
		{ { BACKEND, "250 queued\r\n", "250 queued\r\n", "", "" }, false } } },
	{ "DATA: a limit mid-message drops the backend, no terminator", {
		{ GREET, false }, { EHLO_CLIENT, false }, { EHLO_PIPELINING_CHUNKING, false },
		{ { CLIENT, "DATA\r\n", "", "DATA\r\n", "" }, false },
		{ { BACKEND, "354 go\r\n", "354 go\r\n", "", "" }, true },
		{ { CLIENT, "half a line", "", "half a line", "" }, true },
		{ { TIME_LIMIT, TOO_SLOW, TOO_SLOW, "", "DROP_BACKEND CLOSE_AFTER_FLUSH" }, false },
		{ { CLIENT, "\r\n.\r\nQUIT\r\n", "", "", "" }, false },
		{ { TIME_LIMIT, TOO_SLOW, "", "", "" }, false } } },
	{ "BDAT: open from the first chunk to the end of BDAT LAST's", {
		{ GREET, false }, { EHLO_CLIENT, false }, { EHLO_PIPELINING_CHUNKING, false }, MAIL_RCPT_PIPELINED,
		{ { CLIENT, "BDAT 3\r\nab", "", "BDAT 3\r\nab", "" }, true },
		{ { CLIENT, "c", "", "c", "" }, true },
		{ { BACKEND, "250 3 octets\r\n", "250 3 octets\r\n", "", "" }, true },
		{ { CLIENT, "BDAT 2 LAST\r\nd", "", "BDAT 2 LAST\r\nd", "" }, true },
		{ { CLIENT, "e", "", "e", "" }, false },
		{ { BACKEND, "250 queued\r\n", "250 queued\r\n", "", "" }, false } } },
	{ "BDAT: a limit between chunks drops the backend before BDAT LAST", {
		{ GREET, false }, { EHLO_CLIENT, false }, { EHLO_PIPELINING_CHUNKING, false }, MAIL_RCPT_PIPELINED,
		{ { CLIENT, "BDAT 3\r\nabc", "", "BDAT 3\r\nabc", "" }, true },
		{ { BACKEND, "250 3 octets\r\n", "250 3 octets\r\n", "", "" }, true },
		{ { TIME_LIMIT, TOO_SLOW, TOO_SLOW, "", "DROP_BACKEND CLOSE_AFTER_FLUSH" }, false },
		{ { CLIENT, "BDAT 0 LAST\r\n", "", "", "" }, false } } },
	{ "BDAT: RSET ends the message that BDAT LAST never finished", {
		{ GREET, false }, { EHLO_CLIENT, false }, { EHLO_PIPELINING_CHUNKING, false }, MAIL_RCPT_PIPELINED,
		{ { CLIENT, "BDAT 1\r\na", "", "BDAT 1\r\na", "" }, true },
		{ { BACKEND, "250 1 octet\r\n", "250 1 octet\r\n", "", "" }, true },
		{ { CLIENT, "RSET\r\n", "", "RSET\r\n", "" }, true },
		{ { BACKEND, "250 Ok\r\n", "250 Ok\r\n", "", "" }, false } } },
	{ "between commands a limit ends the session, backend kept to the close", {
		{ GREET, false }, { EHLO_CLIENT, false }, { EHLO_PIPELINING_CHUNKING, false }, MAIL_RCPT_PIPELINED,
		{ { TIME_LIMIT, "421 4.4.2 Session time limit exceeded, closing connection\r\n",
		    "421 4.4.2 Session time limit exceeded, closing connection\r\n", "", "CLOSE_AFTER_FLUSH" }, false } } },
};

/* test_time_limits - session_message_open() and session_time_limit() */
static void test_time_limits(bool trickle)
{
	static struct driver d;
	struct session_policy policy = STARTTLS_POLICY;
	char context[512], actions[256];
	size_t client_len, backend_len;

	for (size_t c = 0; c < sizeof limit_cases / sizeof limit_cases[0]; c++) {
		driver_init(&d, &policy);
		for (size_t i = 0; i < 12 && limit_cases[c].steps[i].step.kind != STEP_END; i++) {
			const struct limit_step *ls = &limit_cases[c].steps[i];
			apply_step(&d, &ls->step, trickle);
			driver_take(&d, out_client, &client_len, out_backend, &backend_len, actions, sizeof actions);
			snprintf(context, sizeof context, "%s, step %zu%s", limit_cases[c].name, i + 1,
			         trickle ? ", trickled" : "");
			CHECK_BYTES(out_client, client_len, ls->step.to_client, strlen(ls->step.to_client), context);
			CHECK_BYTES(out_backend, backend_len, ls->step.to_backend, strlen(ls->step.to_backend), context);
			CHECK_BYTES(actions, strlen(actions), ls->step.actions, strlen(ls->step.actions), context);
			CHECK(session_message_open(&d.s) == ls->message_open, context);
		}
		CHECK(d.s.stats.end_reason == NULL || strcmp(d.s.stats.end_reason, "time-limit") == 0,
		      limit_cases[c].name);
	}
}

void run_session_tests(void)
{
	for (size_t i = 0; i < sizeof transcripts / sizeof transcripts[0]; i++) {
		run_transcript(&transcripts[i], false);
		run_transcript(&transcripts[i], true);
	}
	test_long_lines(false);
	test_long_lines(true);
	test_nul_in_command();
	test_auth_lines(false);
	test_auth_lines(true);
	test_big_message();
	test_time_limits(false);
	test_time_limits(true);
}
