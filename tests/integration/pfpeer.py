"""pfpeer.py - a scripted SMTP peer for report tests: answers RCPT by the
recipient's domain, the way real receivers do.

  bounce.example  550 5.1.1 ... User unknown            (bounced)
  busy.example    451 4.7.500 Server busy ... (S77714)  (deferred, always)
  grey.example    450 4.2.0 Greylisted, first try only  (deferred, then sent)
  block.example   550 5.7.1 ... (S3150)                 (bounced: reputation)
  anything else   250

Runs in a thread; every connection has a deadline so it stops by itself.
"""
import socket
import socketserver
import threading

REPLIES = {
    "bounce.example": "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    "busy.example": "451 4.7.500 Server busy. Please try again later from [127.0.0.1]. "
                    "(S77714) [AM4PEPF00027A5C.eurprd04.prod.outlook.com]",
    "block.example": "550 5.7.1 Unfortunately, messages from [127.0.0.1] weren't sent. "
                     "Please contact your Internet service provider since part of their "
                     "network is on our block list (S3150).",
}


class Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def send(self, line):
        self.wfile.write((line + "\r\n").encode())
        self.wfile.flush()

    def handle(self):
        srv = self.server
        self.send("220 peer.test ESMTP")
        while True:
            raw = self.rfile.readline(4096)
            if not raw:
                return
            cmd = raw.decode("latin-1").strip()
            up = cmd.upper()
            if up.startswith("EHLO") or up.startswith("HELO"):
                self.send("250-peer.test\r\n250 8BITMIME")
            elif up.startswith("MAIL"):
                self.send("250 2.1.0 Ok")
            elif up.startswith("RCPT"):
                rcpt = cmd[cmd.find("<") + 1:cmd.rfind(">")]
                dom = rcpt.rsplit("@", 1)[-1].lower()
                with srv.lock:
                    seen = rcpt in srv.seen
                    srv.seen.add(rcpt)
                if dom == "grey.example" and not seen:
                    self.send("450 4.2.0 <%s>: Recipient address rejected: Greylisted, "
                              "see http://postgrey.schweikert.ch/" % rcpt)
                elif dom in REPLIES:
                    self.send(REPLIES[dom].format(rcpt=rcpt))
                else:
                    self.send("250 2.1.5 Ok")
            elif up == "DATA":
                self.send("354 End data with <CR><LF>.<CR><LF>")
                while True:
                    line = self.rfile.readline(65536)
                    if not line or line in (b".\r\n", b".\n"):
                        break
                self.send("250 2.0.0 Ok: queued as PEER%04d" % srv.next_id())
            elif up == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            elif up == "RSET" or up == "NOOP":
                self.send("250 2.0.0 Ok")
            else:
                self.send("502 5.5.2 Error: command not recognized")


class Peer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port=0):
        super().__init__(("127.0.0.1", port), Handler)
        self.lock = threading.Lock()
        self.seen = set()
        self.counter = 0
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def next_id(self):
        with self.lock:
            self.counter += 1
            return self.counter

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
