"""metrics = ADDR:PORT: Prometheus text at /metrics that sums every worker
and never goes backwards across a reload, /healthz, and a metrics listener
that no scraper can use to hurt the mail flow (README "Monitoring")."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (TIMEOUT, Client, ehlo_starttls, greeted, send_message, wait_until, free_port)
from test_workers import wait_workers

METRICS_RE = r"metrics: /metrics and /healthz on 127\.0\.0\.1:(\d+)"
SAMPLE_RE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (-?\d+)$")
MESSAGES_PER_SESSION = 2


def metrics_port(proxy):
    found = proxy.log.wait_for(METRICS_RE)
    assert found, proxy.log.text()
    return int(found[0].group(1))


def http(port, request, timeout=TIMEOUT):
    """Send REQUEST (bytes), read to close; (status code, body), or (0, "") when refused."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            return 0, ""  # closed unanswered: more scrapers than served at once
    head, _, body = data.partition(b"\r\n\r\n")
    return (int(head.split()[1]) if head else 0), body.decode()


def get(port, path):
    return http(port, b"GET %s HTTP/1.1\r\nHost: test\r\n\r\n" % path.encode())


def scrape(port):
    """The samples of /metrics as {series: value}, after promtool accepted the text."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr + body
    samples = {}
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        samples[m.group(1) + (m.group(2) or "")] = int(m.group(3))
    return samples


def healthy(port):
    return get(port, "/healthz") == (200, "ok\n")


def full_session(port):
    """STARTTLS, then MESSAGES_PER_SESSION messages, then QUIT."""
    c = ehlo_starttls(port)
    for i in range(MESSAGES_PER_SESSION):
        assert send_message(c, b"Subject: %d\r\n\r\nbody\r\n" % i).code == 250
    assert c.cmd("QUIT").code == 221
    c.close()


def refusals_session(port):
    """In plaintext: AUTH (538) and a client's XCLIENT (550); then QUIT."""
    c = greeted(port)
    assert c.cmd("AUTH PLAIN AGFAYg==").code == 538
    assert c.cmd("XCLIENT ADDR=192.0.2.1").code == 550
    assert c.cmd("QUIT").code == 221
    c.close()


def pipelined_starttls_session(port):
    """A NOOP pipelined after STARTTLS in plaintext: discarded, never answered."""
    c = greeted(port)
    c.send("STARTTLS\r\nNOOP\r\n")
    assert c.reply().lines == ["220 2.0.0 Ready to start TLS"]
    c.start_tls()
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()


def smuggling_session(port):
    c = ehlo_starttls(port)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: s\r\n\r\nhello\n.\nMAIL FROM:<evil@x>\r\n.\r\n")
    assert c.reply().code == 554
    c.read_to_close()
    c.close()


def require_tls_session(port):
    c = greeted(port)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 530
    assert c.cmd("QUIT").code == 221
    c.close()


def run_known_sessions(proxy, sessions):
    smtp, strict = proxy.port("smtp"), proxy.port("strict")
    for _ in range(sessions):
        full_session(smtp)
    refusals_session(smtp)
    pipelined_starttls_session(smtp)
    smuggling_session(smtp)
    require_tls_session(strict)


def expected(n_full, reloads=0):
    """The samples a known run gives: N_FULL full sessions and one of each refusal."""
    handshakes = n_full + 2  # the pipelining and smuggling sessions' too
    return {
        'starttlsd_connections_accepted_total{listener="smtp"}': n_full + 3,
        'starttlsd_connections_accepted_total{listener="strict"}': 1,
        'starttlsd_connections_open{listener="smtp"}': 0,
        'starttlsd_messages_total': n_full * MESSAGES_PER_SESSION,
        'starttlsd_starttls_total': handshakes,
        'starttlsd_tls_handshakes_total{result="ok"}': handshakes,
        'starttlsd_tls_handshakes_total{result="failed"}': 0,
        'starttlsd_refusals_total{reason="must_starttls"}': 1,
        'starttlsd_refusals_total{reason="auth_needs_tls"}': 1,
        'starttlsd_refusals_total{reason="client_xclient"}': 1,
        'starttlsd_refusals_total{reason="smuggling"}': 1,
        'starttlsd_refusals_total{reason="plaintext_after_starttls"}': 1,
        'starttlsd_sessions_ended_total{reason="quit"}': n_full + 3,
        'starttlsd_sessions_ended_total{reason="smuggling-refused"}': 1,
        'starttlsd_backend_connect_failures_total': 0,
        'starttlsd_reloads_total{result="ok"}': reloads,
        'starttlsd_connections_refused_total{listener="smtp",reason="max_connections"}': 0,
    }


def subset(samples, want):
    return {k: samples.get(k) for k in want}


def settled(port, want):
    """The scrape once it shows WANT (sessions are counted as they end), or the last one."""
    last = {}

    def matches():
        last.update(scrape(port))
        return subset(last, want) == want

    wait_until(matches)
    return last


def test_counts_sum_over_workers_and_survive_a_reload(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr},
                         "strict": {"backend": sink.addr, "require_tls": "yes"}},
                        ("log_level = debug", "workers = 2", "metrics = 127.0.0.1:0"))
    port = metrics_port(proxy)
    first, second = wait_workers(proxy, 2)
    # Each worker serves half: the other one is stopped meanwhile, so the
    # figures can only come out right as a sum over both.
    for busy, stopped in ((first, second), (second, first)):
        os.kill(stopped, signal.SIGSTOP)
        try:
            run_known_sessions(proxy, 2)
        finally:
            os.kill(stopped, signal.SIGCONT)
    served_by = {int(p) for p in re.findall(r"connected to listener \S+ \(worker (\d+)\)", proxy.log.text())}
    assert served_by == {first, second}
    want = {k: 2 * v for k, v in expected(2).items()}
    before = settled(port, want)
    assert subset(before, want) == want
    assert len(sink.messages()) == 2 * 2 * MESSAGES_PER_SESSION
    established = {k: v for k, v in before.items() if k.startswith("starttlsd_tls_established_total{")}
    assert sum(established.values()) == want['starttlsd_tls_handshakes_total{result="ok"}']
    assert all(k.startswith('starttlsd_tls_established_total{version="TLS1.3",cipher="AES-') for k in established)
    assert re.search(r'^starttlsd_build_info\{version="[^"]+",gnutls="[^"]+",libev="\d+\.\d+"\}$',
                     next(k for k in before if k.startswith("starttlsd_build_info")))
    expiry = next(v for k, v in before.items() if k.startswith("starttlsd_certificate_expiry_seconds{"))
    assert expiry > time.time()

    # SIGHUP: new workers; the old ones retire and exit, their counts stay.
    proxy.proc.send_signal(signal.SIGHUP)
    assert proxy.log.wait_for(r"info: reloaded "), proxy.log.text()
    wait_workers(proxy, 2, seen=2)
    assert wait_until(lambda: len(proxy.pids()) == 3), "the old workers did not exit"
    after = scrape(port)
    for series, value in before.items():
        if "_total" in series:
            assert after.get(series, 0) >= value, series
    assert after['starttlsd_reloads_total{result="ok"}'] == 1
    run_known_sessions(proxy, 1)
    want = {k: 2 * v + w for (k, v), w in zip(expected(2).items(), expected(1).values())}
    want['starttlsd_connections_open{listener="smtp"}'] = 0
    want['starttlsd_reloads_total{result="ok"}'] = 1
    assert subset(settled(port, want), want) == want


def test_healthz_and_the_http_rules(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr}}, ("log_level = debug", "metrics = 127.0.0.1:0"))
    port = metrics_port(proxy)
    assert wait_until(lambda: healthy(port)), get(port, "/healthz")
    assert http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")[0] == 405
    assert http(port, b"HEAD /healthz HTTP/1.1\r\n\r\n")[0] == 405
    assert get(port, "/")[0] == 404
    assert get(port, "/metrics/../etc")[0] == 404
    assert http(port, b"GET metrics\r\n\r\n")[0] == 400


def test_healthz_503_when_the_backend_is_down(start_proxy):
    proxy = start_proxy({"smtp": {"backend": "127.0.0.1:%d" % free_port()}},
                        ("log_level = debug", "metrics = 127.0.0.1:0"))
    port = metrics_port(proxy)
    status, body = get(port, "/healthz")
    assert (status, body) == (503, "listener smtp: backend not reached within 10s\n")
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 421
    c.close()
    failures = lambda: scrape(port).get("starttlsd_backend_connect_failures_total")
    assert wait_until(lambda: failures() == 1), failures()


def test_scrapers_cannot_hurt_the_mail_flow(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr}},
                        ("log_level = debug", "workers = 2", "metrics = 127.0.0.1:0"))
    port = metrics_port(proxy)
    assert wait_until(lambda: healthy(port))
    # One asks for /metrics and never reads its answer, with a tiny window.
    never_reads = socket.socket()
    never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    never_reads.connect(("127.0.0.1", port))
    never_reads.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    # One sends 1 MiB of header fields: 431 and a close, long before the end.
    flood = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sent, refused = 0, False
    try:
        flood.sendall(b"GET /metrics HTTP/1.1\r\n")
        while sent < 1 << 20:
            flood.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
            sent += 1012
    except (BrokenPipeError, ConnectionResetError):
        refused = True
    assert refused or flood.recv(100).startswith(b"HTTP/1.1 431 "), "1 MiB of headers was taken"
    # More idle connections than the exporter serves at once.
    idle = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(8)]
    try:
        # Mail goes on meanwhile.
        for _ in range(3):
            full_session(proxy.port("smtp"))
        assert len(sink.messages()) == 3 * MESSAGES_PER_SESSION
        # The exporter dropped what it could not serve, and serves again
        # once the request timeout has ended the idle ones.
        assert wait_until(lambda: healthy(port), timeout=TIMEOUT + 10)
    finally:
        for s in idle + [never_reads, flood]:
            s.close()
    assert scrape(port)["starttlsd_messages_total"] == 3 * MESSAGES_PER_SESSION


def test_metrics_address_in_use_is_refused_at_start(sink, cert, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    conf = tmp_path / "c.conf"
    conf.write_text("metrics = 127.0.0.1:%d\n[smtp]\nlisten = 127.0.0.1:0\nbackend = %s\ncert = %s %s\n"
                    % (busy.getsockname()[1], sink.addr, cert[0], cert[1]))
    from conftest import starttlsd_binary
    out = subprocess.run([starttlsd_binary(), "-f", "-c", str(conf)], capture_output=True, text=True,
                         timeout=TIMEOUT)
    busy.close()
    assert out.returncode == 1
    assert re.search(r"c\.conf:1: cannot listen on metrics 127\.0\.0\.1:\d+: Address already in use",
                     out.stderr), out.stderr
