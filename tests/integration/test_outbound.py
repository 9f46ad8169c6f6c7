"""Outbound listeners (direction = outbound, README "Sending"): a legacy
sender speaks plaintext SMTP to the proxy, which reaches its relay over TLS
with the relay's certificate verified.

The relay that demands TLS is either starttlsd's own inbound listener in
front of the recording sink (byte-exact: the sink stores what arrived), or
a private Postfix with smtpd_tls_security_level = encrypt and
smtpd_tls_auth_only = yes. Certificates come from a test CA made here with
certtool; a second CA plays the wrong one. Legacy senders: smtplib and swaks
without TLS."""

import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (TIMEOUT, Client, free_port, run, starttlsd_binary, stuff, wait_until)
from test_postfix_backend import POSTCAT, POSTFIX, postfix_cmd

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
        return start_proxy({"out": keys})

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
    assert b"ehlo legacy.test\r\n" in rec.lower() and b"AUTH PLAIN " in rec, rec
    # the relay saw the session inside TLS: its own session line says so
    line = relay["proxy"].wait_sessions(1)[0]
    assert line["tls"].startswith("TLS1.") and line["sni"] == RELAY_NAME, line


@pytest.mark.parametrize("priority", [None, "NORMAL:-VERS-ALL:+VERS-TLS1.2"])
def test_sessions_resume_from_the_relays_ticket(relay, start_proxy, pki, priority):
    """upstream_resumption (default yes): the second session offers the
    ticket the first one got and the relay resumes it, skipping the
    certificate exchange; the mail still arrives, and the session line says
    verified=ca. TLS 1.3 and 1.2 (tickets come after and inside the
    handshake). One worker: each keeps its own ticket."""
    keys = dict({"direction": "outbound", "backend": relay_addr(relay)}, **verified_keys(pki))
    if priority:
        keys["priority"] = priority
    proxy = start_proxy({"out": keys}, global_lines=("workers = 1", "log_level = debug"))
    for n in (1, 2):
        send_smtplib(proxy.port("out"))
        relay["sink"].wait_done(n)
        # one at a time: the first ticket is in before the second session begins
        assert relay["proxy"].wait_sessions(n)
    lines = relay["proxy"].wait_sessions(2)
    assert [s["resumed"] for s in lines] == ["no", "yes"], lines
    assert all(s["tls"].startswith("TLS1.3" if not priority else "TLS1.2") for s in lines), lines
    assert relay["sink"].msg(2, "raw") == stuff(BODY)
    assert len(proxy.log.wait_for(r"session listener=out .* verified=ca .* end=quit", TIMEOUT, 2)) == 2


def test_upstream_resumption_no_makes_full_handshakes(relay, start_proxy, pki):
    keys = dict({"direction": "outbound", "backend": relay_addr(relay), "upstream_resumption": "no"},
                **verified_keys(pki))
    proxy = start_proxy({"out": keys}, global_lines=("workers = 1",))
    for n in (1, 2):
        send_smtplib(proxy.port("out"))
        relay["sink"].wait_done(n)
        assert relay["proxy"].wait_sessions(n)
    assert [s["resumed"] for s in relay["proxy"].wait_sessions(2)] == ["no", "no"]


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
    # swaks sends every line with CR LF, the bare LF included, and ends
    # the data with an empty line of its own
    want = BODY.replace(b"bare\nLF", b"bare\r\nLF") + b"\r\n"
    assert relay["sink"].msg(1, "eml") == want, relay["sink"].msg(1, "eml")


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


# --- Postfix: a relay that demands TLS, and a legacy sender that has none -----

needs_postfix = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(POSTFIX),
                                   reason="needs root and Postfix (packaging/install-deps test)")


def private_postfix(name, main_lines, smtpd_line=None):
    """A private Postfix instance in a folder the postfix user can reach;
    its base folder. SMTPD_LINE is its one smtpd service, if any."""
    base = Path(tempfile.mkdtemp(prefix="starttlsd-%s-" % name))
    base.chmod(0o755)
    etc, spool, data = base / "etc", base / "spool", base / "data"
    for d in (etc, spool, data):
        d.mkdir(parents=True)
    shutil.chown(data, "postfix")
    (etc / "main.cf").write_text("\n".join([
        "compatibility_level = 3.6",
        "queue_directory = %s" % spool,
        "data_directory = %s" % data,
        "meta_directory = /etc/postfix",
        "mail_owner = postfix",
        "setgid_group = postdrop",
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        "maillog_file_prefixes = %s" % base,
        "maillog_file = %s" % (base / "maillog"),
        "alias_maps =",
        "alias_database =",
        "biff = no",
    ] + main_lines) + "\n")
    services = [line for line in open("/etc/postfix/master.cf").read().splitlines()
                if line and not line[0].isspace() and not line.startswith("#") and not line.startswith("smtp ")
                or line.startswith("smtp ") and " unix " in line]
    services = [re.sub(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)y", r"\1n", line) for line in services]
    if not any(line.startswith("postlog") for line in services):
        services.append("postlog unix-dgram n - n - 1 postlogd")
    (etc / "master.cf").write_text("\n".join(([smtpd_line] if smtpd_line else []) + services) + "\n")
    out = postfix_cmd(etc, "start")
    assert "fatal" not in out.stdout, out.stdout
    wait_until((data / "master.lock").exists)
    return base


def stop_postfix(base):
    postfix_cmd(base / "etc", "stop")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postfix_relay(pki):
    """Postfix demanding TLS (smtpd_tls_security_level = encrypt, AUTH only
    inside TLS) with the CA's certificate for relay.test; it holds every
    message it accepts, to be read back with postcat."""
    port = free_port()
    pem, key = pki["relay"]
    for path in (pem, key):
        os.chmod(path, 0o644)  # the smtpd runs as postfix
    base = private_postfix("relay", [
        "myhostname = %s" % RELAY_NAME,
        "mydestination = example.org",
        "mynetworks = 127.0.0.1/32",
        "local_recipient_maps =",
        "smtpd_recipient_restrictions = check_recipient_access static:HOLD, permit_mynetworks, reject",
        "smtpd_tls_security_level = encrypt",
        "smtpd_tls_auth_only = yes",
        "smtpd_tls_cert_file = %s" % pem,
        "smtpd_tls_key_file = %s" % key,
        "smtpd_tls_loglevel = 1",
    ], "127.0.0.1:%d inet n - n - - smtpd" % port)
    try:
        yield {"addr": "127.0.0.1:%d" % port, "base": base}
    finally:
        stop_postfix(base)


def held_message(base, count=1):
    """The messages Postfix holds, as postcat shows their headers and body."""
    hold = base / "spool" / "hold"
    held = wait_until(lambda: list(hold.glob("*")) if hold.exists() and len(list(hold.glob("*"))) >= count else [])
    assert len(held) == count, held
    return [subprocess.run([POSTCAT, "-c", str(base / "etc"), "-bh", str(p)], capture_output=True,
                           timeout=30).stdout for p in held]


def maillog(base, pattern):
    path = base / "maillog"
    wait_until(lambda: path.exists() and re.search(pattern, path.read_text()))
    return path.read_text() if path.exists() else ""


@needs_postfix
def test_postfix_relay_demanding_tls(postfix_relay, outbound, pki):
    proxy = outbound(postfix_relay["addr"], **verified_keys(pki))
    body = b"Subject: via the smarthost\r\n\r\nfirst\r\n.leading dot\r\nlast\r\n"
    features = send_smtplib(proxy.port("out"), body)
    assert "starttls" not in features, features
    held = held_message(postfix_relay["base"])[0]
    assert held.endswith(b"\n\nfirst\n.leading dot\nlast\n"), held
    log = maillog(postfix_relay["base"], r"TLS connection established")
    assert re.search(r"TLS connection established from \S+: TLSv1\.[23]", log), log


@needs_postfix
def test_postfix_relay_sees_only_ehlo_without_tls(postfix_relay, start_proxy, outbound, pki):
    """A relay that demands TLS but whose certificate fails the check hears
    EHLO and STARTTLS, then a handshake that stops: no MAIL, no message."""
    proxy = outbound(postfix_relay["addr"], upstream_name=RELAY_NAME, ca=pki["other_ca"])
    r, _ = greeting_of(proxy.port("out"))
    assert r.code == 421 and "4.7.0" in r.text, r
    assert not (postfix_relay["base"] / "spool" / "hold").exists() or \
        list((postfix_relay["base"] / "spool" / "hold").glob("*")) == []
    log = maillog(postfix_relay["base"], r"disconnect from")
    assert "MAIL" not in log.split("disconnect from")[0] or "mail=0" in log, log


@needs_postfix
def test_legacy_postfix_relays_through_the_proxy(postfix_relay, outbound, pki):
    """A Postfix with TLS off (relayhost = [127.0.0.1]:port) sends through
    the outbound listener to the Postfix that demands TLS."""
    proxy = outbound(postfix_relay["addr"], **verified_keys(pki))
    legacy = private_postfix("legacy", [
        "myhostname = legacy.test",
        "mydestination =",
        "relayhost = [127.0.0.1]:%d" % proxy.port("out"),
        "smtp_tls_security_level = none",
    ])
    try:
        msg = b"From: a@legacy.test\nTo: b@example.org\nSubject: legacy\n\nbody from the legacy server\n"
        out = subprocess.run(["/usr/sbin/sendmail", "-C", str(legacy / "etc"), "-f", "a@legacy.test",
                              "b@example.org"], input=msg, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        postfix_cmd(legacy / "etc", "flush")
        held = held_message(postfix_relay["base"])[0]
        assert held.endswith(b"\n\nbody from the legacy server\n"), held
        log = maillog(legacy, r"status=sent")
        assert re.search(r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d.*status=sent" % proxy.port("out"), log), log
    finally:
        stop_postfix(legacy)


@needs_postfix
def test_postfix_relay_fixture_demands_tls(postfix_relay, pki):
    """The fixture itself: MAIL in plaintext is refused, and a client that
    verifies the certificate against the test CA gets its message held."""
    host, port = postfix_relay["addr"].split(":")
    s = smtplib.SMTP(host, int(port), timeout=TIMEOUT)
    s.ehlo("direct.test")
    assert s.has_extn("starttls") and not s.has_extn("auth")
    code, text = s.mail("a@example.org")
    assert code == 530, (code, text)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    s.starttls(context=ctx)  # checked against the certificate's IP address 127.0.0.1
    s.ehlo("direct.test")
    assert s.sendmail("a@example.org", ["b@example.org"], b"Subject: direct\r\n\r\nhi\r\n") == {}
    s.quit()
    assert held_message(postfix_relay["base"])[0].endswith(b"\n\nhi\n")


def test_upstream_cert_is_presented(start_proxy, start_sink, outbound, pki):
    """upstream_cert: the relay (asking for a client certificate) sees the
    legacy sender's proxy as legacy.test, signed by the test CA."""
    sink = start_sink()
    relay = start_proxy({"smtp": {"backend": sink.addr, "cert": "%s %s" % pki["relay"], "client_cert": "request"}})
    proxy = outbound("127.0.0.1:%d" % relay.port("smtp"), upstream_cert="%s %s" % pki["client"],
                     **verified_keys(pki))
    send_smtplib(proxy.port("out"))
    sink.wait_done(1)
    assert relay.log.wait_for(r"client certificate subject=\"CN=legacy\.test\""), relay.log.text()


def test_outbound_sessions_are_counted(start_sink, start_proxy, relay, pki):
    """starttlsd_sessions_ended_total counts an outbound failure by its
    reason, and starttlsd_upstream_sessions_total a session that reached its
    relay by how it was protected: verified against the CA here."""
    import urllib.request
    sink = start_sink("--caps", "PIPELINING")
    metrics_port = free_port()
    proxy = start_proxy({"out": {"direction": "outbound", "backend": sink.addr, "verify": "no"},
                         "verified": dict({"direction": "outbound", "backend": relay_addr(relay)},
                                          **verified_keys(pki))},
                        global_lines=("log_level = debug", "metrics = 127.0.0.1:%d" % metrics_port))
    r, _ = greeting_of(proxy.port("out"))
    assert r.code == 421
    send_smtplib(proxy.port("verified"))
    relay["sink"].wait_done(1)

    def counted(name, value):
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=TIMEOUT).read()
        m = re.search(rb"^" + re.escape(name.encode()) + rb" (\d+)$", text, re.M)
        return m and int(m.group(1)) == value

    assert wait_until(lambda: counted('starttlsd_sessions_ended_total{reason="upstream-no-starttls"}', 1))
    assert wait_until(lambda: counted('starttlsd_upstream_sessions_total{listener="verified",verified="ca"}', 1))
    assert counted('starttlsd_upstream_sessions_total{listener="verified",verified="none"}', 0)
    assert counted('starttlsd_upstream_sessions_total{listener="verified",verified="plaintext"}', 0)
    assert counted('starttlsd_upstream_tls_total{listener="verified",version="TLS1.3"}', 1)
