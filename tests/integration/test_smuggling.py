"""SMTP smuggling (VU#302671, CVE-2023-51764 class): a dot line bounded by a
bare CR or LF must not end, or smuggle past, a message (INTERFACE.md "Message
data"; STYLE.md practice 5)."""

import time

import pytest

from conftest import Client, ehlo_starttls, implicit, send_message, assert_delivered

SMUGGLED = b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@x>\r\nDATA\r\nFrom: ceo@x\r\n\r\nsmuggled\r\n"

PATTERNS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r",
            b"\r.\n"]


def finish_refused_session(c):
    """After the 5xx the session goes on, or ends with a 421 and a clean close."""
    try:
        c.send(b"NOOP\r\n")
        r = c.reply()
    except (EOFError, ConnectionError):
        return
    if r.code == 421:
        c.read_to_close()
    else:
        assert r.lines == ["250 2.0.0 Ok"], r


def assert_nothing_smuggled(sink):
    assert sink.messages() == []
    for n in sink.conns():
        rec = sink.wait_done(n)
        data = rec.partition(b"DATA\r\n")[2]
        assert b"\r\n.\r\n" not in data and not data.startswith(b".\r\n"), rec
        assert b"evil@x" not in rec and b"victim@x" not in rec, rec


@pytest.mark.parametrize("pattern", PATTERNS, ids=[repr(p)[2:-1] for p in PATTERNS])
def test_smuggling_refused(proxy, sink, pattern):
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: s\r\n\r\nhello" + pattern + SMUGGLED + b"\r\n.\r\n")
    r = c.reply()
    assert 500 <= r.code < 600, r
    finish_refused_session(c)
    c.close()
    assert_nothing_smuggled(sink)
    # The proxy is still fine for the next client.
    c = implicit(proxy.port("smtps"))
    body = b"Subject: after\r\n\r\nok\r\n"
    assert send_message(c, body).code == 250
    assert_delivered(sink, 1, body)


def test_smuggling_split_across_records(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    for piece in (b"Subject: s\r\n\r\nhello\n", b".", b"\n" + SMUGGLED, b"\r\n.\r\n"):
        c.send(piece)
        time.sleep(0.1)
    r = c.reply()
    assert 500 <= r.code < 600, r
    finish_refused_session(c)
    c.close()
    assert_nothing_smuggled(sink)


def test_terminator_split_across_records(proxy, sink):
    """The legitimate end of data, one byte per TLS record, is still found."""
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    body = b"Subject: split\r\n\r\nline\r\n..dot\r\n"
    c.send(body)
    for byte in b".\r\n":
        time.sleep(0.05)
        c.send(bytes([byte]))
    r = c.reply()
    assert r.code == 250, r
    assert sink.msg(1, "raw") == body


def test_plaintext_smuggling_refused(proxy, sink):
    # The same scanner guards sessions that never start TLS.
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"hi\n.\n" + SMUGGLED + b".\r\n")
    r = c.reply()
    assert 500 <= r.code < 600, r
    finish_refused_session(c)
    c.close()
    assert_nothing_smuggled(sink)
