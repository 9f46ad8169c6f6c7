"""Postfix 3.7 behind starttlsd with client_addr = xclient, and on a second
listener with proxy-v1 and proxy-v2; conf/backends/postfix."""

import re

import pytest

from mta import wait_until
from suite import *  # noqa: F401,F403
from suite import PERMITTED, REFUSED, Backend, assert_stored, marker, message, send, session

BACKEND = Backend(
    image="postfix",
    conf="postfix",
    client_addr="xclient",
    greeting=r"^220 backend\.test ESMTP Postfix$",
    log="/var/log/postfix.log",
    log_client=r"postfix/smtpd\[\d+\]: \w+: client=unknown\[%s\]",
    permit={"198.51.100.0/24": "127.0.0.2/32"},
    protocol_errors=r"improper command pipelining|warning: .*(?:XCLIENT|haproxy)",
)


@pytest.mark.parametrize("mode", ["proxy-v1", "proxy-v2"])
def test_proxy_protocol(backend, proxy_for, mode):
    """The PROXY protocol listener (smtpd_upstream_proxy_protocol = haproxy)."""
    proxy = proxy_for(backend.addr2, client_addr=mode)
    c, *_ = session(proxy, REFUSED)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert 500 <= c.cmd("RCPT TO:<someone@remote.example>").code < 600
    assert c.cmd("RSET").code == 250
    c.close()
    c, *_ = session(proxy, PERMITTED)
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<someone@remote.example>").code == 250
    assert c.cmd("RSET").code == 250
    mark = marker(mode)
    body = message(mark, b"through %s\r\n" % mode.encode())
    assert send(c, body).code == 250
    added = assert_stored(backend.stored(mark), body)
    assert b"[127.0.0.2]" in added and b"127.0.0.1" not in added, added
    assert wait_until(lambda: re.search(r"connect from unknown\[127\.0\.0\.3\]", backend.log()))
