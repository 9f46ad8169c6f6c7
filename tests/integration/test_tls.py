"""TLS itself: certificate choice by SNI, versions, renegotiation, and the
session summary line."""

import socket
import ssl
import subprocess
import time

import pytest

from conftest import (Client, PEM_CERT_RE, SELFSIGNED, client_context, ehlo_starttls, fingerprint,
                      openssl_served, send_message, CERT_NAME, TIMEOUT)


def der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.fixture
def two_certs(tmp_path, cert, sink, start_proxy):
    out = subprocess.run([str(SELFSIGNED), "-d", str(tmp_path), "other.test", "*.wild.test"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    other = (str(tmp_path / "other.test.pem"), str(tmp_path / "other.test.key"))
    certs = ["%s %s" % cert, "%s %s" % other]
    proxy = start_proxy({"smtps": {"backend": sink.addr, "tls": "implicit", "cert": certs},
                         "smtp": {"backend": sink.addr, "cert": certs}})
    return proxy, cert[0], other[0]


@pytest.mark.parametrize("sni, which", [(CERT_NAME, 0), ("mail.test", 0), ("other.test", 1),
                                        ("x.wild.test", 1), ("X.Wild.TEST", 1), ("a.x.wild.test", 0),
                                        ("unknown.test", 0), (None, 0)])
def test_certificate_by_sni(two_certs, sni, which):
    proxy, *pems = two_certs
    for name in ("smtps", "smtp"):
        c = Client(proxy.port(name))
        if name == "smtp":
            assert c.reply().code == 220
            assert c.cmd("EHLO a").code == 250
            assert c.cmd("STARTTLS").code == 220
        c.start_tls(server_hostname=sni)
        assert c.sock.getpeercert(binary_form=True) == der(pems[which]), (name, sni)
        if name == "smtps":
            assert c.reply().code == 220
        assert c.cmd("QUIT").code == 221
        c.close()
    sessions = proxy.wait_sessions(2)
    assert {s["sni"] for s in sessions} == {sni or "-"}


def s_client_with_sni(port, sni):
    """openssl s_client after STARTTLS sending SNI as the raw bytes SNI (python's ssl will not)."""
    out = subprocess.run([b"openssl", b"s_client", b"-starttls", b"smtp", b"-connect", b"127.0.0.1:%d" % port,
                          b"-servername", sni], input=b"QUIT\n", capture_output=True, timeout=TIMEOUT)
    return (out.stdout + out.stderr).decode("latin-1")


@pytest.mark.parametrize("sni", [b"caf\xc3\xa9.test", b"mx\x01.test", b"mx\x1b[31m.test", b"mx_1.test"],
                         ids=["utf8", "control", "escape", "underscore"])
def test_sni_that_is_not_an_ascii_host_name_is_refused(proxy, sink, sni):
    """GnuTLS refuses such a name while it parses the ClientHello, before a
    certificate is chosen: the client gets a fatal illegal_parameter alert, the
    log says why and holds none of the name's bytes, and the listener goes on."""
    out = s_client_with_sni(proxy.port("smtp"), sni)
    assert "alert illegal parameter" in out, out
    assert not PEM_CERT_RE.search(out), out
    assert proxy.log.wait_for(r"TLS handshake failed: SNI server name is not an ASCII DNS host name "
                              r"\(RFC 6066 section 3\)$"), proxy.log.text()
    s = proxy.wait_sessions(1)[0]
    assert (s["tls"], s["sni"], s["cert"], s["end"]) == ("none", "-", "-", "handshake-failed"), s
    assert sni.split(b".")[0].decode("utf-8") not in proxy.log.text()
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("QUIT").code == 221
    c.close()


def test_sni_as_an_a_label_gets_the_default_certificate(proxy, sink, cert):
    """An IDN sent the RFC 6066 way, as an A-label, is a name like any other."""
    served, _ = openssl_served(proxy.port("smtp"), sni="xn--caf-dma.test")
    assert served == fingerprint(cert[0])
    s = proxy.wait_sessions(1)[0]
    assert (s["sni"], s["cert"]) == ("xn--caf-dma.test", CERT_NAME), s


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions_offered(proxy, sink, version):
    ctx = client_context()
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", proxy.port("smtps")), timeout=TIMEOUT) as s:
        with ctx.wrap_socket(s) as t:
            assert t.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
            assert t.recv(100).startswith(b"220 sink.test")


@pytest.mark.parametrize("version, ok", [("TLS1.1", False), ("TLS1.0", False), ("TLS1.2", True)])
def test_old_tls_versions_refused(proxy, sink, version, ok):
    # gnutls-cli offers exactly the version asked for, so a failure is the proxy's refusal.
    out = subprocess.run(["gnutls-cli", "--insecure", "--port", str(proxy.port("smtps")),
                          "--priority", "NORMAL:-VERS-ALL:+VERS-" + version, "127.0.0.1"],
                         input=b"QUIT\r\n", capture_output=True, timeout=TIMEOUT)
    text = (out.stdout + out.stderr).decode("latin-1")
    assert ("220 sink.test" in text) == ok, text
    assert (out.returncode == 0) == ok, text


def test_client_renegotiation_refused(proxy, sink):
    # s_client renegotiates (TLS 1.2) when it reads a line "R".
    proc = subprocess.Popen(["openssl", "s_client", "-tls1_2", "-starttls", "smtp",
                             "-connect", "127.0.0.1:%d" % proxy.port("smtp")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        time.sleep(1)
        proc.stdin.write(b"R\n")
        proc.stdin.flush()
        time.sleep(1)
        try:
            proc.stdin.write(b"NOOP\r\n")
            proc.stdin.flush()
            time.sleep(0.5)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out = proc.communicate(timeout=TIMEOUT)[0].decode("latin-1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "RENEGOTIATING" in out, out
    assert "250 2.0.0 Ok" not in out, out  # no NOOP answered after a renegotiation
    assert proxy.log.wait_for(r"renegotiation"), proxy.log.text()


def test_session_summary_line(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    client_port = c.sock.getsockname()[1]
    for _ in range(2):
        assert send_message(c, b"Subject: x\r\n\r\nbody\r\n").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    s = proxy.wait_sessions(1)[0]
    assert s["listener"] == "smtp"
    assert s["client"] == "127.0.0.1:%d" % client_port
    assert s["tls"].startswith("TLS1.3/"), s
    assert s["sni"] == CERT_NAME
    assert s["messages"] == "2"
    assert s["end"] == "quit"
    assert int(s["bytes_in"]) > 100 and int(s["bytes_out"]) > 100
    # A session that never starts TLS says so.
    p = Client(proxy.port("smtp"))
    assert p.reply().code == 220
    assert p.cmd("QUIT").code == 221
    p.close()
    assert proxy.wait_sessions(2)[1]["tls"] == "none"
