"""Courier-MTA 1.0.16 behind starttlsd with client_addr = transparent (it
speaks neither XCLIENT nor PROXY); conf/backends/courier. Its three
daemons run in the container: authdaemond (AUTH and local-recipient
lookups), courierd (the queue and local delivery into ~/Maildir) and
esmtpd; it logs through syslog."""

import pytest

from suite import *  # noqa: F401,F403
from integration_conftest import stuff
from suite import DOMAIN, Backend, Far, assert_stored, marker, message

BACKEND = Backend(
    image="courier",
    conf="courier",
    client_addr="transparent",
    greeting=r"^220 backend\.test ESMTP$",
    log="/var/log/mail.log",
    log_client=r"courierd: newmsg,id=\S+: dns; far\.test \(\[(?:::ffff:)?%s\]\)",
    permit={"198.51.100": "127.0.0.2"},
    chunking="Courier 1.0.16 does not offer CHUNKING: its EHLO reply has no such line, and its "
             "documentation lists the ESMTP extensions it implements as AUTH, PIPELINING, DSN, "
             "SIZE and 8BITMIME (courier-doc, index.html)",
    after_dot="Courier neither answers nor executes a command in the same write as the final dot "
              "(test_after_dot_same_write)",
)


@pytest.mark.parametrize("command", ["QUIT", "MAIL"])
def test_after_dot_same_write(backend, command):
    """Courier's own behaviour, straight to Courier without the proxy: a
    command that arrives in the same write as the final dot of DATA is
    neither answered nor executed, though RFC 2920 section 3.1 lets a client
    send it so. QUIT: the connection stays open and the next command, NOOP,
    gets its own 250, not a 221. MAIL: the next command, RCPT, gets 502 (no
    MAIL given). The message is delivered all the same. Through the proxy
    the client sees the same (README, Courier-MTA notes)."""
    c = Far(backend.port)
    assert c.reply().code == 220
    assert c.cmd("EHLO far.test").code == 250
    mark = marker("dot")
    body = message(mark, b"a command in the same write as the dot\r\n")
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<rcpt@{0}>\r\nDATA\r\n".format(DOMAIN))
    assert [r.code for r in c.replies(3)] == [250, 250, 354]
    if command == "QUIT":
        c.send(stuff(body) + b".\r\nQUIT\r\n")
        assert c.reply().code == 250
        assert c.cmd("NOOP").code == 250, "the QUIT sent with the dot was executed"
    else:
        c.send(stuff(body) + b".\r\nMAIL FROM:<b@example.org>\r\n")
        assert c.reply().code == 250
        r = c.cmd("RCPT TO:<rcpt@%s>" % DOMAIN)
        assert 500 <= r.code < 600, "the MAIL sent with the dot was executed: %r" % r
    assert c.cmd("QUIT").code == 221
    assert_stored(backend.stored(mark), body)
