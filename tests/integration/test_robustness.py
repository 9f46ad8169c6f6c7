"""Pipelining, limits, hostile input and failing backends (THREATS S12, S24,
S44-S48)."""

import ctypes
import os
import socket
import ssl
import time

import pytest

from conftest import (Client, client_context, ehlo_starttls, free_port, implicit, send_message,
                      assert_delivered)

BODY = b"Subject: still works\r\n\r\n.dot\r\n"


def still_works(proxy, sink):
    """A normal STARTTLS delivery after whatever the test did."""
    before = len(sink.messages())
    c = ehlo_starttls(proxy.port("smtp"))
    r = send_message(c, BODY)
    assert r.code == 250, r
    assert c.cmd("QUIT").code == 221
    c.close()
    assert_delivered(sink, before + 1, BODY)


def client_hello():
    """The bytes of a real TLS ClientHello, from a memory BIO."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(incoming, outgoing, server_hostname="test.example")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16"
    return hello


# --- pipelining ----------------------------------------------------------------

def test_hundred_pipelined_rcpts(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    lines, expected = [b"MAIL FROM:<a@example.org>"], ["250 2.1.0 Ok"]
    for i in range(100):
        if i % 10 == 9:  # a syntax error now and then shows the order
            lines.append(b"RCPT <bad%d@x>" % i)
            expected.append("501 5.5.4 Syntax: RCPT TO:<address>")
        elif i % 25 == 12:
            lines.append(b"NOOP")
            expected.append("250 2.0.0 Ok")
        else:
            lines.append(b"RCPT TO:<r%d@example.org>" % i)
            expected.append("250 2.1.5 Ok")
    c.send(b"".join(l + b"\r\n" for l in lines))
    got = [r.lines for r in c.replies(len(lines))]
    assert got == [[e] for e in expected]
    assert c.cmd("DATA").code == 354
    c.send(b"hi\r\n.\r\n")
    assert c.reply().code == 250
    assert c.cmd("QUIT").code == 221
    rec = sink.wait_done(1)
    assert b"".join(l + b"\r\n" for l in lines) in rec
    env = sink.msg(1, "env").decode().splitlines()
    assert env[2:] == ["rcpt <r%d@example.org>" % i for i in range(100)
                       if i % 10 != 9 and i % 25 != 12]


def test_pipelined_transactions_in_one_write(proxy, sink):
    c = implicit(proxy.port("smtps"))
    one = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nBDAT 5 LAST\r\nhello"
    c.send(one * 3 + b"QUIT\r\n")
    codes = [r.code for r in c.replies(10)]
    assert codes == [250, 250, 250] * 3 + [221], codes
    assert sink.messages() == [1, 2, 3]
    assert all(sink.msg(n) == b"hello" for n in (1, 2, 3))


# --- limits and hostile input ----------------------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_long_line(proxy, sink, tls):
    """100 KB without CRLF: "500 5.5.2 Line too long" (or 421 and a close) once
    the proxy's line buffer is full, without waiting for the CRLF; the rest of
    the line, when its CRLF comes, is not executed."""
    c = ehlo_starttls(proxy.port("smtp")) if tls else Client(proxy.port("smtp"))
    if not tls:
        assert c.reply().code == 220
        assert c.cmd("EHLO a").code == 250
    c.send(b"MAIL FROM:<" + b"x" * 100000)  # no CRLF
    early = c.silence(5.0)
    tail = b"xxxxRCPT TO:<tail@x>\r\nNOOP\r\n"
    if early.startswith(b"421 "):
        assert c.read_to_close() == b""
    else:
        # Finish the line so that the session can be checked and ended cleanly.
        c.send(tail)
        c.buf = early + c.buf
        assert c.reply().lines == ["500 5.5.2 Line too long"]
        assert c.reply().lines == ["250 2.0.0 Ok"]  # the tail was discarded
        assert c.cmd("QUIT").code == 221
    c.close()
    rec = sink.wait_done(1)
    assert b"xxxx" not in rec and b"tail@x" not in rec and b"MAIL" not in rec, rec[:200]
    still_works(proxy, sink)
    assert early, "no reply to a 100 KB line until its CRLF arrived"


def test_line_of_4000_octets_is_fine(proxy, sink):
    # INTERFACE.md: lines the proxy parses may be at least 2048 octets long.
    c = ehlo_starttls(proxy.port("smtp"))
    addr = "a" * 2000 + "@example.org"
    assert c.cmd("MAIL FROM:<%s>" % addr).code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("QUIT").code == 221
    assert ("MAIL FROM:<%s>\r\n" % addr).encode() in sink.wait_done(1)


def test_garbage_instead_of_client_hello(proxy, sink):
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("STARTTLS").code == 220
    c.send(b"GARBAGE\r\nMAIL FROM:<g@x>\r\nRCPT TO:<g@x>\r\n")
    rest = c.read_to_close()
    assert b"250" not in rest and b"g@x" not in rest, rest
    c.close()
    rec = sink.wait_done(1)
    assert rec == b"EHLO a\r\nRSET\r\n" or rec == b"EHLO a\r\nRSET\r\nQUIT\r\n", rec
    still_works(proxy, sink)


def test_client_hello_on_plaintext_port(proxy, sink):
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    c.send(client_hello())
    # An SMTP error reply, or a close; not silence until the idle timeout.
    try:
        first = c.reply()
    except EOFError:
        first = None
    if first is not None:
        assert first.code >= 500, first
    c.close()
    assert b"\x16\x03" not in sink.wait_done(1)
    still_works(proxy, sink)


def test_client_hello_on_plaintext_port_with_crlf(proxy, sink):
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    c.send(client_hello() + b"\r\nNOOP\r\n")
    r = c.reply()
    assert r.code >= 500 or r.code == 421, r
    c.close()
    assert b"\x16\x03" not in sink.wait_done(1)


def test_implicit_listener_plaintext_first(proxy, sink):
    c = Client(proxy.port("smtps"))
    c.send(b"EHLO a\r\nMAIL FROM:<p@x>\r\n")
    rest = c.read_to_close()
    assert b"220" not in rest and b"250" not in rest, rest
    c.close()
    rec = sink.wait_done(1)
    assert b"EHLO" not in rec and b"p@x" not in rec
    still_works(proxy, sink)


@pytest.mark.parametrize("cut", [0, 20, -1], ids=["nothing", "partial-hello", "whole-hello"])
def test_client_drops_mid_handshake(proxy, sink, cut):
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("STARTTLS").code == 220
    hello = client_hello()
    c.send(hello[:cut] if cut >= 0 else hello)
    time.sleep(0.2)
    c.close()
    proxy.wait_sessions(1)
    still_works(proxy, sink)
    assert len(proxy.wait_sessions(2)) == 2


def test_many_sessions_at_once(proxy, sink):
    clients = [Client(proxy.port("smtp")) for _ in range(30)]
    for c in clients:
        assert c.reply().code == 220
    for i, c in enumerate(clients):
        assert c.cmd("EHLO c%d" % i).code == 250
    for c in clients:
        assert c.cmd("QUIT").code == 221
        c.close()
    still_works(proxy, sink)


# --- failing backends ---------------------------------------------------------------

def expect_421_and_close(c):
    r = c.reply()
    assert r.code == 421 and r.lines[0].startswith("421 4.4.2"), r
    assert c.read_to_close() == b""


def test_backend_down(proxy_for):
    proxy = proxy_for("127.0.0.1:%d" % free_port())
    expect_421_and_close(Client(proxy.port("smtp")))
    # Implicit TLS: the handshake comes first, then the 421 inside TLS.
    expect_421_and_close(Client(proxy.port("smtps"), tls=True))


def test_backend_does_not_greet(start_sink, proxy_for):
    sink = start_sink("--no-greeting")
    proxy = proxy_for(sink, connect_timeout="2s")
    start = time.monotonic()
    c = Client(proxy.port("smtp"))
    expect_421_and_close(c)
    assert 1.5 < time.monotonic() - start < 15, "connect_timeout = 2s, not the 30 s default"


def test_backend_rejects_with_554(start_sink, proxy_for):
    sink = start_sink("--greeting", "554 go away")
    proxy = proxy_for(sink)
    c = Client(proxy.port("smtp"))
    assert c.reply().lines == ["554 go away"]
    c.close()
    c = Client(proxy.port("smtps"), tls=True)
    assert c.reply().lines == ["554 go away"]


def test_backend_closes_after_greeting(start_sink, proxy_for):
    sink = start_sink("--close-after-greeting")
    proxy = proxy_for(sink)
    c = Client(proxy.port("smtp"))
    first = c.reply()
    if first.code == 421:  # the proxy noticed the close before the client spoke
        assert first.lines[0].startswith("421 4.4.2"), first
        return
    assert first.lines == ["220 sink.test ESMTP"]
    try:
        c.send(b"EHLO a\r\n")
    except ConnectionError:
        pytest.fail("connection dropped without a 421")
    expect_421_and_close(c)


def test_backend_closes_while_reply_owed(start_sink, proxy_for):
    sink = start_sink("--close-on", "MAIL")
    proxy = proxy_for(sink)
    c = ehlo_starttls(proxy.port("smtp"))
    c.send(b"MAIL FROM:<a@example.org>\r\n")
    expect_421_and_close(c)
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    c.send(b"EHLO a\r\nMAIL FROM:<a@example.org>\r\n")
    assert c.reply().code == 250
    expect_421_and_close(c)


def test_backend_closes_during_data(start_sink, proxy_for):
    # The sink hangs up on the second EHLO; meanwhile plain DATA streams.
    sink = start_sink("--close-on", "RSET")
    proxy = proxy_for(sink)
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    r = c.cmd("STARTTLS")
    # The RSET before the 220 finds the backend gone: no TLS, a 421 or a 454.
    assert r.code in (421, 454), r
    if r.code == 421:
        assert c.read_to_close() == b""


# --- socket options ------------------------------------------------------------------

SYS_PIDFD_GETFD = 438  # the same number on every architecture


def proxy_socket_for(proxy, client):
    """A duplicate of the proxy's own socket for CLIENT's connection (pidfd_getfd)."""
    client_port = client.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local_port, remote_port = (int(a.split(":")[1], 16) for a in fields[1:3])
            if remote_port == client_port and local_port == client.getpeername()[1]:
                inode = fields[9]
    assert inode, "no proxy socket for port %d" % client_port
    for pid in proxy.pids():
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except FileNotFoundError:
                continue
            if target == "socket:[%s]" % inode:
                pidfd = os.pidfd_open(pid)
                dup = ctypes.CDLL(None, use_errno=True).syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
                os.close(pidfd)
                assert dup >= 0, os.strerror(ctypes.get_errno())
                return socket.socket(fileno=dup)
    pytest.fail("no process of the proxy holds socket %s" % inode)


def test_accepted_sockets_have_nodelay(proxy):
    """listener.c sets TCP_NODELAY on the listening socket only: Linux
    copies it to every socket accepted from it."""
    for name in ("smtp", "smtps"):
        raw = socket.create_connection(("127.0.0.1", proxy.port(name)))
        if name == "smtps":
            raw.send(client_hello())  # an implicit-TLS client speaks first
        ours = wait_for_socket(proxy, raw)
        try:
            assert ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, name
        finally:
            ours.close()
            raw.close()


def wait_for_socket(proxy, client, timeout=5.0):
    """proxy_socket_for, once the proxy has accepted CLIENT's connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proxy_socket_for(proxy, client)
        except (AssertionError, pytest.fail.Exception):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
