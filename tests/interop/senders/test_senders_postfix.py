"""Postfix as the sending MTA: a private instance whose relayhost is
starttlsd, with smtp_tls_security_level = encrypt (the test CA in
smtp_tls_CAfile, so it logs "Trusted"), secure (chain and the name
test.example: "Verified") and fingerprint against the SPKI SHA-256 that
`starttlsd -T` prints ("Verified"), each with TLS 1.3 and with
smtp_tls_mandatory_protocols held to TLS 1.2 (the mandatory list is the one
these levels use; smtp_tls_protocols is for may).

A message goes in by SMTP on the instance's own smtpd and out through the
proxy to the recording sink, which must hold it byte for byte below the one
Received line Postfix adds. A wrong fingerprint, a name the certificate does
not carry, a proxy that offers only TLS 1.2 to an instance that requires 1.3,
and a plaintext server without STARTTLS make Postfix defer: nothing reaches
the sink. Last, Postfix sends through the proxy to a second private Postfix
as the real backend, which holds the message for postcat."""

import os
import smtplib

import pytest

from conftest import FROM, TEST_NAME, TO, integration, message, strip_received
from postfix_instance import POSTFIX, Postfix

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(POSTFIX),
                                reason="needs root and Postfix (packaging/install-deps test)")

PROTOCOLS = {"1.3": ">=TLSv1.3", "1.2": ">=TLSv1.2, <=TLSv1.2"}
TLS_NAME = {"1.3": "TLSv1.3", "1.2": "TLSv1.2"}


def colon_hex(hexdigest):
    return ":".join(hexdigest[i:i + 2] for i in range(0, len(hexdigest), 2)).upper()


def tls_lines(pki, level, version, fingerprint):
    """The smtp_tls_* lines of the sender's main.cf (conf/senders/postfix/main.cf)."""
    lines = ["smtp_tls_security_level = %s" % level,
             # encrypt and fingerprint are mandatory levels: the mandatory list rules.
             "smtp_tls_mandatory_protocols = %s" % PROTOCOLS[version],
             "smtp_tls_loglevel = 1"]
    if level == "fingerprint":
        lines += ["smtp_tls_fingerprint_digest = sha256",
                  "smtp_tls_fingerprint_cert_match = %s" % colon_hex(fingerprint)]
    else:
        lines.append("smtp_tls_CAfile = %s" % pki["ca"])
    if level == "secure":
        # relayhost is an address: name the certificate's host outright.
        lines.append("smtp_tls_secure_cert_match = %s" % TEST_NAME)
    return lines


@pytest.fixture
def start_postfix_sender(request):
    instances = []

    def start(relay_port, lines):
        pf = Postfix("sender", integration.free_port(), [
            "myhostname = sender.test",
            "mydestination =",
            "mynetworks = 127.0.0.1/32",
            "smtpd_relay_restrictions = permit_mynetworks, reject",
            "relayhost = [127.0.0.1]:%d" % relay_port,
        ] + lines)
        instances.append(pf)
        return pf

    yield start
    for pf in instances:
        pf.stop()
        if integration._failed(request):
            print("--- postfix log (%s) ---\n%s" % (pf.base, pf.log()))
        pf.remove()


def inject(pf, body, rcpt=TO):
    host, port = pf.smtpd.split(":")
    with smtplib.SMTP(host, int(port), timeout=integration.TIMEOUT) as s:
        assert s.sendmail(FROM, [rcpt], body) == {}


def assert_sent(pf, relay_port, trust, version):
    """Postfix's own log: TRUST ("Trusted", "Verified") TLS of VERSION, then sent."""
    log = pf.wait_log(r"status=(sent|deferred|bounced)")
    assert log and "status=sent" in log, log
    expect = "%s TLS connection established to 127.0.0.1[127.0.0.1]:%d: %s with cipher " % (
        trust, relay_port, TLS_NAME[version])
    assert expect in log, log
    return log


def assert_at_sink(relay, body, version):
    assert relay.sink.messages() == [1], relay.sink.dump()
    eml, received = strip_received(relay.sink.msg(1, "eml"))
    assert received == 1 and b"by sender.test (Postfix)" in relay.sink.msg(1, "eml").split(b"\r\n\r\n")[0]
    assert eml == body
    assert relay.proxy.wait_sessions(1)[0]["tls"].startswith(TLS_NAME[version].replace("v", "") + "/")


@pytest.mark.parametrize("level", ["encrypt", "secure", "fingerprint"])
def test_tls13(relay, pki, start_postfix_sender, level):
    deliver(relay, pki, start_postfix_sender, level, "1.3")


@pytest.mark.parametrize("level", ["encrypt", "secure", "fingerprint"])
def test_tls12(relay, pki, start_postfix_sender, level):
    deliver(relay, pki, start_postfix_sender, level, "1.2")


def deliver(relay, pki, start_postfix_sender, level, version):
    """encrypt with the CA logs "Trusted"; secure (chain and name) and fingerprint "Verified"."""
    pf = start_postfix_sender(relay.port, tls_lines(pki, level, version, relay.spki))
    body = message("postfix-%s-%s" % (level, version))
    inject(pf, body)
    assert_sent(pf, relay.port, "Trusted" if level == "encrypt" else "Verified", version)
    assert_at_sink(relay, body, version)


@pytest.mark.parametrize("level", ["secure", "fingerprint"])
def test_refuses_unverified(relay, pki, start_postfix_sender, level):
    """A fingerprint one digit off, or a name the certificate does not carry."""
    wrong = relay.spki[:-1] + ("0" if relay.spki[-1] != "0" else "1")
    lines = tls_lines(pki, level, "1.3", wrong)
    if level == "secure":
        lines.append("smtp_tls_secure_cert_match = other.example")
    pf = start_postfix_sender(relay.port, lines)
    inject(pf, message("postfix-unverified-%s" % level))
    log = pf.wait_log(r"status=(sent|deferred|bounced)")
    assert log and "status=deferred" in log, log
    assert "Server certificate not verified" in log, log
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []


def test_refuses_a_tls12_only_proxy(start_relay, pki, start_postfix_sender):
    relay = start_relay(priority="NORMAL:-VERS-ALL:+VERS-TLS1.2")
    pf = start_postfix_sender(relay.port, tls_lines(pki, "encrypt", "1.3", None))
    inject(pf, message("postfix-tls12-only"))
    log = pf.wait_log(r"status=(sent|deferred|bounced)")
    assert log and "status=deferred" in log, log
    assert "Cannot start TLS: handshake failure" in log, log
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []


def test_postfix_backend(postfix_relay, pki, start_postfix_sender):
    relay = postfix_relay()
    pf = start_postfix_sender(relay.port, tls_lines(pki, "encrypt", "1.3", None))
    body = message("postfix-to-postfix")
    inject(pf, body, rcpt=relay.rcpt)
    assert_sent(pf, relay.port, "Trusted", "1.3")
    relay.assert_held(body, "sender.test (Postfix)")


def test_refuses_plaintext(start_sink, pki, start_postfix_sender):
    """Pointed straight at a plaintext server that offers no STARTTLS (what the
    proxy is for), the encrypt level defers: TLS is required, not hoped for."""
    sink = start_sink("--caps", "PIPELINING,8BITMIME,ENHANCEDSTATUSCODES")
    pf = start_postfix_sender(sink.port, tls_lines(pki, "encrypt", "1.3", None))
    inject(pf, message("postfix-plaintext"))
    log = pf.wait_log(r"status=(sent|deferred|bounced)")
    assert log and "status=deferred" in log, log
    assert "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]" in log, log
    assert sink.messages() == []
