"""The command line and the signals (INTERFACE.md "Command line")."""

import re
import signal
import subprocess
import time

from conftest import Client, ehlo_starttls, starttlsd_binary, TIMEOUT


def check(conf):
    out = subprocess.run([starttlsd_binary(), "-t", "-c", str(conf)], capture_output=True,
                         text=True, timeout=TIMEOUT)
    return out.returncode, out.stdout + out.stderr


def conf_text(tmp_path, cert, body):
    path = tmp_path / "check.conf"
    path.write_text(body.replace("CERT", "%s %s" % cert))
    return path


def test_check_good_config_warns_about_open_relay(tmp_path, cert):
    conf = conf_text(tmp_path, cert, "log_level = info\n\n[mx]\nlisten = 127.0.0.1:0\n"
                                     "backend = 127.0.0.1:10025\ncert = CERT\n")
    rc, out = check(conf)
    assert rc == 0, out
    assert re.search(r"^%s:\d+: warning: .*open relay" % re.escape(str(conf)), out, re.M), out


def test_check_unknown_key(tmp_path, cert):
    conf = conf_text(tmp_path, cert, "[mx]\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:10025\n"
                                     "cert = CERT\nfrobnicate = yes\n")
    rc, out = check(conf)
    assert rc == 1, out
    assert re.search(r"^%s:5: " % re.escape(str(conf)), out, re.M), out


def test_check_missing_cert_file(tmp_path, cert):
    conf = conf_text(tmp_path, cert, "# a comment\n[mx]\nlisten = 127.0.0.1:0\n"
                                     "backend = 127.0.0.1:10025\n"
                                     "cert = %s/missing.pem %s/missing.key\n" % (tmp_path, tmp_path))
    rc, out = check(conf)
    assert rc == 1, out
    assert re.search(r"^%s:5: " % re.escape(str(conf)), out, re.M), out


def test_check_missing_backend(tmp_path, cert):
    conf = conf_text(tmp_path, cert, "\n[mx]\nlisten = 127.0.0.1:0\ncert = CERT\n")
    rc, out = check(conf)
    assert rc == 1, out
    assert re.search(r"^%s:2: " % re.escape(str(conf)), out, re.M), out


def test_check_bad_value(tmp_path, cert):
    conf = conf_text(tmp_path, cert, "[mx]\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:10025\n"
                                     "cert = CERT\ntls = sometimes\n")
    rc, out = check(conf)
    assert rc == 1, out
    assert re.search(r"^%s:5: " % re.escape(str(conf)), out, re.M), out


def test_version():
    out = subprocess.run([starttlsd_binary(), "-V"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    m = re.fullmatch(r"starttlsd \d+\.\d+\.\d+ \(GnuTLS (\d+\.\d+\.\d+), libev \d+\.\d+\)",
                     lines[0])
    assert m, lines
    cli = subprocess.run(["gnutls-cli", "--version"], capture_output=True, text=True).stdout
    assert m.group(1) in cli, (m.group(1), cli)  # the library it runs with


# --- signals -----------------------------------------------------------------------

def test_sigterm_idle_sessions_get_421(proxy, sink):
    plain = Client(proxy.port("smtp"))
    assert plain.reply().code == 220
    assert plain.cmd("EHLO a").code == 250
    tls = ehlo_starttls(proxy.port("smtp"))
    implicit = Client(proxy.port("smtps"), tls=True)
    assert implicit.reply().code == 220
    assert proxy.stop() == 0
    for c in (plain, tls, implicit):
        r = c.reply()
        assert r.code == 421, r
        assert c.read_to_close() == b""


def test_sigint_exits_0(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    assert proxy.stop(signal.SIGINT) == 0
    assert c.reply().code == 421


def test_sigterm_with_partial_command_line(proxy, sink):
    # A client that has sent half a command is not in a mail transaction.
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    c.send(b"NOO")
    time.sleep(0.2)
    # stop() gives up after 20 s: 0 means the proxy did not wait for drain_timeout (60 s).
    assert proxy.stop() == 0
    assert c.reply().code == 421


def test_sigterm_lets_a_transaction_finish(proxy, sink):
    c = ehlo_starttls(proxy.port("smtp"))
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.log.wait_for(r"signal 15"), proxy.log.text()
    # New connections are refused once the listeners are closed.
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            Client(proxy.port("smtp"), timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):
            break  # a connect queued on a listener as it closes is reset: refused too
        assert time.monotonic() < deadline, "still accepting after SIGTERM"
        time.sleep(0.1)
    assert c.cmd("RCPT TO:<b@example.org>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: drain\r\n\r\nlast one\r\n.\r\n")
    assert c.reply().code == 250
    assert sink.msg(1, "eml") == b"Subject: drain\r\n\r\nlast one\r\n"
    try:
        r = c.cmd("QUIT")
        assert r.code in (221, 421), r
    except (EOFError, ConnectionError):
        pass
    c.close()  # no linger for a client that is gone
    proxy.proc.wait(3 * TIMEOUT)
    assert proxy.stop() == 0


def test_unknown_user_is_an_error_before_any_worker_starts(tmp_path, cert):
    conf = conf_text(tmp_path, cert, "log_level = info\nuser = no-such-user-here\n[mx]\n"
                                     "listen = 127.0.0.1:0\nbackend = 127.0.0.1:10025\n"
                                     "client_addr = xclient\ncert = CERT\n")
    rc, out = check(conf)
    assert rc == 1, out
    assert re.search(r"^%s:2: user no-such-user-here does not exist$" % re.escape(str(conf)), out, re.M), out
    run = subprocess.run([starttlsd_binary(), "-f", "-c", str(conf)], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert run.returncode == 1 and "does not exist" in run.stderr, run.stderr
    assert "listening on" not in run.stderr
