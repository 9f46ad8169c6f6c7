"""swaks (Perl, OpenSSL) sending through starttlsd to the recording sink, over
STARTTLS (--tls) and implicit TLS (--tlsc), with TLS 1.3 and with TLS 1.2
forced by --tls-protocol, verifying the certificate against the test CA
(--tls-verify --tls-ca-path). Its transcript names the TLS version and the
peer; the sink holds the message byte for byte; with a CA that did not issue
the certificate TLS fails to start and nothing reaches the sink."""

import subprocess

import pytest

from conftest import FROM, TEST_NAME, TO, VERSIONS, assert_relayed, integration, message

TIMEOUT = integration.TIMEOUT


def swaks(relay, cafile, version, body, implicit=False):
    args = ["swaks", "--server", "127.0.0.1", "--from", FROM, "--to", TO,
            "--tls-verify", "--tls-ca-path", str(cafile), "--data", "-", "--timeout", str(TIMEOUT)]
    if implicit:
        args += ["--port", str(relay.smtps_port), "--tlsc"]
    else:
        args += ["--port", str(relay.port), "--tls"]
    if version == "1.2":
        args += ["--tls-protocol", "tlsv1_2"]
    # swaks ends the data with CRLF "." CRLF of its own: the last CRLF is its.
    assert body.endswith(b"\r\n")
    return subprocess.run(args, input=body[:-2], capture_output=True, timeout=60)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls13(relay, pki, mode):
    deliver(relay, pki, mode, "1.3")


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls12(relay, pki, mode):
    deliver(relay, pki, mode, "1.2")


def deliver(relay, pki, mode, version):
    body = message("swaks-%s-%s" % (mode, version))
    out = swaks(relay, pki["ca"], version, body, implicit=mode == "implicit")
    log = out.stdout.decode("utf-8", "replace")
    assert out.returncode == 0, log + out.stderr.decode()
    # This swaks prints no verification line: with --tls-verify, OpenSSL's
    # handshake only completes on a verified chain (the negative test below).
    assert "=== TLS started with cipher %s:" % VERSIONS[version][0] in log, log
    assert '=== TLS peer DN="/CN=%s"' % TEST_NAME in log, log
    assert_relayed(relay, body, version)


def test_refuses_unverified(relay, pki):
    out = swaks(relay, pki["other_ca"], "1.3", message("swaks-bad-ca"))
    log = out.stdout.decode("utf-8", "replace") + out.stderr.decode("utf-8", "replace")
    assert out.returncode != 0, log
    assert "*** TLS startup failed" in log, log
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []
