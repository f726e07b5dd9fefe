"""fakeimap.py - a scripted IMAP server for protocol-abuse tests of
`sluice migrate`.

It speaks just enough IMAP4rev1 (CAPABILITY, LOGIN, AUTHENTICATE PLAIN and
XOAUTH2, ID, NAMESPACE, LIST, SELECT/EXAMINE, UID FETCH, APPEND, CREATE,
NOOP, LOGOUT) over an in-memory INBOX to act as either side of a migration,
and misbehaves on request (`fault`): truncated or huge literals, BYE in
the middle of a FETCH, NO on APPEND, unsolicited EXISTS/EXPUNGE, garbage,
silence. Every connection runs in its own thread; stop() closes them all.
"""
import base64
import re
import socket
import threading

from harness import free_port


def make_message(i, size=300):
    body = (f"line {i}\r\n" * (size // 10 + 1)).encode()[:size]
    return (f"Message-ID: <fake{i}@test>\r\nDate: Mon, 1 Jan 2001 10:00:{i % 60:02d} +0000\r\n"
            f"Subject: fake {i}\r\n\r\n").encode() + body


class FakeIMAP:
    def __init__(self, messages=(), fault=None, caps="IMAP4rev1 LITERAL+ UIDPLUS AUTH=PLAIN "
                 "AUTH=XOAUTH2 SASL-IR ID NAMESPACE", user="u", password="p", token=None):
        self.port = free_port()
        self.fault = fault
        self.caps = caps
        self.user, self.password, self.token = user, password, token
        self.mailbox = list(messages)          # INBOX: list of bytes
        self.appended = []
        self.auth_seen = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.conns = []
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    # ------------------------------------------------------------------
    def _session(self, c):
        f = c.makefile("rb")
        try:
            if self.fault == "garbage-greeting":
                c.sendall(b"\x00\x01\x02 garbage\r\n")
            c.sendall(b"* OK fake ready\r\n")
            while self.running:
                line = f.readline(100000)
                if not line:
                    return
                if not self._command(c, f, line.rstrip(b"\r\n")):
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _command(self, c, f, line):
        m = re.match(rb"(\S+) (\S+)(?: (.*))?$", line)
        if not m:
            c.sendall(b"* BAD what\r\n")
            return True
        tag, cmd, args = m.group(1), m.group(2).upper(), m.group(3) or b""
        if cmd == b"UID":
            sub, _, rest = args.partition(b" ")
            cmd, args = b"UID " + sub.upper(), rest
        handler = {
            b"CAPABILITY": self._capability, b"LOGIN": self._login,
            b"AUTHENTICATE": self._authenticate, b"ID": self._ok, b"NOOP": self._noop,
            b"NAMESPACE": self._namespace, b"LIST": self._list, b"SELECT": self._select,
            b"EXAMINE": self._select, b"UID FETCH": self._fetch, b"APPEND": self._append,
            b"CREATE": self._ok, b"LOGOUT": self._logout, b"UID STORE": self._ok,
            b"UID EXPUNGE": self._ok, b"EXPUNGE": self._ok, b"ENABLE": self._enable,
        }.get(cmd)
        if handler is None:
            c.sendall(tag + b" BAD unknown command\r\n")
            return True
        return handler(c, f, tag, args)

    def _ok(self, c, f, tag, args):
        c.sendall(tag + b" OK done\r\n")
        return True

    def _noop(self, c, f, tag, args):
        return self._ok(c, f, tag, args)

    def _enable(self, c, f, tag, args):
        self.enabled = args.decode()
        c.sendall(b"* ENABLED " + args + b"\r\n" + tag + b" OK enabled\r\n")
        return True

    def _capability(self, c, f, tag, args):
        c.sendall(b"* CAPABILITY " + self.caps.encode() + b"\r\n" + tag + b" OK done\r\n")
        return True

    def _login(self, c, f, tag, args):
        parts = re.findall(rb'"((?:[^"\\]|\\.)*)"|(\S+)', args)
        vals = [a or b for a, b in parts]
        self.auth_seen.append(("LOGIN", vals))
        if vals == [self.user.encode(), self.password.encode()]:
            c.sendall(tag + b" OK logged in\r\n")
        else:
            c.sendall(tag + b" NO [AUTHENTICATIONFAILED] bad password\r\n")
        return True

    def _authenticate(self, c, f, tag, args):
        mech, _, ir = args.partition(b" ")
        if not ir:
            c.sendall(b"+ \r\n")
            ir = f.readline().strip()
        raw = base64.b64decode(ir)
        self.auth_seen.append((mech.decode().upper(), raw))
        ok = False
        if mech.upper() == b"PLAIN":
            ok = raw == b"\0" + self.user.encode() + b"\0" + self.password.encode()
        elif mech.upper() == b"XOAUTH2":
            ok = self.token is not None and raw == (
                b"user=" + self.user.encode() + b"\x01auth=Bearer " + self.token.encode()
                + b"\x01\x01")
            if not ok:
                c.sendall(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
                f.readline()
        c.sendall(tag + (b" OK authenticated\r\n" if ok else
                         b" NO [AUTHENTICATIONFAILED] invalid credentials\r\n"))
        return True

    def _namespace(self, c, f, tag, args):
        c.sendall(b'* NAMESPACE (("" "/")) NIL NIL\r\n' + tag + b" OK done\r\n")
        return True

    def _list(self, c, f, tag, args):
        c.sendall(b'* LIST () "/" INBOX\r\n' + tag + b" OK done\r\n")
        return True

    def _select(self, c, f, tag, args):
        n = len(self.mailbox) + len(self.appended)
        c.sendall(b"* %d EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                  % (n, n + 1) + tag + b" OK [READ-WRITE] selected\r\n")
        return True

    def _fetch_one(self, c, uid, msg, body):
        if not body:
            hdr = msg.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            c.sendall(b"* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE \"01-Jan-2001 10:00:00 "
                      b"+0000\" RFC822.SIZE %d BODY[HEADER.FIELDS (MESSAGE-ID DATE)] {%d}\r\n"
                      % (uid, uid, len(msg), len(hdr)) + hdr + b")\r\n")
            return True
        fault = self.fault
        if fault == "truncated-literal":
            c.sendall(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(msg) + 100)
                      + msg[:20])
            c.shutdown(socket.SHUT_RDWR)
            return False
        if fault == "huge-literal":
            c.sendall(b"* %d FETCH (UID %d BODY[] {2147483648}\r\n" % (uid, uid))
            return True
        if fault == "bye-mid-fetch":
            c.sendall(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(msg)) + msg
                      + b")\r\n* BYE server shutting down\r\n")
            c.shutdown(socket.SHUT_RDWR)
            return False
        if fault == "garbage-mid-fetch":
            c.sendall(b"\x01\x02\xff)))( garbage (((\r\n")
            return True
        if fault == "unsolicited":
            c.sendall(b"* 99 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n")
        c.sendall(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(msg)) + msg + b")\r\n")
        if fault == "unsolicited":
            c.sendall(b"* 3 RECENT\r\n* OK [ALERT] still here\r\n")
        return True

    def _fetch(self, c, f, tag, args):
        body = b"BODY.PEEK[]" in args
        if self.fault == "silence" and body:
            return True
        uids = self._uids(args.split(b" ")[0])
        with self.lock:
            msgs = self.mailbox + self.appended
        for uid in uids:
            if 1 <= uid <= len(msgs):
                if not self._fetch_one(c, uid, msgs[uid - 1], body):
                    return False
        if self.fault == "huge-literal" and body:
            return True
        if self.fault == "unsolicited":
            c.sendall(b"* 2 EXPUNGE\r\n")
        c.sendall(tag + b" OK fetched\r\n")
        return True

    def _uids(self, spec):
        total = len(self.mailbox) + len(self.appended)
        out = []
        for part in spec.split(b","):
            a, _, b = part.partition(b":")
            lo = int(a) if a != b"*" else total
            hi = (total if b == b"*" else int(b)) if b else lo
            out.extend(range(lo, max(lo, hi) + 1) if lo <= hi else range(hi, lo + 1))
        return out

    def _append(self, c, f, tag, args):
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}$", args)
            if not m:
                break
            n = int(m.group(1))
            if not m.group(2):
                if self.fault == "no-append":
                    c.sendall(tag + b" NO [OVERQUOTA] mailbox is full\r\n")
                    return True
                c.sendall(b"+ go ahead\r\n")
            data = f.read(n)
            with self.lock:
                self.appended.append(data)
            args = f.readline().rstrip(b"\r\n")
            if not args.strip():
                break
        if self.fault == "no-append":
            c.sendall(tag + b" NO [OVERQUOTA] mailbox is full\r\n")
        else:
            n = len(self.mailbox) + len(self.appended)
            c.sendall(tag + b" OK [APPENDUID 42 %d] appended\r\n" % n)
        return True

    def _logout(self, c, f, tag, args):
        c.sendall(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
        return False
