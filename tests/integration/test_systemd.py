"""Running under systemd without systemd: readiness notification to a
NOTIFY_SOCKET of the test's own, socket activation through
systemd-socket-activate, and the unit files checked by systemd-analyze and
setpriv (README "Running it under systemd")."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (REPO, TIMEOUT, assert_delivered, ehlo_starttls, free_port, implicit, send_message,
                      starttlsd_binary, stop_process, wait_until, write_conf)

BODY = b"Subject: through systemd\r\n\r\nhello\r\n"


class Daemon:
    """The proxy (or systemd-socket-activate execing it) with its output in a
    file, so that what it logged before a notification is there to read when
    the notification arrives."""

    def __init__(self, args, out_path, env=None):
        self.out_path = Path(out_path)
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})))

    def text(self):
        return self.out_path.read_text(errors="replace")

    def wait_log(self, pattern, count=1):
        found = wait_until(lambda: len(re.findall(pattern, self.text(), re.M)) >= count)
        assert found, "no %d lines matching %r:\n%s" % (count, pattern, self.text())

    def exit_status(self):
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            return None


@pytest.fixture
def daemons(request):
    started = []

    def start(*args, **kw):
        d = Daemon(*args, **kw)
        started.append(d)
        return d

    yield start
    problems = []
    for d in started:
        workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(d.proc.pid)], capture_output=True,
                                 text=True).stdout.split()
        rc = stop_process(d.proc)
        for pid in map(int, workers):  # none left behind by a supervisor that could not stop them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
        if failed or rc not in (0, 1):
            print("--- %s ---\n%s" % (d.out_path, d.text()))
        if rc is None:
            problems.append("%s did not exit within 20 s of SIGTERM" % d.out_path.name)
        elif re.search(r"Sanitizer|runtime error:", d.text()):
            problems.append("sanitizer report in %s" % d.out_path.name)
    if problems:
        pytest.fail("; ".join(problems))


# --- readiness -----------------------------------------------------------------

class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(TIMEOUT)

    def next(self):
        """The next notification as {key: value}; fails after TIMEOUT seconds."""
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            pytest.fail("no notification within %s s" % TIMEOUT)
        return dict(line.split("=", 1) for line in data.splitlines() if line)

    def nothing_more(self):
        self.sock.settimeout(0.5)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return True
        pytest.fail("unexpected notification %r" % data)

    def close(self):
        self.sock.close()


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@pytest.mark.parametrize("workers", [1, 2])
def test_notify_ready_reloading_stopping(tmp_path, cert, sink, daemons, workers):
    notify = NotifySocket(tmp_path / "notify")
    live_pem, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(cert[0], live_pem)
    shutil.copy(cert[1], live_key)
    conf = write_conf(tmp_path / "starttlsd.conf",
                      {"smtp": {"backend": sink.addr, "cert": "%s %s" % (live_pem, live_key)}}, cert,
                      ("log_level = debug", "workers = %d" % workers))
    proxy = daemons([starttlsd_binary(), "-f", "-c", conf], tmp_path / "proxy.out",
                    env={"NOTIFY_SOCKET": notify.path})

    ready = notify.next()
    assert ready.get("READY") == "1", ready
    assert ready.get("STATUS", "").startswith("generation 1, "), ready
    # Only once the workers accept: what they logged before saying so is
    # already in the file when READY=1 arrives.
    if workers == 1:
        assert re.search(r"listener smtp: listening on 127\.0\.0\.1:\d+", proxy.text()), proxy.text()
    else:
        assert len(re.findall(r"worker \d+: accepting as uid", proxy.text())) == 2, proxy.text()
    port = int(re.search(r"listener smtp: listening on 127\.0\.0\.1:(\d+)", proxy.text()).group(1))

    # A reload that works: RELOADING=1 stamped with the time it began, then READY=1.
    before = monotonic_usec()
    proxy.proc.send_signal(signal.SIGHUP)
    reloading = notify.next()
    assert reloading.get("RELOADING") == "1", reloading
    assert before <= int(reloading["MONOTONIC_USEC"]) <= monotonic_usec(), reloading
    ready = notify.next()
    assert ready.get("READY") == "1", ready
    assert ready.get("STATUS", "").startswith("generation 2, "), ready
    proxy.wait_log(r"info: reloaded ")
    with ehlo_starttls(port) as c:
        assert send_message(c, BODY).code == 250
    assert_delivered(sink, 1, BODY)

    # A refused reload (the certificate no longer loads) is still READY=1, on the old generation.
    live_pem.write_text("not a certificate\n")
    proxy.proc.send_signal(signal.SIGHUP)
    reloading = notify.next()
    assert reloading.get("RELOADING") == "1" and "MONOTONIC_USEC" in reloading, reloading
    ready = notify.next()
    assert ready.get("READY") == "1", ready
    assert ready.get("STATUS", "").startswith("generation 2, "), ready
    proxy.wait_log(r"error: reload refused")

    proxy.proc.send_signal(signal.SIGTERM)
    stopping = notify.next()
    assert stopping.get("STOPPING") == "1", stopping
    assert proxy.exit_status() == 0, proxy.text()
    notify.nothing_more()  # in particular no READY=1 after STOPPING=1, and none from a worker
    notify.close()


# --- socket activation -------------------------------------------------------------

def socket_activate(daemons, tmp_path, conf, ports):
    """systemd-socket-activate listening on PORTS ({fdname: port}), running
    the proxy on the first connection."""
    args = ["systemd-socket-activate"]
    for port in ports.values():
        args += ["-l", "127.0.0.1:%d" % port]
    args += ["--fdname=" + ":".join(ports), starttlsd_binary(), "-f", "-c", conf]
    d = daemons(args, tmp_path / "activate.out")
    d.wait_log(r"^Listening on 127\.0\.0\.1:\d+ as \d+\.$", count=len(ports))
    return d


def inherited_inodes(pid):
    """What the process holds as descriptors 3 and 4, where systemd puts its sockets."""
    return [os.readlink("/proc/%d/fd/%d" % (pid, fd)) for fd in (3, 4)]


@pytest.mark.parametrize("workers", [1, 2])
def test_socket_activation_serves_and_reloads_on_inherited_sockets(tmp_path, cert, sink, daemons, workers):
    # The listen lines name the very ports systemd holds: binding them
    # instead of taking the inherited sockets would fail (address in use).
    smtp_port, smtps_port = free_port(), free_port()
    conf = write_conf(tmp_path / "starttlsd.conf",
                      {"smtp": {"backend": sink.addr, "listen": "127.0.0.1:%d" % smtp_port},
                       "smtps": {"backend": sink.addr, "tls": "implicit", "listen": "127.0.0.1:%d" % smtps_port}},
                      cert, ("log_level = debug", "workers = %d" % workers))
    d = socket_activate(daemons, tmp_path, conf, {"smtp": smtp_port, "smtps": smtps_port})

    # The first connection starts the proxy, which takes it from the inherited socket.
    with ehlo_starttls(smtp_port) as c:
        assert send_message(c, BODY).code == 250
    assert_delivered(sink, 1, BODY)
    d.wait_log(r"listener smtp: listening on 127\.0\.0\.1:%d \(socket 3 from systemd\)" % smtp_port)
    d.wait_log(r"listener smtps: listening on 127\.0\.0\.1:%d \(socket 4 from systemd\)" % smtps_port)
    assert "cannot listen" not in d.text()
    with implicit(smtps_port) as c:
        assert send_message(c, BODY).code == 250
    assert_delivered(sink, 2, BODY)
    inherited = inherited_inodes(d.proc.pid)
    assert all(i.startswith("socket:") for i in inherited), inherited

    # A reload keeps the inherited sockets: nothing closed, nothing bound.
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(r"info: reloaded ")
    assert "reload refused" not in d.text(), d.text()
    with ehlo_starttls(smtp_port) as c:
        assert send_message(c, BODY).code == 250
    assert_delivered(sink, 3, BODY)
    with implicit(smtps_port) as c:
        assert send_message(c, BODY).code == 250
    assert_delivered(sink, 4, BODY)
    assert inherited_inodes(d.proc.pid) == inherited, "the inherited sockets were closed or replaced"

    # A reload that drops a listener would orphan its socket: refused, and both still serve.
    conf.write_text(conf.read_text().replace("[smtps]", "[submissions]"))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(r"error: reload refused.*socket activation: (listener submissions has no socket named "
               r"submissions|socket smtps matches no listener)")
    with implicit(smtps_port) as c:
        assert c.cmd("QUIT").code == 221
    with ehlo_starttls(smtp_port) as c:
        assert c.cmd("QUIT").code == 221

    assert stop_process(d.proc) == 0, d.text()


def test_inherited_socket_that_matches_no_listener(tmp_path, cert, sink, daemons):
    conf = write_conf(tmp_path / "starttlsd.conf", {"smtp": {"backend": sink.addr}}, cert)
    port = free_port()
    d = socket_activate(daemons, tmp_path, conf, {"smtp": port, "stray": free_port()})
    socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert d.exit_status() == 1, d.text()
    assert re.search(r"starttlsd\.conf:0: socket activation: socket stray \(fd 4\) matches no listener; "
                     r"its FileDescriptorName= must be one of the listeners: smtp$", d.text(), re.M), d.text()


def test_listener_without_inherited_socket(tmp_path, cert, sink, daemons):
    conf = write_conf(tmp_path / "starttlsd.conf",
                      {"smtp": {"backend": sink.addr}, "smtps": {"backend": sink.addr, "tls": "implicit"}}, cert)
    port = free_port()
    d = socket_activate(daemons, tmp_path, conf, {"smtp": port})
    socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert d.exit_status() == 1, d.text()
    assert re.search(r"starttlsd\.conf:\d+: socket activation: listener smtps has no socket named smtps; "
                     r"systemd passed: smtp$", d.text(), re.M), d.text()


def test_check_ignores_inherited_sockets(tmp_path, cert, sink):
    """-t checks the configuration whether or not systemd passed sockets."""
    conf = write_conf(tmp_path / "starttlsd.conf", {"smtp": {"backend": sink.addr}}, cert)
    out = subprocess.run([starttlsd_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                         timeout=TIMEOUT, env={k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")})
    assert out.returncode == 0, out.stderr


# --- the unit files ---------------------------------------------------------------------

UNITS = REPO / "packaging" / "systemd"


def unit_setting(name, key):
    """Every value KEY= takes in unit NAME, in order."""
    return [line.split("=", 1)[1] for line in (UNITS / name).read_text().splitlines() if line.startswith(key + "=")]


def test_units_verify(tmp_path):
    """systemd-analyze verify on copies of the units whose Exec lines run the built binary
    (verify insists that the command exists)."""
    d = tmp_path / "units"
    d.mkdir()
    for unit in UNITS.iterdir():
        (d / unit.name).write_text(unit.read_text().replace("/usr/sbin/starttlsd", starttlsd_binary()))
    units = sorted(str(p) for p in d.iterdir())
    assert {Path(u).suffix for u in units} == {".service", ".socket"}, units
    out = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stdout + out.stderr


def test_socket_units_name_the_example_listeners():
    """Each socket unit feeds starttlsd.service a listener of conf/starttlsd.conf."""
    sections = set(re.findall(r"^\[(\S+)\]", (REPO / "conf" / "starttlsd.conf").read_text(), re.M))
    names = set()
    for unit in UNITS.glob("*.socket"):
        assert unit_setting(unit.name, "Service") == ["starttlsd.service"], unit
        names.update(unit_setting(unit.name, "FileDescriptorName"))
    assert names == sections


def test_security_exposure_within_readme_figure():
    readme = (REPO / "README.md").read_text()
    m = re.search(r"Overall exposure level: (\d+\.\d+)", readme)
    assert m, "README states no exposure level"
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                          str(UNITS / "starttlsd.service")], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for starttlsd\.service: (\d+\.\d+)", out.stdout)
    assert found, out.stdout + out.stderr
    assert float(found.group(1)) <= float(m.group(1)), out.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to a user needs root")
def test_unit_privileges_still_let_workers_drop_to_user(tmp_path, cert, sink, daemons):
    """The unit's NoNewPrivileges= and CapabilityBoundingSet=, applied with setpriv:
    the supervisor still becomes `user` in its workers, they serve, and the
    supervisor can still retire and stop them."""
    caps = unit_setting("starttlsd.service", "CapabilityBoundingSet")[0].split()
    assert unit_setting("starttlsd.service", "NoNewPrivileges") == ["yes"]
    bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)
    conf = write_conf(tmp_path / "starttlsd.conf", {"smtp": {"backend": sink.addr}}, cert,
                      ("log_level = debug", "user = nobody", "workers = 2"))
    proxy = daemons(["setpriv", "--no-new-privs", "--bounding-set", bounding, "--inh-caps", "-all",
                     starttlsd_binary(), "-f", "-c", conf], tmp_path / "proxy.out")
    nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)
    proxy.wait_log(r"worker \d+: accepting as uid %d$" % nobody, count=2)
    port = int(re.search(r"listener smtp: listening on 127\.0\.0\.1:(\d+)", proxy.text()).group(1))
    with ehlo_starttls(port) as c:
        assert send_message(c, BODY).code == 250
    assert_delivered(sink, 1, BODY)
    # A reload retires the old workers, a stop ends them: commands on their
    # control pipes, as signals from root to `user` would take CAP_KILL,
    # which the unit does not grant.
    proxy.proc.send_signal(signal.SIGHUP)
    proxy.wait_log(r"info: reloaded ")
    assert stop_process(proxy.proc) == 0, proxy.text()
    assert "cannot tell worker" not in proxy.text()
    assert proxy.text().count("retiring with") == 2, proxy.text()
    assert "told to shut down" in proxy.text(), proxy.text()
