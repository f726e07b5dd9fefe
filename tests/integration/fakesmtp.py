"""fakesmtp.py - a scripted, misbehaving destination SMTP server for the
delivery tests (not a test module).

FakeSMTP binds 127.0.0.1 on a port the kernel picks, serves every
connection in its own thread, counts connections and records every
transaction. What it answers is set by keyword arguments (all optional;
the default is a well-behaved ESMTP server that accepts everything):

  busy_for=SECONDS     answer BUSY_REPLY (Microsoft 451 4.7.500) to MAIL
                       (busy_at="mail", default) or to every RCPT
                       (busy_at="rcpt") until SECONDS after start(), then
                       accept
  starttls=MODE        advertise STARTTLS and then:
                         "drop"      close right after "220 Ready to start TLS"
                         "handshake" read the ClientHello, then close
                         "refuse"    answer 454 4.7.0 TLS not available
  mail_reply=TEXT      answer TEXT to every MAIL FROM
  rcpt_reply=F         F(address) -> reply text, or None to accept
  data_reply=TEXT      answer TEXT after the message (instead of 250)
  slow=SECONDS         wait before every reply
  drop_data_conns=N    on the first N connections that reach DATA, read
                       part of the message and close the connection
                       without a reply; later connections accept
  greeting=TEXT        the 220 greeting (or a 4xx/5xx to refuse)
  pipelining, dsn, smtputf8, eightbitmime, chunking, size: EHLO keywords
  ehlo=False           answer EHLO with 502 (HELO only)

Recorded: .connections (count), .transactions (list of dicts: conn, mail,
mail_params, rcpts, rcpt_params, data (bytes, dot-unstuffed), via "DATA"
or "BDAT"), .commands (list of (conn, line)), .tls_attempts.
Every thread is a daemon; stop() closes the listener and every open
connection.
"""
import socket
import threading
import time

BUSY_REPLY = ("451 4.7.500 Server busy. Please try again later from [127.0.0.1]. (AS761)")
S3150_REPLY = ("550 5.7.1 Unfortunately, messages from [127.0.0.1] weren't sent. Please "
               "contact your Internet service provider since part of their network is on "
               "our block list (S3150). You can also refer your provider to "
               "http://mail.live.com/mail/troubleshooting.aspx#errors.")
SC001_REPLY = ("550 SC-001 (BAY004-MC1F1) Unfortunately, messages from 127.0.0.1 weren't "
               "sent. Please contact your Internet service provider since part of their "
               "network is on our block list. You can also refer your provider to "
               "http://mail.live.com/mail/troubleshooting.aspx#errors.")
NO_USER_REPLY = "550 5.1.1 <{addr}>: Recipient address rejected: User unknown"


class _Closed(Exception):
    pass


class FakeSMTP:
    def __init__(self, busy_for=0.0, busy_at="mail", starttls=None, mail_reply=None,
                 rcpt_reply=None, data_reply=None, slow=0.0, drop_data_conns=0,
                 greeting="220 fake.test.example ESMTP fakesmtp", pipelining=True, dsn=True,
                 smtputf8=True, eightbitmime=True, chunking=False, size=None, ehlo=True,
                 name="fake.test.example"):
        self.busy_for = busy_for
        self.busy_at = busy_at
        self.starttls = starttls
        self.mail_reply = mail_reply
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.slow = slow
        self.drop_data_conns = drop_data_conns
        self.greeting = greeting
        self.caps = {"pipelining": pipelining, "dsn": dsn, "smtputf8": smtputf8,
                     "8bitmime": eightbitmime, "chunking": chunking, "size": size}
        self.ehlo_ok = ehlo
        self.name = name
        self.lock = threading.Lock()
        self.connections = 0
        self.transactions = []
        self.commands = []
        self.tls_attempts = 0
        self.busy_replies = 0
        self.dropped_data = 0
        self.open_socks = set()
        self.sock = None
        self.port = None
        self.t0 = None
        self.stopping = False
        self.thread = None

    # ------------------------------------------------------------------
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        s.settimeout(0.2)
        self.sock = s
        self.port = s.getsockname()[1]
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()
        return self

    @property
    def nexthop(self):
        return f"smtp:[127.0.0.1]:{self.port}"

    def stop(self):
        self.stopping = True
        if self.thread:
            self.thread.join(5)
        if self.sock:
            self.sock.close()
            self.sock = None
        with self.lock:
            socks = list(self.open_socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass

    def delivered(self):
        """Transactions that ended with a 2xx after the message."""
        with self.lock:
            return [t for t in self.transactions if t.get("accepted")]

    def delivered_rcpts(self):
        out = []
        for t in self.delivered():
            out.extend(t["rcpts"])
        return out

    def open_connections(self):
        with self.lock:
            return len(self.open_socks)

    def busy(self):
        return self.busy_for and time.monotonic() - self.t0 < self.busy_for

    # ------------------------------------------------------------------
    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.open_socks.add(c)
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c, n):
        c.settimeout(60)
        conn = _Conn(self, c, n)
        try:
            conn.run()
        except (_Closed, OSError):
            pass
        finally:
            with self.lock:
                self.open_socks.discard(c)
            try:
                c.close()
            except OSError:
                pass


class _Conn:
    def __init__(self, srv, sock, n):
        self.srv = srv
        self.sock = sock
        self.n = n
        self.buf = b""
        self.txn = None

    def send(self, text):
        if self.srv.slow:
            time.sleep(self.srv.slow)
        self.sock.sendall(text.encode() + b"\r\n")

    def readline(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise _Closed()
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                raise _Closed()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", errors="replace")

    def readexact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise _Closed()
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def record(self, line):
        with self.srv.lock:
            self.srv.commands.append((self.n, line))

    def ehlo_lines(self, verb):
        s = self.srv
        lines = [s.name]
        if s.caps["pipelining"]:
            lines.append("PIPELINING")
        if s.caps["size"] is not None:
            lines.append(f"SIZE {s.caps['size']}")
        if s.caps["8bitmime"]:
            lines.append("8BITMIME")
        if s.caps["dsn"]:
            lines.append("DSN")
        if s.caps["smtputf8"]:
            lines.append("SMTPUTF8")
        if s.caps["chunking"]:
            lines.append("CHUNKING")
        if s.starttls:
            lines.append("STARTTLS")
        lines.append("ENHANCEDSTATUSCODES")
        return "\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{x}"
                           for i, x in enumerate(lines))

    def new_txn(self, mail, params):
        self.txn = {"conn": self.n, "mail": mail, "mail_params": params, "rcpts": [],
                    "rcpt_params": [], "refused": [], "data": None, "via": None,
                    "accepted": False}

    def run(self):
        s = self.srv
        self.send(s.greeting)
        if not s.greeting.startswith("220"):
            self.readline()
            return
        while True:
            line = self.readline()
            self.record(line)
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "LHLO"):
                if not s.ehlo_ok:
                    self.send("502 5.5.1 Error: command not implemented")
                    continue
                self.send(self.ehlo_lines(verb))
            elif verb == "HELO":
                self.send(f"250 {s.name}")
            elif verb == "STARTTLS" and s.starttls:
                with s.lock:
                    s.tls_attempts += 1
                if s.starttls == "refuse":
                    self.send("454 4.7.0 TLS not available due to local problem")
                    continue
                self.send("220 2.0.0 Ready to start TLS")
                if s.starttls == "handshake":
                    # read (part of) the ClientHello, then break the handshake
                    self.sock.settimeout(10)
                    if not self.buf:
                        self.sock.recv(16384)
                raise _Closed()
            elif verb == "MAIL":
                addr, params = _path(arg[5:] if arg.upper().startswith("FROM:") else arg)
                if s.busy() and s.busy_at == "mail":
                    with s.lock:
                        s.busy_replies += 1
                    self.send(BUSY_REPLY)
                    continue
                if s.mail_reply:
                    self.send(s.mail_reply)
                    continue
                self.new_txn(addr, params)
                self.send("250 2.1.0 Ok")
            elif verb == "RCPT":
                if self.txn is None:
                    self.send("503 5.5.1 Error: need MAIL command")
                    continue
                addr, params = _path(arg[3:] if arg.upper().startswith("TO:") else arg)
                if s.busy() and s.busy_at == "rcpt":
                    with s.lock:
                        s.busy_replies += 1
                    self.send(BUSY_REPLY)
                    continue
                r = s.rcpt_reply(addr) if s.rcpt_reply else None
                if r:
                    self.txn["refused"].append(addr)
                    self.send(r)
                    continue
                self.txn["rcpts"].append(addr)
                self.txn["rcpt_params"].append(params)
                self.send("250 2.1.5 Ok")
            elif verb == "DATA":
                if self.txn is None or not self.txn["rcpts"]:
                    self.send("554 5.5.1 Error: no valid recipients")
                    continue
                self.send("354 End data with <CR><LF>.<CR><LF>")
                self.read_data()
            elif verb == "BDAT":
                self.read_bdat(arg)
            elif verb == "RSET":
                self.txn = None
                self.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Error: command not recognized")

    def maybe_drop(self):
        s = self.srv
        with s.lock:
            if s.dropped_data < s.drop_data_conns:
                s.dropped_data += 1
                return True
        return False

    def read_data(self):
        if self.maybe_drop():
            # read a little of the message, then vanish without a reply
            self.sock.settimeout(5)
            try:
                if not self.buf:
                    self.sock.recv(1024)
            except OSError:
                pass
            raise _Closed()
        lines = []
        while True:
            line = self.readline()
            if line == ".":
                break
            if line.startswith("."):
                line = line[1:]
            lines.append(line)
        self.finish_message(("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")
                            if lines else b"", "DATA")

    def read_bdat(self, arg):
        parts = arg.split()
        try:
            n = int(parts[0])
        except (IndexError, ValueError):
            self.send("501 5.5.4 Syntax: BDAT size [LAST]")
            return
        last = len(parts) > 1 and parts[1].upper() == "LAST"
        if self.txn is not None and self.txn["data"] is None and self.maybe_drop():
            raise _Closed()
        data = self.readexact(n)
        if self.txn is None or not self.txn["rcpts"]:
            self.send("554 5.5.1 Error: no valid recipients")
            return
        self.txn["data"] = (self.txn["data"] or b"") + data
        if last:
            self.finish_message(self.txn["data"], "BDAT")
        else:
            self.send(f"250 2.0.0 {n} octets received")

    def finish_message(self, data, via):
        s = self.srv
        t = self.txn
        t["data"] = data
        t["via"] = via
        reply = s.data_reply or "250 2.0.0 Ok: queued as FAKE%d" % len(s.transactions)
        t["accepted"] = reply.startswith("2")
        with s.lock:
            s.transactions.append(t)
        self.txn = None
        self.send(reply)


def _path(text):
    text = text.strip()
    if text.startswith("<"):
        end = text.find(">")
        addr = text[1:end] if end > 0 else text[1:]
        rest = text[end + 1:] if end > 0 else ""
    else:
        addr, _, rest = text.partition(" ")
    return addr, rest.strip()
