"""trace_header = yes: one Received line before each message, DATA and
BDAT alike, saying the message came over TLS; the rest byte for byte."""

import email
import email.policy
import re

from conftest import ehlo_starttls, implicit, send_message, stuff

RECEIVED = re.compile(
    rb"^Received: from (?P<helo>\S+) \(\[(?P<addr>[^\]]+)\]\)\r\n"
    rb"\tby (?P<by>\S+) \(starttlsd\) with (?P<proto>ESMTPS|ESMTPSA|ESMTP|SMTP)"
    rb"(?:\r\n\ttls (?P<suite>TLS_[A-Z0-9_]+))?;\r\n\t(?P<date>[^\r\n]+)\r\n")


def split_trace(raw):
    m = RECEIVED.match(raw)
    assert m, raw[:300]
    return m, raw[m.end():]


def test_data_message_gets_a_received_line(sink, proxy_for):
    proxy = proxy_for(sink, trace_header="yes")
    body = b"Subject: traced\r\nFrom: a@example.org\r\n\r\n.leading dot\r\n\xff 8-bit\r\n"
    c = ehlo_starttls(proxy.port("smtp"), name="client.test")
    assert send_message(c, body).code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    m, rest = split_trace(sink.msg(1, "raw"))
    assert m.group("helo") == b"client.test" and m.group("addr") == b"127.0.0.1"
    assert m.group("proto") == b"ESMTPS" and m.group("suite").startswith(b"TLS_")
    assert rest == stuff(body), "everything after the line is what the client sent"
    parsed = email.message_from_bytes(sink.msg(1, "eml"), policy=email.policy.default)
    assert "with ESMTPS" in str(parsed["Received"]) and parsed["Subject"] == "traced"


def test_bdat_message_gets_a_received_line(sink, proxy_for):
    proxy = proxy_for(sink, trace_header="yes")
    c = implicit(proxy.port("smtps"), name="bdat.test")
    chunk1, chunk2 = b"Subject: chunked\r\n\r\nQUIT\r\n", b".\r\nSTARTTLS\r\nend\r\n"
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    c.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
    assert c.reply().code == 250
    c.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
    assert c.reply().code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    m, rest = split_trace(sink.msg(1, "raw"))
    assert m.group("helo") == b"bdat.test" and m.group("proto") == b"ESMTPS"
    assert rest == chunk1 + chunk2


def test_no_trace_line_by_default(sink, proxy):
    c = ehlo_starttls(proxy.port("smtp"))
    assert send_message(c, b"Subject: plain\r\n\r\nx\r\n").code == 250
    c.close()
    assert sink.msg(1, "raw") == b"Subject: plain\r\n\r\nx\r\n"
