"""Certificates beyond the first: RSA beside ECDSA for the same names, OCSP
stapling, session resumption, client certificates, DANE TLSA records
(starttlsd -T against danetool) and the warning when a reload changes a key.
Every check uses the real tools: gnutls-cli, openssl s_client and ocsp,
danetool, certtool."""

import re
import ssl
import subprocess

import pytest

from conftest import (Client, CERT_NAME, RSA_ONLY_OPENSSL, TIMEOUT, fingerprint, make_key,
                      openssl_served, run, starttlsd_binary)

CA_TEMPLATE = """cn = "starttlsd test CA"
ca
cert_signing_key
crl_signing_key
expiration_days = 30
"""

LEAF_TEMPLATE = """cn = "{name}"
dns_name = "{name}"
tls_www_server
signing_key
encryption_key
expiration_days = 30
serial = {serial}
"""

CLIENT_TEMPLATE = """cn = "client.test"
o = "Example Mail Client"
tls_www_client
signing_key
expiration_days = 30
"""


def self_signed(d, stem, names, key_type, key=None):
    """A self-signed certificate for NAMES with a new (or the given) key."""
    key = key or make_key(d / (stem + ".key"), key_type)
    template = d / (stem + ".tmpl")
    template.write_text('cn = "%s"\n' % names[0] + "".join('dns_name = "%s"\n' % n for n in names) +
                        "tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n")
    pem = d / (stem + ".pem")
    run(["certtool", "--generate-self-signed", "--load-privkey", str(key), "--template", str(template),
         "--outfile", str(pem)])
    return pem, key


class OcspCA:
    """A CA that signs leaf certificates and answers OCSP for them (openssl ocsp)."""

    def __init__(self, d):
        self.dir = d
        self.key = make_key(d / "ca.key", "ecdsa")
        (d / "ca.tmpl").write_text(CA_TEMPLATE)
        self.pem = d / "ca.pem"
        run(["certtool", "--generate-self-signed", "--load-privkey", str(self.key),
             "--template", str(d / "ca.tmpl"), "--outfile", str(self.pem)])

    def leaf(self, name, serial):
        """name.pem (leaf and CA: the whole chain), name.key, name.leaf.pem."""
        key = make_key(self.dir / (name + ".key"), "ecdsa")
        tmpl = self.dir / (name + ".tmpl")
        tmpl.write_text(LEAF_TEMPLATE.format(name=name, serial=serial))
        leaf = self.dir / (name + ".leaf.pem")
        run(["certtool", "--generate-certificate", "--load-privkey", str(key),
             "--load-ca-certificate", str(self.pem), "--load-ca-privkey", str(self.key),
             "--template", str(tmpl), "--outfile", str(leaf)])
        chain = self.dir / (name + ".pem")
        chain.write_text(leaf.read_text() + self.pem.read_text())
        return chain, key, leaf

    def ocsp_response(self, leaf, out, days_ago=0):
        """A signed 'good' response for LEAF, valid one day from now (or from DAYS_AGO)."""
        serial = run(["openssl", "x509", "-in", str(leaf), "-noout", "-serial"]).strip().split("=")[1]
        subject = run(["openssl", "x509", "-in", str(leaf), "-noout", "-subject", "-nameopt",
                       "compat"]).strip().split("=", 1)[1]
        index = self.dir / "index.txt"
        index.write_text("V\t391231000000Z\t\t%s\tunknown\t%s\n" % (serial, subject))
        req = self.dir / "req.der"
        run(["openssl", "ocsp", "-issuer", str(self.pem), "-cert", str(leaf), "-reqout", str(req),
             "-no_nonce"])
        cmd = ["openssl", "ocsp", "-index", str(index), "-CA", str(self.pem), "-rsigner", str(self.pem),
               "-rkey", str(self.key), "-reqin", str(req), "-respout", str(out), "-ndays", "1"]
        if days_ago:
            cmd = ["faketime", "%d days ago" % days_ago] + cmd
        run(cmd)
        return out


def gnutls_served(port, priority="NORMAL", sni=None, tmp=None):
    """The SHA-256 of the certificate gnutls-cli is served after STARTTLS."""
    saved = tmp / "served.pem"
    args = ["gnutls-cli", "--insecure", "--starttls-proto=smtp", "--port", str(port),
            "--priority", priority, "--save-cert", str(saved), "127.0.0.1"]
    if sni:
        args[1:1] = ["--sni-hostname", sni]
    out = subprocess.run(args, input="QUIT\r\n", capture_output=True, text=True, timeout=TIMEOUT)
    assert "Handshake was completed" in out.stdout, out.stdout + out.stderr
    return fingerprint(saved)


RSA_ONLY_GNUTLS = "NORMAL:-SIGN-ALL:+SIGN-RSA-SHA256:+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-SHA384"


# --- RSA beside ECDSA ------------------------------------------------------

@pytest.fixture
def dual(tmp_path, cert, sink, start_proxy):
    """Default cert test.example (ECDSA); dual.test with ECDSA and RSA keys."""
    ec = self_signed(tmp_path, "dual-ec", ["dual.test"], "ecdsa")
    rsa = self_signed(tmp_path, "dual-rsa", ["dual.test"], "rsa")
    certs = ["%s %s" % cert, "%s %s" % ec, "%s %s" % rsa]
    proxy = start_proxy({"smtp": {"backend": sink.addr, "cert": certs}})
    return proxy, ec[0], rsa[0]


def test_ecdsa_client_gets_ecdsa_and_rsa_only_client_gets_rsa(dual, tmp_path):
    proxy, ec, rsa = dual
    port = proxy.port()
    assert gnutls_served(port, sni="dual.test", tmp=tmp_path) == fingerprint(ec)
    assert gnutls_served(port, RSA_ONLY_GNUTLS, sni="dual.test", tmp=tmp_path) == fingerprint(rsa)
    assert openssl_served(port, sni="dual.test")[0] == fingerprint(ec)
    assert openssl_served(port, RSA_ONLY_OPENSSL, sni="dual.test")[0] == fingerprint(rsa)
    # TLS 1.2 too, where the key type follows the cipher suite.
    assert openssl_served(port, RSA_ONLY_OPENSSL + ["-tls1_2"], sni="dual.test")[0] == fingerprint(rsa)
    sessions = proxy.wait_sessions(5)
    assert {s["cert"] for s in sessions} == {"dual.test"}


def test_rsa_only_client_without_sni_gets_an_rsa_certificate(dual, tmp_path, cert):
    proxy, ec, rsa = dual
    assert gnutls_served(proxy.port(), tmp=tmp_path) == fingerprint(cert[0])
    assert gnutls_served(proxy.port(), RSA_ONLY_GNUTLS, tmp=tmp_path) == fingerprint(rsa)


# --- resumption ------------------------------------------------------------

def s_client_session(port, sess_arg, sess, extra=()):
    """openssl s_client saving (-sess_out) or offering (-sess_in) a session.
    -ign_eof sends QUIT to the server instead of quitting at once, so that
    a TLS 1.3 ticket, which comes after the handshake, arrives first."""
    return subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-ign_eof", "-connect",
                           "127.0.0.1:%d" % port, sess_arg, str(sess)] + list(extra),
                          input="QUIT\r\n", capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_session_resumes_from_a_ticket(proxy, sink, tmp_path, version):
    sess = tmp_path / "session.pem"
    # Each session is logged before the next starts: two workers may log out of order.
    for count, (sess_arg, expect) in enumerate((("-sess_out", "New"), ("-sess_in", "Reused")), 1):
        out = s_client_session(proxy.port(), sess_arg, sess, [version])
        assert re.search(r"^%s, TLSv1\.[23]" % expect, out.stdout, re.M), out.stdout + out.stderr
        proxy.wait_sessions(count)
    assert [s["resumed"] for s in proxy.wait_sessions(2)] == ["no", "yes"]


def test_gnutls_cli_resumes(proxy, sink):
    out = subprocess.run(["gnutls-cli", "--insecure", "--starttls-proto=smtp", "--resume", "--port",
                          str(proxy.port()), "127.0.0.1"],
                         input="QUIT\r\n", capture_output=True, text=True, timeout=TIMEOUT)
    assert "This is a resumed session" in out.stdout, out.stdout + out.stderr


def test_a_ticket_from_another_proxy_process_is_refused(proxy, sink, proxy_for, tmp_path):
    """Each start makes a new ticket key: a forged or foreign ticket gives a full handshake."""
    other = proxy_for(sink)
    sess = tmp_path / "session.pem"
    for port, sess_arg in ((other.port(), "-sess_out"), (proxy.port(), "-sess_in")):
        out = s_client_session(port, sess_arg, sess)
    assert re.search(r"^New, TLSv1\.3", out.stdout, re.M), out.stdout


# --- OCSP stapling ---------------------------------------------------------

@pytest.fixture
def ca(tmp_path):
    return OcspCA(tmp_path)


def ocsp_proxy(start_proxy, sink, chain, key, ocsp):
    return start_proxy({"smtp": {"backend": sink.addr, "cert": "%s %s" % (chain, key), "ocsp": str(ocsp)}})


def test_ocsp_response_is_stapled(ca, sink, start_proxy, tmp_path):
    chain, key, leaf = ca.leaf("ocsp.test", 4660)
    resp = ca.ocsp_response(leaf, tmp_path / "ocsp.der")
    proxy = ocsp_proxy(start_proxy, sink, chain, key, resp)
    _, out = openssl_served(proxy.port(), ["-status"])
    assert "OCSP Response Status: successful" in out, out
    assert "Cert Status: good" in out, out
    # gnutls-cli trusts the chain and saves the stapled response, which
    # ocsptool then verifies against the CA.
    saved = tmp_path / "stapled.der"
    got = subprocess.run(["gnutls-cli", "--x509cafile", str(ca.pem), "--verify-hostname", "ocsp.test",
                          "--save-ocsp", str(saved), "--starttls-proto=smtp", "--port", str(proxy.port()),
                          "127.0.0.1"], input="QUIT\r\n", capture_output=True, text=True, timeout=TIMEOUT)
    assert "The certificate is trusted" in got.stdout, got.stdout + got.stderr
    assert saved.read_bytes() == resp.read_bytes()
    verified = run(["ocsptool", "--verify-response", "--load-signer", str(ca.pem), "--infile", str(saved)])
    assert "Verifying OCSP Response: Success" in verified, verified


@pytest.mark.parametrize("problem", ["stale", "other certificate", "garbage", "missing"])
def test_bad_ocsp_response_is_not_stapled_and_logged(ca, sink, start_proxy, tmp_path, problem):
    chain, key, leaf = ca.leaf("ocsp.test", 4660)
    resp = tmp_path / "ocsp.der"
    if problem == "stale":
        ca.ocsp_response(leaf, resp, days_ago=3)
    elif problem == "other certificate":
        *_, other_leaf = ca.leaf("other.test", 4661)
        ca.ocsp_response(other_leaf, resp)
    elif problem == "garbage":
        resp.write_bytes(b"\x30\x03\x0a\x01\x00 not an OCSP response")
    proxy = ocsp_proxy(start_proxy, sink, chain, key, resp)
    assert proxy.log.wait_for(r"warning: OCSP response %s not stapled: " % re.escape(str(resp))), \
        proxy.log.text()
    _, out = openssl_served(proxy.port(), ["-status"])
    assert "OCSP response: no response sent" in out, out


def test_reload_rereads_the_ocsp_response(ca, sink, start_proxy, tmp_path):
    chain, key, leaf = ca.leaf("ocsp.test", 4660)
    resp = tmp_path / "ocsp.der"
    ca.ocsp_response(leaf, resp, days_ago=3)
    proxy = ocsp_proxy(start_proxy, sink, chain, key, resp)
    assert "no response sent" in openssl_served(proxy.port(), ["-status"])[1]
    ca.ocsp_response(leaf, resp)
    proxy.proc.send_signal(1)
    assert proxy.log.wait_for(r"reloaded "), proxy.log.text()
    assert "Cert Status: good" in openssl_served(proxy.port(), ["-status"])[1]


def test_ocsp_must_follow_a_cert_line(tmp_path, cert):
    conf = tmp_path / "c.conf"
    conf.write_text("[mx]\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:10025\nocsp = /x.der\n"
                    "cert = %s %s\n" % cert)
    out = subprocess.run([starttlsd_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 1
    assert re.search(r"c\.conf:4: ocsp belongs right after the cert line", out.stderr), out.stderr


# --- client certificates ---------------------------------------------------

@pytest.fixture
def client_cert(tmp_path):
    key = make_key(tmp_path / "client.key", "ecdsa")
    (tmp_path / "client.tmpl").write_text(CLIENT_TEMPLATE)
    pem = tmp_path / "client.pem"
    run(["certtool", "--generate-self-signed", "--load-privkey", str(key), "--template",
         str(tmp_path / "client.tmpl"), "--outfile", str(pem)])
    return pem, key


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_client_certificate_is_requested_and_logged(sink, start_proxy, client_cert, version):
    proxy = start_proxy({"smtp": {"backend": sink.addr, "client_cert": "request"}})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    c = Client(proxy.port())
    assert c.reply().code == 220 and c.cmd("EHLO a").code == 250 and c.cmd("STARTTLS").code == 220
    c.start_tls(context=ctx)
    assert c.cmd("NOOP").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    found = proxy.log.wait_for(r'client certificate subject="([^"]*)" sha256=(\S+)')
    assert found, proxy.log.text()
    subject, sha256 = found[0].groups()
    assert "CN=client.test" in subject and "O=Example Mail Client" in subject, subject
    assert sha256.replace(":", "").lower() == fingerprint(client_cert[0])


def test_client_without_certificate_is_served_when_requested(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr, "client_cert": "request"}})
    openssl_served(proxy.port())
    assert proxy.wait_sessions(1)[0]["tls"].startswith("TLS1.3/")
    assert "client certificate" not in proxy.log.text()


def test_client_certificate_not_asked_by_default(proxy, sink, client_cert):
    out = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % proxy.port(),
                          "-cert", str(client_cert[0]), "-key", str(client_cert[1])],
                         input="QUIT\n", capture_output=True, text=True, timeout=TIMEOUT)
    assert "Handshake" in out.stdout or "SSL handshake" in out.stdout, out.stdout
    proxy.wait_sessions(1)
    assert "client certificate" not in proxy.log.text()


# --- DANE ------------------------------------------------------------------

def test_tlsa_records_match_danetool(tmp_path, cert):
    rsa = self_signed(tmp_path, "rsa", ["mx.example.org", "mx2.example.org"], "rsa")
    conf = tmp_path / "c.conf"
    conf.write_text("[mx]\nlisten = 127.0.0.1:25\nlisten = [::1]:25\nlisten = 127.0.0.1:587\n"
                    "backend = 127.0.0.1:10025\ncert = %s %s\ncert = %s %s\n" % (cert + rsa))
    out = subprocess.run([starttlsd_binary(), "-T", "-c", str(conf)], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    records = [l for l in out.stdout.splitlines() if not l.startswith(";")]
    expected = []
    for port in ("25", "587"):
        for pem, names in ((cert[0], [CERT_NAME, "mail.test"]), (rsa[0], ["mx.example.org", "mx2.example.org"])):
            for name in names:
                dane = run(["danetool", "--tlsa-rr", "--host", name, "--port", port, "--load-certificate",
                            str(pem)])
                m = re.search(r"^(_\d+\._tcp\.\S+) IN TLSA \( 03 01 01 ([0-9a-f]+) \)", dane, re.M)
                assert m, dane
                expected.append("%s IN TLSA 3 1 1 %s" % (m.group(1), m.group(2)))
    assert sorted(records) == sorted(expected), out.stdout


def test_reload_warns_when_a_key_changes(tmp_path, sink, start_proxy):
    pem, key = self_signed(tmp_path, "mx", ["mx.test"], "ecdsa")
    proxy = start_proxy({"smtp": {"backend": sink.addr, "cert": "%s %s" % (pem, key)}})
    # A renewed certificate on the same key keeps the TLSA records valid.
    self_signed(tmp_path, "mx", ["mx.test"], "ecdsa", key=key)
    proxy.proc.send_signal(1)
    assert proxy.log.wait_for(r"reloaded ", count=1), proxy.log.text()
    assert "key changed" not in proxy.log.text()
    self_signed(tmp_path, "mx", ["mx.test"], "ecdsa")
    proxy.proc.send_signal(1)
    assert proxy.log.wait_for(r"reloaded ", count=2), proxy.log.text()
    assert re.search(r"warning: listener smtp: its key changed; update any published DANE TLSA",
                     proxy.log.text()), proxy.log.text()


# --- what -t says about bad certificates and keys ---------------------------

def check_conf(tmp_path, cert_line):
    conf = tmp_path / "check.conf"
    conf.write_text("[mx]\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:10025\nclient_addr = xclient\n"
                    "cert = %s\n" % cert_line)
    # Generous: under valgrind, trying an encrypted key's PBKDF2 is slow.
    out = subprocess.run([starttlsd_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                         timeout=60)
    return out.returncode, out.stderr, conf


def test_check_names_the_file_and_the_reason(tmp_path, cert):
    other_pem, other_key = self_signed(tmp_path, "other", ["other.test"], "ecdsa")
    encrypted = tmp_path / "encrypted.key"
    run(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--pkcs8", "--password", "secret",
         "--outfile", str(encrypted)])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    unreadable = tmp_path / "missing.key"
    cases = [
        ("%s %s" % (cert[0], other_key), "the key does not match the certificate"),
        ("%s %s" % (cert[0], encrypted), "the key is encrypted"),
        ("%s %s" % (garbage, cert[1]), "certificate %s: not a PEM certificate or key" % garbage),
        ("%s %s" % (cert[0], unreadable), "cannot open %s: No such file or directory" % unreadable),
    ]
    for line, reason in cases:
        rc, err, conf = check_conf(tmp_path, line)
        assert rc == 1, (line, err)
        assert re.search(r"^%s:5: .*%s" % (re.escape(str(conf)), re.escape(reason)), err, re.M), (line, err)


@pytest.mark.parametrize("age_days, lifetime_days, says", [(60, 30, "has expired on"), (0, 5, "expires on")])
def test_check_warns_about_expiry(tmp_path, age_days, lifetime_days, says):
    key = make_key(tmp_path / "old.key", "ecdsa")
    template = tmp_path / "old.tmpl"
    template.write_text('cn = "old.test"\ndns_name = "old.test"\nexpiration_days = %d\n' % lifetime_days)
    pem = tmp_path / "old.pem"
    run(["faketime", "%d days ago" % age_days, "certtool", "--generate-self-signed", "--load-privkey",
         str(key), "--template", str(template), "--outfile", str(pem)])
    rc, err, conf = check_conf(tmp_path, "%s %s" % (pem, key))
    assert rc == 0, err
    assert re.search(r"^%s:5: warning: certificate %s %s \d{4}-\d\d-\d\d" % (re.escape(str(conf)), re.escape(str(pem)),
                                                                            says), err, re.M), err


def test_certificate_without_san_is_chosen_by_its_cn(tmp_path, cert, sink, start_proxy):
    key = make_key(tmp_path / "cn.key", "ecdsa")
    (tmp_path / "cn.tmpl").write_text('cn = "legacy.test"\ntls_www_server\nsigning_key\nexpiration_days = 30\n')
    pem = tmp_path / "cn.pem"
    run(["certtool", "--generate-self-signed", "--load-privkey", str(key), "--template", str(tmp_path / "cn.tmpl"),
         "--outfile", str(pem)])
    assert "Subject Alternative Name" not in run(["certtool", "-i", "--infile", str(pem)])
    proxy = start_proxy({"smtp": {"backend": sink.addr, "cert": ["%s %s" % cert, "%s %s" % (pem, key)]}})
    assert gnutls_served(proxy.port(), sni="legacy.test", tmp=tmp_path) == fingerprint(pem)
    assert proxy.wait_sessions(1)[0]["cert"] == "legacy.test"
    assert gnutls_served(proxy.port(), sni="other.test", tmp=tmp_path) == fingerprint(cert[0])
    assert proxy.wait_sessions(2)[1]["cert"] == CERT_NAME


def test_early_data_on_a_resumed_session_is_refused(proxy, sink, tmp_path):
    """0-RTT: SMTP commands are not replay-safe (RFC 8446 section 8). With
    tickets on, a client may try to send commands in early data; the
    tickets allow none, and nothing of it reaches the backend."""
    sess, early = tmp_path / "session.pem", tmp_path / "early.txt"
    early.write_bytes(b"EHLO replayed.test\r\nMAIL FROM:<replayed@example.org>\r\n")
    s_client_session(proxy.port(), "-sess_out", sess)
    out = s_client_session(proxy.port(), "-sess_in", sess, ["-early_data", str(early)])
    assert re.search(r"^Reused, TLSv1\.3", out.stdout, re.M), out.stdout + out.stderr
    assert "Early data was accepted" not in out.stdout, out.stdout
    sink.wait_done(2)
    assert b"replayed" not in sink.all_raw()
