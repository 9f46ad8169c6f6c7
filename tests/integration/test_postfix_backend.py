"""A real Postfix (TLS off) behind the proxy: with client_addr = xclient
(smtpd_authorized_xclient_hosts) and with proxy-v1/proxy-v2
(smtpd_upstream_proxy_protocol = haproxy), Postfix's own log and the
Received header it writes name the real client, not the proxy.

The client connects from 127.0.0.2 and the proxy reaches Postfix from
127.0.0.1, so the two are told apart. Messages are put on hold by Postfix
and read back with postcat; nothing is delivered anywhere."""

import os
import re
import shutil
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import TIMEOUT, client_context, free_port, wait_until

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCAT = shutil.which("postcat") or "/usr/sbin/postcat"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(POSTFIX),
                                reason="needs root and Postfix (packaging/install-deps test)")


def postfix_cmd(conf_dir, *args):
    # Postfix commands log to the terminal only when they have one.
    return subprocess.run(["script", "-qc", " ".join([POSTFIX, "-c", str(conf_dir)] + list(args)), "/dev/null"],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def postfix():
    """A private Postfix instance: one plain smtpd port, one expecting PROXY.
    Its folder must be reachable by the postfix user, unlike pytest's."""
    base = Path(tempfile.mkdtemp(prefix="starttlsd-postfix-"))
    base.chmod(0o755)
    etc, spool, data = base / "etc", base / "spool", base / "data"
    for d in (etc, spool, data):
        d.mkdir(parents=True)
    shutil.chown(data, "postfix")
    plain, proxied = free_port(), free_port()
    (etc / "main.cf").write_text("\n".join([
        "compatibility_level = 3.6",
        "queue_directory = %s" % spool,
        "data_directory = %s" % data,
        "meta_directory = /etc/postfix",
        "mail_owner = postfix",
        "setgid_group = postdrop",
        "myhostname = backend.test",
        "mydomain = backend.test",
        "mydestination = backend.test",
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        "mynetworks = 127.0.0.1/32",
        "smtpd_authorized_xclient_hosts = 127.0.0.1/32",
        "local_recipient_maps =",
        "smtpd_recipient_restrictions = check_recipient_access static:HOLD, reject_unauth_destination",
        "maillog_file_prefixes = %s" % base,
        "maillog_file = %s" % (base / "maillog"),
        "alias_maps =",
        "alias_database =",
        "biff = no",
    ]) + "\n")
    services = [line for line in open("/etc/postfix/master.cf").read().splitlines()
                if line and not line[0].isspace() and not line.startswith("#") and not line.startswith("smtp ")]
    # No chroot: the instance lives in a temporary folder.
    services = [re.sub(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)y", r"\1n", line) for line in services]
    if not any(line.startswith("postlog") for line in services):
        services.append("postlog unix-dgram n - n - 1 postlogd")
    (etc / "master.cf").write_text("\n".join(
        ["127.0.0.1:%d inet n - n - - smtpd" % plain,
         "127.0.0.1:%d inet n - n - - smtpd -o smtpd_upstream_proxy_protocol=haproxy" % proxied]
        + services) + "\n")
    out = postfix_cmd(etc, "start")
    assert "fatal" not in out.stdout, out.stdout
    try:
        wait_until((data / "master.lock").exists)
        yield {"plain": "127.0.0.1:%d" % plain, "proxied": "127.0.0.1:%d" % proxied, "base": base}
    finally:
        postfix_cmd(etc, "stop")
        shutil.rmtree(base, ignore_errors=True)


def send_from_far(port, implicit=False):
    """One message from 127.0.0.2, over STARTTLS or implicit TLS."""
    if implicit:
        s = smtplib.SMTP_SSL("127.0.0.1", port, source_address=("127.0.0.2", 0), context=client_context(),
                             timeout=TIMEOUT)
    else:
        s = smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=TIMEOUT)
        s.starttls(context=client_context())
    s.ehlo("far.test")
    assert s.sendmail("a@example.org", ["b@backend.test"], b"Subject: seen by Postfix\r\n\r\nhi\r\n") == {}
    s.quit()


def held_received(base):
    """The Received header of the one message Postfix holds."""
    hold = base / "spool" / "hold"
    held = wait_until(lambda: list(hold.glob("*")) if hold.exists() else [])
    assert len(held) == 1, held
    out = subprocess.run([POSTCAT, "-c", str(base / "etc"), "-h", str(held[0])], capture_output=True, text=True,
                         timeout=30)
    return out.stdout.split("\nSubject:")[0]


def postfix_log(base, pattern):
    """Postfix's log once it matches PATTERN: postlogd writes it after the mail is held."""
    maillog = base / "maillog"

    def read():
        return maillog.read_text() if maillog.exists() else ""

    wait_until(lambda: re.search(pattern, read()))
    return read()


def test_postfix_sees_the_client_through_xclient(postfix, proxy_for):
    proxy = proxy_for(postfix["plain"], client_addr="xclient")
    send_from_far(proxy.port("smtp"))
    received = held_received(postfix["base"])
    assert received.startswith("Received: from far.test (unknown [127.0.0.2])"), received
    log = postfix_log(postfix["base"], r": client=unknown\[")
    assert re.search(r": client=unknown\[127\.0\.0\.2\]", log), log


@pytest.mark.parametrize("mode", ["proxy-v1", "proxy-v2"])
def test_postfix_sees_the_client_through_proxy_protocol(postfix, proxy_for, mode):
    proxy = proxy_for(postfix["proxied"], client_addr=mode)
    send_from_far(proxy.port("smtps"), implicit=True)
    received = held_received(postfix["base"])
    assert received.startswith("Received: from far.test (unknown [127.0.0.2])"), received
    log = postfix_log(postfix["base"], r"connect from unknown\[")
    assert "connect from unknown[127.0.0.2]" in log and "127.0.0.1" not in log.split("connect from")[1], log
