"""One command grammar for the proxy and the backend (smtp_command.h): a line
that a lenient backend could read as another verb is refused 500 5.5.2 and
never relayed; BDAT is relayed as the proxy counted it; a reply that cannot
belong to its command ends the session; AUTH lines may run to 12288 octets
(RFC 4954 section 4). Against the recording sink and a real Postfix that
trusts the proxy for XCLIENT."""

import re
import smtplib

import pytest

from conftest import TIMEOUT, client_context, ehlo_starttls, greeted
from test_postfix_backend import held_received, postfix, postfix_log  # noqa: F401 (fixture)

SYNTAX = "500 5.5.2 Syntax error in command line"

# The lines from the hand attacks (issue 9), and their kin.
SPOOFS = [
    b" XCLIENT ADDR=6.6.6.6",
    b"\tXFORWARD ADDR=6.6.6.6",
    b"\x0bXCLIENT ADDR=6.6.6.6",
    b"XCLIENT\x0cADDR=6.6.6.6",
    b"XCLIENT\tADDR=6.6.6.6",
    b" AUTH PLAIN AGF0dABzZWNyZXQ=",
    b"\tAUTH PLAIN AGF0dABzZWNyZXQ=",
    b" STARTTLS",
    b"STARTTLS\t",
    b" EHLO spoofed.test",
    b"EHLO\tspoofed.test",
    b"DATA\t",
    b" DATA",
    b"BDAT\t5 LAST",
    b"\x00XCLIENT ADDR=6.6.6.6",
    b"NOOP\x00XCLIENT ADDR=6.6.6.6",
    b"NOOP\rXCLIENT ADDR=6.6.6.6",
]
IDS = ["%d-%s" % (i, re.sub(rb"[^A-Za-z]", b"_", s).decode()[:24]) for i, s in enumerate(SPOOFS)]
NEEDLES = (b"6.6.6.6", b"AGF0dABzZWNyZXQ=", b"spoofed", b"STARTTLS", b"DATA", b"BDAT")


def never_saw(sink, *needles):
    rec = sink.all_raw()
    for needle in needles:
        assert needle not in rec, (needle, rec)


@pytest.mark.parametrize("line", SPOOFS, ids=IDS)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_ambiguous_line_refused_never_relayed(proxy, sink, line, tls):
    c = ehlo_starttls(proxy.port("smtp")) if tls else greeted(proxy.port("smtp"))
    assert c.cmd(line).lines == [SYNTAX]
    # The session reads on in step with the backend.
    assert c.cmd("NOOP").code == 250
    assert c.cmd("QUIT").code == 221
    sink.wait_done(1)
    never_saw(sink, *NEEDLES)


def test_leading_blank_auth_cannot_fix_a_session(sink, proxy_for):
    """auth_before_tls = yes: a leading-blank AUTH that the backend would have
    taken is refused, so STARTTLS after it is a clean start, not a session
    authenticated as the attacker (THREATS S14)."""
    proxy = proxy_for(sink, auth_before_tls="yes")
    c = greeted(proxy.port("smtp"))
    assert c.cmd(b" AUTH PLAIN AGF0dABzZWNyZXQ=").lines == [SYNTAX]
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    assert c.cmd("EHLO b").code == 250
    assert c.cmd("QUIT").code == 221
    sink.wait_done(1)
    never_saw(sink, b"AUTH", b"AGF0dABzZWNyZXQ=")


def test_bdat_relayed_as_counted(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    c.send(b"BDAT  3\r\nabc")
    assert c.reply().code == 250
    c.send(b"bdat 004  last\r\ndefg")
    assert c.reply().code == 250
    assert c.cmd("QUIT").code == 221
    rec = sink.wait_done(1)
    assert b"BDAT 3\r\nabcBDAT 4 LAST\r\ndefg" in rec, rec
    assert sink.msg(1) == b"abcdefg"


def test_354_to_rcpt_ends_the_session(start_sink, proxy_for):
    """A backend out of step (354 to RCPT) would take the client's next
    commands as a message; the proxy ends the session instead."""
    sink = start_sink("--answer", "RCPT=354 go ahead")
    proxy = proxy_for(sink)
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    r = c.cmd("RCPT TO:<b@example.org>")
    assert r.lines == ["421 4.4.2 Backend protocol error, closing connection"], r
    try:
        c.send(b"RSET\r\nMAIL FROM:<x@example.org>\r\n.\r\n")
    except OSError:
        pass  # the proxy may have closed already
    assert c.read_to_close() == b""
    sink.wait_done(1)
    assert sink.messages() == []
    assert b"x@example.org" not in sink.raw(1)
    assert proxy.wait_sessions(1)[0]["end"] == "backend-protocol-error"
    assert proxy.log.wait_for(r"cannot answer the pending command")


def test_10k_auth_line_and_response(proxy, sink):
    """GSSAPI-sized SASL data: a 10 KB AUTH line and a 10 KB response reach
    the backend whole; a 10 KB line of any other verb is too long."""
    c = ehlo_starttls(proxy.port("smtp"))
    token = b"A" * 10000
    r = c.cmd(b"AUTH PLAIN " + token)
    assert r.code != 500, r  # the sink's verdict on the token, not the proxy's
    assert c.cmd(b"NOOP " + token).lines == ["500 5.5.2 Line too long"]
    assert c.cmd("AUTH LOGIN").code == 334
    assert c.cmd(b"dXNlcg" + token).code == 334
    c.cmd("*")
    assert c.cmd("QUIT").code == 221
    rec = sink.wait_done(1)
    assert b"AUTH PLAIN " + token + b"\r\n" in rec
    assert b"dXNlcg" + token + b"\r\n" in rec
    assert b"NOOP" not in rec


def test_postfix_never_sees_a_spoofed_client(postfix, proxy_for):  # noqa: F811 (fixture)
    """Postfix trusts the proxy for XCLIENT, and 127.0.0.1 for relaying. A
    client at 127.0.0.2 that hides XCLIENT ADDR=127.0.0.1 behind blanks and
    control characters changes nothing: Postfix still names 127.0.0.2 and
    refuses to relay for it."""
    proxy = proxy_for(postfix["plain"], client_addr="xclient")
    s = smtplib.SMTP("127.0.0.1", proxy.port("smtp"), source_address=("127.0.0.2", 0), timeout=TIMEOUT)
    s.starttls(context=client_context())
    s.ehlo("far.test")
    for spoof in (b" XCLIENT ADDR=127.0.0.1 NAME=spoofed.test", b"\tXCLIENT ADDR=127.0.0.1",
                  b"\x0bXCLIENT ADDR=127.0.0.1", b"XCLIENT\x0cADDR=127.0.0.1",
                  b" XFORWARD ADDR=127.0.0.1"):
        s.send(spoof + b"\r\n")
        assert s.getreply() == (500, b"5.5.2 Syntax error in command line"), spoof
    assert s.mail("a@example.org")[0] == 250
    code, text = s.rcpt("victim@elsewhere.test")
    assert code in (454, 554) and b"Relay access denied" in text, (code, text)
    assert s.rcpt("b@backend.test")[0] == 250
    assert s.data(b"Subject: spoof attempt\r\n\r\nhi\r\n")[0] == 250
    s.quit()
    received = held_received(postfix["base"])
    assert received.startswith("Received: from far.test (unknown [127.0.0.2])"), received
    log = postfix_log(postfix["base"], r": client=unknown\[")
    assert "spoofed" not in log and "Relay access denied" in log, log
    assert re.search(r"reject: RCPT from unknown\[127\.0\.0\.2\]", log), log
    # Postfix counted one XCLIENT (the proxy's own) and no unknown command:
    # not one of the spoofs reached it.
    disconnect = postfix_log(postfix["base"], r"disconnect from .* commands=")
    stats = re.search(r"disconnect from \S+ (.*)", disconnect).group(1)
    assert re.search(r"\bxclient=\d/1\b", stats) and "unknown" not in stats and "xforward" not in stats, stats
