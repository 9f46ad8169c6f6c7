"""client_addr = xclient: the proxy's own EHLO, then XCLIENT with the
client's address, before anything of the client's; fail closed when the
backend does not offer or refuses it (Postfix XCLIENT_README)."""

import re

from conftest import Client, assert_delivered, ehlo_starttls, send_message


def test_xclient_before_the_clients_commands(sink, proxy_for):
    proxy = proxy_for(sink, client_addr="xclient")
    c = ehlo_starttls(proxy.port("smtp"), name="client.test")
    local_port = c.sock.getsockname()[1]
    body = b"Subject: with the client's address\r\n\r\nhi\r\n"
    assert send_message(c, body).code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    raw = sink.wait_done(1)
    m = re.match(rb"EHLO (\S+)\r\nXCLIENT ADDR=127\.0\.0\.1 PORT=(\d+) NAME=\[UNAVAILABLE\]\r\nEHLO client\.test\r\n", raw)
    assert m, raw[:300]
    assert int(m.group(2)) == local_port
    assert raw.count(b"XCLIENT") == 1
    assert_delivered(sink, 1, body)


def test_xclient_not_offered_fails_closed(start_sink, proxy_for):
    sink = start_sink("--caps", "PIPELINING,8BITMIME")
    proxy = proxy_for(sink, client_addr="xclient")
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    c.send("MAIL FROM:<a@example.org>\r\n")
    assert c.reply().lines == ["421 4.7.0 Backend cannot take the client's address, closing connection"]
    assert c.read_to_close() == b""
    c.close()
    assert b"MAIL" not in sink.wait_done(1)
    # The worker's log line reaches the reading thread after the client's 421.
    assert proxy.log.wait_for(r"does not offer XCLIENT"), proxy.log.text()
