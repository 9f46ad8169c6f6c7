"""What two TLS scanners, testssl and sslscan, see through STARTTLS on a proxy
with the default TLS configuration (no `priority` key): only TLS 1.2 and 1.3
(RFC 8996 deprecates TLS 1.0 and 1.1; SSL 2 and 3 are long gone), only
forward-secret AEAD cipher suites, and no finding of testssl's vulnerability
checks worse than INFO. A deliberately weak configuration must fail each of
those checks, so that none of them can pass by parsing nothing.

testssl's certificate section (-S) is not run: the test certificate is
self-signed, and findings on its trust chain, OCSP or CAA say nothing about
the TLS configuration.
"""

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import CERT_NAME

TESTSSL = "/usr/bin/testssl"
SSLSCAN = "/usr/bin/sslscan"
OPENSSL = "/usr/bin/openssl"
SCAN_TIMEOUT = 180  # seconds; one scan takes 5 to 35 s on two cores

pytestmark = pytest.mark.skipif(
    not (os.access(TESTSSL, os.X_OK) and os.access(SSLSCAN, os.X_OK)),
    reason="needs %s and %s (Debian packages testssl.sh and sslscan)" % (TESTSSL, SSLSCAN))

# -p protocols, -E every cipher suite per protocol, then the checks of -U that
# apply to SMTP: Heartbleed, CCS injection, renegotiation, CRIME, POODLE,
# TLS_FALLBACK_SCSV, SWEET32, FREAK, DROWN, LOGJAM, BEAST, LUCKY13, RC4.
# Left out: Ticketbleed and BREACH (HTTPS only), and ROBOT, an attack on RSA
# key transport, which the forward-secrecy check already refuses and whose
# probes take 20 s against a server that offers it.
TESTSSL_CHECKS = ["-p", "-E", "-H", "-I", "-R", "-C", "-O", "-Z", "-W", "-F", "-D", "-J", "-A",
                  "-L", "-4"]

# Protocol versions as testssl's protocol finding ids, testssl's cipher finding
# ids (cipher-tls1_2_xc02b) and sslscan's <protocol type= version=> name them.
# sslscan, built on Debian's OpenSSL 3, cannot speak SSL 2 or 3 and reports
# them as not enabled; testssl probes them with its own sockets.
TESTSSL_PROTOCOL_IDS = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": "TLSv1.0",
                        "TLS1_1": "TLSv1.1", "TLS1_2": "TLSv1.2", "TLS1_3": "TLSv1.3"}
TESTSSL_CIPHER_ID_RE = re.compile(r"^cipher-(\w+)_x[0-9a-f]+$")
TESTSSL_CIPHER_PROTOCOLS = {"ssl2": "SSLv2", "ssl3": "SSLv3", "tls1": "TLSv1.0",
                            "tls1_1": "TLSv1.1", "tls1_2": "TLSv1.2", "tls1_3": "TLSv1.3"}
SSLSCAN_PROTOCOLS = {("ssl", "2"): "SSLv2", ("ssl", "3"): "SSLv3", ("tls", "1.0"): "TLSv1.0",
                     ("tls", "1.1"): "TLSv1.1", ("tls", "1.2"): "TLSv1.2", ("tls", "1.3"): "TLSv1.3"}
MODERN_VERSIONS = ["TLSv1.2", "TLSv1.3"]

# Suites are named the IANA way by testssl (TLS_ECDHE_RSA_WITH_...) and the
# OpenSSL way by sslscan (ECDHE-RSA-..., and EDH- for the oldest DHE suites).
FORWARD_SECRET_KX_RE = re.compile(r"^(TLS_)?(ECDHE|DHE|EDH)[-_]")
AEAD_RE = re.compile(r"GCM|CCM|POLY1305")

# With an RSA certificate, so that RSA key transport can be negotiated at all:
# adds TLS 1.0, TLS 1.1, RSA key transport and (through NORMAL) CBC suites.
WEAK_PRIORITY = "NORMAL:+VERS-TLS1.1:+VERS-TLS1.0:+RSA"


def run_testssl(port, out_dir):
    """testssl's findings for 127.0.0.1:port, by section (protocols, cipherTests, ...)."""
    report = out_dir / "testssl.json"
    out = subprocess.run(
        [TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
         "--openssl", OPENSSL, "--starttls", "smtp", "--jsonfile-pretty", str(report)]
        + TESTSSL_CHECKS + ["127.0.0.1:%d" % port],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SCAN_TIMEOUT)
    # The exit status counts checks that could not finish, which also appear as
    # WARN findings; a scan that never happened leaves no report, or a
    # "scanProblem" finding where the sections should be.
    [result] = json.loads(report.read_text())["scanResult"] if report.exists() else [{}]
    assert "protocols" in result, "testssl exited %d:\n%s%s" % (out.returncode, out.stdout,
                                                                  out.stderr)
    return result


def run_sslscan(port, out_dir):
    """sslscan's <ssltest> element for 127.0.0.1:port."""
    report = out_dir / "sslscan.xml"
    out = subprocess.run(
        [SSLSCAN, "--no-colour", "--starttls-smtp", "--sni-name=" + CERT_NAME,
         "--xml=" + str(report), "127.0.0.1:%d" % port],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SCAN_TIMEOUT)
    # sslscan exits 0 when it cannot connect too: its report then holds an
    # <error> in place of the <ssltest>.
    ssltest = ET.parse(report).find("ssltest") if report.exists() else None
    assert out.returncode == 0 and ssltest is not None, "sslscan exited %d:\n%s%s" % (
        out.returncode, out.stdout, out.stderr)
    return ssltest


def scan(port, out_dir):
    """Both scanners at once: they spend most of their time waiting on handshakes."""
    with ThreadPoolExecutor() as pool:
        sslscan = pool.submit(run_sslscan, port, out_dir)
        testssl = pool.submit(run_testssl, port, out_dir)
        return {"testssl": testssl.result(), "sslscan": sslscan.result()}


def offered_versions(scans):
    """Per scanner, the protocol versions it did not find refused (unclear counts as offered)."""
    testssl = {TESTSSL_PROTOCOL_IDS[f["id"]] for f in scans["testssl"]["protocols"]
               if f["id"] in TESTSSL_PROTOCOL_IDS and not f["finding"].startswith("not offered")}
    sslscan = {SSLSCAN_PROTOCOLS[p.get("type"), p.get("version")]
               for p in scans["sslscan"].iter("protocol") if p.get("enabled") != "0"}
    return {"testssl": sorted(testssl), "sslscan": sorted(sslscan)}


def offered_suites(scans):
    """Per scanner, the (version, suite) pairs the server accepted."""
    testssl = []
    for f in scans["testssl"]["cipherTests"]:
        # TLS 1.2   xc02b   ECDHE-ECDSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128   TLS_ECDHE_...
        protocol = TESTSSL_CIPHER_ID_RE.match(f["id"]).group(1)
        testssl.append((TESTSSL_CIPHER_PROTOCOLS[protocol], f["finding"].split()[-1]))
    sslscan = [(c.get("sslversion"), c.get("cipher")) for c in scans["sslscan"].iter("cipher")]
    return {"testssl": testssl, "sslscan": sslscan}


def forward_secret(version, suite):
    """TLS 1.3 always agrees keys by (EC)DHE; before it, the suite's name says."""
    return version == "TLSv1.3" or bool(FORWARD_SECRET_KX_RE.match(suite))


def aead(version, suite):
    return bool(AEAD_RE.search(suite))


def suites_failing(scans, rule):
    """Per scanner, the offered suites that fail `rule`, as "version suite"."""
    return {scanner: ["%s %s" % pair for pair in pairs if not rule(*pair)]
            for scanner, pairs in offered_suites(scans).items()}


def vulnerability_findings(scans):
    """testssl's vulnerability findings worse than OK or INFO (WARN: a check that could not run)."""
    return ["%s %s: %s" % (f["id"], f["severity"], f["finding"])
            for f in scans["testssl"]["vulnerabilities"] if f["severity"] not in ("OK", "INFO")]


def test_default_configuration(proxy, tmp_path):
    scans = scan(proxy.port("smtp"), tmp_path)
    assert offered_versions(scans) == {"testssl": MODERN_VERSIONS, "sslscan": MODERN_VERSIONS}
    suites = offered_suites(scans)
    assert suites["testssl"] and suites["sslscan"], suites
    assert suites_failing(scans, forward_secret) == {"testssl": [], "sslscan": []}
    assert suites_failing(scans, aead) == {"testssl": [], "sslscan": []}
    findings = vulnerability_findings(scans)
    assert not findings, "testssl flags:\n" + "\n".join(findings)


def test_weak_configuration_fails_every_check(sink, start_proxy, tmp_path):
    pem, key = tmp_path / "rsa.pem", tmp_path / "rsa.key"
    out = subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                          "-subj", "/CN=" + CERT_NAME, "-keyout", str(key), "-out", str(pem)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    proxy = start_proxy({"smtp": {"backend": sink.addr, "cert": "%s %s" % (pem, key),
                                  "priority": WEAK_PRIORITY}})
    scans = scan(proxy.port("smtp"), tmp_path)
    for versions in offered_versions(scans).values():
        assert {"TLSv1.0", "TLSv1.1"} <= set(versions)
    # Each suite rule on its own: RSA key transport with GCM is AEAD but not
    # forward-secret; ECDHE with CBC is forward-secret but not AEAD.
    not_forward_secret = suites_failing(scans, forward_secret)
    assert "TLSv1.2 TLS_RSA_WITH_AES_128_GCM_SHA256" in not_forward_secret["testssl"]
    assert "TLSv1.2 AES128-GCM-SHA256" in not_forward_secret["sslscan"]
    not_aead = suites_failing(scans, aead)
    assert "TLSv1.2 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" in not_aead["testssl"]
    assert "TLSv1.2 ECDHE-RSA-AES128-SHA" in not_aead["sslscan"]
    assert {finding.split()[0] for finding in vulnerability_findings(scans)} >= {"BEAST", "LUCKY13"}
