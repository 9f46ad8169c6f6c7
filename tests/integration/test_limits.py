"""No session holds resources for ever: session_timeout, min_data_rate, a
backend released when its client leaves before the greeting, memory given
back after a burst of sessions.

Every wait is bounded in count and in time; nothing asserts a duration.
"""

import socket
import time

from conftest import TIMEOUT, Client, assert_delivered, ehlo_starttls, greeted, wait_until

HEADERS = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: limits\r\n\r\n"

TOO_SLOW = "421 4.4.2 Data rate too low, closing connection"
SESSION_OVER = "421 4.4.2 Session time limit exceeded, closing connection"
# Short limits so that the tests trip within seconds: 1000 bytes a second
# after a 2 s grace, a session of at most 4 s.
FAST_LIMITS = dict(min_data_rate="1000", min_data_rate_grace="2s")


def open_message(c):
    """MAIL, RCPT, DATA: the message is open."""
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354


def drip_until_reply(c, chunk, pause, rounds):
    """Send CHUNK, wait PAUSE seconds for a reply, at most ROUNDS times; the reply's bytes."""
    for _ in range(rounds):
        c.send(chunk)
        data = c.silence(pause)
        if data:
            return data + c.read_to_close()
    return b""


def assert_nothing_delivered(sink):
    """The backend connection ended with no message accepted and no terminator sent."""
    raw = sink.wait_done(1)
    assert sink.messages() == []
    body = raw.split(b"DATA\r\n", 1)[1] if b"DATA\r\n" in raw else b""
    assert b"\r\n.\r\n" not in body and not body.startswith(b".\r\n"), raw[-200:]


def test_data_dripped_below_min_data_rate_is_cut_off(sink, proxy_for):
    proxy = proxy_for(sink, **FAST_LIMITS)
    c = ehlo_starttls(proxy.port("smtp"))
    open_message(c)
    # One byte every second or so: far below 1000 bytes a second.
    got = drip_until_reply(c, b"x", 1.0, rounds=6 * TIMEOUT)
    assert got.decode("latin-1").startswith(TOO_SLOW + "\r\n"), got
    assert proxy.wait_sessions(1)[0]["end"] == "data-too-slow"
    assert_nothing_delivered(sink)


def test_bdat_dripped_below_min_data_rate_is_cut_off(sink, proxy_for):
    proxy = proxy_for(sink, **FAST_LIMITS)
    c = greeted(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    # Between chunks the message stays open until BDAT LAST.
    got = b""
    for _ in range(6 * TIMEOUT):
        c.send(b"BDAT 1\r\nx")
        line = c.reply()
        if line.code == 421:
            got = line.text.encode()
            break
        assert line.code == 250, line
        got = c.silence(1.0)
        if got:
            break
    assert got.decode("latin-1").startswith(TOO_SLOW), got
    assert proxy.wait_sessions(1)[0]["end"] == "data-too-slow"
    raw = sink.wait_done(1)
    assert sink.messages() == [] and b"LAST" not in raw, raw[-200:]


def test_session_timeout_ends_an_active_session(sink, proxy_for):
    proxy = proxy_for(sink, session_timeout="3s")
    c = greeted(proxy.port("smtp"))
    got = b""
    for _ in range(40 * TIMEOUT):  # a NOOP every quarter second keeps it busy
        c.send("NOOP\r\n")
        got = c.silence(0.25)
        if b"421" in got:
            break
        assert got == b"250 2.0.0 Ok\r\n", got
        time.sleep(0.25)
    # The NOOP it answers last may or may not have had its reply.
    assert got.split(b"\r\n")[-2].decode() == SESSION_OVER, got
    c.read_to_close()
    assert proxy.wait_sessions(1)[0]["end"] == "session-timeout"


def test_session_timeout_mid_message_delivers_nothing(sink, proxy_for):
    proxy = proxy_for(sink, session_timeout="4s", **FAST_LIMITS)
    c = greeted(proxy.port("smtp"))
    open_message(c)
    # 2000 bytes every quarter second: well above min_data_rate.
    got = drip_until_reply(c, b"y" * 1998 + b"\r\n", 0.25, rounds=40 * TIMEOUT)
    assert got.decode("latin-1").startswith(SESSION_OVER + "\r\n"), got
    assert proxy.wait_sessions(1)[0]["end"] == "session-timeout"
    assert_nothing_delivered(sink)


def test_fast_messages_pass_under_the_limits(sink, proxy_for):
    proxy = proxy_for(sink, session_timeout="1h", **FAST_LIMITS)
    c = ehlo_starttls(proxy.port("smtp"))
    body = HEADERS + b"".join(b"line %d .dot\r\n.\r\n" % i for i in range(20000))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    assert c.reply().code == 250
    chunked = HEADERS + b"bdat\r\n.\r\n" * 1000
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    c.send(b"BDAT %d\r\n" % 100 + chunked[:100])
    assert c.reply().code == 250
    c.send(b"BDAT %d LAST\r\n" % (len(chunked) - 100) + chunked[100:])
    assert c.reply().code == 250
    assert c.cmd("QUIT").code == 221
    assert proxy.wait_sessions(1)[0]["end"] == "quit"
    assert_delivered(sink, 1, body)
    assert sink.msg(2, "raw") == chunked


def test_backend_released_when_client_leaves_before_greeting(proxy_for):
    backend = socket.socket()
    backend.bind(("127.0.0.1", 0))
    backend.listen(4)
    backend.settimeout(TIMEOUT)
    try:
        proxy = proxy_for("127.0.0.1:%d" % backend.getsockname()[1], connect_timeout="60s")
        client = socket.create_connection(("127.0.0.1", proxy.port("smtp")), timeout=TIMEOUT)
        conn, _ = backend.accept()  # the proxy's backend connection; it never gets a greeting
        client.close()
        conn.settimeout(TIMEOUT)  # far below connect_timeout = 60s
        try:
            assert conn.recv(4096) == b"", "the proxy sent something to a silent backend"
        except socket.timeout:
            raise AssertionError("backend connection still held after the client left") from None
        finally:
            conn.close()
        assert proxy.wait_sessions(1)[0]["end"] == "client-closed"
    finally:
        backend.close()


def test_half_closed_client_still_gets_its_replies(proxy_for):
    """A client that pipelines its commands and closes only its sending side
    before the backend greets (gnutls-cli and nc at the end of their input)
    is owed replies: the backend is not released early for it."""
    backend = socket.socket()
    backend.bind(("127.0.0.1", 0))
    backend.listen(4)
    backend.settimeout(TIMEOUT)
    try:
        proxy = proxy_for("127.0.0.1:%d" % backend.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", proxy.port("smtp")), timeout=TIMEOUT)
        conn, _ = backend.accept()
        conn.settimeout(TIMEOUT)
        client.sendall(b"NOOP\r\nQUIT\r\n")
        client.shutdown(socket.SHUT_WR)
        # Likely after the proxy has read the client's end; either order must work.
        time.sleep(0.5)
        conn.sendall(b"220 late.test ESMTP\r\n")
        # No PIPELINING was offered: one command at a time.
        for command, reply in ((b"NOOP\r\n", b"250 2.0.0 Ok\r\n"), (b"QUIT\r\n", b"221 2.0.0 Bye\r\n")):
            got = b""
            while not got.endswith(b"\r\n"):
                chunk = conn.recv(4096)
                assert chunk, got
                got += chunk
            assert got == command, got
            conn.sendall(reply)
        conn.close()
        replies = b""
        while True:
            chunk = client.recv(4096)
            if not chunk:
                break
            replies += chunk
        assert replies == b"220 late.test ESMTP\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n", replies
        client.close()
    finally:
        backend.close()


def test_memory_given_back_after_a_burst(sink, start_proxy):
    """1,000 TLS sessions at once, then none: the worker's VmRSS returns close
    to where it started (glibc keeps freed heap pages unless given back)."""
    proxy = start_proxy({"smtps": {"backend": sink.addr, "tls": "implicit"}},
                        global_lines=("log_level = info", "workers = 1"))
    sanitized = proxy.sanitized()
    burst = 100 if sanitized else 1000  # ASan and valgrind: the path only, no figures
    pid = proxy.proc.pid  # workers = 1: the process itself serves
    baseline = proxy.rss_kb()[pid]
    clients = []
    try:
        for _ in range(burst):
            c = Client(proxy.port("smtps"), tls=True)
            assert c.reply().code == 220
            clients.append(c)
        for c in clients:
            c.send("EHLO burst.test\r\n")
        for c in clients:
            assert c.reply().code == 250
        peak = proxy.rss_kb()[pid]
    finally:
        for c in clients:
            c.close()
    assert len(proxy.wait_sessions(burst, timeout=6 * TIMEOUT)) == burst
    margin = 8 * 1024  # kB: generous; what the burst held is several times that

    def given_back():
        kb = proxy.rss_kb()[pid]
        return kb if kb - baseline < margin else None

    after = wait_until(given_back)
    print("VmRSS %d kB before, %d kB with %d sessions open, %d kB after they closed (%s)"
          % (baseline, peak, burst, proxy.rss_kb()[pid], "given back" if after else "kept"))
    if sanitized:
        return  # ASan's quarantine and valgrind keep freed memory resident
    assert peak - baseline > 2 * margin, "the burst did not use memory: nothing measured"
    assert after, "VmRSS %d kB after the burst, %d kB before it" % (proxy.rss_kb()[pid], baseline)
