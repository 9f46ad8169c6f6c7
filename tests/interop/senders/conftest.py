"""Fixtures for the sender tests: real TLS clients and MTAs sending through
starttlsd to the recording sink (byte-exact) or to a real Postfix.

The integration suite's fixtures (cert, start_sink, start_proxy, proxy_for)
and the interop harness's `container` (tests/interop/conftest.py) are
reused; this file adds a test PKI (a CA and a server certificate for
test.example issued by it, plus a second CA that did not issue it, for the
negative cases) and `relay`: a sink behind a proxy that serves the CA-issued
certificate, with the SPKI SHA-256 that `starttlsd -T` prints for it.
"""

import os
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))  # postfix_instance

# tests/interop/conftest.py has loaded the integration conftest under this
# name and registered cert, start_proxy, proxy_for and container.
integration = sys.modules["integration_conftest"]
start_sink = integration.start_sink

from postfix_instance import POSTFIX, Postfix  # noqa: E402

TEST_NAME = integration.CERT_NAME  # test.example
TLSA_RE = re.compile(r"^_\d+\._tcp\.(\S+)\. IN TLSA 3 1 1 ([0-9a-f]{64})$", re.M)


def certtool(*args):
    integration.run(["certtool"] + [str(a) for a in args])


def make_ca(d, name):
    """A self-signed CA (ECDSA P-256): d/name.pem, d/name.key."""
    key = integration.make_key(d / (name + ".key"), "ecdsa")
    (d / (name + ".tmpl")).write_text('cn = "starttlsd %s"\nca\ncert_signing_key\nexpiration_days = 30\n' % name)
    certtool("--generate-self-signed", "--load-privkey", key, "--template", d / (name + ".tmpl"),
             "--outfile", d / (name + ".pem"))
    return d / (name + ".pem"), key


def issue_server(d, ca_pem, ca_key, names):
    """A server certificate for NAMES (and 127.0.0.1) signed by the CA."""
    key = integration.make_key(d / "server.key", "ecdsa")
    lines = ['cn = "%s"' % names[0]] + ['dns_name = "%s"' % n for n in names]
    lines += ['ip_address = "127.0.0.1"', "tls_www_server", "signing_key", "encryption_key", "expiration_days = 30"]
    (d / "server.tmpl").write_text("\n".join(lines) + "\n")
    certtool("--generate-certificate", "--load-privkey", key, "--load-ca-certificate", ca_pem,
             "--load-ca-privkey", ca_key, "--template", d / "server.tmpl", "--outfile", d / "server.pem")
    return d / "server.pem", key


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """ca: the CA that issued the proxy's certificate; other_ca: one that did not.
    Every file is world-readable so that MTAs dropping to their own user can read
    them; nothing here protects anything real."""
    d = tmp_path_factory.mktemp("pki")
    d.chmod(0o755)
    ca = make_ca(d, "ca")
    other = make_ca(d, "other-ca")
    server = issue_server(d, ca[0], ca[1], [TEST_NAME, "mail.test"])
    for p in d.iterdir():
        p.chmod(0o644)
    return {"dir": d, "ca": ca[0], "other_ca": other[0], "cert": server[0], "key": server[1]}


def tlsa_spki(conf_path):
    """The SPKI SHA-256 of the proxy's certificate, as `starttlsd -T` prints it."""
    out = integration.run([integration.starttlsd_binary(), "-T", "-c", conf_path])
    found = TLSA_RE.findall(out)
    assert found and {f[1] for f in found} == {found[0][1]}, out
    return found[0][1]


class Relay:
    """A recording sink behind the proxy: what senders send to."""

    def __init__(self, sink, proxy, spki):
        self.sink = sink
        self.proxy = proxy
        self.port = proxy.port("smtp")
        self.smtps_port = proxy.port("smtps")
        self.spki = spki


@pytest.fixture
def start_relay(start_sink, start_proxy, pki):
    """start_relay(**keys): a sink behind a proxy serving the CA-issued
    certificate on 'smtp' (STARTTLS) and 'smtps' (implicit), with KEYS
    (priority, ...) on both listeners."""

    def start(**keys):
        sink = start_sink()
        keys = dict(keys, backend=sink.addr, cert="%s %s" % (pki["cert"], pki["key"]))
        proxy = start_proxy({"smtp": dict(keys, tls="starttls"), "smtps": dict(keys, tls="implicit")})
        return Relay(sink, proxy, tlsa_spki(proxy.conf))

    return start


@pytest.fixture
def relay(start_relay):
    return start_relay()


# A message whose every header is the sender's own, so that an MTA adds
# nothing but its Received line; a dot at the start of a line tests stuffing.
MESSAGE = (b"From: Alice <alice@example.org>\r\n"
           b"To: Bob <bob@example.net>\r\n"
           b"Subject: through starttlsd\r\n"
           b"Date: Sun, 06 Dec 2026 06:00:00 +0000\r\n"
           b"Message-ID: <senders-%s@example.org>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n"
           b"\r\n"
           b"First line.\r\n"
           b".a line that starts with a dot\r\n"
           b"Last line.\r\n")


def message(tag):
    """MESSAGE with a Message-ID naming TAG (the test), so logs can be told apart."""
    return MESSAGE.replace(b"%s", tag.encode())


RECEIVED_RE = re.compile(rb"\AReceived:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")


def strip_received(eml):
    """EML without the Received header lines an MTA put on top; their count too."""
    n = 0
    while True:
        m = RECEIVED_RE.match(eml)
        if not m:
            return eml, n
        eml, n = eml[m.end():], n + 1


FROM, TO = "alice@example.org", "bob@example.net"
# TLS version: (the name OpenSSL and Python give it, the proxy's session log's)
VERSIONS = {"1.3": ("TLSv1.3", "TLS1.3"), "1.2": ("TLSv1.2", "TLS1.2")}


def assert_relayed(relay, body, version):
    """The sink got BODY once, byte for byte (dot-stuffed as sent, and as
    meant), over a proxy session of VERSION."""
    assert relay.sink.messages() == [1], relay.sink.dump()
    integration.assert_delivered(relay.sink, 1, body)
    env = relay.sink.msg(1, "env").decode().splitlines()
    assert env[1].split()[:2] == ["from", "<%s>" % FROM] and env[2:] == ["rcpt <%s>" % TO], env
    assert relay.proxy.wait_sessions(1)[0]["tls"].startswith(VERSIONS[version][1] + "/")


class PostfixRelay:
    """A real backend behind the proxy: a private Postfix that accepts mail
    for backend.test and holds it (loopback is not in its mynetworks)."""

    rcpt = "bob@backend.test"

    def __init__(self, backend, proxy):
        self.backend = backend
        self.proxy = proxy
        self.port = proxy.port("smtp")
        self.smtps_port = proxy.port("smtps")

    def assert_held(self, body, sender_by, version="1.3"):
        """The one held message: below the backend's Received line and the
        sender's (naming SENDER_BY), the headers and body of BODY."""
        held = self.backend.held()
        assert len(held) == 1, self.backend.log()
        headers = self.backend.postcat(held[0], "-h")
        ours, text = body.replace(b"\r\n", b"\n").split(b"\n\n", 1)
        received = re.findall(rb"^Received: .*(?:\n[ \t].*)*", headers, re.M)
        assert len(received) == 2, headers
        assert b"by backend.test (Postfix)" in received[0] and sender_by.encode() in received[1], headers
        assert headers.endswith(ours + b"\n"), headers
        assert self.backend.postcat(held[0], "-b") == b"\n" + text  # postcat -b starts at the blank line
        assert self.proxy.log.wait_for(r"TLS established: TLS%s/" % re.escape(version)), self.proxy.log.text()


@pytest.fixture
def postfix_relay(start_proxy, pki, request):
    """postfix_relay(): a private Postfix as the backend of a proxy serving
    the CA-issued certificate on 'smtp' and 'smtps'."""
    if os.geteuid() != 0 or not os.path.exists(POSTFIX):
        pytest.skip("needs root and Postfix (packaging/install-deps test)")
    backends = []

    def start():
        pf = Postfix("backend", integration.free_port(), [
            "myhostname = backend.test",
            "mydestination = backend.test",
            "mynetworks = 192.0.2.1/32",
            "local_recipient_maps =",
            "smtpd_recipient_restrictions = check_recipient_access static:HOLD, reject_unauth_destination",
        ])
        backends.append(pf)
        keys = {"backend": pf.smtpd, "cert": "%s %s" % (pki["cert"], pki["key"])}
        proxy = start_proxy({"smtp": dict(keys, tls="starttls"), "smtps": dict(keys, tls="implicit")})
        return PostfixRelay(pf, proxy)

    yield start
    for pf in backends:
        pf.stop()
        if integration._failed(request):
            print("--- postfix backend log (%s) ---\n%s" % (pf.base, pf.log()))
        pf.remove()
