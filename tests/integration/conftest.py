"""Fixtures for the starttlsd integration tests.

Every test gets a private temporary directory, a recording sink (or several),
and a proxy started from a configuration written for it, with port 0
everywhere: the proxy's ports are read from its "listening on" log lines and
the sink's from its first stdout line. On failure the proxy's log and the
sink's recordings are printed. Teardown stops every process by PID with
SIGTERM and requires the proxy to exit 0 (under ASan a non-zero exit is a
sanitizer report).
"""

import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SINK = REPO / "tests" / "sink" / "recording_sink.py"
SELFSIGNED = REPO / "certs" / "selfsigned"
PYTHON = "/usr/bin/python3"
# Seconds, for every wait on the proxy. Valgrind slows it many times over; only
# waits grow with it, never what a test asserts.
TIMEOUT = 30 if "valgrind" in os.environ.get("STARTTLSD", "") else 10
CERT_NAME = "test.example"

LISTENING_RE = re.compile(r"starttlsd: info: listener (\S+): listening on (?:127\.0\.0\.1|10\.\d+\.\d+\.\d+):(\d+)")
SESSION_RE = re.compile(
    r"starttlsd: info: session listener=(?P<listener>\S+) client=(?P<client>\S+) "
    r"tls=(?P<tls>\S+) sni=(?P<sni>\S+) cert=(?P<cert>\S+) resumed=(?P<resumed>\S+) bytes_in=(?P<bytes_in>\d+) "
    r"bytes_out=(?P<bytes_out>\d+) messages=(?P<messages>\d+) end=(?P<end>\S+)")


def starttlsd_binary():
    path = os.environ.get("STARTTLSD") or str(REPO / "proxy" / "starttlsd")
    if not os.access(path, os.X_OK):
        pytest.fail("no proxy binary at %s (set STARTTLSD)" % path)
    return path


def free_port():
    """A port that nothing listens on: bound, then closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- output of child processes ---------------------------------------------

class LineLog:
    """Collects a pipe's lines in a thread so that nothing blocks on it."""

    def __init__(self, pipe):
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for raw in iter(pipe.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def text(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern, timeout=TIMEOUT, count=1):
        """Wait until `count` lines match `pattern`; return their matches or None."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in map(regex.search, self.lines) if m]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cond.wait(left)


def wait_until(check, timeout=TIMEOUT):
    """Poll CHECK until it gives something true; that, or its last answer after TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def stop_process(proc, sig=signal.SIGTERM, timeout=20):
    """Signal one process by PID and wait for it; SIGKILL if it will not go."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return None
    return proc.returncode


# --- the recording sink ----------------------------------------------------

class Sink:
    def __init__(self, record_dir, args=()):
        self.dir = Path(record_dir)
        self.args = list(args)
        self.proc = subprocess.Popen(
            [PYTHON, str(SINK), "--listen", "127.0.0.1:0", "--record", str(self.dir)] + self.args,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = LineLog(self.proc.stdout)
        found = self.log.wait_for(r"^listening on 127\.0\.0\.1:(\d+)$")
        if not found:
            stop_process(self.proc)
            pytest.fail("sink did not start:\n" + self.log.text())
        self.port = int(found[0].group(1))
        self.addr = "127.0.0.1:%d" % self.port

    def stop(self):
        stop_process(self.proc)

    def conns(self):
        return sorted(int(p.stem.split("-")[1]) for p in self.dir.glob("conn-*.raw"))

    def wait_done(self, n=1, timeout=TIMEOUT):
        """Wait until connection n has ended; return its recording."""
        assert wait_until((self.dir / ("conn-%d.done" % n)).exists, timeout), "sink connection %d did not end" % n
        return self.raw(n)

    def raw(self, n=1):
        path = self.dir / ("conn-%d.raw" % n)
        return path.read_bytes() if path.exists() else b""

    def all_raw(self):
        return b"".join(self.raw(n) for n in self.conns())

    def messages(self):
        return sorted(int(p.stem.split("-")[1]) for p in self.dir.glob("msg-*.raw"))

    def msg(self, n, kind="raw"):
        return (self.dir / ("msg-%d.%s" % (n, kind))).read_bytes()

    def dump(self):
        out = ["--- sink %s (%s) ---" % (self.addr, " ".join(self.args))]
        for p in sorted(self.dir.glob("conn-*.raw")):
            data = p.read_bytes()
            out.append("%s (%d bytes): %r" % (p.name, len(data), data[:3000]))
        out.append("messages: %s" % self.messages())
        return "\n".join(out)


# --- the proxy -------------------------------------------------------------

class Proxy:
    def __init__(self, conf_path, listeners, binary):
        self.conf = conf_path
        self.proc = subprocess.Popen([binary, "-f", "-c", str(conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.log = LineLog(self.proc.stdout)
        self.ports = {}
        found = self.log.wait_for(LISTENING_RE.pattern, count=len(listeners))
        if not found:
            stop_process(self.proc)
            pytest.fail("proxy did not start:\n" + self.log.text())
        for m in found:
            self.ports[m.group(1)] = int(m.group(2))
        missing = set(listeners) - set(self.ports)
        assert not missing, "listeners not seen: %s\n%s" % (missing, self.log.text())
        self.returncode = None

    def port(self, name="smtp"):
        return self.ports[name]

    def stop(self, sig=signal.SIGTERM):
        if self.returncode is None:
            self.returncode = stop_process(self.proc, sig)
        return self.returncode

    def sessions(self):
        return [m.groupdict() for m in map(SESSION_RE.search, self.log.text().splitlines()) if m]

    def wait_sessions(self, count=1, timeout=TIMEOUT):
        found = self.log.wait_for(SESSION_RE.pattern, timeout, count)
        assert found, "no %d session summary lines:\n%s" % (count, self.log.text())
        return [m.groupdict() for m in found]

    def pids(self):
        """The proxy's process and, under the supervisor, its workers."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [self.proc.pid] + [int(p) for p in out.stdout.split()]

    def rss_kb(self):
        """VmRSS of each of the proxy's processes, by PID."""
        rss = {}
        for pid in self.pids():
            try:
                with open("/proc/%d/status" % pid) as f:
                    rss[pid] = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            except (FileNotFoundError, StopIteration):
                pass  # a worker that just ended
        return rss

    def sanitized(self):
        """Under ASan or valgrind, whose bookkeeping keeps memory resident."""
        with open("/proc/%d/maps" % self.proc.pid) as f:
            maps = f.read()
        return "libasan" in maps or "vgpreload_memcheck" in maps


def write_conf(path, listeners, cert, global_lines=("log_level = debug",)):
    """listeners: {name: {key: value}}; cert: (pem, key) used when none given."""
    lines = list(global_lines)
    for name, keys in listeners.items():
        lines.append("")
        lines.append("[%s]" % name)
        keys = dict(keys)
        keys.setdefault("listen", "127.0.0.1:0")
        if keys.get("direction") != "outbound":  # an outbound listener serves no certificate
            keys.setdefault("cert", "%s %s" % cert)
        for key, value in keys.items():
            for v in value if isinstance(value, list) else [value]:
                lines.append("%s = %s" % (key, v))
    Path(path).write_text("\n".join(lines) + "\n")
    return path


# --- pytest plumbing -------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    out = subprocess.run([str(SELFSIGNED), "-d", str(d), CERT_NAME, "mail.test"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    pem, key = d / (CERT_NAME + ".pem"), d / (CERT_NAME + ".key")
    assert out.stdout.split() == [str(pem), str(key)]
    assert (key.stat().st_mode & 0o777) == 0o600
    return str(pem), str(key)


@pytest.fixture
def start_sink(tmp_path, request):
    sinks = []

    def start(*args):
        sink = Sink(tmp_path / ("sink%d" % (len(sinks) + 1)), args)
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()
        if _failed(request):
            print(sink.dump())


@pytest.fixture
def sink(start_sink):
    return start_sink()


@pytest.fixture
def start_proxy(tmp_path, cert, request):
    proxies = []
    binary = starttlsd_binary()

    def start(listeners, global_lines=("log_level = debug",)):
        conf = write_conf(tmp_path / ("starttlsd%d.conf" % (len(proxies) + 1)),
                          listeners, cert, global_lines)
        proxy = Proxy(conf, list(listeners), binary)
        proxies.append(proxy)
        return proxy

    yield start
    problems = []
    for proxy in proxies:
        rc = proxy.stop()
        proxy.log.thread.join(5)  # every line read before the sanitizer check below
        if _failed(request) or rc != 0:
            print("--- proxy log (%s) ---\n%s" % (proxy.conf, proxy.log.text()))
        if rc is None:
            problems.append("proxy did not exit within 20 s of SIGTERM (killed)")
        elif rc != 0:
            problems.append("proxy exited %s on SIGTERM (sanitizer report or crash?)" % rc)
        elif re.search(r"Sanitizer|runtime error:", proxy.log.text()):
            problems.append("sanitizer report in the proxy log")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def proxy_for(start_proxy):
    """proxy_for(backend, **keys): an 'smtp' STARTTLS and an 'smtps' implicit listener."""

    def start(backend, **keys):
        keys["backend"] = backend if isinstance(backend, str) else backend.addr
        return start_proxy({"smtp": dict(keys, tls="starttls"),
                            "smtps": dict(keys, tls="implicit")})

    return start


@pytest.fixture
def proxy(sink, proxy_for):
    return proxy_for(sink)


# --- a raw SMTP client, plaintext or TLS -----------------------------------

def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Reply:
    def __init__(self, lines):
        self.lines = lines
        self.code = int(lines[-1][:3])

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return "Reply(%r)" % self.lines


class Client:
    """SMTP over a socket; every read gives up after TIMEOUT seconds."""

    def __init__(self, port, tls=False, timeout=TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.tls = False
        if tls:
            self.start_tls()

    def start_tls(self, server_hostname=CERT_NAME, context=None):
        assert self.buf == b"", "plaintext bytes left before TLS: %r" % self.buf
        self.sock = (context or client_context()).wrap_socket(self.sock, server_hostname=server_hostname)
        self.tls = True

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; unread: %r" % self.buf)
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def reply(self):
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        assert re.match(r"^\d{3}( |$)", lines[-1]), "bad reply %r" % lines
        return Reply(lines)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        self.send(line + (b"\r\n" if isinstance(line, bytes) else "\r\n"))
        return self.reply()

    def silence(self, seconds=1.0):
        """Bytes that arrive within `seconds` (b"" is what a quiet peer gives)."""
        self.sock.settimeout(seconds)
        try:
            self._fill()
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(TIMEOUT)
        data, self.buf = self.buf, b""
        return data

    def read_to_close(self, timeout=TIMEOUT):
        """Everything until the peer closes; fails if it does not close in time."""
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, "peer did not close; got %r" % self.buf
            try:
                self._fill()
            except (EOFError, ConnectionResetError, ssl.SSLError):
                break
            except (socket.timeout, TimeoutError):
                raise AssertionError("peer did not close; got %r" % self.buf) from None
        data, self.buf = self.buf, b""
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def greeted(port, ehlo="EHLO a"):
    """A plaintext client past the recording sink's greeting (and EHLO)."""
    c = Client(port)
    assert c.reply().lines == ["220 sink.test ESMTP"]
    if ehlo:
        assert c.cmd(ehlo).code == 250
    return c


def ehlo_starttls(port, name="client.test"):
    """Greeting, EHLO, STARTTLS, handshake, EHLO: a client ready for MAIL inside TLS."""
    c = Client(port)
    assert c.reply().code == 220
    assert c.cmd("EHLO " + name).code == 250
    r = c.cmd("STARTTLS")
    assert r.lines == ["220 2.0.0 Ready to start TLS"], r
    c.start_tls()
    assert c.cmd("EHLO " + name).code == 250
    return c


def implicit(port, name="client.test"):
    c = Client(port, tls=True)
    assert c.reply().code == 220
    assert c.cmd("EHLO " + name).code == 250
    return c


def stuff(body):
    """Dot-stuff a CRLF body the way RFC 5321 section 4.5.2 says."""
    return re.sub(rb"(^|\r\n)\.", rb"\1..", body)


def send_message(c, body, sender="a@example.org", rcpt="b@example.org"):
    """One DATA transaction of a CRLF-terminated body; returns the final reply."""
    assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
    assert c.cmd("RCPT TO:<%s>" % rcpt).code == 250
    assert c.cmd("DATA").code == 354
    c.send(stuff(body) + b".\r\n")
    return c.reply()


def assert_delivered(sink, n, body):
    """Message n at the sink is `body`, byte for byte, as sent (stuffed) and as meant."""
    assert sink.msg(n, "raw") == stuff(body)
    assert sink.msg(n, "eml") == body


# --- certificates, for the tests that make their own --------------------------

PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
RSA_ONLY_OPENSSL = ["-sigalgs", "RSA-PSS+SHA256:RSA+SHA256:RSA-PSS+SHA384"]


def run(args, **kw):
    """Run a tool that must succeed; its stdout."""
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, **kw)
    assert out.returncode == 0, "%s failed:\n%s%s" % (args[0], out.stdout, out.stderr)
    return out.stdout


def make_key(path, key_type):
    """A new private key (rsa: 2048 bits, or ecdsa), readable by its owner only."""
    extra = ["--bits", "2048"] if key_type == "rsa" else []
    run(["certtool", "--generate-privkey", "--key-type", key_type, "--outfile", path] + extra)
    path = Path(path)
    path.chmod(0o600)
    return path


def pem_fingerprint(text):
    """SHA-256 of the DER of the first certificate in PEM TEXT."""
    m = PEM_CERT_RE.search(text)
    assert m, "no certificate in:\n%s" % text
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(m.group(0))).hexdigest()


def fingerprint(pem_path):
    return pem_fingerprint(Path(pem_path).read_text())


def openssl_served(port, extra=(), sni=None):
    """The SHA-256 of the certificate openssl s_client is served, and its output."""
    args = ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % port] + list(extra)
    if sni:
        args += ["-servername", sni]
    out = subprocess.run(args, input="QUIT\n", capture_output=True, text=True, timeout=TIMEOUT)
    assert PEM_CERT_RE.search(out.stdout), out.stdout + out.stderr
    return pem_fingerprint(out.stdout), out.stdout
