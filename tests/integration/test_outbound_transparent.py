"""Transparent opportunistic STARTTLS (README "Sending to the world"): a
legacy MTA delivers to the world on port 25; packaging/outbound-redirect
sends those connections to an outbound listener with backend =
original-destination, which learns the destination (SO_ORIGINAL_DST) and
upgrades to TLS whenever the destination offers STARTTLS.

Two network namespaces joined by a veth pair: "mta", where the senders
(smtplib, swaks), starttlsd and the nftables redirect live, and "world",
with one address per kind of destination, IPv4 and IPv6:

  .10 / ::10  starttlsd's own inbound listener (STARTTLS) in front of the
              recording sink: its session line shows the TLS it got
  .11 / ::11  the recording sink alone, offering no STARTTLS
  .12 / ::12  the sink offering STARTTLS and then answering the ClientHello
              as a bad command: a handshake that fails
  .13         the sink answering STARTTLS "220" with a reply injected behind
              it in the same write (the attacker of RFC 3207 section 4.2)
  .14         the sink offering STARTTLS and refusing it with 454
  .15         left to other test files (test_outbound_dane.py)

starttlsd runs as user nobody, and the redirect skips nobody's sockets
(meta skuid), so its own connections to port 25 leave as they are."""

import os
import re
import shutil
import smtplib
import subprocess

import pytest

from conftest import PYTHON, REPO, SINK, TIMEOUT, LineLog, starttlsd_binary, stop_process, wait_until, write_conf

REDIRECT = REPO / "packaging" / "outbound-redirect"
NET4, NET6 = "10.232.2", "fd00:232::"
PORT = 10025  # the outbound listener, in the mta namespace's own port space
BODY = b"Subject: to the world\r\n\r\nline one\r\n.dot line\r\n8-bit \xe9\r\n"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
                                reason="needs root, nftables and iproute2 (packaging/install-deps test)")

OUT_SESSION_RE = re.compile(r"starttlsd: info: session listener=(?P<listener>\S+) client=(?P<client>\S+) "
                            r"upstream=(?P<upstream>\S+) tls=(?P<tls>\S+)(?: reason=(?P<reason>\S+))? "
                            r"verified=(?P<verified>\S+) bytes_in=\d+ bytes_out=\d+ messages=(?P<messages>\d+) "
                            r"end=(?P<end>\S+)")
IN_SESSION_RE = re.compile(r"starttlsd: info: session listener=\S+ client=\S+ tls=(?P<tls>\S+) .* end=(?P<end>\S+)")


def run(*args):
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=30)


def in_ns(ns, *args):
    return ["ip", "netns", "exec", ns] + [str(a) for a in args]


class Daemon:
    """A process in a namespace whose output is watched line by line."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.log = LineLog(self.proc.stdout)

    def stop(self):
        return stop_process(self.proc)


@pytest.fixture
def net(tmp_path, cert, request):
    tag = "%d" % (os.getpid() % 100000)
    mta, world = "stmta" + tag, "stwld" + tag
    veth = "stv" + tag
    daemons = []

    def daemon(argv, ready):
        d = Daemon(argv)
        daemons.append(d)
        assert d.log.wait_for(ready), "did not start: %s\n%s" % (argv, d.log.text())
        return d

    def sink(ns, listen, *args):
        rec = tmp_path / ("rec%d" % len(daemons))
        d = daemon(in_ns(ns, PYTHON, SINK, "--listen", listen, "--record", rec, *args), r"^listening on ")
        d.dir = rec
        return d

    def proxy(ns, listeners, name, extra=()):
        conf = write_conf(tmp_path / (name + ".conf"), listeners, cert,
                          ("log_level = debug", "workers = 1") + tuple(extra))
        d = daemon(in_ns(ns, starttlsd_binary(), "-f", "-c", conf), r"listening on")
        d.is_proxy = True
        return d

    try:
        run("ip", "netns", "add", mta)
        run("ip", "netns", "add", world)
        run("ip", "link", "add", veth, "netns", mta, "type", "veth", "peer", "name", veth + "w", "netns", world)
        for ns, dev, v4, v6 in ((mta, veth, NET4 + ".1", NET6 + "1"), (world, veth + "w", None, None)):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", dev, "up")
            if v4:
                run("ip", "-n", ns, "addr", "add", v4 + "/24", "dev", dev)
                run("ip", "-n", ns, "addr", "add", v6 + "/64", "dev", dev, "nodad")
        for host in (10, 11, 12, 13, 14, 15):
            run("ip", "-n", world, "addr", "add", "%s.%d/24" % (NET4, host), "dev", veth + "w")
            run("ip", "-n", world, "addr", "add", "%s%d/64" % (NET6, host), "dev", veth + "w", "nodad")
        run(*in_ns(mta, REDIRECT, "up", PORT, "nobody"))
        yield {"mta": mta, "world": world, "sink": sink, "proxy": proxy, "daemon": daemon}
    finally:
        problems = []
        for d in daemons:
            rc = d.stop()
            proxy = getattr(d, "is_proxy", False)
            if proxy:
                d.log.thread.join(5)
            if _failed(request) or (proxy and rc != 0):
                print("--- %s ---\n%s" % (d.proc.args, d.log.text()))
            if proxy and (rc != 0 or re.search(r"Sanitizer|runtime error:", d.log.text())):
                problems.append("starttlsd exited %s or reported a sanitizer error" % rc)
        subprocess.run(["ip", "netns", "del", mta], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", world], capture_output=True, timeout=30)
    if problems:
        pytest.fail("; ".join(problems))


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


@pytest.fixture
def world(net):
    """The destinations, and the outbound proxy in the mta namespace."""

    def start(global_lines=(), **keys):
        w = net["world"]
        d = {}
        behind = net["sink"](w, "127.0.0.1:0", "--caps", "PIPELINING,8BITMIME,ENHANCEDSTATUSCODES")
        port = behind.log.wait_for(r"^listening on [\d.]+:(\d+)$")[0].group(1)
        d["tls_sink"] = behind
        d["tls"] = net["proxy"](w, {"in": {"listen": ["%s.10:25" % NET4, "[%s10]:25" % NET6],
                                           "backend": "127.0.0.1:" + port, "tls": "starttls"}}, "inbound")
        d["plain"] = net["sink"](w, "%s.11:25" % NET4, "--caps", "PIPELINING,8BITMIME")
        d["plain6"] = net["sink"](w, "[%s11]:25" % NET6, "--caps", "PIPELINING,8BITMIME")
        d["broken"] = net["sink"](w, "%s.12:25" % NET4, "--answer", "STARTTLS=220 2.0.0 go ahead")
        d["broken6"] = net["sink"](w, "[%s12]:25" % NET6, "--answer", "STARTTLS=220 2.0.0 go ahead")
        d["refuse"] = net["sink"](w, "%s.14:25" % NET4, "--answer", "STARTTLS=454 4.7.0 TLS not available")
        d["inject"] = net["sink"](w, "%s.13:25" % NET4, "--answer",
                                  "STARTTLS=220 2.0.0 go ahead\r\n250 injected")
        # The broken destination answers the ClientHello with 500 lines
        # and waits: the handshake ends at handshake_timeout, well before
        # the sender's own timeout.
        out = dict({"direction": "outbound", "backend": "original-destination",
                    "handshake_timeout": str(TIMEOUT // 3),
                    "listen": ["127.0.0.1:%d" % PORT, "[::1]:%d" % PORT]}, **keys)
        d["out"] = net["proxy"](net["mta"], {"out": out}, "outbound", ("user = nobody",) + tuple(global_lines))
        return d

    return start


def send(net, dest, body=BODY, port=25, helo=None):
    """A message from the legacy MTA (smtplib, no TLS) to DEST:PORT; the
    reply codes and the EHLO features it saw."""
    script = (
        "import smtplib, sys\n"
        "s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=%d)\n"
        "helo = %r\n"
        "if helo: code = s.helo(helo)[0]; print('helo', code, flush=True)\n"
        "else: code = s.ehlo('legacy.test')[0]; print('ehlo', code, ' '.join(sorted(s.esmtp_features)), flush=True)\n"
        "if code != 250: sys.exit(3)  # an MTA closes after a 421 and retries later\n"
        "print('send', s.sendmail('a@example.org', ['b@example.org'], sys.stdin.buffer.read()))\n"
        "s.quit()\n" % (TIMEOUT, helo))
    return subprocess.run(in_ns(net["mta"], PYTHON, "-c", script, dest, port), input=body,
                          capture_output=True, timeout=TIMEOUT * 3)


def out_sessions(d, count=1):
    found = d["out"].log.wait_for(OUT_SESSION_RE.pattern, TIMEOUT, count)
    assert found, d["out"].log.text()
    return [m.groupdict() for m in found]


def delivered(sink, n=1):
    path = sink.dir / ("msg-%d.eml" % n)  # unstuffed: what was sent
    assert wait_until(path.exists), "no message %d at the sink" % n
    return path.read_bytes()


@pytest.mark.parametrize("dest", [NET4 + ".10", NET6 + "10"])
def test_tls_when_offered(net, world, dest):
    d = world()
    out = send(net, dest)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("ehlo 250") and "starttls" not in lines[0], lines
    assert lines[1] == "send {}", lines
    assert delivered(d["tls_sink"]) == BODY
    s = out_sessions(d)[0]
    assert s["tls"].startswith("TLS1.") and s["verified"] == "none" and s["reason"] is None, s
    assert s["upstream"] in ("%s.10:25" % NET4, "[%s10]:25" % NET6), s
    assert s["end"] in ("quit", "closed"), s
    # The destination's own log: the session came in over TLS, with the
    # MTA's EHLO name (one EHLO in plaintext, the same one inside TLS).
    theirs = d["tls"].log.wait_for(IN_SESSION_RE.pattern, TIMEOUT)
    assert theirs and theirs[0].group("tls").startswith("TLS1."), d["tls"].log.text()
    conn = (d["tls_sink"].dir / "conn-1.raw").read_bytes()
    assert conn.count(b"EHLO legacy.test") == 1, conn[:300]


@pytest.mark.parametrize("dest", [NET4 + ".11", NET6 + "11"])
def test_plaintext_when_not_offered(net, world, dest):
    d = world()
    out = send(net, dest)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.decode().splitlines()[1] == "send {}"
    sink = d["plain6" if ":" in dest else "plain"]
    assert delivered(sink) == BODY
    s = out_sessions(d)[0]
    assert (s["tls"], s["reason"]) == ("none", "not-offered"), s
    conn = (sink.dir / "conn-1.raw").read_bytes()
    # One EHLO only: the MTA's, sent by the opening and not again.
    assert conn.count(b"EHLO") == 1 and b"EHLO legacy.test" in conn, conn[:300]


def test_helo_gets_one_line_and_tls(net, world):
    d = world()
    out = send(net, NET4 + ".10", helo="old.test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.decode().splitlines()[:2] == ["helo 250", "send {}"]
    assert delivered(d["tls_sink"]) == BODY
    assert out_sessions(d)[0]["tls"].startswith("TLS1.")


def test_swaks_through_the_redirect(net, world):
    d = world()
    out = subprocess.run(in_ns(net["mta"], SWAKS, "--server", NET4 + ".10", "--port", "25", "--ehlo",
                               "swaks.test", "--from", "a@example.org", "--to", "b@example.org",
                               "--body", "hello from swaks", "--timeout", str(TIMEOUT)),
                         capture_output=True, text=True, timeout=TIMEOUT * 3)
    assert out.returncode == 0, out.stdout + out.stderr
    assert b"hello from swaks" in delivered(d["tls_sink"])
    assert out_sessions(d)[0]["tls"].startswith("TLS1.")


def test_failed_handshake_is_4xx_without_fallback(net, world):
    d = world()
    out = send(net, NET4 + ".12")
    assert out.returncode == 3 and out.stdout.startswith(b"ehlo 421"), out.stdout + out.stderr
    s = out_sessions(d)[0]
    assert s["end"] == "upstream-handshake-failed" and s["tls"] == "none", s
    assert not (d["broken"].dir / "msg-1.raw").exists(), "nothing of the mail in plaintext"
    raw = b"".join(p.read_bytes() for p in d["broken"].dir.glob("conn-*.raw"))
    assert b"MAIL FROM" not in raw


@pytest.mark.parametrize("dest", [NET4 + ".12", NET6 + "12"])
def test_failed_handshake_retried_in_plaintext_with_fallback(net, world, dest):
    """The new plaintext connection goes to the same destination, IPv6 too."""
    d = world(fallback_plaintext="yes")
    out = send(net, dest)
    assert out.returncode == 0, out.stdout + out.stderr
    broken = d["broken6" if ":" in dest else "broken"]
    assert delivered(broken) == BODY
    s = out_sessions(d)[0]
    assert (s["tls"], s["reason"]) == ("none", "handshake-failed"), s
    assert s["upstream"] in ("%s:25" % dest, "[%s]:25" % dest), s
    second = (broken.dir / "conn-2.raw").read_bytes()
    assert b"STARTTLS" not in second and second.count(b"EHLO legacy.test") == 1, second[:300]


@pytest.mark.parametrize("fallback", ["no", "yes"])
def test_refused_starttls(net, world, fallback):
    d = world(fallback_plaintext=fallback)
    out = send(net, NET4 + ".14")
    s = out_sessions(d)[0]
    if fallback == "no":
        assert out.returncode == 3 and out.stdout.startswith(b"ehlo 421 "), out.stdout + out.stderr
        assert s["end"] == "upstream-refused-starttls", s
        assert not (d["refuse"].dir / "msg-1.eml").exists()
    else:
        assert out.returncode == 0, out.stdout + out.stderr
        assert b"starttls" not in out.stdout, "the MTA is not offered what was refused"
        assert delivered(d["refuse"]) == BODY
        assert (s["tls"], s["reason"]) == ("none", "starttls-refused"), s


def test_injected_reply_after_starttls_never_reaches_the_mta(net, world):
    d = world()
    out = send(net, NET4 + ".13")
    assert out.returncode == 3 and out.stdout.startswith(b"ehlo 421"), out.stdout + out.stderr
    assert b"injected" not in out.stdout + out.stderr
    assert out_sessions(d)[0]["end"] == "upstream-data-before-tls"
    raw = b"".join(p.read_bytes() for p in d["inject"].dir.glob("conn-*.raw"))
    assert b"MAIL FROM" not in raw


def test_loop_guard(net, world):
    """Straight to the listener, not redirected: the original destination is
    the listener itself, so 421 and nothing connects anywhere."""
    d = world()
    script = ("import socket, sys\n"
              "s = socket.create_connection(('127.0.0.1', %d), timeout=%d)\n"
              "print(s.makefile('rb').readline().decode().strip())\n" % (PORT, TIMEOUT))
    out = subprocess.run(in_ns(net["mta"], PYTHON, "-c", script), capture_output=True, text=True,
                         timeout=TIMEOUT * 2)
    assert out.stdout.startswith("421 4.4.6"), out.stdout + out.stderr
    assert out_sessions(d)[0]["end"] == "loop"


def test_no_redirect_no_destination(net, world):
    """Without the redirect's nat rule the namespace tracks no connection:
    SO_ORIGINAL_DST has nothing to say, so 421 and no connect."""
    d = world()
    run(*in_ns(net["mta"], REDIRECT, "down"))
    script = ("import socket\n"
              "s = socket.create_connection(('127.0.0.1', %d), timeout=%d)\n"
              "print(s.makefile('rb').readline().decode().strip())\n" % (PORT, TIMEOUT))
    out = subprocess.run(in_ns(net["mta"], PYTHON, "-c", script), capture_output=True, text=True,
                         timeout=TIMEOUT * 2)
    assert out.stdout.startswith("421 4.3.5"), out.stdout + out.stderr
    assert out_sessions(d)[0]["end"] == "no-original-destination"


@pytest.mark.skipif(not os.path.exists("/usr/sbin/postfix"), reason="needs Postfix (packaging/install-deps test)")
def test_legacy_postfix_delivers_through_the_redirect(net, world, monkeypatch):
    """A real legacy MTA: Postfix with TLS off, in the mta namespace,
    delivering to [10.232.2.10]:25; the redirect hands it to the proxy,
    which reaches the destination over TLS."""
    import test_outbound

    def postfix_in_mta(conf_dir, *args):
        return subprocess.run(in_ns(net["mta"], "script", "-qc",
                                    " ".join(["/usr/sbin/postfix", "-c", str(conf_dir)] + list(args)), "/dev/null"),
                              capture_output=True, text=True, timeout=60)

    d = world()
    monkeypatch.setattr(test_outbound, "postfix_cmd", postfix_in_mta)
    legacy = test_outbound.private_postfix("legacy-mta", [
        "myhostname = legacy.test",
        "mydestination =",
        "relayhost = [%s.10]" % NET4,
        "smtp_tls_security_level = none",
    ])
    try:
        msg = b"From: a@legacy.test\nTo: b@example.org\nSubject: legacy\n\nbody from the legacy MTA\n"
        out = subprocess.run(["/usr/sbin/sendmail", "-C", str(legacy / "etc"), "-f", "a@legacy.test",
                              "b@example.org"], input=msg, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        postfix_in_mta(legacy / "etc", "flush")
        assert delivered(d["tls_sink"]).endswith(b"\r\n\r\nbody from the legacy MTA\r\n")
        s = out_sessions(d)[0]
        assert s["tls"].startswith("TLS1.") and s["messages"] == "1", s
        log = test_outbound.maillog(legacy, r"status=sent")
        assert re.search(r"relay=%s\.10\[%s\.10\]:25.*status=sent" % (NET4, NET4), log), log
    finally:
        test_outbound.stop_postfix(legacy)


def test_upstream_tls_starttls_demands_it(net, world):
    """upstream_tls = starttls with original-destination: TLS or 421, never
    plaintext, still without a certificate check."""
    d = world(upstream_tls="starttls")
    out = send(net, NET4 + ".11")
    assert out.returncode == 3 and out.stdout.startswith(b"ehlo 421 "), out.stdout + out.stderr
    assert not (d["plain"].dir / "msg-1.eml").exists()
    out = send(net, NET4 + ".10")
    assert out.returncode == 0, out.stdout + out.stderr
    assert delivered(d["tls_sink"]) == BODY
    ends = sorted((s["end"], s["tls"][:4], s["verified"]) for s in out_sessions(d, 2))
    assert ends[1] == ("upstream-no-starttls", "none", "-") and ends[0][1:] == ("TLS1", "none"), ends


def test_mta_that_leaves_after_the_greeting(net, world):
    """The destination's own greeting reaches the MTA; an MTA that closes
    then ends the session (and the destination's connection) at once."""
    d = world()
    script = ("import socket\n"
              "s = socket.create_connection(('%s.11', 25), timeout=%d)\n"
              "print(s.makefile('rb').readline().decode().strip())\n"
              "s.close()\n" % (NET4, TIMEOUT))
    out = subprocess.run(in_ns(net["mta"], PYTHON, "-c", script), capture_output=True, text=True,
                         timeout=TIMEOUT * 2)
    assert out.stdout.strip() == "220 sink.test ESMTP", out.stdout + out.stderr
    s = out_sessions(d)[0]
    assert s["tls"] == "none" and s["reason"] is None and s["messages"] == "0", s
    assert wait_until((d["plain"].dir / "conn-1.done").exists), "the destination's connection ended"
