"""DANE for transparent outbound delivery (RFC 7672; README "Sending to the
world"): with dane = yes the outbound listener holds each recipient's RCPT
until it has looked the recipient domain up in DNSSEC-validated DNS, and
defers the recipient (450 4.7.5) when the domain's MX host that the MTA
reached publishes TLSA records the session does not meet.

The rig is test_outbound_transparent.py's (namespaces "mta" and "world",
the redirect, the destinations). Added here: a zone, dane.example. (not
under test.: libunbound answers that TLD itself, RFC 6761), signed at
test time with ldns-keygen and ldns-signzone and served by dnssec_server.py
(dnspython) on 127.0.0.1 in the mta namespace. starttlsd's libunbound
forwards every query there (dns_resolver) and validates the answers itself
from the zone's DS record (dns_trust_anchor): the server is a plain
authoritative one, so the validation under test is starttlsd's. Each
recipient domain of the zone has its own MX host, all but two at the
STARTTLS destination .10:

  ee      mx-ee     .10  TLSA 3 1 1 of .10's key           -> delivered, dane
  ta      mx-ta     .15  TLSA 2 0 1 of the CA of .15's cert -> delivered, dane
  wrong   mx-wrong  .10  TLSA 3 1 1 of another key          -> 450 4.7.5
  bogus   mx-bogus  .10  TLSA of .10's key put in after signing -> 450 4.7.5
  plain   mx-plain  .11  TLSA 3 1 1; .11 offers no STARTTLS -> 450 4.7.5
  notlsa  mx-notlsa .10  no TLSA                            -> delivered, opportunistic
  taname  mx-taname .15  the same TLSA 2 0 1, but .15's certificate names
                         neither mx-taname nor taname (RFC 7672 3.2.2) -> 450 4.7.5
  ee6     mx-ee6    ::10 TLSA 3 1 1 of ::10's key (AAAA)   -> delivered, dane
  alias   mx-alias, a CNAME to mx-real (.10), TLSA at mx-real only -> delivered, dane
"""

import json
import re
import subprocess

import pytest

from conftest import PYTHON, REPO, TIMEOUT, run
from test_outbound_transparent import NET4, NET6, in_ns, net, world  # noqa: F401 (fixtures)

DNS_SERVER = REPO / "tests" / "integration" / "dnssec_server.py"
ZONE = "dane.example"
BODY = b"Subject: DANE\r\n\r\nchecked by its TLSA records\r\n"

DANE_RE = re.compile(r"dane domain=(?P<domain>\S+) mx=(?P<mx>\S+) result=(?P<result>\S+)(?: verified=dane)? "
                     r"why=(?P<why>.*)$")
SESSION_RE = re.compile(r"session listener=out .* tls=(?P<tls>\S+)(?: reason=\S+)? verified=(?P<verified>\S+) ")

pytestmark = pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v ldns-signzone"],
                                               capture_output=True).returncode != 0 or
                                subprocess.run([PYTHON, "-c", "import dns.zone"], capture_output=True).returncode != 0,
                                reason="needs ldnsutils and python3-dnspython (packaging/install-deps test)")


def sha256_hex(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def cert_der(pem):
    return subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER"], capture_output=True,
                          check=True).stdout


def spki_der(pem):
    key = subprocess.run(["openssl", "x509", "-in", str(pem), "-pubkey", "-noout"], capture_output=True,
                         check=True).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=key, capture_output=True,
                          check=True).stdout


def make_ca_chain(d):
    """A CA and a server certificate for mx-ta.dane.example it signed; the
    chain file holds both, as RFC 7672 section 3.1.2 asks a DANE-TA server
    to send."""
    (d / "ca.tmpl").write_text('cn = "DANE test CA"\nca\ncert_signing_key\nexpiration_days = 30\n')
    (d / "leaf.tmpl").write_text('cn = "mx-ta.dane.example"\ndns_name = "mx-ta.dane.example"\ntls_www_server\n'
                                 'encryption_key\nsigning_key\nexpiration_days = 30\n')
    for key in ("ca.key", "leaf.key"):
        run(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--outfile", d / key])
        (d / key).chmod(0o600)
    run(["certtool", "--generate-self-signed", "--load-privkey", d / "ca.key", "--template", d / "ca.tmpl",
         "--outfile", d / "ca.pem"])
    run(["certtool", "--generate-certificate", "--load-privkey", d / "leaf.key", "--load-ca-certificate",
         d / "ca.pem", "--load-ca-privkey", d / "ca.key", "--template", d / "leaf.tmpl", "--outfile", d / "leaf.pem"])
    (d / "chain.pem").write_text((d / "leaf.pem").read_text() + (d / "ca.pem").read_text())
    return d / "chain.pem", d / "leaf.key", d / "ca.pem"


def make_zone(d, ee_spki, ca_der):
    """dane.example. signed with NSEC; the DS file for the trust anchor."""
    ee = sha256_hex(ee_spki)
    other = sha256_hex(b"some other key")
    records = [
        "@ IN SOA ns.dane.example. admin.dane.example. 1 3600 600 86400 300",
        "@ IN NS ns.dane.example.",
        "ns IN A 127.0.0.1",
        "ta IN MX 10 mx-ta.dane.example.",
        "mx-ta IN A %s.15" % NET4,
        "_25._tcp.mx-ta IN TLSA 2 0 1 %s" % sha256_hex(ca_der),
        "taname IN MX 10 mx-taname.dane.example.",
        "mx-taname IN A %s.15" % NET4,
        "_25._tcp.mx-taname IN TLSA 2 0 1 %s" % sha256_hex(ca_der),
        "plain IN MX 10 mx-plain.dane.example.",
        "mx-plain IN A %s.11" % NET4,
        "_25._tcp.mx-plain IN TLSA 3 1 1 %s" % ee,
        "ee6 IN MX 10 mx-ee6.dane.example.",
        "mx-ee6 IN AAAA %s10" % NET6,
        "_25._tcp.mx-ee6 IN TLSA 3 1 1 %s" % ee,
        # RFC 7672 section 2.2.2: TLSA at the name the alias expands to
        "alias IN MX 10 mx-alias.dane.example.",
        "mx-alias IN CNAME mx-real.dane.example.",
        "mx-real IN A %s.10" % NET4,
        "_25._tcp.mx-real IN TLSA 3 1 1 %s" % ee,
        # signed with another key's digest; .10's own is put in after signing
        "_25._tcp.mx-bogus IN TLSA 3 1 1 %s" % other,
    ]
    for name, tlsa in (("ee", ee), ("wrong", other), ("bogus", None), ("notlsa", None)):
        records += ["%s IN MX 10 mx-%s.dane.example." % (name, name), "mx-%s IN A %s.10" % (name, NET4)]
        if tlsa:
            records.append("_25._tcp.mx-%s IN TLSA 3 1 1 %s" % (name, tlsa))
    (d / "zone").write_text("$ORIGIN dane.example.\n$TTL 300\n" + "\n".join(records) + "\n")
    ksk = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", ZONE], cwd=d).strip()
    zsk = run(["ldns-keygen", "-a", "ECDSAP256SHA256", ZONE], cwd=d).strip()
    run(["ldns-signzone", "zone", ksk, zsk], cwd=d)
    signed = (d / "zone.signed").read_text()
    tampered, n = re.subn(r"(_25\._tcp\.mx-bogus\.dane\.example\.\s+\d+\s+IN\s+TLSA\s+3 1 1 )%s" % other,
                          r"\g<1>" + ee, signed)
    assert n == 1, signed
    (d / "zone.signed").write_text(tampered)
    return d / "zone.signed", d / (ksk + ".ds")


@pytest.fixture
def dane_world(net, world, cert, tmp_path):
    """The zone, its server, the TLS destinations .10 and .15, and the
    outbound proxy with dane = yes: start(**keys) for the proxy's keys."""

    def start(dns_resolver=None, global_lines=(), **keys):
        chain, leaf_key, ca = make_ca_chain(tmp_path)
        zone, ds = make_zone(tmp_path, spki_der(cert[0]), cert_der(ca))
        if dns_resolver is None:
            server = net["daemon"](in_ns(net["mta"], PYTHON, DNS_SERVER, "--zone", zone, "--origin", ZONE + "."),
                                   r"^listening on ")
            dns_resolver = "127.0.0.1@" + server.log.wait_for(r"^listening on [\d.]+:(\d+)$")[0].group(1)
        d = world(global_lines, dane="yes", dns_resolver=dns_resolver, dns_trust_anchor=ds, **keys)
        d["anchor"] = ds
        behind = net["sink"](net["world"], "127.0.0.1:0", "--caps", "PIPELINING,8BITMIME")
        port = behind.log.wait_for(r"^listening on [\d.]+:(\d+)$")[0].group(1)
        d["ta_sink"] = behind
        d["ta"] = net["proxy"](net["world"], {"in": {"listen": "%s.15:25" % NET4, "backend": "127.0.0.1:" + port,
                                                      "cert": "%s %s" % (chain, leaf_key)}}, "inbound-ta")
        return d

    return start


def transaction(net, dest, rcpts, body=BODY):
    """One transaction from the legacy MTA (smtplib, plaintext) to DEST:25
    with RCPTS: the reply to each RCPT, and to the message if any was taken."""
    script = (
        "import json, smtplib, sys\n"
        "s = smtplib.SMTP(sys.argv[1], 25, timeout=%d)\n"
        "s.ehlo('legacy.test')\n"
        "out = {'mail': s.mail('a@example.org')[0], 'rcpt': []}\n"
        "for r in sys.argv[2:]:\n"
        "    code, text = s.rcpt(r)\n"
        "    out['rcpt'].append([code, text.decode()])\n"
        "if any(c == 250 for c, _ in out['rcpt']):\n"
        "    out['data'] = s.data(sys.stdin.buffer.read())[0]\n"
        "s.quit()\n"
        "print(json.dumps(out))\n" % (TIMEOUT * 2))
    out = subprocess.run(in_ns(net["mta"], PYTHON, "-c", script, dest, *rcpts), input=body, capture_output=True,
                         timeout=TIMEOUT * 4)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def decisions(d, count):
    found = d["out"].log.wait_for(DANE_RE.pattern, TIMEOUT, count)
    assert found, d["out"].log.text()
    return {m.group("domain"): m.groupdict() for m in found}


def session_line(d):
    found = d["out"].log.wait_for(SESSION_RE.pattern, TIMEOUT)
    assert found, d["out"].log.text()
    return found[0].groupdict()


def relayed(sink):
    """What the destination's sink got over all its connections, lower
    case (smtplib writes its verbs so)."""
    return b"".join(p.read_bytes() for p in sorted(sink.dir.glob("conn-*.raw"))).lower()


def delivered(sink):
    msgs = sorted(sink.dir.glob("msg-*.eml"))
    return [p.read_bytes() for p in msgs]


@pytest.mark.parametrize("domain, dest, sink", [("ee", NET4 + ".10", "tls_sink"), ("ta", NET4 + ".15", "ta_sink"),
                                                ("ee6", NET6 + "10", "tls_sink"), ("alias", NET4 + ".10", "tls_sink")])
def test_matching_tlsa_delivers(net, dane_world, domain, dest, sink):
    d = dane_world()
    out = transaction(net, dest, ["b@%s.dane.example" % domain])
    assert out["rcpt"][0][0] == 250 and out.get("data") == 250, out
    assert delivered(d[sink]) == [BODY]
    decided = decisions(d, 1)["%s.dane.example" % domain]
    assert (decided["mx"], decided["result"]) == ("mx-%s.dane.example" % domain, "ok"), decided
    assert decided["why"] == ("DANE-TA record matched" if domain == "ta" else "DANE-EE record matched"), decided
    s = session_line(d)
    assert s["tls"].startswith("TLS1.") and s["verified"] == "dane", s


def test_hops_are_counted_by_how_they_were_verified(net, dane_world):
    """starttlsd_upstream_sessions_total: a session whose domain DANE
    matched counts as verified="dane", one to a destination without
    STARTTLS as "plaintext" (the metrics listener is in the mta namespace,
    where the proxy runs)."""
    metrics = "127.0.0.1:9925"  # the namespace's own loopback: nothing else listens there
    d = dane_world(global_lines=("metrics = " + metrics,))
    assert transaction(net, NET4 + ".10", ["b@ee.dane.example"])["data"] == 250
    # .11 is no MX host of notlsa: DANE does not apply, and .11 offers no TLS
    assert transaction(net, NET4 + ".11", ["b@notlsa.dane.example"])["data"] == 250
    assert len(d["out"].log.wait_for(SESSION_RE.pattern, TIMEOUT, 2)) == 2

    def scrape():
        out = subprocess.run(in_ns(net["mta"], PYTHON, "-c", "import sys, urllib.request; sys.stdout.write("
                                   "urllib.request.urlopen('http://%s/metrics', timeout=5).read().decode())" % metrics),
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        return out.stdout

    text = scrape()
    counts = dict(re.findall(r'^starttlsd_upstream_sessions_total\{listener="out",verified="(\w+)"\} (\d+)$',
                             text, re.M))
    assert counts == {"ca": "0", "dane": "1", "none": "0", "plaintext": "1"}, counts
    # the TLS hop by its version; the plaintext one is in no version's row
    versions = re.findall(r'^starttlsd_upstream_tls_total\{listener="out",version="(TLS1\.[23])"\} (\d+)$', text, re.M)
    assert len(versions) == 1 and versions[0][1] == "1", text


@pytest.mark.parametrize("domain, dest, why", [
    ("wrong", ".10", "no usable TLSA record matches the certificate chain"),
    ("bogus", ".10", "TLSA records are bogus (DNSSEC)"),
    ("plain", ".11", "TLSA records published, but the destination gave no TLS (downgrade refused)"),
    ("taname", ".15", "no usable TLSA record matches the certificate chain"),
])
def test_unmet_tlsa_defers_the_recipient(net, dane_world, domain, dest, why):
    d = dane_world()
    out = transaction(net, NET4 + dest, ["b@%s.dane.example" % domain])
    code, text = out["rcpt"][0]
    assert code == 450 and text.startswith("4.7.5 "), out
    assert "data" not in out
    decided = decisions(d, 1)["%s.dane.example" % domain]
    assert decided["result"] == "defer-dane" and decided["why"].startswith(why), decided
    sink = d[{".11": "plain", ".15": "ta_sink"}.get(dest, "tls_sink")]
    seen = relayed(sink)
    assert b"mail from:<a@example.org>" in seen, seen  # the session reached it...
    assert b"rcpt" not in seen and b"dane.example" not in seen, seen  # ...the recipient never did
    assert session_line(d)["verified"] != "dane"


def test_no_tlsa_is_opportunistic(net, dane_world):
    d = dane_world()
    out = transaction(net, NET4 + ".10", ["b@notlsa.dane.example"])
    assert out["rcpt"][0][0] == 250 and out.get("data") == 250, out
    assert delivered(d["tls_sink"]) == [BODY]
    decided = decisions(d, 1)["notlsa.dane.example"]
    assert (decided["result"], decided["why"]) == ("ok", "no TLSA records: opportunistic"), decided
    assert session_line(d)["verified"] == "none"


def test_two_domains_in_one_transaction(net, dane_world):
    d = dane_world()
    out = transaction(net, NET4 + ".10", ["b@wrong.dane.example", "c@ee.dane.example", "d@Wrong.dane.example"])
    codes = [c for c, _ in out["rcpt"]]
    assert codes == [450, 250, 450] and out.get("data") == 250, out
    assert delivered(d["tls_sink"]) == [BODY]
    seen = relayed(d["tls_sink"])
    assert b"rcpt to:<c@ee.dane.example>" in seen and b"wrong.dane.example" not in seen, seen
    decided = decisions(d, 2)
    assert decided["wrong.dane.example"]["result"] == "defer-dane" and decided["ee.dane.example"]["result"] == "ok"
    # one lookup per domain and session: Wrong.dane.example was decided already
    assert len(d["out"].log.wait_for(DANE_RE.pattern, 1, 3) or []) < 3
    assert session_line(d)["verified"] != "dane"  # not every DANE domain matched


def test_dns_down_defers_451(net, dane_world):
    # Nothing listens on port 9 of the mta namespace's loopback.
    d = dane_world(dns_resolver="127.0.0.1@9", dns_timeout="3")
    out = transaction(net, NET4 + ".10", ["b@ee.dane.example"])
    code, text = out["rcpt"][0]
    assert code == 451 and text.startswith("4.4.3 "), out
    assert decisions(d, 1)["ee.dane.example"]["result"] == "defer-dns"
    assert b"rcpt" not in relayed(d["tls_sink"])


def test_check_names_the_trust_anchor_line(tmp_path, cert):
    from conftest import starttlsd_binary, write_conf
    (tmp_path / "a.key").write_text(". IN A 192.0.2.1\n")
    for anchor, why in (("/nonexistent/root.key", "cannot open"),
                        (tmp_path / "a.key", "every line must be one DS or DNSKEY record")):
        conf = write_conf(tmp_path / "d.conf", {"world": {"direction": "outbound", "backend": "original-destination",
                                                          "dane": "yes", "dns_trust_anchor": anchor}}, cert)
        out = subprocess.run([starttlsd_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                             timeout=TIMEOUT)
        assert out.returncode == 1, out.stderr
        assert "d.conf:7: dns_trust_anchor %s: %s" % (anchor, why) in out.stderr, out.stderr


def test_reload_takes_the_new_trust_anchor(net, dane_world, tmp_path):
    """SIGHUP builds the resolver again from the file as it is now: with
    another key's DS the zone no longer validates (bogus: 450 4.7.5)."""
    import signal
    d = dane_world()
    out = transaction(net, NET4 + ".10", ["b@ee.dane.example"])
    assert out["rcpt"][0][0] == 250, out
    other = tmp_path / "other"
    other.mkdir()
    ksk = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", ZONE], cwd=other).strip()
    d["anchor"].write_text((other / (ksk + ".ds")).read_text())
    d["out"].proc.send_signal(signal.SIGHUP)
    assert d["out"].log.wait_for(r"reloaded ", TIMEOUT), d["out"].log.text()
    # the new worker takes the next connection
    assert d["out"].log.wait_for(r"worker \d+: accepting as uid", TIMEOUT, 2), d["out"].log.text()
    out = transaction(net, NET4 + ".10", ["b@ee.dane.example"])
    code, text = out["rcpt"][0]
    assert code == 450 and text.startswith("4.7.5 "), out
    decided = d["out"].log.wait_for(DANE_RE.pattern, TIMEOUT, 2)[1]
    assert decided.group("result") == "defer-dane" and "bogus" in decided.group("why"), decided.group(0)
