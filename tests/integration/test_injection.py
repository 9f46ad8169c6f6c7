"""Plaintext command injection across STARTTLS (CVE-2011-0411 class; THREATS
S1-S8, S11) and the state reset at the handshake (S15-S17)."""

import ssl
import time

import pytest

from conftest import greeted


def expect_recording(sink, expected):
    """The sink's only connection saw exactly `expected` (the relayed QUIT aside)."""
    rec = sink.wait_done(1)
    assert rec in (expected, expected + b"QUIT\r\n"), rec
    assert sink.conns() == [1]


def after_tls_clean(c):
    """Nothing arrives inside TLS unasked; the first TLS command gets its own reply."""
    assert c.silence(1.0) == b""
    r = c.cmd("EHLO b")
    assert r.lines[0] == "250-sink.test" and r.lines[-1] == "250 ENHANCEDSTATUSCODES", r
    return r


@pytest.mark.parametrize("injected", [
    b"RSET\r\n",
    b"MAIL FROM:<x@y>\r\n",
    b"MAIL FROM:<x@y>\r\nRCPT TO:<x@y>\r\n",
    b"AUTH PLAIN AHhAeQBzZWNyZXQ=\r\n",
    b"EHLO commandinjectiontester\r\n",
    b"NOOP\r\n",
], ids=["rset", "mail", "mail-rcpt", "auth", "ehlo", "noop"])
def test_injection_in_the_starttls_segment(proxy, sink, injected):
    c = greeted(proxy.port("smtp"))
    c.send(b"STARTTLS\r\n" + injected)
    assert c.reply().lines == ["220 2.0.0 Ready to start TLS"]
    c.start_tls()
    after_tls_clean(c)
    # A normal transaction works: no nested MAIL, no attacker recipient.
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"hi\r\n.\r\n")
    assert c.reply().code == 250
    assert c.cmd("QUIT").code == 221
    expect_recording(sink, b"EHLO a\r\nRSET\r\nEHLO b\r\nMAIL FROM:<a@example.org>\r\n"
                           b"RCPT TO:<b@example.org>\r\nDATA\r\nhi\r\n.\r\n")
    assert sink.msg(1, "env") == b"conn 1\nfrom <a@example.org>\nrcpt <b@example.org>\n"


def test_unknown_command_after_injected_ehlo_is_an_error(proxy, sink):
    # NO STARTTLS's tester: the injected EHLO must not count as the TLS EHLO.
    c = greeted(proxy.port("smtp"))
    c.send(b"STARTTLS\r\nEHLO commandinjectiontester\r\n")
    assert c.reply().code == 220
    c.start_tls()
    assert c.silence(1.0) == b""
    r = c.cmd("FAKE x")
    assert r.code >= 500, r
    assert b"FAKE" not in sink.raw(1) and b"commandinjectiontester" not in sink.raw(1)


def test_ehlo_starttls_noop_pipelined(proxy, sink):
    c = greeted(proxy.port("smtp"), ehlo=None)
    c.send(b"EHLO a\r\nSTARTTLS\r\nNOOP\r\n")
    assert c.reply().lines[-1] == "250 STARTTLS"
    assert c.reply().lines == ["220 2.0.0 Ready to start TLS"]
    c.start_tls()
    after_tls_clean(c)
    assert c.cmd("QUIT").code == 221
    expect_recording(sink, b"EHLO a\r\nRSET\r\nEHLO b\r\n")


def test_starttls_split_across_segments(proxy, sink):
    c = greeted(proxy.port("smtp"))
    c.send(b"STAR")
    time.sleep(0.2)
    c.send(b"TTLS\r\nRSET\r\n")
    assert c.reply().lines == ["220 2.0.0 Ready to start TLS"]
    c.start_tls()
    after_tls_clean(c)
    assert c.cmd("QUIT").code == 221
    expect_recording(sink, b"EHLO a\r\nRSET\r\nEHLO b\r\n")


@pytest.mark.parametrize("second", [b"MAIL FROM:<x@y>\r\n", b"NOOP\r\n"], ids=["mail", "noop"])
def test_injection_in_a_second_write_before_the_220(proxy, sink, second):
    """The second segment may arrive before the 220 (discarded) or after it (then
    it is the start of the handshake, which fails). Either way nothing runs."""
    c = greeted(proxy.port("smtp"))
    c.send(b"STARTTLS\r\n")
    c.send(second)
    assert c.reply().lines == ["220 2.0.0 Ready to start TLS"]
    if c.buf:
        # The segment came after the 220 and was taken as the ClientHello:
        # the proxy's TLS alert (a record of type 21) came in behind the 220.
        assert c.buf[:2] == b"\x15\x03", c.buf
        c.close()
    else:
        try:
            c.start_tls()
        except (ssl.SSLError, ConnectionError, OSError):
            c.close()
        else:
            after_tls_clean(c)
            assert c.cmd("QUIT").code == 221
    rec = sink.wait_done(1)
    assert rec in (b"EHLO a\r\nRSET\r\n", b"EHLO a\r\nRSET\r\nQUIT\r\n",
                   b"EHLO a\r\nRSET\r\nEHLO b\r\n", b"EHLO a\r\nRSET\r\nEHLO b\r\nQUIT\r\n"), rec


def test_unsolicited_backend_line_after_rset(start_sink, proxy_for):
    sink = start_sink("--unsolicited-after-rset", r"250 spoof\r\n")
    proxy = proxy_for(sink)
    c = greeted(proxy.port("smtp"))
    assert c.cmd("STARTTLS").lines == ["220 2.0.0 Ready to start TLS"]
    c.start_tls()
    early = c.silence(1.0)
    assert b"spoof" not in early
    if early:
        # Closing the session on a backend protocol error is acceptable.
        assert early.startswith(b"421 "), early
        assert b"spoof" not in c.read_to_close()
        return
    r = c.cmd("EHLO b")
    assert r.lines[0] == "250-sink.test", r
    assert "spoof" not in r.text
    r = c.cmd("NOOP")
    assert r.lines == ["250 2.0.0 Ok"] or r.code == 421, r


def test_pre_tls_state_is_gone(proxy, sink):
    c = greeted(proxy.port("smtp"), ehlo="EHLO evil")
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    # MAIL before the TLS EHLO is refused locally, NOOP and RSET are fine.
    assert c.cmd("MAIL FROM:<early@x>").lines == ["503 5.5.1 Send EHLO first"]
    assert c.cmd("NOOP").code == 250
    assert c.cmd("RSET").code == 250
    assert c.cmd("EHLO good").code == 250
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("QUIT").code == 221
    rec = sink.wait_done(1)
    assert b"early@x" not in rec
    head, _, tail = rec.partition(b"RSET\r\n")
    assert head == b"EHLO evil\r\n" and b"EHLO good\r\nMAIL FROM:<a@example.org>\r\n" in tail
    assert b"evil" not in tail
