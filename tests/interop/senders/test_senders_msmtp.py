"""msmtp (GnuTLS) sending through starttlsd to the recording sink, over
STARTTLS and implicit TLS, with TLS 1.3 and with TLS 1.2 forced by
tls_priorities, verifying the certificate and the name test.example against
the test CA (tls_trust_file, tls_host_override). Its --debug output names the
TLS version and the verified certificate, its log file tls=on; the sink holds
the message byte for byte; with a CA that did not issue the certificate it
refuses and nothing reaches the sink."""

import subprocess

import pytest

from conftest import FROM, TEST_NAME, TO, VERSIONS, assert_relayed, integration, message

TIMEOUT = integration.TIMEOUT


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


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls13(relay, pki, mode, tmp_path):
    deliver(relay, pki, mode, tmp_path, "1.3")


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls12(relay, pki, mode, tmp_path):
    deliver(relay, pki, mode, tmp_path, "1.2")


def deliver(relay, pki, mode, tmp_path, version):
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


def test_refuses_unverified(relay, pki, tmp_path):
    out = msmtp(relay, pki["other_ca"], "1.3", message("msmtp-bad-ca"), tmp_path)
    debug = out.stdout.decode("utf-8", "replace") + out.stderr.decode("utf-8", "replace")
    assert out.returncode != 0, debug
    assert "TLS certificate verification failed" in debug, debug
    relay.proxy.wait_sessions(1)
    assert relay.sink.messages() == []
