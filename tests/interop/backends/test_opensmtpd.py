"""OpenSMTPD 6.8 behind starttlsd with client_addr = proxy-v2;
conf/backends/opensmtpd."""

from suite import *  # noqa: F401,F403
from suite import Backend

BACKEND = Backend(
    image="opensmtpd",
    conf="opensmtpd",
    client_addr="proxy-v2",
    greeting=r"^220 backend\.test ESMTP OpenSMTPD$",
    log=None,
    log_client=r"smtp connected address=%s ",
    permit={"198.51.100.0/24": "127.0.0.2/32"},
    chunking="OpenSMTPD 6.8 does not implement CHUNKING: its EHLO reply is 8BITMIME, "
             "ENHANCEDSTATUSCODES, SIZE, DSN, HELP, and smtpd.conf(5) has no option for BDAT",
    pipelining=False,
    auth="OpenSMTPD offers AUTH only on a TLS session (smtp_session.c: ADVERTISE_AUTH requires "
         "SF_SECURE), and the hop from starttlsd is plaintext",
    # RFC 5321 section 4.1.4 lets a client send EHLO again; OpenSMTPD 6.8
    # answers a second EHLO "503 5.5.1 Invalid command: Already identified",
    # and behind a STARTTLS listener it sees two: the client's before TLS and
    # its own after (RFC 3207 section 4.2). Its suite runs through the
    # implicit-TLS listener (client_addr carries the address either way).
    starttls="OpenSMTPD 6.8 refuses the client's second EHLO (after STARTTLS) with "
             "503 5.5.1 Already identified; use an implicit-TLS listener in front of it",
)
