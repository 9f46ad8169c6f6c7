"""certs/acme-deploy-hook, called the way certbot, dehydrated and lego call it,
against the real proxy: the renewed certificate and key land in the files that
the configuration's cert line names (the line whose certificate has the same
name and key type), with the key private, nothing temporary left behind, and
the SIGHUP sent through the pid_file makes new connections get the new
certificate. Refusals (a key that does not match, no line for the name, a
configuration that `starttlsd -t` rejects) leave every file as it was and do
not reload; dehydrated's other hooks do nothing."""

import hashlib
import os
import re
import shutil
import ssl
import subprocess
import time
from collections import namedtuple

import pytest

from conftest import (REPO, RSA_ONLY_OPENSSL, SELFSIGNED, Client, fingerprint, make_key, openssl_served,
                      run, starttlsd_binary, wait_until)

HOOK = REPO / "certs" / "acme-deploy-hook"
NAME = "mx.acme.test"
# Every certificate for NAME, old and new, names these: starttlsd pairs RSA
# with ECDSA only for the same names.
NAMES = [NAME, "www." + NAME]
RELOAD_WAIT = 10  # seconds for a reload to show on new connections
RELOADED = r"info: reloaded "
STYLES = ["certbot", "dehydrated", "lego"]
# Owner and group given to the live files (as root) to see that they are kept.
OWNER = (4242, 4343)

CA_TEMPLATE = 'cn = "acme hook test CA"\nca\ncert_signing_key\nexpiration_days = 30\n'
LEAF_TEMPLATE = """cn = "{name}"
{dns_names}
tls_www_server
signing_key
encryption_key
expiration_days = 30
serial = {serial}
"""


Issued = namedtuple("Issued", "cert key chain fullchain")


class CA:
    """Issues leaf certificates the way an ACME client stores them: cert.pem,
    chain.pem (the CA), fullchain.pem (both) and privkey.pem in one directory.
    Like Let's Encrypt, an RSA leaf has an RSA issuer and an ECDSA leaf an
    ECDSA one (a client that takes RSA signatures only must be able to check
    the chain)."""

    def __init__(self, d):
        d.mkdir()
        self.dir = d
        self.issuers = {}
        self.serial = 0

    def issuer(self, key_type):
        if key_type not in self.issuers:
            key = make_key(self.dir / ("ca-%s.key" % key_type), key_type)
            tmpl = self.dir / "ca.tmpl"
            tmpl.write_text(CA_TEMPLATE)
            pem = self.dir / ("ca-%s.pem" % key_type)
            run(["certtool", "--generate-self-signed", "--load-privkey", key, "--template", tmpl,
                 "--outfile", pem])
            self.issuers[key_type] = (pem, key)
        return self.issuers[key_type]

    def issue(self, names=NAMES, key_type="ecdsa"):
        self.serial += 1
        out = self.dir / ("%s-%d" % (names[0], self.serial))
        out.mkdir()
        new_key = make_key(out / "privkey.pem", key_type)
        # The installed key must be 0600 whatever the source's mode.
        new_key.chmod(0o644)
        dns_names = "\n".join('dns_name = "%s"' % n for n in names)
        (out / "leaf.tmpl").write_text(LEAF_TEMPLATE.format(name=names[0], dns_names=dns_names,
                                                            serial=self.serial))
        cert = out / "cert.pem"
        ca_pem, ca_key = self.issuer(key_type)
        run(["certtool", "--generate-certificate", "--load-privkey", new_key, "--load-ca-certificate", ca_pem,
             "--load-ca-privkey", ca_key, "--template", out / "leaf.tmpl", "--outfile", cert])
        chain = out / "chain.pem"
        shutil.copy(ca_pem, chain)
        fullchain = out / "fullchain.pem"
        fullchain.write_text(cert.read_text() + chain.read_text())
        return Issued(cert, new_key, chain, fullchain)


def selfsigned_ec(d, names=NAMES):
    """certs/selfsigned's ECDSA certificate for NAMES: (pem, key)."""
    d.mkdir(parents=True, exist_ok=True)
    out = run([SELFSIGNED, "-d", d] + names)
    pem, key = d / (names[0] + ".pem"), d / (names[0] + ".key")
    assert out.split() == [str(pem), str(key)]
    return pem, key


def selfsigned_rsa(d, names=NAMES):
    """A self-signed RSA certificate for NAMES made with certtool: (pem, key)."""
    d.mkdir(parents=True, exist_ok=True)
    key = make_key(d / (names[0] + ".key"), "rsa")
    (d / "rsa.tmpl").write_text('cn = "%s"\n' % names[0] + "".join('dns_name = "%s"\n' % n for n in names) +
                                "tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n")
    pem = d / (names[0] + ".pem")
    run(["certtool", "--generate-self-signed", "--load-privkey", key, "--template", d / "rsa.tmpl",
         "--outfile", pem])
    return pem, key


# --- the proxy and its live files ----------------------------------------------

class Site:
    """Certificate files in a live directory, a proxy serving them that writes
    a pid_file, and the hook run against its configuration."""

    def __init__(self, tmp_path, sink, start_proxy, files, lines, links=None):
        """files: {live name: source path}, copied; links: {live name: path},
        symbolic links; lines: the cert lines, of live names or absolute paths."""
        self.tmp = tmp_path
        self.live = tmp_path / "live"
        self.live.mkdir()
        for name, source in files.items():
            path = self.live / name
            shutil.copy(source, path)
            path.chmod(0o600 if b"PRIVATE KEY" in path.read_bytes() else 0o644)
            if os.geteuid() == 0:
                os.chown(path, *OWNER)
        for name, target in (links or {}).items():
            (self.live / name).symlink_to(target)
        self.pid_file = tmp_path / "starttlsd.pid"
        cert_lines = [" ".join(str(self.live / n) for n in line.split()) for line in lines]
        # (self.live / an absolute path is that path.)
        # One worker: the process in the pid_file is the one that serves.
        self.proxy = start_proxy({"smtp": {"backend": sink.addr, "cert": cert_lines}},
                                 global_lines=("log_level = debug", "workers = 1",
                                               "pid_file = %s" % self.pid_file))
        # Written just after the listeners are bound: wait for it.
        assert wait_until(lambda: re.fullmatch(r"\d+\n", self.read_pid_file())), \
            "no PID in %s:\n%s" % (self.pid_file, self.proxy.log.text())
        self.port = self.proxy.port()
        self.conf = self.proxy.conf

    def read_pid_file(self):
        try:
            return self.pid_file.read_text()
        except FileNotFoundError:
            return ""

    def snapshot(self):
        """{name: (bytes, mode, uid, gid)} of every file in the live directory."""
        out = {}
        for p in self.live.iterdir():
            st = p.stat()
            out[p.name] = (p.read_bytes(), st.st_mode & 0o7777, st.st_uid, st.st_gid)
        return out

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RENEWED_", "LEGO_", "STARTTLSD_"))}
        env.update(STARTTLSD_CONF=str(self.conf), STARTTLSD_BIN=starttlsd_binary())
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def hook(self, args=(), **env):
        return subprocess.run([str(HOOK)] + [str(a) for a in args], env=self.env(**env), capture_output=True,
                              text=True, timeout=60)

    def renew(self, style, issued, domain=NAME, **env):
        """The hook called the way STYLE's client calls it for a renewal."""
        if style == "certbot":
            # RENEWED_LINEAGE is certbot's live/NAME with these four files.
            return self.hook(RENEWED_LINEAGE=issued.key.parent, RENEWED_DOMAINS="%s www.%s" % (domain, domain),
                             **env)
        if style == "dehydrated":
            return self.hook(["deploy_cert", domain, issued.key, issued.cert, issued.fullchain, issued.chain,
                              "1767225600"], **env)
        if style == "lego":
            # lego's DOMAIN.crt is the leaf followed by its issuer.
            return self.hook(LEGO_CERT_DOMAIN=domain, LEGO_CERT_PATH=issued.fullchain,
                             LEGO_CERT_KEY_PATH=issued.key, **env)
        raise ValueError(style)

    def assert_not_reloaded(self):
        assert self.proxy.log.wait_for(RELOADED, timeout=1) is None, self.proxy.log.text()


def served(port, sni=NAME):
    """The certificate a fresh STARTTLS client is served (its SHA-256)."""
    c = Client(port)
    try:
        assert c.reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("STARTTLS").lines == ["220 2.0.0 Ready to start TLS"]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.start_tls(server_hostname=sni, context=ctx)
        return hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
    finally:
        c.close()


def served_rsa_only(port, sni=NAME):
    """The certificate openssl s_client gets when it accepts RSA signatures only."""
    return openssl_served(port, RSA_ONLY_OPENSSL, sni)[0]


def wait_served(port, want, served_by=served):
    """Ask fresh connections until one gets WANT or RELOAD_WAIT is over; the last answer."""
    deadline = time.monotonic() + RELOAD_WAIT
    got = served_by(port)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.1)
        got = served_by(port)
    return got


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "ca")


@pytest.fixture
def site(tmp_path, sink, start_proxy):
    """One cert line, mx.pem and mx.key, holding certs/selfsigned's certificate for NAME."""
    pem, key = selfsigned_ec(tmp_path / "old")
    s = Site(tmp_path, sink, start_proxy, {"mx.pem": pem, "mx.key": key}, ["mx.pem mx.key"])
    assert served(s.port) == fingerprint(pem)
    return s


def assert_owner_kept(path):
    if os.geteuid() == 0:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == OWNER, path


# --- renewals ----------------------------------------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_renewal_is_installed_and_served(site, ca, style):
    before = site.snapshot()
    new = ca.issue()
    out = site.renew(style, new)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SIGHUP" in out.stdout, out.stdout

    assert wait_served(site.port, fingerprint(new.cert)) == fingerprint(new.cert)
    pem, key = site.live / "mx.pem", site.live / "mx.key"
    # The whole chain (not dehydrated's leaf-only CERTFILE), and the key.
    assert pem.read_bytes() == new.fullchain.read_bytes()
    assert key.read_bytes() == new.key.read_bytes()
    assert key.stat().st_mode & 0o7777 == 0o600
    assert pem.stat().st_mode & 0o7777 == 0o644
    assert_owner_kept(pem)
    assert_owner_kept(key)
    # The previous files as .old, and nothing else: no temporary file left.
    assert sorted(os.listdir(site.live)) == ["mx.key", "mx.key.old", "mx.pem", "mx.pem.old"]
    assert (site.live / "mx.pem.old").read_bytes() == before["mx.pem"][0]
    assert (site.live / "mx.key.old").read_bytes() == before["mx.key"][0]
    assert (site.live / "mx.key.old").stat().st_mode & 0o7777 == 0o600


def test_second_renewal_replaces_the_first(site, ca):
    first, second = ca.issue(), ca.issue()
    assert site.renew("lego", first).returncode == 0
    assert wait_served(site.port, fingerprint(first.cert)) == fingerprint(first.cert)
    out = site.renew("certbot", second)
    assert out.returncode == 0, out.stderr
    assert wait_served(site.port, fingerprint(second.cert)) == fingerprint(second.cert)
    assert (site.live / "mx.pem.old").read_bytes() == first.fullchain.read_bytes()
    assert sorted(os.listdir(site.live)) == ["mx.key", "mx.key.old", "mx.pem", "mx.pem.old"]


def test_changed_names_are_installed_with_a_warning(site, ca):
    new = ca.issue([NAME, "smtp.acme.test"])
    out = site.renew("certbot", new)
    assert out.returncode == 0, out.stderr
    assert "warning: %s:" % site.conf in out.stderr, out.stderr
    assert "named %s, the new certificate names %s smtp.acme.test;" % (" ".join(NAMES), NAME) in out.stderr
    assert wait_served(site.port, fingerprint(new.cert)) == fingerprint(new.cert)
    # The same names as before: no warning.
    out = site.renew("certbot", ca.issue([NAME, "smtp.acme.test"]))
    assert (out.returncode, out.stderr) == (0, "")


def test_key_in_the_chain_file(tmp_path, sink, start_proxy, ca):
    """A cert line without a key path gets the chain and the key in its one file."""
    pem, key = selfsigned_ec(tmp_path / "old")
    both = tmp_path / "both.pem"
    both.write_bytes(pem.read_bytes() + key.read_bytes())
    s = Site(tmp_path, sink, start_proxy, {"mx-all.pem": both}, ["mx-all.pem"])
    assert served(s.port) == fingerprint(pem)
    new = ca.issue()
    out = s.renew("lego", new)
    assert out.returncode == 0, out.stderr
    assert wait_served(s.port, fingerprint(new.cert)) == fingerprint(new.cert)
    installed = s.live / "mx-all.pem"
    assert installed.read_bytes() == new.fullchain.read_bytes() + new.key.read_bytes()
    assert installed.stat().st_mode & 0o7777 == 0o600
    assert sorted(os.listdir(s.live)) == ["mx-all.pem", "mx-all.pem.old"]


def test_override_paths_and_reload_command(tmp_path, sink, start_proxy, ca):
    """STARTTLSD_CERT and STARTTLSD_KEY name the files whatever they hold now;
    STARTTLSD_RELOAD is the reload, run with sh -c."""
    pem, key = selfsigned_ec(tmp_path / "old", ["other.acme.test"])
    s = Site(tmp_path, sink, start_proxy, {"mx.pem": pem, "mx.key": key}, ["mx.pem mx.key"])
    new = ca.issue()
    # Without the override no line holds a certificate for NAME.
    refused = s.renew("certbot", new)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    marker = tmp_path / "reload-ran"
    out = s.renew("certbot", new, STARTTLSD_CERT=s.live / "mx.pem", STARTTLSD_KEY=s.live / "mx.key",
                  STARTTLSD_RELOAD="echo ran > '%s' && kill -HUP %d" % (marker, s.proxy.proc.pid))
    assert out.returncode == 0, out.stderr
    assert marker.read_text() == "ran\n"
    assert wait_served(s.port, fingerprint(new.cert)) == fingerprint(new.cert)
    assert (s.live / "mx.key").read_bytes() == new.key.read_bytes()


def test_cert_line_on_the_clients_own_files_is_only_reloaded(tmp_path, sink, start_proxy, ca):
    """A cert line that names certbot's live/ symlinks: renewal re-points them,
    and the hook has nothing to copy, only the check and the reload."""
    first, second = ca.issue(), ca.issue()
    archive, live = tmp_path / "letsencrypt" / "archive", tmp_path / "letsencrypt" / "live"
    archive.mkdir(parents=True)
    live.mkdir()
    for n, issued in ((1, first), (2, second)):
        shutil.copy(issued.fullchain, archive / ("fullchain%d.pem" % n))
        shutil.copy(issued.key, archive / ("privkey%d.pem" % n))
    (live / "fullchain.pem").symlink_to(archive / "fullchain1.pem")
    (live / "privkey.pem").symlink_to(archive / "privkey1.pem")
    s = Site(tmp_path, sink, start_proxy, {}, ["%s %s" % (live / "fullchain.pem", live / "privkey.pem")])
    assert served(s.port) == fingerprint(first.cert)
    for name in ("fullchain.pem", "privkey.pem"):
        (live / name).unlink()
        (live / name).symlink_to(archive / name.replace(".pem", "2.pem"))
    out = s.hook(RENEWED_LINEAGE=live, RENEWED_DOMAINS=NAME)
    assert out.returncode == 0, out.stderr
    assert "(already in place)" in out.stdout, out.stdout
    assert wait_served(s.port, fingerprint(second.cert)) == fingerprint(second.cert)
    assert sorted(os.listdir(live)) == ["fullchain.pem", "privkey.pem"]
    assert all(p.is_symlink() for p in live.iterdir())


# --- RSA beside ECDSA ------------------------------------------------------------

@pytest.fixture
def dual(tmp_path, sink, start_proxy):
    """Two cert lines for NAME: ECDSA (certs/selfsigned) and RSA (certtool)."""
    ec = selfsigned_ec(tmp_path / "old-ec")
    rsa = selfsigned_rsa(tmp_path / "old-rsa")
    s = Site(tmp_path, sink, start_proxy,
             {"mx-ec.pem": ec[0], "mx-ec.key": ec[1], "mx-rsa.pem": rsa[0], "mx-rsa.key": rsa[1]},
             ["mx-ec.pem mx-ec.key", "mx-rsa.pem mx-rsa.key"])
    assert served(s.port) == fingerprint(ec[0])
    assert served_rsa_only(s.port) == fingerprint(rsa[0])
    return s, ec, rsa


def test_rsa_and_ecdsa_lines_are_renewed_each_on_its_own(dual, ca):
    s, ec, rsa = dual
    before = s.snapshot()

    new_rsa = ca.issue(key_type="rsa")
    out = s.renew("certbot", new_rsa)
    assert out.returncode == 0, out.stderr
    assert wait_served(s.port, fingerprint(new_rsa.cert), served_rsa_only) == fingerprint(new_rsa.cert)
    assert served(s.port) == fingerprint(ec[0])
    after = s.snapshot()
    assert (s.live / "mx-rsa.pem").read_bytes() == new_rsa.fullchain.read_bytes()
    assert (s.live / "mx-rsa.key").read_bytes() == new_rsa.key.read_bytes()
    assert after["mx-ec.pem"] == before["mx-ec.pem"]
    assert after["mx-ec.key"] == before["mx-ec.key"]
    assert sorted(after) == ["mx-ec.key", "mx-ec.pem", "mx-rsa.key", "mx-rsa.key.old", "mx-rsa.pem",
                             "mx-rsa.pem.old"]

    new_ec = ca.issue(key_type="ecdsa")
    out = s.renew("dehydrated", new_ec)
    assert out.returncode == 0, out.stderr
    assert wait_served(s.port, fingerprint(new_ec.cert)) == fingerprint(new_ec.cert)
    assert served_rsa_only(s.port) == fingerprint(new_rsa.cert)
    assert (s.live / "mx-ec.pem").read_bytes() == new_ec.fullchain.read_bytes()
    assert s.snapshot()["mx-rsa.pem"] == after["mx-rsa.pem"]
    assert s.snapshot()["mx-rsa.key"] == after["mx-rsa.key"]


def test_dehydrated_hook_chain_renews_both(dual, ca):
    """HOOK_CHAIN=yes: one deploy_cert call with six arguments per certificate."""
    s, _, _ = dual
    new_ec, new_rsa = ca.issue(key_type="ecdsa"), ca.issue(key_type="rsa")
    args = ["deploy_cert"]
    for new in (new_ec, new_rsa):
        args += [NAME, new.key, new.cert, new.fullchain, new.chain, "1767225600"]
    out = s.hook(args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert wait_served(s.port, fingerprint(new_ec.cert)) == fingerprint(new_ec.cert)
    assert wait_served(s.port, fingerprint(new_rsa.cert), served_rsa_only) == fingerprint(new_rsa.cert)
    assert (s.live / "mx-rsa.key").read_bytes() == new_rsa.key.read_bytes()
    assert (s.live / "mx-ec.key").read_bytes() == new_ec.key.read_bytes()


# --- refusals: nothing touched, nothing reloaded ------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_key_that_does_not_match_is_refused(site, ca, style):
    before = site.snapshot()
    old = fingerprint(site.live / "mx.pem")
    other = ca.issue()
    new = ca.issue()
    mismatched = Issued(new.cert, other.key, new.chain, new.fullchain)
    if style == "certbot":
        # certbot's lineage holds its own privkey.pem: swap it for another.
        shutil.copy(other.key, new.key)
        mismatched = new
    out = site.renew(style, mismatched)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "does not match" in out.stderr, out.stderr
    assert site.snapshot() == before
    site.assert_not_reloaded()
    assert served(site.port) == old


@pytest.mark.parametrize("problem", ["not a certificate", "another name", "another key type", "no such file"])
def test_other_refusals(site, ca, tmp_path, problem):
    before = site.snapshot()
    old = fingerprint(site.live / "mx.pem")
    if problem == "not a certificate":
        new = ca.issue()
        new.fullchain.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        out, want = site.renew("lego", new), "no certificate"
    elif problem == "another name":
        out, want = site.renew("lego", ca.issue(["else.acme.test"]), "else.acme.test"), "else.acme.test"
    elif problem == "another key type":
        out, want = site.renew("lego", ca.issue(key_type="rsa")), "RSA"
    else:
        new = ca.issue()
        out, want = site.renew("lego", new._replace(fullchain=tmp_path / "missing.pem")), "missing.pem"
    assert out.returncode == 1, out.stdout + out.stderr
    assert want in out.stderr, out.stderr
    if problem in ("another name", "another key type"):
        # The error names the domain and the configuration it searched.
        assert str(site.conf) in out.stderr, out.stderr
        assert (NAME if problem == "another key type" else "else.acme.test") in out.stderr, out.stderr
    assert site.snapshot() == before
    site.assert_not_reloaded()
    assert served(site.port) == old


def test_configuration_that_starttlsd_refuses_puts_the_old_files_back(site, ca):
    """The check after installing fails (here: an operator's broken edit of the
    configuration): the previous files are put back and starttlsd's message shown."""
    before = site.snapshot()
    old = fingerprint(site.live / "mx.pem")
    site.conf.write_text(site.conf.read_text() + "\n[broken]\nlisten = 127.0.0.1:0\n")
    out = site.renew("dehydrated", ca.issue())
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(re.escape(str(site.conf)) + r":\d+: ", out.stderr), out.stderr
    after = site.snapshot()
    assert {k: after[k] for k in before} == before
    # What is left beside them is the backup of these same files, nothing temporary.
    assert sorted(after) == ["mx.key", "mx.key.old", "mx.pem", "mx.pem.old"]
    site.assert_not_reloaded()
    assert served(site.port) == old


def test_symlink_to_elsewhere_is_refused_and_nothing_is_left(tmp_path, sink, start_proxy, ca):
    """The chain is refused after the key was staged: the staged key goes too."""
    pem, key = selfsigned_ec(tmp_path / "old")
    s = Site(tmp_path, sink, start_proxy, {"mx.key": key}, ["mx.pem mx.key"], links={"mx.pem": pem})
    before = s.snapshot()
    out = s.renew("lego", ca.issue())
    assert out.returncode == 1, out.stdout + out.stderr
    assert "symbolic link" in out.stderr, out.stderr
    assert s.snapshot() == before
    assert sorted(os.listdir(s.live)) == ["mx.key", "mx.pem"]
    s.assert_not_reloaded()
    assert served(s.port) == fingerprint(pem)


DEHYDRATED_OTHER_HOOKS = [
    ["deploy_challenge", NAME, "token", "value"],
    ["clean_challenge", NAME, "token", "value"],
    ["startup_hook"],
    ["exit_hook"],
    ["exit_hook", "some error"],
    ["invalid_challenge", NAME, "response"],
    ["request_failure", "500", "reason", "order", "headers"],
    ["generate_csr", NAME, "/nonexistent", "%s www.%s" % (NAME, NAME)],
    ["deploy_ocsp", NAME, "/nonexistent/ocsp.der", "1767225600"],
    ["this_hookscript_is_broken__dehydrated_is_working_fine__please_ignore_unknown_hooks_in_your_script"],
    ["some_future_hook", NAME],
]


def test_dehydrated_other_hooks_do_nothing(site, ca):
    before = site.snapshot()
    old = fingerprint(site.live / "mx.pem")
    new = ca.issue()
    # Hooks whose arguments look like deploy_cert's must not install them either.
    calls = DEHYDRATED_OTHER_HOOKS + [
        ["unchanged_cert", NAME, new.key, new.cert, new.fullchain, new.chain],
        ["sync_cert", new.key, new.cert, new.fullchain, new.chain, "/nonexistent.csr"],
    ]
    for args in calls:
        out = site.hook(args)
        assert (out.returncode, out.stdout, out.stderr) == (0, "", ""), args
    assert site.snapshot() == before
    site.assert_not_reloaded()
    assert served(site.port) == old


@pytest.mark.parametrize("args", [[], ["--help"], ["deploy_cert", NAME]])
def test_usage(tmp_path, args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RENEWED_", "LEGO_", "STARTTLSD_"))}
    env["STARTTLSD_CONF"] = str(tmp_path / "none.conf")
    out = subprocess.run([str(HOOK)] + args, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("usage: "), out.stderr
    assert "deploy_cert DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE TIMESTAMP" in out.stderr
