"""OpenSMTPD (Debian 12's opensmtpd 6.8.0p2) as the sending MTA, in a
container on the host's network: conf/senders/opensmtpd relays everything to
starttlsd with smtp+tls:// (mandatory STARTTLS) or smtps:// (the implicit
listener), verifying the certificate against the test CA (`ca`).

OpenSMTPD's own log shows "mta tls ciphers=TLSv1.3:..." and
server-cert-check result="success". 6.8 cannot be told which TLS versions to
use for a relay (no `protocols` option: `smtpd -n` calls it a syntax error;
it came with the later libtls versions, see smtpd.conf(5) of 7.x), so TLS 1.2
is forced from the proxy's side (`priority`). The sink holds the message byte
for byte below OpenSMTPD's Received line; a Postfix backend behind the proxy
holds the headers and body given to OpenSMTPD. With a CA that did not issue
the proxy's certificate, and pointed at a plaintext server without STARTTLS,
OpenSMTPD keeps the message and nothing reaches the sink."""

import re
import shutil

import pytest

from conftest import FROM, REPO, TEST_NAME, TO, integration, message, strip_received
from mta import render

CONF = REPO / "conf" / "senders" / "opensmtpd"
PROXY_PRIORITY = {"1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3", "1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2"}
# OpenSMTPD waits a little before its first connection to a new relay.
DELIVERY_WAIT = 30

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (packaging/install-deps interop)")


@pytest.fixture
def opensmtpd_sender(container, pki, tmp_path):
    def start(port, scheme="smtp+tls", ca="ca"):
        conf = render(CONF, tmp_path / "opensmtpd", {"@TLS_NAME@": TEST_NAME, "@PROXY_PORT@": port,
                                                     "@SCHEME@": scheme, "@CA_FILE@": "/interop/ca.pem"})
        shutil.copy(pki[ca], conf / "ca.pem")
        c = container("opensmtpd", conf, hostname="opensmtpd-sender.test")
        assert integration.wait_until(lambda: "opensmtpd sender ready" in c.logs()), c.logs()
        return c

    return start


def submit(c, body, rcpt=TO):
    out = c.exec("sendmail", "-f", FROM, rcpt, input=body)
    assert out.returncode == 0, out.stdout + out.stderr


def wait_log(c, pattern):
    found = integration.wait_until(lambda: re.search(pattern, c.logs(), re.M), DELIVERY_WAIT)
    return c.logs() if found else None


@pytest.mark.parametrize("scheme", ["smtp+tls", "smtps"])
def test_tls13(start_relay, opensmtpd_sender, scheme):
    deliver(start_relay, opensmtpd_sender, scheme, "1.3")


@pytest.mark.parametrize("scheme", ["smtp+tls", "smtps"])
def test_tls12(start_relay, opensmtpd_sender, scheme):
    deliver(start_relay, opensmtpd_sender, scheme, "1.2")


def deliver(start_relay, opensmtpd_sender, scheme, version):
    relay = start_relay(priority=PROXY_PRIORITY[version])
    c = opensmtpd_sender(relay.smtps_port if scheme == "smtps" else relay.port, scheme)
    body = message("opensmtpd-%s-%s" % (scheme, version))
    submit(c, body)
    log = wait_log(c, r' mta delivery .* result="\w+"')
    assert log and re.search(r' mta delivery .*to=<%s>.* result="Ok"' % re.escape(TO), log), log
    assert re.search(r" mta tls ciphers=TLSv%s:" % re.escape(version), log), log
    assert ' mta server-cert-check result="success"' in log, log
    assert relay.sink.messages() == [1], relay.sink.dump()
    eml = relay.sink.msg(1, "eml")
    rest, received = strip_received(eml)
    assert received == 1 and b"by opensmtpd-sender.test (OpenSMTPD)" in eml.split(b"\r\n\r\n")[0], eml
    assert rest == body
    # OpenSMTPD keeps the connection 10 s for more mail before its QUIT, so the
    # proxy's handshake line is read instead of its end-of-session line.
    assert relay.proxy.log.wait_for(r"TLS established: TLS%s/" % re.escape(version)), relay.proxy.log.text()


def test_refuses_unverified(relay, opensmtpd_sender):
    c = opensmtpd_sender(relay.port, ca="other_ca")
    submit(c, message("opensmtpd-other-ca"))
    log = wait_log(c, r" mta error reason=")
    assert log and "mta error reason=SSL certificate check failed" in log, log
    assert " mta delivery " not in log, log
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []


def test_postfix_backend(postfix_relay, opensmtpd_sender):
    relay = postfix_relay()
    c = opensmtpd_sender(relay.port)
    body = message("opensmtpd-to-postfix")
    submit(c, body, rcpt=relay.rcpt)
    log = wait_log(c, r' mta delivery .* result="\w+"')
    assert log and re.search(r' mta delivery .*to=<%s>.* result="Ok"' % re.escape(relay.rcpt), log), log
    assert ' mta server-cert-check result="success"' in log, log
    relay.assert_held(body, "by opensmtpd-sender.test (OpenSMTPD)")


def test_refuses_plaintext(start_sink, opensmtpd_sender):
    """Pointed straight at a plaintext server that offers no STARTTLS (what the
    proxy is for), smtp+tls:// keeps the message."""
    sink = start_sink("--caps", "PIPELINING,8BITMIME,ENHANCEDSTATUSCODES")
    c = opensmtpd_sender(sink.port)
    submit(c, message("opensmtpd-plaintext"))
    log = wait_log(c, r" mta error reason=")
    assert log and " mta error reason=TLS required but not supported by remote host" in log, log
    assert " mta delivery " not in log, log
    assert sink.messages() == []
