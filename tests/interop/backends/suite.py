"""suite.py - the tests every backend runs behind the real proxy.

A backend's module (test_<mta>.py) defines BACKEND = Backend(...) and does
`from suite import *`: pytest then collects these tests in that module,
with one container for the module. The proxy runs on the host with a
STARTTLS and an implicit-TLS listener on 127.0.0.1 (client_addr = the
backend's best mode); clients connect from 127.0.0.2 (the network the
backend lets relay), 127.0.0.3 (one it does not) or 127.0.0.1 (the proxy's
own address, which must never be let relay).

"Byte for byte": the message the server stored ends with exactly what the
client sent (dot-stuffing undone, CRLF stored as LF as every Unix mail
store does), and all that comes before is header lines the server added.
"""

import base64
import itertools
import re
import socket
from dataclasses import dataclass, field

import pytest

from integration_conftest import TIMEOUT, Client, client_context, free_port, stuff
from mta import REPO, render, wait_until

PERMITTED, REFUSED, PROXY_ADDR = "127.0.0.2", "127.0.0.3", "127.0.0.1"
DOMAIN = "backend.test"


@dataclass
class Backend:
    image: str                  # tests/interop/images/<image>.Containerfile
    conf: str                   # conf/backends/<conf>
    client_addr: str            # the proxy's client_addr mode for it
    greeting: str               # regex for its 220 line
    log: object                 # its log file inside the container, or None: its stderr
    log_client: str             # regex, %s = the client's address: its log names the client
    permit: dict                # how its configuration names the example relay network -> 127.0.0.2
    chunking: object = True     # True, or why not (its documentation)
    pipelining: bool = True     # whether it offers PIPELINING
    after_dot: object = True    # True, or why a command in the same write as the final dot is lost
    auth: object = True         # True (user test, password secret), or why not
    trusts_proxy_address: object = False   # or why it lets 127.0.0.1 relay whatever its configuration
    starttls: object = True     # True, or why the STARTTLS listener fails in front of it (its tests
                                # then must fail: xfail strict, the rest go through implicit TLS)
    mailbox: str = "/home/%s/Maildir"   # a user's mail folder (Maildir), or a function(container, user)
    protocol_errors: str = r"(?!)"      # regex that must never appear in its log
    start_timeout: int = 60
    extra: dict = field(default_factory=dict)   # more substitutions into the configuration


_counter = itertools.count(1)


def marker(name):
    return "interop-%s-%d" % (name, next(_counter))


def message(mark, body, to="rcpt@" + DOMAIN):
    return (b"From: <a@example.org>\r\nTo: <%s>\r\nDate: Sun, 06 Dec 2026 06:00:00 +0000\r\n"
            b"Message-ID: <%s@example.org>\r\nSubject: %s\r\n\r\n" % (to.encode(), mark.encode(), mark.encode())
            ) + body


class Far(Client):
    """A client from SOURCE, one of 127.0.0.2, .3 or .1."""

    def __init__(self, port, source=PERMITTED):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
        self.buf = b""
        self.tls = False


def session(proxy, source=PERMITTED, name="far.test"):
    """Greeting, EHLO, STARTTLS, EHLO: a client inside TLS; and the two EHLO replies
    (the first None through the implicit-TLS listener, for backends marked so)."""
    if getattr(proxy, "implicit", False):
        c = Far(proxy.port("smtps"), source)
        c.start_tls(context=client_context())
        greeting = c.reply()
        assert greeting.code == 220, greeting
        after = c.cmd("EHLO " + name)
        assert after.code == 250, after
        return c, greeting, None, after
    c = Far(proxy.port("smtp"), source)
    greeting = c.reply()
    assert greeting.code == 220, greeting
    before = c.cmd("EHLO " + name)
    assert before.code == 250, before
    assert c.cmd("STARTTLS").lines == ["220 2.0.0 Ready to start TLS"]
    c.start_tls(context=client_context())
    after = c.cmd("EHLO " + name)
    assert after.code == 250, after
    return c, greeting, before, after


def send(c, body, rcpts=("rcpt@" + DOMAIN,), mail_args=""):
    reply = c.cmd("MAIL FROM:<a@example.org>" + mail_args)
    assert reply.code == 250, reply
    for r in rcpts:
        reply = c.cmd("RCPT TO:<%s>" % r)
        assert reply.code == 250, reply
    reply = c.cmd("DATA")
    assert reply.code == 354, reply
    c.send(stuff(body) + b".\r\n")
    return c.reply()


class Running:
    """The module's backend: its container and the address the proxy uses."""

    def __init__(self, spec, container, port, port2=None):
        self.spec, self.c, self.port, self.port2 = spec, container, port, port2
        self.addr = "127.0.0.1:%d" % port
        self.addr2 = "127.0.0.1:%d" % port2 if port2 else None

    def log(self):
        if self.spec.log is None:
            return self.c.logs()
        try:
            return self.c.read(self.spec.log).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def messages(self, mark, user="rcpt"):
        """The messages in USER's mailbox that contain MARK."""
        if callable(self.spec.mailbox):
            return [m for m in self.spec.mailbox(self.c, user) if mark.encode() in m]
        out = self.c.exec("grep", "-rlF", "--", mark, self.spec.mailbox % user)
        return [self.c.read(p) for p in out.stdout.decode().split()]

    def stored(self, mark, user="rcpt"):
        """The one message with MARK in USER's mailbox, once it is there."""
        found = wait_until(lambda: self.messages(mark, user), TIMEOUT * 3)
        assert len(found) == 1, "%d messages with %s for %s:\n%s" % (len(found), mark, user, self.log()[-3000:])
        return found[0]


def assert_stored(stored, sent):
    """STORED is SENT (as LF lines) after header lines the server added."""
    sent_lf = sent.replace(b"\r\n", b"\n")
    assert stored.endswith(sent_lf), "stored:\n%r\nsent:\n%r" % (stored[-2000:], sent_lf[-2000:])
    added = stored[:len(stored) - len(sent_lf)]
    for line in added.splitlines():
        assert re.match(rb"^([!-9;-~]+:|[ \t])", line), "not a header line before the message: %r" % line
    return added


# --- fixtures ---------------------------------------------------------------

@pytest.fixture(scope="module")
def backend(request, container_module, tmp_path_factory):
    """The backend's configuration with its placeholders filled in: 10025 and
    10026 become free ports (its main and, if it has one, second listener)."""
    spec = request.module.BACKEND
    port, port2 = free_port(), free_port()
    subs = dict(spec.permit, **spec.extra)
    subs.update({"10025": port, "10026": port2})
    conf = render(REPO / "conf" / "backends" / spec.conf, tmp_path_factory.mktemp(spec.conf), subs)
    c = container_module(spec.image, conf)
    c.wait_port(port, timeout=spec.start_timeout)
    return Running(spec, c, port, port2)


@pytest.fixture
def proxy(backend, proxy_for):
    proxy = proxy_for(backend.addr, client_addr=backend.spec.client_addr)
    proxy.implicit = backend.spec.starttls is not True
    return proxy


def needs_starttls(request, backend):
    """A test of the STARTTLS listener: for a backend that cannot take it, it must fail."""
    if backend.spec.starttls is not True:
        request.applymarker(pytest.mark.xfail(reason=backend.spec.starttls, strict=True))


@pytest.fixture(autouse=True)
def no_protocol_errors(backend):
    yield
    found = re.findall(r".*(?:%s).*" % backend.spec.protocol_errors, backend.log())
    assert not found, "the server logged protocol errors:\n" + "\n".join(found)


# --- the matrix -------------------------------------------------------------

def test_greeting(proxy, backend):
    c = Far(proxy.port("smtp"))
    r = c.reply()
    assert len(r.lines) == 1 and re.match(backend.spec.greeting, r.lines[0]), r
    assert c.cmd("QUIT").code == 221


def test_ehlo_rewrite(request, proxy, backend):
    needs_starttls(request, backend)
    proxy.implicit = False
    c, _, before, after = session(proxy)
    caps = lambda r: [line[4:].split()[0].upper() for line in r.lines[1:]]  # noqa: E731
    assert before.lines[0].startswith("250-" + DOMAIN) or before.lines[0].startswith("250-"), before
    assert before.lines[-1] == "250 STARTTLS", before
    assert "AUTH" not in caps(before), "AUTH is offered only inside TLS: %r" % before
    assert "STARTTLS" not in caps(after), after
    assert [x for x in caps(before) if x != "STARTTLS"] == [x for x in caps(after) if x != "AUTH"], (before, after)
    if backend.spec.auth is True:
        assert "AUTH" in caps(after), after
    assert c.cmd("QUIT").code == 221


def test_client_address(proxy, backend):
    c, *_ = session(proxy)
    mark = marker("client")
    body = message(mark, b"seen from afar\r\n")
    assert send(c, body).code == 250
    assert c.cmd("QUIT").code == 221
    added = assert_stored(backend.stored(mark), body)
    received = added.split(b"\n")[0:4]
    assert b"127.0.0.2" in b" ".join(received), added
    assert b"127.0.0.1" not in added, "the proxy's address in the trace headers:\n%s" % added.decode()
    assert wait_until(lambda: re.search(backend.spec.log_client % re.escape(PERMITTED), backend.log())), \
        backend.log()[-3000:]


@pytest.mark.parametrize("source,allowed", [(PERMITTED, True), (REFUSED, False), (PROXY_ADDR, False)],
                         ids=["permitted", "refused", "proxy-address"])
def test_relay_decision(request, proxy, backend, source, allowed):
    if source == PROXY_ADDR and backend.spec.trusts_proxy_address:
        request.applymarker(pytest.mark.xfail(reason=backend.spec.trusts_proxy_address, strict=True))
    c, *_ = session(proxy, source)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    r = c.cmd("RCPT TO:<someone@remote.example>")
    assert (r.code == 250) == allowed and (allowed or 500 <= r.code < 600), (source, r)
    assert c.cmd("RSET").code == 250
    assert c.cmd("QUIT").code == 221


def test_8bitmime(proxy, backend):
    c, _, _, after = session(proxy)
    assert "8BITMIME" in after.text
    mark = marker("8bit")
    body = message(mark, "Grüße aus Köln, ½ € — ✓\r\n".encode() + b"latin-1: caf\xe9\r\n")
    assert send(c, body, mail_args=" BODY=8BITMIME").code == 250
    assert_stored(backend.stored(mark), body)


def test_long_lines(proxy, backend):
    c, *_ = session(proxy)
    mark = marker("long")
    body = message(mark, b"x" * 998 + b"\r\n.leading dot\r\n" + b"y" * 997 + b" \r\n")
    assert send(c, body).code == 250
    assert_stored(backend.stored(mark), body)


def test_chunking(proxy, backend):
    if backend.spec.chunking is not True:
        pytest.skip(backend.spec.chunking)
    c, _, _, after = session(proxy)
    assert "CHUNKING" in after.text
    mark = marker("bdat")
    body = message(mark, b"chunk one\r\n.not stuffed\r\n")
    tail = b"QUIT\r\nchunk two\r\n"
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<rcpt@%s>" % DOMAIN).code == 250
    c.send(b"BDAT %d\r\n" % len(body) + body)
    assert c.reply().code == 250
    c.send(b"BDAT %d LAST\r\n" % len(tail) + tail)
    assert c.reply().code == 250
    assert c.cmd("QUIT").code == 221
    assert_stored(backend.stored(mark), body + tail)


def test_pipelining(proxy, backend):
    """Pipelined recipients, one refused, replies in order (RFC 2920 section 3.2).
    To a backend that does not offer PIPELINING the proxy gives one command
    at a time, so the client's pipelining is the same to it. A backend that
    loses what arrives with the final dot (spec.after_dot) gets QUIT after
    the dot's reply; the recipients and DATA are pipelined all the same."""
    c, _, _, after = session(proxy)
    assert ("PIPELINING" in after.text) == backend.spec.pipelining, after
    mark = marker("pipe")
    body = message(mark, b"to two of three\r\n")
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<rcpt@{0}>\r\nRCPT TO:<nosuchuser@{0}>\r\n"
           "RCPT TO:<rcpt2@{0}>\r\nDATA\r\n".format(DOMAIN))
    codes = [r.code for r in c.replies(5)]
    assert codes[:2] == [250, 250] and 500 <= codes[2] < 600 and codes[3:] == [250, 354], codes
    if backend.spec.after_dot is True:
        c.send(stuff(body) + b".\r\nQUIT\r\n")
        assert [r.code for r in c.replies(2)] == [250, 221]
    else:
        c.send(stuff(body) + b".\r\n")
        assert c.reply().code == 250
        assert c.cmd("QUIT").code == 221
    assert_stored(backend.stored(mark), body)
    assert_stored(backend.stored(mark, "rcpt2"), body)


def test_auth(proxy, backend):
    if backend.spec.auth is not True:
        pytest.skip(backend.spec.auth)
    c, *_ = session(proxy, REFUSED)
    bad = base64.b64encode(b"\0test\0wrong").decode()
    assert 500 <= c.cmd("AUTH PLAIN " + bad).code < 600
    good = base64.b64encode(b"\0test\0secret").decode()
    r = c.cmd("AUTH PLAIN " + good)
    assert r.code == 235, r
    # Authenticated, a client from a refused network may relay, and deliver.
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<someone@remote.example>").code == 250
    assert c.cmd("RSET").code == 250
    mark = marker("auth")
    body = message(mark, b"after AUTH\r\n")
    assert send(c, body).code == 250
    assert c.cmd("QUIT").code == 221
    assert_stored(backend.stored(mark), body)


SMUGGLED = b"MAIL FROM:<evil@x>\r\nRCPT TO:<rcpt@backend.test>\r\nDATA\r\nSubject: smuggled-%s\r\n\r\nsmuggled\r\n"
PATTERNS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r", b"\r.\n"]


@pytest.mark.parametrize("pattern", PATTERNS, ids=[repr(p)[2:-1] for p in PATTERNS])
def test_smuggling_refused(proxy, backend, pattern):
    c, *_ = session(proxy)
    mark = marker("smuggle")
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<rcpt@%s>" % DOMAIN).code == 250
    assert c.cmd("DATA").code == 354
    c.send(message(mark, b"hello") + pattern + SMUGGLED % mark.encode() + b"\r\n.\r\n")
    r = c.reply()
    assert 500 <= r.code < 600, r
    c.close()
    # A message sent after it arrives; neither the refused one nor the
    # smuggled one ever does.
    c, *_ = session(proxy)
    after = marker("after")
    assert send(c, message(after, b"after\r\n")).code == 250
    backend.stored(after)
    assert not backend.messages(mark)
    assert "evil@x" not in backend.log()


def test_starttls_injection(request, proxy, backend):
    """CVE-2011-0411: commands pipelined after STARTTLS in plaintext are never executed."""
    needs_starttls(request, backend)
    c = Far(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("EHLO far.test").code == 250
    c.send(b"STARTTLS\r\nMAIL FROM:<att@x>\r\nRCPT TO:<rcpt@backend.test>\r\n")
    assert c.reply().lines == ["220 2.0.0 Ready to start TLS"]
    c.start_tls(context=client_context())
    assert c.cmd("EHLO far.test").code == 250
    mark = marker("inject")
    body = message(mark, b"after STARTTLS\r\n")
    assert send(c, body).code == 250, "no nested MAIL: the injected one never ran"
    assert c.cmd("QUIT").code == 221
    assert_stored(backend.stored(mark), body)
    assert "att@x" not in backend.log()
