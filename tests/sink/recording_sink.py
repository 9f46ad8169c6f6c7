#!/usr/bin/python3
"""recording_sink - a plaintext SMTP server that records every byte it receives.

It is the demo backend of `make run` and the recording backend of the
integration tests. Per connection N (counted from 1) it writes:

  DIR/conn-N.raw   every byte received on the connection, exactly as received
  DIR/conn-N.done  created (empty) when the connection has ended
  DIR/conn-N.proxy the PROXY protocol header, with --proxy-protocol
  DIR/conn-N.peer  "ADDRESS PORT" of the connection's peer

and per accepted message M (counted from 1, across connections):

  DIR/msg-M.raw    the message data exactly as received: for DATA everything
                   after the 354 up to, not including, the ".\\r\\n" of the
                   terminating CRLF.CRLF (so it is still dot-stuffed); for BDAT
                   the chunks concatenated
  DIR/msg-M.eml    the same, dot-unstuffed (equal to .raw for BDAT)
  DIR/msg-M.env    "conn N", "from <...>" and one "rcpt <...>" line per recipient

Message files are written before the 250 reply goes out. Only CRLF.CRLF ends
DATA (RFC 5321 section 4.1.1.4); commands end with CRLF. Replies carry RFC 3463
enhanced status codes. Standard library only.
"""

import argparse
import base64
import codecs
import os
import signal
import socket
import sys
import threading

DEFAULT_CAPS = ("PIPELINING,8BITMIME,SIZE 52428800,CHUNKING,AUTH PLAIN LOGIN,"
                "STARTTLS,XCLIENT NAME ADDR,ENHANCEDSTATUSCODES")


class Closed(Exception):
    """The client went away, or the session is over."""


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.value = 0

    def next(self):
        with self.lock:
            self.value += 1
            return self.value


class Session:
    def __init__(self, sock, conn_id, opts, msg_counter):
        self.sock = sock
        self.conn_id = conn_id
        self.opts = opts
        self.msg_counter = msg_counter
        self.buf = b""
        self.raw = open(os.path.join(opts.record, "conn-%d.raw" % conn_id), "wb", buffering=0)
        peer = sock.getpeername()
        with open(os.path.join(opts.record, "conn-%d.peer" % conn_id), "w") as f:
            f.write("%s %d\n" % (peer[0], peer[1]))
        self.helo = False
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpts = []
        self.bdat = None  # bytearray while a BDAT message is being received

    # --- input and output -------------------------------------------------
    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self.raw.write(chunk)
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        parts, have = [], 0
        while have < n:
            if not self.buf:
                self.fill()
            take = self.buf[:n - have]
            self.buf = self.buf[len(take):]
            parts.append(take)
            have += len(take)
        return b"".join(parts)

    def data_body(self):
        """Read to CRLF.CRLF; the CRLF ending the DATA line counts as the first CRLF."""
        body = bytearray(b"\r\n")
        start = 0
        while True:
            body += self.buf
            self.buf = b""
            end = body.find(b"\r\n.\r\n", start)
            if end >= 0:
                self.buf = bytes(body[end + 5:])
                return bytes(body[2:end + 2])
            start = max(0, len(body) - 4)
            self.fill()

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def reply(self, text):
        self.send(text + "\r\n")

    # --- the session ------------------------------------------------------
    def proxy_header(self):
        """--proxy-protocol: the PROXY v1 line or v2 block before anything
        else, stored as conn-N.proxy for the tests to parse."""
        while len(self.buf) < 16:
            self.fill()
        if self.buf.startswith(b"PROXY "):
            header = self.line() + b"\r\n"
        elif self.buf.startswith(b"\r\n\r\n\x00\r\nQUIT\n"):
            header = self.exactly(16 + int.from_bytes(self.buf[14:16], "big"))
        else:
            raise Closed()
        with open(os.path.join(self.opts.record, "conn-%d.proxy" % self.conn_id), "wb") as f:
            f.write(header)

    def run(self):
        opts = self.opts
        if opts.proxy_protocol:
            self.proxy_header()
        if opts.no_greeting:
            while True:
                self.fill()
        self.reply(opts.greeting)
        if opts.close_after_greeting:
            raise Closed()
        while True:
            line = self.line()
            verb, _, arg = line.decode("latin-1").partition(" ")
            verb = verb.upper()
            if opts.close_on and verb == opts.close_on.upper():
                raise Closed()
            handler = getattr(self, "cmd_" + verb, None) if verb.isalpha() else None
            if verb in opts.answer:
                self.misbehave(verb, arg, opts.answer[verb])
            elif handler is None:
                self.reply("502 5.5.2 Error: command not recognized")
            else:
                handler(arg)

    def cmd_EHLO(self, arg):
        self.helo = True
        self.reset()
        lines = ["sink.test"] + self.opts.caps
        for i, cap in enumerate(lines):
            self.reply(("250 " if i == len(lines) - 1 else "250-") + cap)

    def cmd_HELO(self, arg):
        self.helo = True
        self.reset()
        self.reply("250 sink.test")

    def cmd_XCLIENT(self, arg):
        self.helo = False
        self.reset()
        self.reply(self.opts.greeting)

    def cmd_MAIL(self, arg):
        if not self.helo:
            self.reply("503 5.5.1 Error: send HELO/EHLO first")
        elif self.mail_from is not None:
            self.reply("503 5.5.1 Error: nested MAIL command")
        elif not arg.upper().startswith("FROM:"):
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
        else:
            self.mail_from = arg[5:]
            self.reply("250 2.1.0 Ok")

    def cmd_RCPT(self, arg):
        if self.mail_from is None:
            self.reply("503 5.5.1 Error: need MAIL command")
        elif not arg.upper().startswith("TO:"):
            self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
        else:
            self.rcpts.append(arg[3:])
            self.reply("250 2.1.5 Ok")

    def misbehave(self, verb, arg, text):
        """--answer: TEXT instead of the real reply; after a 354 the next
        bytes are taken as a message, as a server out of step would."""
        if verb == "RCPT":
            self.rcpts.append(arg.partition(":")[2])
        self.reply(text)
        if text.startswith("354"):
            raw = self.data_body()
            self.deliver(raw, unstuff(raw))

    def cmd_DATA(self, arg):
        if not self.rcpts or self.bdat is not None:
            self.reply("503 5.5.1 Error: need RCPT command")
            return
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        raw = self.data_body()
        self.deliver(raw, unstuff(raw))

    def cmd_BDAT(self, arg):
        words = arg.split()
        if not 1 <= len(words) <= 2 or not words[0].isdigit() or \
                (len(words) == 2 and words[1].upper() != "LAST"):
            self.reply("501 5.5.4 Syntax: BDAT size [LAST]")
            return
        chunk = self.exactly(int(words[0]))  # consumed even when refused (RFC 3030)
        if not self.rcpts:
            self.reply("503 5.5.1 Error: need RCPT command")
            return
        if self.bdat is None:
            self.bdat = bytearray()
        self.bdat += chunk
        if len(words) == 2:
            data = bytes(self.bdat)
            self.deliver(data, data)
        else:
            self.reply("250 2.0.0 %d octets received" % len(chunk))

    def deliver(self, raw, eml):
        n = self.msg_counter.next()
        base = os.path.join(self.opts.record, "msg-%d" % n)
        env = "conn %d\nfrom %s\n" % (self.conn_id, self.mail_from)
        env += "".join("rcpt %s\n" % r for r in self.rcpts)
        for ext, content in ((".raw", raw), (".eml", eml), (".env", env.encode("latin-1"))):
            with open(base + ext, "wb") as f:
                f.write(content)
        self.reset()
        self.reply("250 2.0.0 Ok: queued as %d" % n)

    def cmd_RSET(self, arg):
        self.reset()
        if self.opts.fail_rset:
            self.reply("451 4.3.0 Error: RSET failed")
        else:
            self.reply("250 2.0.0 Ok")
        if self.opts.unsolicited_after_rset:
            self.send(self.opts.unsolicited_after_rset)

    def cmd_NOOP(self, arg):
        self.reply("250 2.0.0 Ok")

    def cmd_QUIT(self, arg):
        self.reply("221 2.0.0 Bye")
        raise Closed()

    def cmd_AUTH(self, arg):
        words = arg.split()
        mech = words[0].upper() if words else ""
        if mech == "PLAIN":
            response = words[1] if len(words) > 1 else self.challenge("")
        elif mech == "LOGIN":
            if len(words) == 1:
                self.challenge("VXNlcm5hbWU6")
            response = self.challenge("UGFzc3dvcmQ6")
        else:
            self.reply("504 5.5.4 Unrecognized authentication type")
            return
        if response == "*":
            self.reply("501 5.7.0 Authentication aborted")
            return
        try:
            base64.b64decode(response, validate=True)
        except ValueError:
            self.reply("501 5.5.2 Cannot decode response")
            return
        self.reply("235 2.7.0 Authentication successful")

    def challenge(self, text):
        self.reply("334 " + text)
        return self.line().decode("latin-1")

    def cmd_VRFY(self, arg):
        self.reply("502 5.5.1 VRFY command is disabled")


def unstuff(raw):
    """Remove the leading dot of every CRLF-bounded line that starts with one."""
    lines = raw.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


def serve(sock, conn_id, opts, msg_counter, done):
    session = None
    try:
        session = Session(sock, conn_id, opts, msg_counter)
        session.run()
    except (Closed, OSError):
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        if session:
            session.raw.close()
        open(os.path.join(opts.record, "conn-%d.done" % conn_id), "wb").close()
        done.release()


def parse_args(argv):
    p = argparse.ArgumentParser(description="Recording SMTP sink for starttlsd tests")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT, port 0 allowed")
    p.add_argument("--record", default=".", help="directory for conn-N.* and msg-N.*")
    p.add_argument("--caps", default=DEFAULT_CAPS, help="comma-separated EHLO capabilities")
    p.add_argument("--greeting", default="220 sink.test ESMTP")
    p.add_argument("--no-greeting", action="store_true", help="accept, then say nothing")
    p.add_argument("--close-after-greeting", action="store_true")
    p.add_argument("--close-on", metavar="VERB", help="close without a reply on VERB")
    p.add_argument("--fail-rset", action="store_true", help="answer RSET 451")
    p.add_argument("--proxy-protocol", action="store_true",
                   help="expect a PROXY v1/v2 header first; store it as conn-N.proxy")
    p.add_argument("--unsolicited-after-rset", metavar="TEXT",
                   help="write TEXT (backslash escapes decoded) after each RSET reply")
    p.add_argument("--answer", metavar="VERB=TEXT", action="append", default=[],
                   help="answer VERB with TEXT, e.g. RCPT='354 go ahead' (a backend out of step)")
    p.add_argument("--max-connections", type=int, default=0,
                   help="stop accepting after N connections, exit when they end")
    opts = p.parse_args(argv)
    opts.caps = [c.strip() for c in opts.caps.split(",") if c.strip()]
    opts.answer = dict((v.upper(), t) for v, _, t in (a.partition("=") for a in opts.answer))
    if opts.unsolicited_after_rset:
        opts.unsolicited_after_rset = codecs.escape_decode(
            opts.unsolicited_after_rset.encode())[0]
    return opts


def main(argv):
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.makedirs(opts.record, exist_ok=True)
    host, _, port = opts.listen.rpartition(":")
    host = host.strip("[]")  # an IPv6 address in brackets
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(64)
    print("listening on %s:%d" % listener.getsockname()[:2], flush=True)
    conns, msgs = Counter(), Counter()
    done = threading.Semaphore(0)
    accepted = 0
    while not opts.max_connections or accepted < opts.max_connections:
        sock, _ = listener.accept()
        accepted += 1
        threading.Thread(target=serve, args=(sock, conns.next(), opts, msgs, done),
                         daemon=True).start()
    listener.close()
    for _ in range(accepted):
        done.acquire()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        pass
