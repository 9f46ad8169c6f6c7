"""The supervisor and its workers: with workers = 2 each serves and a
ticket from one resumes on the other; with user set the workers run
unprivileged while the root parent reloads keys only root can read; a dead
worker is replaced; reload under load loses no session."""

import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import threading

import pytest

from conftest import Proxy, SELFSIGNED, TIMEOUT, client_context, starttlsd_binary, wait_until, write_conf

CONNECTED_RE = r"connected to listener \S+ \(worker (\d+)\)"


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))


def make_cert(d, name):
    out = subprocess.run([str(SELFSIGNED), "-d", str(d), name], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return d / (name + ".pem"), d / (name + ".key")


def served_cert(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as s:
        s.starttls(context=client_context())
        return s.sock.getpeercert(binary_form=True)


def der(pem):
    return ssl.PEM_cert_to_DER_cert(open(pem).read())


def wait_children(pid, count, timeout=TIMEOUT):
    """The supervisor's children once there are COUNT of them (COUNT > 0)."""
    def exactly_count():
        kids = children(pid)
        return kids if len(kids) == count else None

    found = wait_until(exactly_count, timeout)
    assert found, "supervisor has %s, not %d workers" % (children(pid), count)
    return found


def wait_workers(proxy, count, seen=0):
    """The PIDs of the workers that announced they accept, after the first SEEN."""
    found = proxy.log.wait_for(r"worker (\d+): accepting as uid (\d+)", count=seen + count)
    assert found, proxy.log.text()
    return sorted(int(m.group(1)) for m in found[seen:])


def starttls_session(port, sess_file, save):
    """One openssl STARTTLS session that QUITs; whether it resumed."""
    out = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-ign_eof", "-connect",
                          "127.0.0.1:%d" % port, "-sess_out" if save else "-sess_in", str(sess_file)],
                         input="QUIT\r\n", capture_output=True, text=True, timeout=TIMEOUT)
    return bool(re.search(r"^Reused, TLSv1\.3", out.stdout, re.M))


def test_two_workers_serve_and_share_the_ticket_key(sink, start_proxy, tmp_path):
    # Which worker wins a connection is the kernel's choice; a stopped worker
    # cannot take one, so each half of the test names the worker that serves.
    proxy = start_proxy({"smtp": {"backend": sink.addr}}, ("log_level = debug", "workers = 2"))
    first, second = wait_workers(proxy, 2)
    sess = tmp_path / "session.pem"
    try:
        os.kill(second, signal.SIGSTOP)
        fresh = starttls_session(proxy.port(), sess, save=True)
        os.kill(second, signal.SIGCONT)
        os.kill(first, signal.SIGSTOP)
        resumed_on_second = [starttls_session(proxy.port(), sess, save=False) for _ in range(3)]
    finally:
        os.kill(first, signal.SIGCONT)
        os.kill(second, signal.SIGCONT)
    resumed_on_either = [starttls_session(proxy.port(), sess, save=False) for _ in range(6)]
    sessions = proxy.wait_sessions(10)
    served_by = [int(m.group(1)) for m in re.finditer(CONNECTED_RE, proxy.log.text())]
    assert served_by[:4] == [first, second, second, second], served_by
    assert set(served_by) <= {first, second}
    assert (fresh, resumed_on_second, resumed_on_either) == (False, [True] * 3, [True] * 6)
    assert sorted(s["resumed"] for s in sessions) == ["no"] + ["yes"] * 9


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_unprivileged_workers_reload_root_only_keys(sink, start_proxy, tmp_path):
    os.chmod(tmp_path, 0o711)
    one, two = make_cert(tmp_path, "one.test"), make_cert(tmp_path, "two.test")
    live_pem, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(one[0], live_pem)
    shutil.copy(one[1], live_key)
    os.chmod(live_key, 0o600)
    proxy = start_proxy({"smtp": {"backend": sink.addr, "cert": "%s %s" % (live_pem, live_key)}},
                        ("log_level = debug", "workers = 2", "user = nobody"))
    nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)
    workers = wait_workers(proxy, 2)
    assert uid_of(proxy.proc.pid) == 0
    assert [uid_of(w) for w in workers] == [nobody, nobody]
    assert served_cert(proxy.port()) == der(one[0])

    shutil.copy(two[0], live_pem)
    shutil.copy(two[1], live_key)
    os.chmod(live_key, 0o600)
    proxy.proc.send_signal(signal.SIGHUP)
    assert proxy.log.wait_for(r"info: reloaded "), proxy.log.text()
    assert served_cert(proxy.port()) == der(two[0])
    new_workers = wait_workers(proxy, 2, seen=2)
    assert wait_children(proxy.proc.pid, 2) == new_workers, "the old workers retired"
    assert [uid_of(w) for w in new_workers] == [nobody, nobody]


def test_a_dead_worker_is_replaced(sink, cert, tmp_path):
    conf = write_conf(tmp_path / "c.conf", {"smtp": {"backend": sink.addr}}, cert,
                      ("log_level = debug", "workers = 2"))
    proxy = Proxy(conf, ["smtp"], starttlsd_binary())
    try:
        victim = wait_children(proxy.proc.pid, 2)[0]
        os.kill(victim, signal.SIGKILL)
        assert proxy.log.wait_for(r"worker %d killed by signal 9; starting another" % victim), proxy.log.text()
        assert victim not in wait_children(proxy.proc.pid, 2)
        for _ in range(4):
            assert served_cert(proxy.port()) == der(cert[0])
    finally:
        rc = proxy.stop()
    assert rc == 1, "a lost worker shows in the supervisor's exit status:\n" + proxy.log.text()


def test_workers_stop_when_the_supervisor_is_gone(sink, cert, tmp_path):
    """The supervisor commands its workers on pipes of their own (no signals,
    so no CAP_KILL); a pipe that closes, because the supervisor died, tells
    the workers to shut down as on SIGTERM rather than serve on unsupervised."""
    conf = write_conf(tmp_path / "c.conf", {"smtp": {"backend": sink.addr}}, cert,
                      ("log_level = debug", "workers = 2"))
    proxy = Proxy(conf, ["smtp"], starttlsd_binary())
    workers = []
    try:
        workers = wait_workers(proxy, 2)
        os.kill(proxy.proc.pid, signal.SIGKILL)
        proxy.proc.wait(TIMEOUT)
        found = proxy.log.wait_for(r"worker (\d+): the supervisor is gone; shutting down", count=2)
        assert found, proxy.log.text()
        assert sorted(int(m.group(1)) for m in found) == workers

        def gone():
            return all(not os.path.exists("/proc/%d" % w) or "Z" in open("/proc/%d/stat" % w).read().split()[2]
                       for w in workers)

        assert wait_until(gone, TIMEOUT), "workers still running after their supervisor died"
    finally:
        proxy.stop()
        for w in workers:
            if os.path.exists("/proc/%d" % w):
                os.kill(w, signal.SIGKILL)  # orphans of a failed run, by PID


def test_retired_workers_finish_their_sessions_and_exit(sink, start_proxy):
    proxy = start_proxy({"smtp": {"backend": sink.addr}}, ("log_level = debug", "workers = 2"))
    old = wait_workers(proxy, 2)
    s = smtplib.SMTP("127.0.0.1", proxy.port(), timeout=TIMEOUT)
    s.starttls(context=client_context())
    s.ehlo("client.test")
    s.mail("a@example.org")
    proxy.proc.send_signal(signal.SIGHUP)
    assert proxy.log.wait_for(r"info: reloaded "), proxy.log.text()
    # The old worker without a session exits; the one with it stays.
    assert len(wait_children(proxy.proc.pid, 3)) == 3
    s.rcpt("b@example.org")
    assert s.data(b"Subject: across\r\n\r\nthe reload\r\n")[0] == 250
    s.quit()
    new = wait_children(proxy.proc.pid, 2)
    assert not set(new) & set(old)
    assert sink.msg(1, "eml") == b"Subject: across\r\n\r\nthe reload\r\n"


def test_reload_under_load_loses_no_session(sink, start_proxy, tmp_path):
    one, two, broken = (make_cert(tmp_path, n) for n in ("one.test", "two.test", "broken.test"))
    live_pem, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(one[0], live_pem)
    shutil.copy(one[1], live_key)
    proxy = start_proxy({"smtp": {"backend": sink.addr, "cert": "%s %s" % (live_pem, live_key)}},
                        ("log_level = info", "workers = 2"))
    port = proxy.port()
    stop = threading.Event()
    results = {"sent": 0, "errors": []}
    lock = threading.Lock()

    def client_loop(n):
        i = 0
        while not stop.is_set() and i < 200:
            body = "Subject: load %d-%d\r\n\r\nbody %d-%d\r\n" % (n, i, n, i)
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as s:
                    s.starttls(context=client_context())
                    s.sendmail("a@example.org", ["b@example.org"], body)
                with lock:
                    results["sent"] += 1
            except Exception as e:  # every failure is reported below
                with lock:
                    results["errors"].append(repr(e))
            i += 1

    def ended():
        with lock:
            return results["sent"] + len(results["errors"])

    def more_sessions_done(count=4):
        """Wait until `count` more sessions have ended, so that each step runs under load."""
        goal = ended() + count
        assert wait_until(lambda: ended() >= goal), "the load stalled: %r" % results

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        more_sessions_done()
        shutil.copy(two[0], live_pem)
        shutil.copy(two[1], live_key)
        proxy.proc.send_signal(signal.SIGHUP)
        assert proxy.log.wait_for(r"info: reloaded ", count=1), proxy.log.text()
        more_sessions_done()
        # A key that does not match its certificate: refused, two stays.
        shutil.copy(broken[1], live_key)
        proxy.proc.send_signal(signal.SIGHUP)
        assert proxy.log.wait_for(r"reload refused, the configuration in force stays: .*"
                                  r"the key does not match the certificate"), proxy.log.text()
        more_sessions_done()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert results["errors"] == [], results["errors"][:5]
    assert served_cert(port) == der(two[0])
    wait_until(lambda: len(sink.messages()) >= results["sent"])
    assert len(sink.messages()) == results["sent"], "sink has %d of %d" % (len(sink.messages()), results["sent"])
