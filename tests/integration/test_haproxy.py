"""Scale-out: the shipped HAProxy configuration (packaging/haproxy) in front
of two starttlsd instances with accept_proxy = yes; sessions are spread over
both and the backend learns each real client (client_addr = proxy-v1)."""

import re
import shutil
import subprocess
import time

import pytest

from conftest import REPO, TIMEOUT, Client, free_port, implicit, stop_process, wait_until

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def shipped_config(front_smtp, front_smtps, servers):
    """packaging/haproxy/haproxy.cfg with loopback addresses put in."""
    text = (REPO / "packaging" / "haproxy" / "haproxy.cfg").read_text()
    text = text.replace("bind :25", "bind 127.0.0.1:%d" % front_smtp)
    text = text.replace("bind :465", "bind 127.0.0.1:%d" % front_smtps)
    for name, (smtp, smtps) in servers.items():
        address = {"mx1": "10.0.0.11", "mx2": "10.0.0.12"}[name]
        text = text.replace("%s %s:25 " % (name, address), "%s 127.0.0.1:%d " % (name, smtp))
        text = text.replace("%s %s:465 " % (name, address), "%s 127.0.0.1:%d " % (name, smtps))
    assert "10.0.0." not in text.split("global")[1], text
    return text


@pytest.fixture
def haproxy(tmp_path):
    procs = []

    def start(config):
        path = tmp_path / "haproxy.cfg"
        path.write_text(config)
        check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        proc = subprocess.Popen([HAPROXY, "-db", "-f", str(path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc)


def wait_port(port):
    """Wait until HAProxy accepts connections."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            Client(port).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nothing listens on %d" % port)


def test_haproxy_spreads_sessions_and_keeps_client_addresses(start_sink, start_proxy, haproxy):
    sink = start_sink("--proxy-protocol")
    keys = {"backend": sink.addr, "accept_proxy": "yes", "proxy_from": "127.0.0.1",
            "client_addr": "proxy-v1"}
    instances = [start_proxy({"smtp": dict(keys), "smtps": dict(keys, tls="implicit")}) for _ in range(2)]
    front_smtp, front_smtps = free_port(), free_port()
    haproxy(shipped_config(front_smtp, front_smtps,
                           {"mx1": (instances[0].port("smtp"), instances[0].port("smtps")),
                            "mx2": (instances[1].port("smtp"), instances[1].port("smtps"))}))
    wait_port(front_smtps)

    client_ports = []
    for _ in range(6):
        c = implicit(front_smtps)
        client_ports.append(c.sock.getsockname()[1])
        assert c.cmd("QUIT").code == 221
        c.close()

    # Each instance logs a session once its client has gone.
    def tls_sessions_per_instance():
        return [len([s for s in p.sessions() if s["tls"] != "none"]) for p in instances]

    wait_until(lambda: sum(tls_sessions_per_instance()) >= 6)
    served = tls_sessions_per_instance()
    assert all(n >= 1 for n in served) and sum(served) == 6, served
    logged = sorted(int(s["client"].rsplit(":", 1)[1]) for p in instances for s in p.sessions()
                    if s["tls"] != "none")
    assert logged == sorted(client_ports), "each instance logs the real client"

    headers = []
    for n in sink.conns():
        path = sink.dir / ("conn-%d.proxy" % n)
        sink.wait_done(n)
        if path.exists():
            headers.append(path.read_bytes())
    seen = sorted(int(re.match(rb"PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 (\d+) \d+\r\n$", h).group(1))
                  for h in headers)
    # Besides the clients, the backend may see HAProxy's own health checks
    # (a v2 LOCAL header: the connection's own address) and the probe.
    assert set(client_ports) <= set(seen), "the backend sees each real client's address"
    assert all(seen.count(p) == 1 for p in client_ports), "one header per client connection"
