"""A second, independent backend: Postfix's smtp-sink(1)."""

import os
import re
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import Client, free_port, stop_process, TIMEOUT, wait_until

SMTP_SINK = "/usr/sbin/smtp-sink"
BODY = b"Subject: via postfix\r\n\r\n.leading dot\r\n8bit \xe9\xff\r\nend\r\n"


@pytest.fixture
def postfix_sink():
    if not os.access(SMTP_SINK, os.X_OK):
        pytest.fail("%s missing (packaging/install-deps test installs postfix)" % SMTP_SINK)
    # smtp-sink has no port-0 mode: take a port the kernel just handed out.
    port = free_port()
    # It drops privileges to -u USER, who must be able to write the dumps.
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    dump_dir = tempfile.mkdtemp(prefix="smtp-sink-")
    os.chmod(dump_dir, 0o777)
    proc = subprocess.Popen([SMTP_SINK, "-u", user, "-d", dump_dir + "/%H%M%S",
                             "127.0.0.1:%d" % port, "100"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                stop_process(proc)
                pytest.fail("smtp-sink did not start on port %d: %s" % (port, out))
            time.sleep(0.05)
    # That probe connection counts as one session; it is harmless.
    yield "127.0.0.1:%d" % port, dump_dir
    stop_process(proc)
    shutil.rmtree(dump_dir, ignore_errors=True)


def test_swaks_through_proxy_to_smtp_sink(postfix_sink, proxy_for, tmp_path):
    backend, dump_dir = postfix_sink
    proxy = proxy_for(backend)
    body = tmp_path / "body.eml"
    body.write_bytes(BODY)
    out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % proxy.port("smtp"), "--tls",
                          "--from", "a@example.org", "--to", "b@example.org",
                          "--data", "@" + str(body), "--timeout", str(TIMEOUT)],
                         capture_output=True, timeout=30)
    text = out.stdout.decode("latin-1")
    assert out.returncode == 0, text + out.stderr.decode("latin-1")
    # The reply to the end of data, inside TLS.
    assert re.search(r"~> \.\r?\n<~  250 ", text), text
    assert wait_until(lambda: os.listdir(dump_dir)), "smtp-sink wrote no dump"
    time.sleep(0.2)
    dumps = [open(os.path.join(dump_dir, f), "rb").read() for f in os.listdir(dump_dir)]
    assert len(dumps) == 1
    # smtp-sink stores the message unstuffed with LF line ends.
    assert BODY.replace(b"\r\n", b"\n") in dumps[0], dumps[0]
    assert b"X-Mail-Args: <a@example.org>" in dumps[0]


def test_smtp_sink_ehlo_rewritten(postfix_sink, proxy_for):
    backend, _ = postfix_sink
    proxy = proxy_for(backend)
    c = Client(proxy.port("smtp"))
    assert c.reply().lines[0].startswith("220 ")
    before = c.cmd("EHLO client.test").lines
    assert before[0] == "250-smtp-sink"
    assert before[-1] == "250 STARTTLS"
    assert sum("STARTTLS" in l.upper() for l in before) == 1
    for word in ("AUTH", "XCLIENT", "XFORWARD"):
        assert not any(word in l.upper() for l in before), (word, before)
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    after = c.cmd("EHLO client.test").lines
    assert after[0] == "250-smtp-sink"
    assert any(l[4:].startswith("AUTH PLAIN") for l in after), after
    for word in ("STARTTLS", "XCLIENT", "XFORWARD"):
        assert not any(word in l.upper() for l in after), (word, after)
    assert c.cmd("QUIT").code == 221
