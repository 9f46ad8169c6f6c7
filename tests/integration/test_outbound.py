"""Outbound listeners (direction = outbound, README "Sending"): a legacy
sender speaks plaintext SMTP to the proxy, which reaches its relay over TLS
with the relay's certificate verified.

The relay that demands TLS is either starttlsd's own inbound listener in
front of the recording sink (byte-exact: the sink stores what arrived), or
a private Postfix with smtpd_tls_security_level = encrypt and
smtpd_tls_auth_only = yes. Certificates come from a test CA made here with
certtool; a second CA plays the wrong one. Legacy senders: smtplib and swaks
without TLS."""

import re
import shutil
import smtplib
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import (TIMEOUT, Client, run, starttlsd_binary, stuff, wait_until)

RELAY_NAME = "relay.test"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
BODY = b"Subject: through the smarthost\r\n\r\nline one\r\n.dot line\r\nbare\nLF and 8-bit \xe9\r\n"


# --- a test CA, the relay's certificate, a client certificate ----------------

def _template(path, lines):
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def _issue(d, name, ca, tmpl_lines):
    key = d / (name + ".key")
    run(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--outfile", key])
    pem = d / (name + ".pem")
    tmpl = _template(d / (name + ".tmpl"), tmpl_lines)
    run(["certtool", "--generate-certificate", "--load-privkey", key, "--load-ca-certificate", ca[0],
         "--load-ca-privkey", ca[1], "--template", tmpl, "--outfile", pem])
    return str(pem), str(key)


def _make_ca(d, name):
    key = d / (name + ".key")
    run(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--outfile", key])
    pem = d / (name + ".pem")
    tmpl = _template(d / (name + ".tmpl"), ['cn = "%s"' % name, "ca", "cert_signing_key", "expiration_days = 30"])
    run(["certtool", "--generate-self-signed", "--load-privkey", key, "--template", tmpl, "--outfile", pem])
    return str(pem), str(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = _make_ca(d, "Test CA")
    other_ca = _make_ca(d, "Other CA")
    relay = _issue(d, "relay", ca, ['cn = "%s"' % RELAY_NAME, 'dns_name = "%s"' % RELAY_NAME,
                                    'ip_address = "127.0.0.1"', "tls_www_server", "signing_key",
                                    "encryption_key", "expiration_days = 30"])
    client = _issue(d, "client", ca, ['cn = "legacy.test"', "tls_www_client", "signing_key",
                                      "expiration_days = 30"])
    return {"ca": ca[0], "other_ca": other_ca[0], "relay": relay, "client": client, "dir": d}


@pytest.fixture
def relay(start_proxy, start_sink, pki):
    """starttlsd's inbound listeners as the relay: 'smtp' (STARTTLS) and
    'smtps' (implicit), the CA's certificate for relay.test, the sink behind."""
    sink = start_sink()
    keys = {"backend": sink.addr, "cert": "%s %s" % pki["relay"], "auth_before_tls": "no"}
    proxy = start_proxy({"smtp": dict(keys, tls="starttls"), "smtps": dict(keys, tls="implicit")})
    return {"proxy": proxy, "sink": sink}


@pytest.fixture
def outbound(start_proxy, pki):
    """outbound(backend, **keys): a proxy with one outbound listener 'out'."""

    def start(backend, **keys):
        keys = dict({"direction": "outbound", "backend": backend}, **keys)
        try:
            return start_proxy({"out": keys})
        except pytest.fail.Exception as e:
            # Until the connection edge has TLS towards a backend (issue
            # 12 part 0), the proxy checks outbound listeners but will not
            # run them, and says so.
            if "cannot run them yet" in str(e):
                pytest.skip("this build cannot run outbound listeners yet")
            raise

    return start


def relay_addr(relay, name="smtp"):
    return "127.0.0.1:%d" % relay["proxy"].port(name)


def verified_keys(pki, **extra):
    return dict({"upstream_name": RELAY_NAME, "ca": pki["ca"]}, **extra)


def send_smtplib(port, body=BODY, login=None):
    """One message from a legacy sender that never speaks TLS; its EHLO reply."""
    s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    code, _ = s.ehlo("legacy.test")
    assert code == 250
    features = dict(s.esmtp_features)
    if login:
        s.login(*login)
    assert s.sendmail("a@example.org", ["b@example.org"], body) == {}
    s.quit()
    return features


def greeting_of(port):
    """The first reply a legacy sender gets, and whether the proxy then closed."""
    with Client(port) as c:
        r = c.reply()
        rest = c.read_to_close() if r.code == 421 else b""
    return r, rest


# --- tests that need only the configuration and credentials (-t) ------------

def check(conf):
    return subprocess.run([starttlsd_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                          timeout=30)


def test_check_loads_outbound_credentials(tmp_path, pki):
    conf = tmp_path / "o.conf"
    conf.write_text("[out]\ndirection = outbound\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:587\n"
                    "ca = %s\nupstream_cert = %s %s\n" % ((pki["ca"],) + pki["client"]))
    out = check(conf)
    assert out.returncode == 0, out.stderr


def test_check_refuses_bad_outbound_files(tmp_path, pki):
    conf = tmp_path / "o.conf"
    base = "[out]\ndirection = outbound\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:587\n"
    conf.write_text(base + "ca = %s\n" % pki["client"][1])
    out = check(conf)
    assert out.returncode == 1 and out.stderr.startswith("%s:5: ca " % conf), out.stderr
    # a client certificate with another certificate's key
    conf.write_text(base + "upstream_cert = %s %s\n" % (pki["client"][0], pki["relay"][1]))
    out = check(conf)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("%s:5: upstream_cert %s: the key does not match" % (conf, pki["client"][0])), \
        out.stderr


def test_check_refuses_inbound_keys_on_outbound(tmp_path, cert):
    conf = tmp_path / "o.conf"
    conf.write_text("[out]\ndirection = outbound\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:587\n"
                    "cert = %s %s\n" % cert)
    out = check(conf)
    assert out.returncode == 1
    assert out.stderr.strip() == "%s:5: cert is for inbound listeners, and 'out' has direction = outbound" % conf


# --- sessions through the outbound listener -----------------------------------

def test_smtplib_through_a_starttls_relay(relay, outbound, pki):
    proxy = outbound(relay_addr(relay), **verified_keys(pki))
    features = send_smtplib(proxy.port("out"), login=("user", "secret"))
    assert "starttls" not in features, features          # the legacy sender never tries TLS
    assert "auth" in features, features                  # AUTH shown: it travels inside TLS
    sink = relay["sink"]
    rec = sink.wait_done(1)
    assert sink.msg(1, "raw") == stuff(BODY)             # byte for byte
    assert b"EHLO legacy.test\r\n" in rec and b"AUTH PLAIN " in rec, rec
    # the relay saw the session inside TLS: its own session line says so
    line = relay["proxy"].wait_sessions(1)[0]
    assert line["tls"].startswith("TLS1.") and line["sni"] == RELAY_NAME, line


def test_greeting_is_the_proxys_after_tls(relay, outbound, pki):
    proxy = outbound(relay_addr(relay), **verified_keys(pki))
    with Client(proxy.port("out")) as c:
        assert c.reply().lines == ["220 %s ESMTP starttlsd relay" % RELAY_NAME]
        r = c.cmd("EHLO legacy.test")
        assert r.code == 250 and not any("STARTTLS" in l.upper() for l in r.lines), r
        assert c.cmd("STARTTLS").lines == ["503 5.5.1 TLS already active"]
        assert c.cmd("QUIT").code == 221
    rec = relay["sink"].wait_done(1)
    assert b"STARTTLS" not in rec, rec


def test_swaks_through_an_implicit_relay(relay, outbound, pki):
    proxy = outbound(relay_addr(relay, "smtps"), upstream_tls="implicit", **verified_keys(pki))
    out = subprocess.run([SWAKS, "--server", "127.0.0.1:%d" % proxy.port("out"), "--from", "a@example.org",
                          "--to", "b@example.org", "--helo", "legacy.test", "--data", "-"],
                         input=BODY, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    shown = [l for l in out.stdout.decode("latin-1").splitlines() if l.startswith("<-")]
    assert shown and not any("STARTTLS" in l.upper() for l in shown), out.stdout
    relay["sink"].wait_done(1)
    assert relay["sink"].msg(1, "eml").endswith(BODY.split(b"\r\n\r\n", 1)[1]), relay["sink"].msg(1, "eml")


@pytest.mark.parametrize("keys,why", [
    ({"upstream_name": RELAY_NAME, "ca": "OTHER"}, "wrong CA"),
    ({"upstream_name": "other.test", "ca": "CA"}, "wrong name"),
    ({"upstream_name": RELAY_NAME}, "system trust store"),
])
def test_untrusted_relay_gets_nothing(relay, outbound, pki, keys, why):
    keys = dict(keys)
    if "ca" in keys:
        keys["ca"] = pki["other_ca"] if keys["ca"] == "OTHER" else pki["ca"]
    proxy = outbound(relay_addr(relay), **keys)
    r, _ = greeting_of(proxy.port("out"))
    assert r.lines == ["421 4.7.0 Upstream certificate not trusted, closing connection"], (why, r)
    # the relay's backend saw no MAIL, no client byte at all
    assert b"MAIL" not in relay["sink"].all_raw() and b"EHLO legacy" not in relay["sink"].all_raw()


def test_verify_no_takes_a_self_signed_relay(start_proxy, start_sink, outbound, cert):
    sink = start_sink()
    self_signed = start_proxy({"smtp": {"backend": sink.addr, "cert": "%s %s" % cert}})
    proxy = outbound("127.0.0.1:%d" % self_signed.port("smtp"), verify="no")
    send_smtplib(proxy.port("out"))
    sink.wait_done(1)
    assert sink.msg(1, "raw") == stuff(BODY)
    assert re.search(r"verified=none", proxy.log.text()), proxy.log.text()


def test_relay_without_starttls_gets_only_ehlo(start_sink, outbound):
    sink = start_sink("--caps", "PIPELINING,8BITMIME,AUTH PLAIN")
    proxy = outbound(sink.addr, verify="no")
    r, _ = greeting_of(proxy.port("out"))
    assert r.lines == ["421 4.7.0 Upstream does not offer STARTTLS, closing connection"]
    rec = sink.wait_done(1)
    assert re.fullmatch(rb"EHLO [^\r\n ]+\r\n", rec), rec   # nothing but the proxy's EHLO


def test_unreachable_relay(outbound):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # bound, never listening: refused
    try:
        proxy = outbound("127.0.0.1:%d" % port, verify="no")
        r, _ = greeting_of(proxy.port("out"))
    finally:
        s.close()
    assert r.lines == ["421 4.4.2 Upstream not available, closing connection"]


def test_smuggling_refused_as_inbound(relay, outbound, pki):
    proxy = outbound(relay_addr(relay), **verified_keys(pki))
    with Client(proxy.port("out")) as c:
        assert c.reply().code == 220
        assert c.cmd("EHLO legacy.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        assert c.cmd("RCPT TO:<b@example.org>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.org>\r\n.\r\n")
        assert c.reply().code == 554
    assert relay["sink"].messages() == []
    assert b"evil@" not in relay["sink"].all_raw()
