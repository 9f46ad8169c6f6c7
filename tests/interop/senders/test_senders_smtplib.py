"""Python's smtplib sending through starttlsd to the recording sink, over
STARTTLS and implicit TLS, with TLS 1.3 and with TLS 1.2 forced by the SSL
context's maximum_version, verifying the proxy's certificate and name against
the test CA (ssl.create_default_context). The socket reports the TLS version
and the verified peer; the sink holds the message byte for byte; a context
with a CA that did not issue the certificate fails the handshake and nothing
reaches the sink."""

import smtplib
import ssl

import pytest

from conftest import FROM, TEST_NAME, TO, VERSIONS, assert_relayed, integration, message

TIMEOUT = integration.TIMEOUT


def smtplib_context(cafile, version):
    ctx = ssl.create_default_context(cafile=str(cafile))  # CERT_REQUIRED, check_hostname
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls13(relay, pki, mode):
    deliver(relay, pki, mode, "1.3")


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls12(relay, pki, mode):
    deliver(relay, pki, mode, "1.2")


def deliver(relay, pki, mode, version):
    body = message("smtplib-%s-%s" % (mode, version))
    ctx = smtplib_context(pki["ca"], version)
    if mode == "implicit":
        # test.example does not resolve: connect to the address, verify the name.
        s = smtplib.SMTP_SSL("127.0.0.1", relay.smtps_port, context=ctx, timeout=TIMEOUT)
    else:
        s = smtplib.SMTP("127.0.0.1", relay.port, timeout=TIMEOUT)
        s.starttls(context=ctx)
    assert s.sock.version() == VERSIONS[version][0]
    # With CERT_REQUIRED the handshake only completes on a verified chain.
    assert dict(x[0] for x in s.sock.getpeercert()["subject"])["commonName"] == TEST_NAME
    assert s.sendmail(FROM, [TO], body) == {}
    s.quit()
    assert_relayed(relay, body, version)


def test_refuses_unverified(relay, pki):
    s = smtplib.SMTP("127.0.0.1", relay.port, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError):
        s.starttls(context=smtplib_context(pki["other_ca"], "1.3"))
    s.close()
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []
