"""Sendmail 8.17 behind starttlsd with client_addr = transparent (it speaks
neither XCLIENT nor PROXY); conf/backends/sendmail. Mail is delivered by
mail.local into /var/mail/USER (mbox)."""

import re

from suite import *  # noqa: F401,F403
from suite import Backend


def mbox(container, user):
    """The messages of USER's mbox as they were handed to mail.local: without
    the "From " separator line, the Content-Length header mail.local adds
    after the others, and the empty line it ends each message with."""
    try:
        data = container.read("/var/mail/%s" % user)
    except FileNotFoundError:
        return []
    messages = []
    for m in re.split(rb"(?m)^(?=From )", data):
        if m:
            m = m[m.index(b"\n") + 1:-1]
            messages.append(re.sub(rb"\nContent-Length: \d+\n\n", b"\n\n", m, count=1))
    return messages


BACKEND = Backend(
    image="sendmail",
    conf="sendmail",
    client_addr="transparent",
    greeting=r"^220 backend\.test ESMTP Sendmail 8\.17\.1\.9/",
    log="/var/log/mail.log",
    log_client=r"from=<a@example\.org>, .*relay=\S* ?\[%s\]",
    permit={"198.51.100.0/24": "127.0.0.2"},
    mailbox=mbox,
    chunking="Sendmail 8.17.1 does not offer CHUNKING: its EHLO reply has no such line and "
             "cf/README has no option for it",
    # greet_pause: a client that talks before the greeting is refused.
    protocol_errors=r"pre-greeting traffic",
    trusts_proxy_address="Sendmail lets 127.0.0.1 relay whatever the access map says "
                         "(cf/m4/proto.m4, Relay_ok: \"originated locally\"): a client on the proxy's "
                         "own host may relay, so never put it behind starttlsd with client_addr = none",
)
