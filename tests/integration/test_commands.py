"""Commands the proxy answers itself: STARTTLS in every state, require_tls,
auth_before_tls, XCLIENT and XFORWARD (INTERFACE.md; THREATS S9-S10, S13-S15,
S19-S21)."""

import pytest

from conftest import Client, ehlo_starttls, greeted, implicit

MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"


def never_saw(sink, *needles):
    rec = sink.all_raw().upper()
    for needle in needles:
        assert needle.upper() not in rec, (needle, rec)


# --- STARTTLS ----------------------------------------------------------------

def test_starttls_with_argument(proxy, sink):
    c = greeted(proxy.port("smtp"))
    r = c.cmd("STARTTLS x")
    assert r.code == 501 and r.lines[0].startswith("501 5.5.4"), r
    assert c.cmd("NOOP").code == 250  # still plaintext, still usable
    assert c.cmd("starttls").lines == ["220 2.0.0 Ready to start TLS"]  # any case
    c.start_tls()
    assert c.cmd("EHLO b").code == 250
    never_saw(sink, b"STARTTLS")


def test_starttls_inside_transaction(proxy, sink):
    c = greeted(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<att@x>").code == 250
    r = c.cmd("STARTTLS")
    assert r.code == 503 and r.lines[0].startswith("503 5.5.1"), r
    # The session goes on in plaintext with the transaction intact.
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("RSET").code == 250
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    assert c.cmd("EHLO b").code == 250
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    never_saw(sink, b"STARTTLS")


def test_starttls_inside_tls(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    r = c.cmd("STARTTLS")
    assert r.code == 503 and r.lines[0].startswith("503 5.5.1"), r
    assert c.cmd("NOOP").code == 250
    never_saw(sink, b"STARTTLS")


def test_starttls_on_implicit_listener(proxy, sink):
    c = implicit(proxy.port("smtps"))
    r = c.cmd("STARTTLS")
    assert r.code == 503 and r.lines[0].startswith("503 5.5.1"), r
    assert c.cmd("NOOP").code == 250
    never_saw(sink, b"STARTTLS")


def test_failed_rset_gives_454(start_sink, proxy_for):
    sink = start_sink("--fail-rset")
    proxy = proxy_for(sink)
    c = greeted(proxy.port("smtp"))
    r = c.cmd("STARTTLS")
    assert r.code == 454 and r.lines[0].startswith("454 4.7.0"), r
    # No 220, so no handshake: the client may go on in plaintext.
    assert c.cmd("NOOP").code == 250
    never_saw(sink, b"STARTTLS")


def test_mail_before_ehlo_inside_tls(proxy, sink):
    c = greeted(proxy.port("smtp"))
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    assert c.cmd("NOOP").code == 250
    assert c.cmd("MAIL FROM:<a@example.org>").lines == ["503 5.5.1 Send EHLO first"]
    assert c.cmd("RCPT TO:<b@example.org>").code == 503
    assert c.cmd("HELO b").code == 250
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    rec = sink.all_raw()
    assert rec.count(b"MAIL FROM:<a@example.org>") == 1 and b"RCPT" not in rec


def test_implicit_mail_before_ehlo(proxy, sink):
    c = Client(proxy.port("smtps"), tls=True)
    assert c.reply().code == 220
    r = c.cmd("MAIL FROM:<a@example.org>")
    assert r.code == 503, r


# --- require_tls = yes ---------------------------------------------------------

def test_require_tls(sink, proxy_for):
    proxy = proxy_for(sink, require_tls="yes")
    c = greeted(proxy.port("smtp"))
    refused = [b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>", b"DATA",
               b"Subject: secret", b"body line", b".", b"VRFY root", b"EXPN list", b"HELP",
               b"ETRN example.org", b"AUTH PLAIN AGEAYgBj", b"FOOBAR x"]
    c.send(b"".join(line + b"\r\n" for line in refused))
    # Body lines are lines like any other: 530, or 500 5.5.2 for those that
    # are no command line at all ("Subject:", ".").
    not_commands = (b"Subject: secret", b".")
    for line in refused:
        want = "500 5.5.2 Syntax error in command line" if line in not_commands else MUST_STARTTLS
        assert c.reply().lines == [want], line
    for line in (b"", b"XCLIENT ADDR=1.2.3.4"):
        r = c.cmd(line.decode())
        assert r.code in (500, 501, 530, 550), (line, r)
    for allowed in ("NOOP", "RSET", "HELO a", "EHLO a"):
        assert c.cmd(allowed).code == 250, allowed
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    assert c.cmd("EHLO b").code == 250
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("QUIT").code == 221
    rec = sink.wait_done(1)
    assert rec.count(b"MAIL") == 1 and rec.index(b"MAIL") > rec.index(b"EHLO b")
    never_saw(sink, b"RCPT", b"DATA", b"secret", b"body line", b"VRFY", b"EXPN", b"HELP",
              b"ETRN", b"AUTH", b"FOOBAR", b"XCLIENT", b"\r\n.\r\n")


def test_require_tls_quit(sink, proxy_for):
    proxy = proxy_for(sink, require_tls="yes")
    c = greeted(proxy.port("smtp"), ehlo="HELO a")
    assert c.cmd("MAIL FROM:<a@example.org>").lines == [MUST_STARTTLS]
    assert c.cmd("QUIT").code == 221
    assert c.read_to_close() == b""


def test_require_tls_bdat_not_relayed(sink, proxy_for):
    proxy = proxy_for(sink, require_tls="yes")
    c = greeted(proxy.port("smtp"))
    r = c.cmd("BDAT 0 LAST")
    assert r.code in (530, 500, 501), r
    assert c.cmd("NOOP").code == 250
    never_saw(sink, b"BDAT")


# --- AUTH ----------------------------------------------------------------------

def test_auth_before_tls_refused(proxy, sink):
    c = greeted(proxy.port("smtp"))
    assert c.cmd("AUTH PLAIN AGFAYgBzZWNyZXQ=").lines == [ENCRYPTION_REQUIRED]
    assert c.cmd("AUTH LOGIN").lines == [ENCRYPTION_REQUIRED]
    assert c.cmd("auth plain").lines == [ENCRYPTION_REQUIRED]
    assert c.cmd("NOOP").code == 250
    never_saw(sink, b"AUTH", b"AGFAYgBzZWNyZXQ=")


def test_auth_after_tls(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("AUTH PLAIN AGFAYgBzZWNyZXQ=").lines == ["235 2.7.0 Authentication successful"]
    c.close()
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("AUTH PLAIN").lines == ["334 "]
    assert c.cmd("AGFAYgBzZWNyZXQ=").lines == ["235 2.7.0 Authentication successful"]
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("QUIT").code == 221
    rec = sink.wait_done(2)
    assert b"AUTH PLAIN\r\nAGFAYgBzZWNyZXQ=\r\nMAIL FROM:<a@example.org>\r\n" in rec


def test_auth_before_tls_yes(sink, proxy_for):
    proxy = proxy_for(sink, auth_before_tls="yes")
    # A failed AUTH leaves STARTTLS possible ...
    c = greeted(proxy.port("smtp"))
    assert c.cmd("AUTH PLAIN").lines == ["334 "]
    assert c.cmd("*").code == 501
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    assert c.cmd("EHLO b").code == 250
    c.close()
    # ... a successful one does not (THREATS S14: no session fixation).
    c = greeted(proxy.port("smtp"))
    assert c.cmd("AUTH PLAIN AGF0dABzZWNyZXQ=").lines == ["235 2.7.0 Authentication successful"]
    r = c.cmd("STARTTLS")
    assert r.code == 503 and r.lines[0].startswith("503 5.5.1"), r
    assert c.cmd("NOOP").code == 250
    never_saw(sink, b"STARTTLS")


# --- XCLIENT and XFORWARD from a client --------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_client_xclient_xforward_refused(proxy, sink, tls):
    c = ehlo_starttls(proxy.port("smtp")) if tls else greeted(proxy.port("smtp"))
    for line in ("XCLIENT ADDR=1.2.3.4", "XFORWARD ADDR=1.2.3.4", "xclient NAME=spoofed.example",
                 "XCLIENT"):
        r = c.cmd(line)
        assert r.code == 550 and r.lines[0].startswith("550 5.7.0"), (line, r)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("QUIT").code == 221
    never_saw(sink, b"XCLIENT", b"XFORWARD", b"1.2.3.4", b"spoofed")
