"""Exim 4 (Debian 12's exim4-daemon-light, GnuTLS) as the sending MTA, in a
container on the host's network: conf/senders/exim4 routes everything to
starttlsd with hosts_require_tls, verifying the certificate against the test
CA (tls_verify_hosts, tls_verify_certificates) and its name
(tls_verify_cert_hostnames), with TLS 1.3 and with TLS 1.2 forced by a GnuTLS
priority string in tls_require_ciphers.

Exim's own mainlog shows the delivery: X=TLS1.3:... and CV=yes. The sink holds
the message byte for byte below Exim's Received line; a Postfix backend
behind the proxy holds the headers and body given to Exim. With a CA that did
not issue the proxy's certificate, and pointed at a plaintext server without
STARTTLS, Exim defers and nothing reaches the sink."""

import re
import shutil

import pytest

from conftest import FROM, REPO, TEST_NAME, TO, integration, message, strip_received
from mta import render

CONF = REPO / "conf" / "senders" / "exim4"
PRIORITY = {"1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3", "1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2"}

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (packaging/install-deps interop)")


@pytest.fixture
def exim_sender(container, pki, tmp_path):
    def start(port, version="1.3", ca="ca"):
        conf = tmp_path / "exim4"
        render(CONF, conf, {"@TLS_NAME@": TEST_NAME, "@PROXY_PORT@": port,
                            "@CA_FILE@": "/interop/ca.pem", "@PRIORITY@": PRIORITY[version]})
        shutil.copy(pki[ca], conf / "ca.pem")
        c = container("exim4", conf, hostname="exim-sender.test")
        assert integration.wait_until(lambda: "exim sender ready" in c.logs()), c.logs()
        return c

    return start


def submit(c, body, rcpt=TO):
    """exim4 -odi: accept the message and deliver it before returning."""
    out = c.exec("exim4", "-odi", "-f", FROM, rcpt, input=body)
    assert out.returncode == 0, out.stdout + out.stderr
    return c.read("/var/log/exim4/mainlog").decode(errors="replace")


def test_tls13(relay, exim_sender):
    deliver(relay, exim_sender, "1.3")


def test_tls12(relay, exim_sender):
    deliver(relay, exim_sender, "1.2")


def deliver(relay, exim_sender, version):
    c = exim_sender(relay.port, version)
    body = message("exim4-%s" % version)
    log = submit(c, body)
    sent = re.search(r"^.* => %s .*$" % re.escape(TO), log, re.M)
    assert sent, log
    line = sent.group(0)
    assert " H=%s [127.0.0.1]:%d " % (TEST_NAME, relay.port) in line, line
    assert " X=TLS%s:" % version in line, line
    assert " CV=yes " in line and ' DN="CN=%s"' % TEST_NAME in line, line
    assert " Completed" in log, log
    assert relay.sink.messages() == [1], relay.sink.dump()
    eml = relay.sink.msg(1, "eml")
    rest, received = strip_received(eml)
    assert received == 1 and b"by exim-sender.test with local (Exim 4.96)" in eml.split(b"\r\n\r\n")[0], eml
    assert rest == body
    assert relay.proxy.wait_sessions(1)[0]["tls"].startswith("TLS%s/" % version)


def test_refuses_unverified(relay, exim_sender):
    c = exim_sender(relay.port, ca="other_ca")
    log = submit(c, message("exim4-other-ca"))
    assert " => %s" % TO not in log, log
    assert re.search(r"== %s .*certificate verif" % re.escape(TO), log, re.I), log
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []


def test_refuses_plaintext(start_sink, exim_sender):
    """Pointed straight at a plaintext server that offers no STARTTLS (what the
    proxy is for), hosts_require_tls defers."""
    sink = start_sink("--caps", "PIPELINING,8BITMIME,ENHANCEDSTATUSCODES")

    c = exim_sender(sink.port)
    log = submit(c, message("exim4-plaintext"))
    assert " => %s" % TO not in log, log
    assert re.search(r"== %s .*: a TLS session is required, but the server did not offer TLS support" % re.escape(TO),
                     log), log
    assert sink.messages() == []


def test_postfix_backend(postfix_relay, exim_sender):
    relay = postfix_relay()
    c = exim_sender(relay.port)
    body = message("exim4-to-postfix")
    log = submit(c, body, rcpt=relay.rcpt)
    assert re.search(r" => %s .* X=TLS1\.3:.* CV=yes " % re.escape(relay.rcpt), log), log
    relay.assert_held(body, "by exim-sender.test with local (Exim 4.96)")
