"""The EHLO reply as a client sees it before and after TLS (INTERFACE.md,
"SMTP behaviour"; THREATS S13, S18, S22, S49)."""

from conftest import Client


def ehlo_both_sides(port):
    """(reply before TLS, reply after TLS) from one session."""
    c = Client(port)
    assert c.reply().code == 220
    before = c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    after = c.cmd("EHLO client.test")
    assert c.cmd("QUIT").code == 221
    c.close()
    return before.lines, after.lines


def test_default_capabilities(proxy, sink):
    before, after = ehlo_both_sides(proxy.port("smtp"))
    # The sink offers: PIPELINING, 8BITMIME, SIZE 52428800, CHUNKING,
    # AUTH PLAIN LOGIN, STARTTLS, XCLIENT NAME ADDR, ENHANCEDSTATUSCODES.
    assert before == ["250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 52428800",
                      "250-CHUNKING", "250-ENHANCEDSTATUSCODES", "250 STARTTLS"]
    assert after == ["250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 52428800",
                     "250-CHUNKING", "250-AUTH PLAIN LOGIN", "250 ENHANCEDSTATUSCODES"]


def test_implicit_listener_never_offers_starttls(proxy, sink):
    c = Client(proxy.port("smtps"), tls=True)
    assert c.reply().lines == ["220 sink.test ESMTP"]
    assert c.cmd("EHLO client.test").lines == [
        "250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 52428800",
        "250-CHUNKING", "250-AUTH PLAIN LOGIN", "250 ENHANCEDSTATUSCODES"]


def test_single_line_backend_reply(start_sink, proxy_for):
    sink = start_sink("--caps", "")
    proxy = proxy_for(sink)
    before, after = ehlo_both_sides(proxy.port("smtp"))
    assert before == ["250-sink.test", "250 STARTTLS"]
    assert after == ["250 sink.test"]


def test_other_spellings_are_filtered(start_sink, proxy_for):
    # Lower case, the old AUTH= form, XFORWARD, and the backend's own STARTTLS last.
    sink = start_sink("--caps", "auth plain,AUTH=PLAIN LOGIN,xclient addr,XFORWARD NAME ADDR,"
                      "PIPELINING,8BITMIME,starttls")
    proxy = proxy_for(sink)
    before, after = ehlo_both_sides(proxy.port("smtp"))
    assert before == ["250-sink.test", "250-PIPELINING", "250-8BITMIME", "250 STARTTLS"]
    assert after == ["250-sink.test", "250-auth plain", "250-AUTH=PLAIN LOGIN",
                     "250-PIPELINING", "250 8BITMIME"]


def test_requiretls_never_offered(start_sink, proxy_for):
    """RFC 8689: offering REQUIRETLS promises TLS on every later hop, and the
    hop to the backend is plaintext; so neither before nor inside TLS."""
    sink = start_sink("--caps", "PIPELINING,REQUIRETLS,8BITMIME")
    proxy = proxy_for(sink)
    before, after = ehlo_both_sides(proxy.port("smtp"))
    assert before == ["250-sink.test", "250-PIPELINING", "250-8BITMIME", "250 STARTTLS"]
    assert after == ["250-sink.test", "250-PIPELINING", "250 8BITMIME"]
    c = Client(proxy.port("smtps"), tls=True)
    assert c.reply().code == 220
    assert c.cmd("EHLO client.test").lines == ["250-sink.test", "250-PIPELINING", "250 8BITMIME"]
    assert c.cmd("QUIT").code == 221
    c.close()


def test_auth_before_tls_yes_shows_auth(sink, proxy_for):
    proxy = proxy_for(sink, auth_before_tls="yes")
    before, after = ehlo_both_sides(proxy.port("smtp"))
    assert before == ["250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 52428800",
                      "250-CHUNKING", "250-AUTH PLAIN LOGIN", "250-ENHANCEDSTATUSCODES",
                      "250 STARTTLS"]
    assert "250-AUTH PLAIN LOGIN" in after and not any("STARTTLS" in l for l in after)


def test_helo_passes_unchanged(proxy, sink):
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("HELO client.test").lines == ["250 sink.test"]
    assert c.cmd("QUIT").code == 221
    assert sink.wait_done(1) == b"HELO client.test\r\nQUIT\r\n"
