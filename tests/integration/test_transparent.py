"""client_addr = transparent: the backend, in a network namespace of its
own, sees the client's real address (IP_TRANSPARENT), with the routing of
packaging/transparent-routing on the proxy's side. The client is in a
second namespace, so its address is a real, foreign one."""

import os
import shutil
import subprocess
import textwrap

import pytest

from conftest import PYTHON, REPO, SINK, TIMEOUT, LineLog, stop_process

ROUTING = REPO / "packaging" / "transparent-routing"
NET = "10.231"  # the test's own hosts: 10.231.1.0/24 clients, 10.231.2.0/24 backend

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
                                reason="needs root, nftables and iproute2 (packaging/install-deps test)")


def run(*args):
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces():
    tag = "%d" % (os.getpid() % 100000)
    cl, bk = "stcl" + tag, "stbk" + tag
    cl_if, bk_if = "stc" + tag, "stb" + tag
    try:
        for ns, host_if, host_ip, ns_ip in ((cl, cl_if, NET + ".1.1", NET + ".1.2"),
                                            (bk, bk_if, NET + ".2.1", NET + ".2.2")):
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", host_if, "type", "veth", "peer", "name", host_if + "n")
            run("ip", "link", "set", host_if + "n", "netns", ns)
            run("ip", "addr", "add", host_ip + "/24", "dev", host_if)
            run("ip", "link", "set", host_if, "up")
            run("ip", "-n", ns, "addr", "add", ns_ip + "/24", "dev", host_if + "n")
            run("ip", "-n", ns, "link", "set", host_if + "n", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            # Both reach the rest through the proxy's host.
            run("ip", "-n", ns, "route", "add", "default", "via", host_ip)
        run(str(ROUTING), "up")
        yield cl, bk
    finally:
        subprocess.run([str(ROUTING), "down"], capture_output=True, timeout=30)
        for ns, host_if in ((cl, cl_if), (bk, bk_if)):
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    f = s.makefile("rb")
    def reply():
        lines = [f.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(f.readline())
        return lines[-1][:3].decode()
    codes = [reply()]
    for line in (b"EHLO far.test", b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>", b"DATA"):
        s.sendall(line + b"\\r\\n")
        codes.append(reply())
    s.sendall(b"Subject: from afar\\r\\n\\r\\nhi\\r\\n.\\r\\nQUIT\\r\\n")
    codes += [reply(), reply()]
    print(" ".join(codes))
""")


def test_backend_sees_the_clients_address(namespaces, tmp_path, start_proxy):
    cl, bk = namespaces
    record = tmp_path / "rec"
    record.mkdir()
    sink = subprocess.Popen(["ip", "netns", "exec", bk, PYTHON, str(SINK), "--listen", NET + ".2.2:0",
                             "--record", str(record)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        log = LineLog(sink.stdout)
        found = log.wait_for(r"^listening on [\d.]+:(\d+)$")
        assert found, log.text()
        backend = "%s.2.2:%s" % (NET, found[0].group(1))
        proxy = start_proxy({"smtp": {"listen": NET + ".1.1:0", "backend": backend,
                                      "client_addr": "transparent"}})
        out = subprocess.run(["ip", "netns", "exec", cl, PYTHON, "-c", CLIENT, NET + ".1.1",
                              str(proxy.port("smtp"))], capture_output=True, text=True, timeout=TIMEOUT * 2)
        assert out.stdout.split() == ["220", "250", "250", "250", "354", "250", "221"], out.stdout + out.stderr
        peer = (record / "conn-1.peer").read_text().split()
        assert peer[0] == NET + ".1.2", "the backend sees the client, not the proxy: %s" % peer
        assert (record / "msg-1.raw").read_bytes() == b"Subject: from afar\r\n\r\nhi\r\n"
        assert proxy.wait_sessions()[0]["client"].startswith(NET + ".1.2:")
        assert "open relay" not in proxy.log.text(), "no open-relay warning: the backend sees clients"
    finally:
        stop_process(sink)
