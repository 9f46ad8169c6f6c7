"""Exim 4.96 (exim4-daemon-heavy, for its PROXY support) behind starttlsd
with client_addr = proxy-v2; conf/backends/exim4 is the configuration."""

from suite import *  # noqa: F401,F403
from integration_conftest import free_port, stuff
from mta import REPO, render
from suite import DOMAIN, Backend, Running, assert_stored, marker, message, session

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


def test_sync_check_not_triggered(container, proxy_for, tmp_path):
    """Exim without PIPELINING on offer drops a client that sends ahead
    ("SMTP synchronization error"). A client that pipelines anyway through
    the proxy is not such a client: the proxy gives Exim one command at a
    time (README: a backend that does not offer PIPELINING)."""
    port = free_port()
    conf = render(REPO / "conf" / "backends" / "exim4", tmp_path / "conf",
                  dict(BACKEND.permit, **{"10025": port, "pipelining_advertise_hosts = *":
                                          "pipelining_advertise_hosts = :"}))
    c = container(BACKEND.image, conf)
    c.wait_port(port)
    backend = Running(BACKEND, c, port)
    proxy = proxy_for(backend.addr, client_addr=BACKEND.client_addr)
    client, _, _, after = session(proxy)
    assert "PIPELINING" not in after.text
    mark = marker("sync")
    body = message(mark, b"sent ahead\r\n")
    client.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<rcpt@{0}>\r\nRCPT TO:<rcpt2@{0}>\r\nDATA\r\n".format(DOMAIN))
    assert [r.code for r in client.replies(4)] == [250, 250, 250, 354]
    client.send(stuff(body) + b".\r\nQUIT\r\n")
    assert [r.code for r in client.replies(2)] == [250, 221]
    assert_stored(backend.stored(mark), body)
    assert "synchronization error" not in backend.log()
