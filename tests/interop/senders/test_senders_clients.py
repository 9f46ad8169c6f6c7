"""Python smtplib, swaks and msmtp sending through starttlsd to the recording
sink, each with TLS 1.3 and with TLS 1.2 forced from the client's side, each
verifying the proxy's certificate against the test CA. The client's own
report names the TLS version and the verification; the sink holds the message
byte for byte; a client given a CA that did not issue the certificate refuses
to send, and nothing reaches the sink."""

import smtplib
import ssl
import subprocess

import pytest

from conftest import TEST_NAME, integration, message

TIMEOUT = integration.TIMEOUT
VERSIONS = {"1.3": ("TLSv1.3", "TLS1.3"), "1.2": ("TLSv1.2", "TLS1.2")}
FROM, TO = "alice@example.org", "bob@example.net"


def assert_relayed(relay, body, version):
    """The sink got BODY once, byte for byte, over a proxy session of VERSION."""
    assert relay.sink.messages() == [1], relay.sink.dump()
    assert relay.sink.msg(1, "eml") == body
    env = relay.sink.msg(1, "env").decode().splitlines()
    assert env[1].split()[:2] == ["from", "<%s>" % FROM] and env[2:] == ["rcpt <%s>" % TO], env
    assert relay.proxy.wait_sessions(1)[0]["tls"].startswith(VERSIONS[version][1] + "/")


# --- Python smtplib -----------------------------------------------------------

def smtplib_context(cafile, version):
    ctx = ssl.create_default_context(cafile=str(cafile))  # CERT_REQUIRED, check_hostname
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_smtplib(relay, pki, version, mode):
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


def test_smtplib_refuses_an_unknown_ca(relay, pki):
    s = smtplib.SMTP("127.0.0.1", relay.port, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError):
        s.starttls(context=smtplib_context(pki["other_ca"], "1.3"))
    s.close()
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []


# --- swaks ------------------------------------------------------------------------

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


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_swaks(relay, pki, version, mode):
    body = message("swaks-%s-%s" % (mode, version))
    out = swaks(relay, pki["ca"], version, body, implicit=mode == "implicit")
    log = out.stdout.decode("utf-8", "replace")
    assert out.returncode == 0, log + out.stderr.decode()
    # This swaks prints no verification line: with --tls-verify, OpenSSL's
    # handshake only completes on a verified chain (the negative test below).
    assert "=== TLS started with cipher %s:" % VERSIONS[version][0] in log, log
    assert '=== TLS peer DN="/CN=%s"' % TEST_NAME in log, log
    assert_relayed(relay, body, version)


def test_swaks_refuses_an_unknown_ca(relay, pki):
    out = swaks(relay, pki["other_ca"], "1.3", message("swaks-bad-ca"))
    log = out.stdout.decode("utf-8", "replace") + out.stderr.decode("utf-8", "replace")
    assert out.returncode != 0, log
    assert "*** TLS startup failed" in log, log
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []


# --- msmtp (GnuTLS) -------------------------------------------------------------------

def msmtp(relay, cafile, version, body, tmp_path, implicit=False):
    port = relay.smtps_port if implicit else relay.port
    # tls_host_override: the certificate names test.example, which does not resolve.
    conf = ["account default", "host 127.0.0.1", "port %d" % port, "from %s" % FROM,
            "tls on", "tls_starttls %s" % ("off" if implicit else "on"),
            "tls_trust_file %s" % cafile, "tls_host_override %s" % TEST_NAME,
            "timeout %d" % TIMEOUT, "logfile %s" % (tmp_path / "msmtp.log")]
    if version == "1.2":
        conf.append("tls_priorities NORMAL:-VERS-ALL:+VERS-TLS1.2")
    rc = tmp_path / "msmtprc"
    rc.write_text("\n".join(conf) + "\n")
    rc.chmod(0o600)
    return subprocess.run(["msmtp", "--file", str(rc), "--debug", TO], input=body, capture_output=True, timeout=60)


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_msmtp(relay, pki, version, mode, tmp_path):
    body = message("msmtp-%s-%s" % (mode, version))
    out = msmtp(relay, pki["ca"], version, body, tmp_path, implicit=mode == "implicit")
    debug = out.stdout.decode("utf-8", "replace") + out.stderr.decode("utf-8", "replace")
    assert out.returncode == 0, debug
    # msmtp --debug prints the GnuTLS session description, e.g. (TLS1.3)-(ECDHE-...)...
    assert "TLS session parameters:" in debug and "(%s)-" % VERSIONS[version][1] in debug, debug
    assert "Subject:\n        CN=%s\n    Issuer:\n        CN=starttlsd ca\n" % TEST_NAME in debug, debug
    log = (tmp_path / "msmtp.log").read_text()
    assert "tls=on" in log and "exitcode=EX_OK" in log, log
    assert_relayed(relay, body, version)


def test_msmtp_refuses_an_unknown_ca(relay, pki, tmp_path):
    out = msmtp(relay, pki["other_ca"], "1.3", message("msmtp-bad-ca"), tmp_path)
    debug = out.stdout.decode("utf-8", "replace") + out.stderr.decode("utf-8", "replace")
    assert out.returncode != 0, debug
    assert "TLS certificate verification failed" in debug, debug
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []
