"""accept_proxy = yes: the PROXY protocol header from a load balancer, v1 and
v2, in front of STARTTLS and implicit TLS; never guessed; proxy_from."""

import socket
import struct
import time

from conftest import CERT_NAME, TIMEOUT, Client, client_context, send_message

V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\r\n"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(src="192.0.2.9", sport=40000, dst="198.51.100.1", dport=465):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs


def v2_local():
    return V2_SIG + b"\x20\x00\x00\x00"


def proxied(proxy_for, sink, **keys):
    return proxy_for(sink, accept_proxy="yes", **keys)


def closed_without_reply(c, timeout=TIMEOUT):
    """The proxy closes without sending a byte."""
    return c.read_to_close(timeout) == b""


def test_v1_then_starttls_session(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    c = Client(proxy.port("smtp"))
    c.send(V1)
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    assert c.cmd("EHLO a").code == 250
    assert send_message(c, b"Subject: via a balancer\r\n\r\nhi\r\n").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    session = proxy.wait_sessions()[0]
    assert session["client"] == "192.0.2.7:50000", session
    assert b"PROXY" not in sink.all_raw()


def test_v2_then_implicit_tls(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    sock = socket.create_connection(("127.0.0.1", proxy.port("smtps")), timeout=TIMEOUT)
    sock.sendall(v2_tcp4())
    c = Client.__new__(Client)
    c.sock = client_context().wrap_socket(sock, server_hostname=CERT_NAME)
    c.buf, c.tls = b"", True
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    assert proxy.wait_sessions()[0]["client"] == "192.0.2.9:40000"


def test_header_and_smtp_in_one_segment_and_split_header(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    c = Client(proxy.port("smtp"))
    c.send(V1 + b"EHLO same-segment\r\n")
    assert c.reply().code == 220
    assert c.reply().code == 250, "the bytes after the header are SMTP input"
    c.close()

    c = Client(proxy.port("smtp"))
    c.send(V1[:10])
    time.sleep(0.3)
    c.send(V1[10:])
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    c.close()
    sessions = proxy.wait_sessions(2)
    assert all(s["client"] == "192.0.2.7:50000" for s in sessions), sessions
    assert b"EHLO same-segment\r\n" in sink.all_raw() and b"PROXY" not in sink.all_raw()


def test_v2_local_keeps_the_real_address(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    c = Client(proxy.port("smtp"))
    c.send(v2_local())
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    local_port = c.sock.getsockname()[1]
    c.close()
    assert proxy.wait_sessions()[0]["client"] == "127.0.0.1:%d" % local_port


def test_no_header_is_never_guessed(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    for bad in (b"EHLO client.test\r\n", V1.replace(b"\r\n", b"\n"),
                b"PROXY TCP4 192.0.2.7 198.51.100.1 050000 25\r\n", b"PROXY " + b"x" * 120 + b"\r\n"):
        c = Client(proxy.port("smtp"))
        c.send(bad)
        assert closed_without_reply(c), bad
        c.close()
    # A client that says nothing is dropped after the header timeout (at least 3 s).
    c = Client(proxy.port("smtp"))
    start = time.monotonic()
    assert closed_without_reply(c, timeout=15)
    assert time.monotonic() - start >= 3
    c.close()
    assert sink.conns() == [], "no backend connection without a valid header"


def test_proxy_from_limits_who_may_send_a_header(proxy_for, sink):
    proxy = proxied(proxy_for, sink, proxy_from="192.0.2.0/24")
    # 127.0.0.1 is not listed: it is a direct client, and a header from it ends it.
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    c.close()
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    c.send(V1)
    assert c.read_to_close() == b""
    c.close()
    assert b"PROXY" not in sink.all_raw()
