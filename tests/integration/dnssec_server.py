#!/usr/bin/python3
"""dnssec_server.py - an authoritative DNS server for one DNSSEC-signed zone,
for the DANE tests: starttlsd's libunbound forwards to it (dns_resolver) and
validates what it serves against the zone's DS (dns_trust_anchor).

    dnssec_server.py --zone FILE --origin NAME [--listen 127.0.0.1:0]

Serves the zone file as signed (ldns-signzone, NSEC): an answer with its
RRSIGs, CNAMEs inside the zone followed; NODATA and NXDOMAIN with the SOA and the NSEC records that prove
them, with their RRSIGs, when the query asks for DNSSEC (DO). UDP and TCP on
the same port; an answer too big for the query's UDP size is truncated (TC)
so that the resolver asks again over TCP. Prints "listening on ADDR:PORT"
once both sockets are bound."""

import argparse
import socket
import socketserver
import struct
import sys
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone


class Zone:
    def __init__(self, path, origin):
        self.origin = dns.name.from_text(origin)
        self.zone = dns.zone.from_file(path, origin=self.origin, relativize=False, check_origin=True)
        self.names = sorted(self.zone.nodes.keys())  # canonical DNSSEC order

    def add(self, section, name, rdtype, with_sigs):
        node = self.zone.get_node(name)
        rds = node and node.get_rdataset(dns.rdataclass.IN, rdtype)
        if not rds:
            return False
        section.append(dns.rrset.from_rdata_list(name, rds.ttl, list(rds)))
        if with_sigs:
            sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
            if sigs:
                section.append(dns.rrset.from_rdata_list(name, sigs.ttl, list(sigs)))
        return True

    def covering(self, name):
        """The owner of the NSEC record whose span covers NAME."""
        before = [n for n in self.names if n < name and
                  self.zone.get_node(n).get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC)]
        return before[-1] if before else self.names[-1]

    def answer(self, query):
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        dnssec = bool(query.ednsflags & dns.flags.DO)
        if query.edns >= 0:
            resp.use_edns(0, dns.flags.DO if dnssec else 0, 1232)
        if not query.question:
            resp.set_rcode(dns.rcode.FORMERR)
            return resp
        q = query.question[0]
        qname, qtype = q.name, q.rdtype
        if not qname.is_subdomain(self.origin):
            resp.set_rcode(dns.rcode.REFUSED)
            return resp
        # Aliases are followed inside the zone (RFC 1034 section 4.3.2).
        for _ in range(8):
            node = self.zone.get_node(qname)
            target = node and qtype != dns.rdatatype.CNAME and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if not target:
                break
            self.add(resp.answer, qname, dns.rdatatype.CNAME, dnssec)
            qname = target[0].target
            if not qname.is_subdomain(self.origin):
                return resp
        if self.zone.get_node(qname) is not None:
            if self.add(resp.answer, qname, qtype, dnssec):
                return resp
            # NODATA: the name's own NSEC shows the type is absent
            self.add(resp.authority, self.origin, dns.rdatatype.SOA, dnssec)
            if dnssec:
                self.add(resp.authority, qname, dns.rdatatype.NSEC, True)
            return resp
        # NXDOMAIN, or an empty non-terminal (a name with names below it)
        empty_nonterminal = any(n.is_subdomain(qname) for n in self.names)
        if not empty_nonterminal:
            resp.set_rcode(dns.rcode.NXDOMAIN)
        self.add(resp.authority, self.origin, dns.rdatatype.SOA, dnssec)
        if dnssec:
            owners = [self.covering(qname)]
            if not empty_nonterminal:
                encloser = qname.parent()
                while self.zone.get_node(encloser) is None and encloser != self.origin:
                    encloser = encloser.parent()
                wildcard = dns.name.Name((b"*",) + encloser.labels)
                owners.append(self.covering(wildcard))
            for owner in dict.fromkeys(owners):
                self.add(resp.authority, owner, dns.rdatatype.NSEC, True)
        return resp


def serve(zone, host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            try:
                query = dns.message.from_wire(data)
            except Exception:
                return
            resp = zone.answer(query)
            limit = max(512, query.payload) if query.edns >= 0 else 512
            wire = resp.to_wire()
            if len(wire) > limit:
                resp = dns.message.make_response(query)
                resp.flags |= dns.flags.TC
                wire = resp.to_wire()
            sock.sendto(wire, self.client_address)

    class TCP(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            while True:
                head = sock.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    return
                data = sock.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                try:
                    wire = zone.answer(dns.message.from_wire(data)).to_wire()
                except Exception:
                    return
                sock.sendall(struct.pack("!H", len(wire)) + wire)

    class UDPServer(socketserver.ThreadingUDPServer):
        address_family = family
        daemon_threads = True

    class TCPServer(socketserver.ThreadingTCPServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True

    udp = UDPServer((host, 0), UDP)
    port = udp.server_address[1]
    tcp = TCPServer((host, port), TCP)
    for server in (udp, tcp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("listening on %s:%d" % (host, port), flush=True)
    threading.Event().wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zone", required=True)
    ap.add_argument("--origin", required=True)
    ap.add_argument("--listen", default="127.0.0.1")
    args = ap.parse_args()
    serve(Zone(args.zone, args.origin), args.listen)


if __name__ == "__main__":
    sys.exit(main())
