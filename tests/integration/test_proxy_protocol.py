"""The PROXY protocol: accept_proxy = yes takes a load balancer's v1 or v2
header (never guessed; proxy_from), and client_addr = proxy-v1 or proxy-v2
tells the backend the client's address the same way."""

import socket
import struct
import time

from conftest import CERT_NAME, TIMEOUT, Client, client_context, send_message

V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 50000 25\r\n"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(src="192.0.2.9", sport=40000, dst="198.51.100.1", dport=465):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs


def v2_local():
    return V2_SIG + b"\x20\x00\x00\x00"


def proxied(proxy_for, sink, **keys):
    return proxy_for(sink, accept_proxy="yes", **keys)


def closed_without_reply(c, timeout=TIMEOUT):
    """The proxy closes without sending a byte."""
    return c.read_to_close(timeout) == b""


def test_v1_then_starttls_session(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    c = Client(proxy.port("smtp"))
    c.send(V1)
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("STARTTLS").code == 220
    c.start_tls()
    assert c.cmd("EHLO a").code == 250
    assert send_message(c, b"Subject: via a balancer\r\n\r\nhi\r\n").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    session = proxy.wait_sessions()[0]
    assert session["client"] == "192.0.2.7:50000", session
    assert b"PROXY" not in sink.all_raw()


def test_v2_then_implicit_tls(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    sock = socket.create_connection(("127.0.0.1", proxy.port("smtps")), timeout=TIMEOUT)
    sock.sendall(v2_tcp4())
    c = Client.__new__(Client)
    c.sock = client_context().wrap_socket(sock, server_hostname=CERT_NAME)
    c.buf, c.tls = b"", True
    assert c.reply().code == 220
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    assert proxy.wait_sessions()[0]["client"] == "192.0.2.9:40000"


def test_header_and_smtp_in_one_segment_and_split_header(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    c = Client(proxy.port("smtp"))
    c.send(V1 + b"EHLO same-segment\r\n")
    assert c.reply().code == 220
    assert c.reply().code == 250, "the bytes after the header are SMTP input"
    c.close()

    c = Client(proxy.port("smtp"))
    c.send(V1[:10])
    time.sleep(0.3)
    c.send(V1[10:])
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    c.close()
    sessions = proxy.wait_sessions(2)
    assert all(s["client"] == "192.0.2.7:50000" for s in sessions), sessions
    assert b"EHLO same-segment\r\n" in sink.all_raw() and b"PROXY" not in sink.all_raw()


def test_v2_local_keeps_the_real_address(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    c = Client(proxy.port("smtp"))
    c.send(v2_local())
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    local_port = c.sock.getsockname()[1]
    c.close()
    assert proxy.wait_sessions()[0]["client"] == "127.0.0.1:%d" % local_port


def test_no_header_is_never_guessed(proxy_for, sink):
    proxy = proxied(proxy_for, sink)
    for bad in (b"EHLO client.test\r\n", V1.replace(b"\r\n", b"\n"),
                b"PROXY TCP4 192.0.2.7 198.51.100.1 050000 25\r\n", b"PROXY " + b"x" * 120 + b"\r\n"):
        c = Client(proxy.port("smtp"))
        c.send(bad)
        assert closed_without_reply(c), bad
        c.close()
    # A client that says nothing is dropped after the header timeout (at least 3 s).
    start = time.monotonic()
    c = Client(proxy.port("smtp"))
    assert closed_without_reply(c, timeout=15)
    assert time.monotonic() - start >= 3
    c.close()
    assert sink.conns() == [], "no backend connection without a valid header"


def test_proxy_from_limits_who_may_send_a_header(proxy_for, sink):
    proxy = proxied(proxy_for, sink, proxy_from="192.0.2.0/24")
    # 127.0.0.1 is not listed: it is a direct client, and a header from it ends it.
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    c.close()
    c = Client(proxy.port("smtp"))
    assert c.reply().code == 220
    c.send(V1)
    assert c.read_to_close() == b""
    c.close()
    assert b"PROXY" not in sink.wait_done(2)


# --- client_addr = proxy-v1 | proxy-v2: the header towards the backend -------

def parse_v1(header):
    assert header.endswith(b"\r\n") and len(header) <= 107, header
    fields = header[:-2].decode().split(" ")
    assert fields[0] == "PROXY" and len(fields) == 6, header
    return fields[1], (fields[2], int(fields[4])), (fields[3], int(fields[5]))


def parse_v2(header):
    """(family, source, destination, TLVs) of a v2 PROXY header."""
    assert header[:12] == V2_SIG and header[12] == 0x21, header
    length = int.from_bytes(header[14:16], "big")
    assert len(header) == 16 + length
    if header[13] == 0x11:
        src = (socket.inet_ntop(socket.AF_INET, header[16:20]), int.from_bytes(header[24:26], "big"))
        dst = (socket.inet_ntop(socket.AF_INET, header[20:24]), int.from_bytes(header[26:28], "big"))
        pos = 28
    else:
        assert header[13] == 0x21, header
        src = (socket.inet_ntop(socket.AF_INET6, header[16:32]), int.from_bytes(header[48:50], "big"))
        dst = (socket.inet_ntop(socket.AF_INET6, header[32:48]), int.from_bytes(header[50:52], "big"))
        pos = 52
    tlvs = {}
    while pos < len(header):
        kind, size = header[pos], int.from_bytes(header[pos + 1:pos + 3], "big")
        tlvs[kind] = header[pos + 3:pos + 3 + size]
        pos += 3 + size
    return header[13], src, dst, tlvs


def header_at_sink(sink, n=1):
    sink.wait_done(n)
    path = sink.dir / ("conn-%d.proxy" % n)
    assert path.exists(), sink.dump()
    return path.read_bytes()


def test_proxy_v1_to_backend(start_sink, proxy_for):
    sink = start_sink("--proxy-protocol")
    proxy = proxy_for(sink, client_addr="proxy-v1")
    c = Client(proxy.port("smtp"))
    local = c.sock.getsockname()
    assert c.reply().code == 220, "the greeting comes after the header"
    assert c.cmd("EHLO a").code == 250
    assert c.cmd("QUIT").code == 221
    c.close()
    family, src, dst = parse_v1(header_at_sink(sink))
    assert family == "TCP4" and src == ("127.0.0.1", local[1]) and dst == ("127.0.0.1", proxy.port("smtp"))
    assert sink.raw(1).startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")
    assert sink.raw(1).count(b"PROXY") == 1, "sent once"


def test_proxy_v2_to_backend_with_tls_facts(start_sink, proxy_for):
    sink = start_sink("--proxy-protocol")
    proxy = proxy_for(sink, client_addr="proxy-v2")
    sock = socket.create_connection(("127.0.0.1", proxy.port("smtps")), timeout=TIMEOUT)
    local = sock.getsockname()
    c = Client.__new__(Client)
    c.sock = client_context().wrap_socket(sock, server_hostname=CERT_NAME)
    c.buf, c.tls = b"", True
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    c.close()
    family, src, dst, tlvs = parse_v2(header_at_sink(sink))
    assert family == 0x11 and src == ("127.0.0.1", local[1]) and dst == ("127.0.0.1", proxy.port("smtps"))
    assert tlvs[0x02] == CERT_NAME.encode(), tlvs  # PP2_TYPE_AUTHORITY: the SNI name
    ssl_tlv = tlvs[0x20]
    assert ssl_tlv[0] & 0x01, "PP2_CLIENT_SSL"
    assert b"TLS1.3" in ssl_tlv, ssl_tlv


def test_proxy_header_carries_the_balancers_client(start_sink, proxy_for):
    """accept_proxy in, proxy-v2 out: the backend learns the original client,
    IPv6 included."""
    sink = start_sink("--proxy-protocol")
    proxy = proxy_for(sink, accept_proxy="yes", client_addr="proxy-v2")
    c = Client(proxy.port("smtp"))
    c.send(b"PROXY TCP6 2001:db8::7 2001:db8::25 50000 25\r\n")
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    c.close()
    family, src, dst, tlvs = parse_v2(header_at_sink(sink))
    assert family == 0x21 and src == ("2001:db8::7", 50000) and dst == ("2001:db8::25", 25)
    assert 0x20 not in tlvs, "no TLS facts before STARTTLS"


def v2_tcp4_with_tlvs(tlv_bytes, src="192.0.2.9", sport=40000, dst="198.51.100.1", dport=25):
    """A v2 header whose TLVs fill TLV_BYTES, as cloud load balancers send:
    PP2_TYPE_AWS (a VPC endpoint id), a GCP PSC connection id, a unique id,
    and a vendor TLV with the rest."""
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)

    def tlv(kind, value):
        return bytes([kind]) + struct.pack("!H", len(value)) + value

    tlvs = tlv(0xEA, b"\x01vpce-0123456789abcdef0") + tlv(0xE0, b"\x00\x00\x00\x00\x12\x34\x56\x78")
    tlvs += tlv(0x05, b"u" * 128)
    tlvs += tlv(0xE1, bytes(i % 251 for i in range(tlv_bytes - len(tlvs) - 3)))
    return V2_SIG + b"\x21\x11" + struct.pack("!H", len(addrs) + len(tlvs)) + addrs + tlvs


def test_v2_header_of_3_kib_with_tlvs(start_sink, proxy_for):
    sink = start_sink("--proxy-protocol")
    proxy = proxy_for(sink, accept_proxy="yes", client_addr="proxy-v1")
    header = v2_tcp4_with_tlvs(3000)
    assert 3000 < len(header) < 3100
    c = Client(proxy.port("smtp"))
    c.send(header + b"EHLO behind.a.balancer\r\n")
    assert c.reply().code == 220
    assert c.reply().code == 250, "the bytes after the header are SMTP input"
    assert c.cmd("QUIT").code == 221
    c.close()
    assert proxy.wait_sessions()[0]["client"] == "192.0.2.9:40000"
    family, src, dst = parse_v1(header_at_sink(sink))
    assert family == "TCP4" and src == ("192.0.2.9", 40000) and dst == ("198.51.100.1", 25)


def test_v2_header_size_limit(proxy_for, sink):
    """16 KiB (the client input buffer) is the limit: at it, accepted; one byte over, refused."""
    proxy = proxied(proxy_for, sink)
    largest = v2_tcp4_with_tlvs(16384 - 16 - 12)
    assert len(largest) == 16384
    c = Client(proxy.port("smtp"))
    c.send(largest)
    assert c.reply().code == 220
    assert c.cmd("QUIT").code == 221
    c.close()
    c = Client(proxy.port("smtp"))
    c.send(v2_tcp4_with_tlvs(16384 - 16 - 12 + 1))
    assert closed_without_reply(c)
    c.close()
    sessions = {s["end"]: s for s in proxy.wait_sessions(2)}
    assert sorted(sessions) == ["proxy-header-invalid", "quit"], sessions
    assert sessions["quit"]["client"] == "192.0.2.9:40000"
