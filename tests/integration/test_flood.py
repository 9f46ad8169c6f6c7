"""Limits and floods (README "Limits"): max_per_ip, max_connections over
every worker, max_handshakes, and running out of descriptors.

A refused client of a STARTTLS listener reads one 421 and a close; one of an
implicit-TLS listener is closed before any TLS. Neither reaches the backend:
the recording sink's conn-N files count the backend connections. Every flood
is bounded in count, every wait in time; nothing asserts a duration.
"""

import os
import socket
import ssl
import subprocess
import time

import pytest

import test_metrics
from conftest import (TIMEOUT, Client, Proxy, client_context, ehlo_starttls, greeted, implicit, send_message,
                      starttlsd_binary, stop_process, wait_until, write_conf)

TOO_MANY = b"421 4.7.0 Too many connections, try again later\r\n"
BODY = b"Subject: flood\r\n\r\nstill delivered\r\n"
REFUSED = 'starttlsd_connections_refused_total{listener="%s",reason="%s"}'
ACCEPTED = 'starttlsd_connections_accepted_total{listener="%s"}'


def connect_from(source, port):
    """A TCP connection to the proxy from loopback address SOURCE."""
    s = socket.socket()
    s.settimeout(TIMEOUT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_to_close(s):
    """Everything the proxy sends until it closes (a reset counts as a close)."""
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def refused_tls(port):
    """An implicit-TLS client closed before any ServerHello: the handshake fails unanswered."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        client_context().wrap_socket(raw, server_hostname="test.example")
    except (ssl.SSLError, ConnectionResetError, OSError) as e:
        return str(e) or type(e).__name__
    finally:
        raw.close()
    return None


def counter(port, series):
    return test_metrics.scrape(port).get(series, 0)


def test_max_per_ip_refuses_a_flood_from_one_address_and_serves_another(sink, start_proxy):
    # No metrics here: the supervisor's probe of the backend would be a sink connection too.
    proxy = start_proxy({"smtp": {"backend": sink.addr, "max_per_ip": "3"}}, ("log_level = debug", "workers = 1"))
    port = proxy.port("smtp")
    held = [connect_from("127.0.0.2", port) for _ in range(3)]
    for s in held:
        assert s.recv(4096).startswith(b"220 sink.test"), "the first three are served"
    flood = 20
    for _ in range(flood):
        with connect_from("127.0.0.2", port) as s:
            assert read_to_close(s) == TOO_MANY
    # Another address is served in the middle of it, mail and all.
    c = Client.__new__(Client)
    c.sock, c.buf, c.tls = connect_from("127.0.0.3", port), b"", False
    assert c.reply().code == 220 and c.cmd("EHLO b").code == 250
    assert send_message(c, BODY).code == 250
    c.close()
    assert len(proxy.log.wait_for(r"client 127\.0\.0\.2:\d+: refused: max_per_ip", count=flood)) == flood
    assert len(sink.conns()) == 4, "the backend saw the three held clients and 127.0.0.3 alone"
    # Its connections closed, the address is served again.
    for s in held:
        s.close()
    def served_again():
        with connect_from("127.0.0.2", port) as s:
            return s.recv(4096).startswith(b"220 ")
    assert wait_until(served_again)


def test_max_per_ip_counts_the_address_from_the_proxy_header(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr, "max_per_ip": "1", "accept_proxy": "yes"}},
                        ("log_level = debug", "workers = 1"))
    port = proxy.port("smtp")

    def behind_balancer(client):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        s.sendall(b"PROXY TCP4 %s 127.0.0.1 40000 25\r\n" % client)
        return s

    first, second = behind_balancer(b"192.0.2.1"), behind_balancer(b"192.0.2.2")
    assert first.recv(4096).startswith(b"220 ") and second.recv(4096).startswith(b"220 ")
    with behind_balancer(b"192.0.2.1") as again:
        assert read_to_close(again) == TOO_MANY
    assert proxy.log.wait_for(r"client 192\.0\.2\.1:40000: refused: max_per_ip")
    assert len(sink.conns()) == 2
    first.close()
    second.close()


def test_max_connections_counts_every_worker_on_both_listener_kinds(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr, "tls": "starttls"},
                         "smtps": {"backend": sink.addr, "tls": "implicit"}},
                        ("log_level = debug", "workers = 2", "max_connections = 2"))
    plain = greeted(proxy.port("smtp"))
    tls = implicit(proxy.port("smtps"))
    # Two workers share the sockets: each one's own count is below 2, the sum is not.
    attempts = 6
    for _ in range(attempts):
        with socket.create_connection(("127.0.0.1", proxy.port("smtp")), timeout=TIMEOUT) as s:
            assert read_to_close(s) == TOO_MANY
        assert refused_tls(proxy.port("smtps")), "the handshake of a refused implicit client fails"
    refusals = proxy.log.wait_for(r"refused: max_connections", count=2 * attempts)
    assert refusals and len(refusals) == 2 * attempts, "both workers refused, whichever accepted"
    assert len(sink.conns()) == 2, "no refused client reached the backend"
    assert send_message(tls, BODY).code == 250, "the sessions let in go on"
    plain.close()
    tls.close()
    # Room again once they have ended.
    proxy.wait_sessions(2)
    greeted(proxy.port("smtp")).close()


def test_refusals_are_counted_by_listener_and_reason(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr, "tls": "starttls", "max_per_ip": "1"},
                         "smtps": {"backend": sink.addr, "tls": "implicit"}},
                        ("log_level = debug", "workers = 1", "max_connections = 3", "metrics = 127.0.0.1:0"))
    port, mport = proxy.port("smtp"), test_metrics.metrics_port(proxy)
    held = [connect_from(source, port) for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4")]
    for s in held:
        assert s.recv(4096).startswith(b"220 ")
    # Three open: every newcomer is over max_connections, the one from 127.0.0.2 as well.
    for source in ("127.0.0.2", "127.0.0.5"):
        with connect_from(source, port) as s:
            assert read_to_close(s) == TOO_MANY
    assert refused_tls(proxy.port("smtps"))
    held.pop().close()
    assert wait_until(lambda: counter(mport, 'starttlsd_connections_open{listener="smtp"}') == 2)
    with connect_from("127.0.0.2", port) as s:
        assert read_to_close(s) == TOO_MANY
    want = {REFUSED % ("smtp", "max_connections"): 2, REFUSED % ("smtp", "max_per_ip"): 1,
            REFUSED % ("smtps", "max_connections"): 1, REFUSED % ("smtps", "max_per_ip"): 0,
            REFUSED % ("smtp", "max_handshakes"): 0}
    assert test_metrics.subset(test_metrics.settled(mport, want), want) == want
    for s in held:
        s.close()


def test_stalled_handshakes_beyond_max_handshakes_wait_and_relaying_goes_on(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr, "tls": "starttls"},
                         "smtps": {"backend": sink.addr, "tls": "implicit"}},
                        ("log_level = debug", "workers = 1", "max_handshakes = 4", "metrics = 127.0.0.1:0"))
    mport = test_metrics.metrics_port(proxy)
    relaying = ehlo_starttls(proxy.port("smtp"))
    # Ten handshakes that never finish: silent, or half a ClientHello.
    stalled = []
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", proxy.port("smtps")), timeout=TIMEOUT)
        if i % 2:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        stalled.append(s)
    assert wait_until(lambda: counter(mport, ACCEPTED % "smtps") == 4)
    # The worker goes on relaying, and starts STARTTLS handshakes it promised.
    assert send_message(relaying, BODY).code == 250
    fresh = ehlo_starttls(proxy.port("smtp"))
    assert send_message(fresh, BODY).code == 250
    assert counter(mport, ACCEPTED % "smtps") == 4, "accepting paused on the implicit listener"
    assert sink.messages() == [1, 2]
    # Once they are gone it takes implicit clients again.
    for s in stalled:
        s.close()
    late = implicit(proxy.port("smtps"))
    assert send_message(late, BODY).code == 250
    for c in (relaying, fresh, late):
        c.close()


def test_a_proxy_header_completed_at_max_handshakes_is_refused(sink, start_proxy):
    proxy = start_proxy({"smtps": {"backend": sink.addr, "tls": "implicit", "accept_proxy": "yes"}},
                        ("log_level = debug", "workers = 1", "max_handshakes = 2", "metrics = 127.0.0.1:0"))
    port, mport = proxy.port("smtps"), test_metrics.metrics_port(proxy)
    # Accepted while no handshake runs: each waits for its PROXY header.
    conns = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(3)]
    assert proxy.log.wait_for(r"client \S+: connected to listener smtps", count=3)
    for i, s in enumerate(conns):
        s.sendall(b"PROXY TCP4 192.0.2.%d 127.0.0.1 40000 465\r\n" % (i + 1))
        assert proxy.log.wait_for(r"client 192\.0\.2\.%d:40000: (from the PROXY header|refused)" % (i + 1))
    assert read_to_close(conns[2]) == b"", "closed before any TLS"
    assert wait_until(lambda: counter(mport, REFUSED % ("smtps", "max_handshakes")) == 1)
    for s in conns:
        s.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_worker_waits_without_spinning_and_recovers(sink, tmp_path, cert, request):
    wrapper = tmp_path / "starttlsd-64"
    wrapper.write_text('#!/bin/sh\nexec prlimit --nofile=64:64 -- "%s" "$@"\n' % starttlsd_binary())
    wrapper.chmod(0o755)
    # max_connections far above what 64 descriptors hold: accept() itself runs out.
    conf = write_conf(tmp_path / "starttlsd.conf", {"smtp": {"backend": sink.addr}}, cert,
                      ("log_level = debug", "workers = 1", "max_connections = 1000"))
    proxy = Proxy(conf, ["smtp"], str(wrapper))
    flood = []
    try:
        for _ in range(60):  # more than 64 descriptors hold, with their backend connections
            flood.append(socket.create_connection(("127.0.0.1", proxy.port("smtp")), timeout=TIMEOUT))
        assert proxy.log.wait_for(r"accept: Too many open files; new connections wait")
        # Stuck for a while: the listening socket stays readable, the worker must not spin.
        before = cpu_seconds(proxy.proc.pid)
        time.sleep(2.0)
        used = cpu_seconds(proxy.proc.pid) - before
        assert used < 0.5, "%.2f s of CPU in 2 s while out of descriptors" % used
        assert len(proxy.log.wait_for(r"accept: Too many open files")) == 1, "logged once per episode"
        for s in flood:
            s.close()
        flood = []
        c = greeted(proxy.port("smtp"))
        assert send_message(c, BODY).code == 250
        c.close()
        assert proxy.log.wait_for(r"accepting new connections again")
    finally:
        for s in flood:
            s.close()
        rc = proxy.stop()
        proxy.log.thread.join(5)
        if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed or rc != 0:
            print("--- proxy log ---\n" + proxy.log.text())
    assert rc == 0
