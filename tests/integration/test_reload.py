"""SIGHUP: a new configuration and new certificates for new connections,
established sessions untouched, and a configuration that does not load
refused while the old one stays in force (INTERFACE.md, Signals)."""

import re
import shutil
import signal
import ssl
import subprocess

import pytest

from conftest import Client, SELFSIGNED, TIMEOUT, assert_delivered, implicit, send_message, wait_until


def der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def make_cert(directory, name):
    out = subprocess.run([str(SELFSIGNED), "-d", str(directory), name], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return directory / (name + ".pem"), directory / (name + ".key")


def served_cert(port):
    c = Client(port, tls=True)
    try:
        return c.sock.getpeercert(binary_form=True)
    finally:
        c.close()


def reload_and_wait(proxy, pattern):
    """SIGHUP, then wait for one more log line matching `pattern`."""
    seen = sum(1 for line in proxy.log.lines if re.search(pattern, line))
    proxy.proc.send_signal(signal.SIGHUP)
    found = proxy.log.wait_for(pattern, TIMEOUT, count=seen + 1)
    assert found, "no %r after SIGHUP:\n%s" % (pattern, proxy.log.text())


def test_reload_swaps_certificate_and_keeps_sessions(tmp_path, sink, start_proxy):
    one = make_cert(tmp_path, "one.test")
    two = make_cert(tmp_path, "two.test")
    live_pem, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(one[0], live_pem)
    shutil.copy(one[1], live_key)
    proxy = start_proxy({"smtps": {"backend": sink.addr, "tls": "implicit",
                                   "cert": "%s %s" % (live_pem, live_key)}})
    port = proxy.port("smtps")
    assert served_cert(port) == der(one[0])

    # A session in the middle of a transaction across the reload.
    old = implicit(port)
    assert old.cmd("MAIL FROM:<a@example.org>").code == 250

    shutil.copy(two[0], live_pem)
    shutil.copy(two[1], live_key)
    reload_and_wait(proxy, r"info: reloaded ")

    assert served_cert(port) == der(two[0]), "new connections use the new certificate"
    assert old.sock.getpeercert(binary_form=True) == der(one[0])
    assert old.cmd("RCPT TO:<b@example.org>").code == 250
    assert old.cmd("DATA").code == 354
    body = b"Subject: across a reload\r\n\r\nstill here\r\n"
    old.send(body + b".\r\n")
    assert old.reply().code == 250
    assert old.cmd("QUIT").code == 221
    old.close()
    assert_delivered(sink, 1, body)


def test_reload_refuses_a_broken_configuration(tmp_path, sink, start_proxy, cert):
    proxy = start_proxy({"smtps": {"backend": sink.addr, "tls": "implicit"}})
    port = proxy.port("smtps")
    conf = proxy.conf.read_text()

    proxy.conf.write_text(conf.replace("tls = implicit", "tls = sometimes"))
    reload_and_wait(proxy, r"error: reload refused, the configuration in force stays: .*:\d+: tls must be")
    assert served_cert(port) == der(cert[0])

    # A key that does not load: refused the same way, naming the file.
    bad_key = tmp_path / "broken.key"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    proxy.conf.write_text(conf.replace(cert[1], str(bad_key)))
    reload_and_wait(proxy, r"error: reload refused.*broken\.key")

    with implicit(port) as c:
        assert send_message(c, b"Subject: still served\r\n\r\nok\r\n").code == 250
        assert c.cmd("QUIT").code == 221


def test_reload_adds_a_listener(tmp_path, sink, start_proxy):
    proxy = start_proxy({"smtps": {"backend": sink.addr, "tls": "implicit"}})
    port = proxy.port("smtps")
    conf = proxy.conf.read_text()
    proxy.conf.write_text(conf + "\n[extra]\nlisten = 127.0.0.1:0\nbackend = %s\ncert = %s\n"
                          % (sink.addr, conf.split("cert = ")[1].splitlines()[0]))
    reload_and_wait(proxy, r"listener extra: listening on 127\.0\.0\.1:\d+")
    extra = int(proxy.log.wait_for(r"listener extra: listening on 127\.0\.0\.1:(\d+)")[0].group(1))

    c = Client(extra)
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    # The unchanged listener kept its socket: same port, still serving.
    with implicit(port) as c:
        assert c.cmd("QUIT").code == 221


def kubernetes_secret(directory, pem, key, generation):
    """The layout kubelet gives a mounted Secret: tls.crt and tls.key are
    links through ..data, itself a link to a timestamped folder that an
    update replaces by swapping ..data atomically."""
    data = directory / ("..2026_12_06_%d" % generation)
    data.mkdir()
    shutil.copy(pem, data / "tls.crt")
    shutil.copy(key, data / "tls.key")
    new_link = directory / "..data_tmp"
    new_link.symlink_to(data.name)
    new_link.rename(directory / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to("..data/" + name)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_watch_files_reloads_a_swapped_secret(tmp_path, sink, start_proxy, workers):
    """watch_files: a Secret updated in place (Kubernetes' symlink swap) is
    served without a signal; a change that does not load is refused and the
    old certificate stays."""
    one = make_cert(tmp_path, "one.test")
    two = make_cert(tmp_path, "two.test")
    secret = tmp_path / "secret"
    secret.mkdir()
    kubernetes_secret(secret, one[0], one[1], 1)
    proxy = start_proxy({"smtps": {"backend": sink.addr, "tls": "implicit",
                                   "cert": "%s %s" % (secret / "tls.crt", secret / "tls.key")}},
                        global_lines=("log_level = debug", "watch_files = 1s", "workers = " + workers))
    port = proxy.port("smtps")
    assert served_cert(port) == der(one[0])

    kubernetes_secret(secret, two[0], two[1], 2)
    assert proxy.log.wait_for(r"watch_files: a configured file changed; reloading"), proxy.log.text()
    assert proxy.log.wait_for(r"info: reloaded "), proxy.log.text()
    assert wait_until(lambda: served_cert(port) == der(two[0])), "the swapped certificate is not served"

    # Half an update (a key that does not match) is refused; the old stays.
    data = secret / "..data"
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(two[0], broken / "tls.crt")
    shutil.copy(one[1], broken / "tls.key")
    (tmp_path / "..tmp").symlink_to(broken)
    (tmp_path / "..tmp").rename(data)
    assert proxy.log.wait_for(r"error: reload refused, the configuration in force stays: .*the key does not match"), \
        proxy.log.text()
    assert served_cert(port) == der(two[0])
    c = implicit(port)
    assert send_message(c, b"Subject: watched\r\n\r\nhi\r\n").code == 250
    c.close()
