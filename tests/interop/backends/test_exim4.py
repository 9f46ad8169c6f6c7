"""Exim 4.96 (exim4-daemon-heavy, for its PROXY support) behind starttlsd
with client_addr = proxy-v2; conf/backends/exim4 is the configuration."""

from suite import *  # noqa: F401,F403
from suite import Backend

BACKEND = Backend(
    image="exim4-heavy",
    conf="exim4",
    client_addr="proxy-v2",
    greeting=r"^220 backend\.test ESMTP Exim 4\.96 ",
    log="/var/log/exim4/mainlog",
    log_client=r"<= a@example\.org H=\(far\.test\) \[%s\]",
    permit={"198.51.100.0/24": "127.0.0.2/32"},
    # Exim drops a client that talks ahead without PIPELINING (spec chapter
    # 14, smtp_enforce_sync); the proxy must never make it do so.
    protocol_errors=r"synchronization error|SMTP protocol error|SMTP syntax error",
)
