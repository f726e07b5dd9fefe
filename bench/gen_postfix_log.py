#!/usr/bin/python3
"""gen_postfix_log.py - write a synthetic Postfix log in Postfix's real line
formats (smtpd, cleanup, qmgr, smtp, local, bounce, postscreen, TLS), for
`sluice report` benchmarks and tests.

Usage: gen_postfix_log.py [--lines N] [--seed S] [--start "YYYY-MM-DD"]
                          [--days D] [--filter] > maillog

The traffic has the shape of a small provider's MX and outbound relay:
mail arrives from the Internet (some clients fail the TLS handshake, some
are rejected or greylisted), is delivered to Microsoft, Google, Yahoo and
other destinations, and a Microsoft "451 4.7.500 Server busy" episode
defers part of the mail for a few hours on the second day. --filter
routes mail through a content filter on 127.0.0.1:10024 and back in
through 127.0.0.1:10025, as amavis does.
"""
import argparse
import datetime
import random
import sys

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def pd(v):
    """A delay as Postfix prints it: 2 significant digits below 10 s, whole
    seconds above (never an exponent)."""
    if v >= 10:
        return "%d" % v
    return ("%.2g" % v) if v >= 0.01 else "0"

CLIENTS = [
    ("mail-am1on0123.outbound.protection.outlook.com", "157.56.112.{}"),
    ("mail-db8eur05on2061.outbound.protection.outlook.com", "40.107.2.{}"),
    ("mail-wm1-f54.google.com", "209.85.128.{}"),
    ("mail-sor-f41.google.com", "209.85.220.{}"),
    ("sonic301-20.consmr.mail.ir2.yahoo.com", "77.238.176.{}"),
    ("mout.gmx.net", "212.227.17.{}"),
    ("mx.example-shop.de", "198.51.100.{}"),
    ("unknown", "203.0.113.{}"),
    ("mail.uni-example.de", "192.0.2.{}"),
]
DESTS = [
    # (domain, relay host, relay ip prefix, weight)
    ("outlook.com", "outlook-com.olc.protection.outlook.com", "104.47.1.", 18),
    ("hotmail.de", "eur.olc.protection.outlook.com", "104.47.2.", 6),
    ("contoso.com", "contoso-com.mail.protection.outlook.com", "52.101.68.", 8),
    ("gmail.com", "gmail-smtp-in.l.google.com", "142.250.27.", 20),
    ("googlemail.com", "alt1.gmail-smtp-in.l.google.com", "142.250.153.", 3),
    ("yahoo.com", "mta7.am0.yahoodns.net", "67.195.204.", 6),
    ("web.de", "mx-ha03.web.de", "212.227.15.", 6),
    ("example.org", "mx.example.org", "192.0.2.", 10),
    ("uni-example.de", "mailin.uni-example.de", "198.51.100.", 8),
    ("nxdomain.example", None, None, 1),
]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
         "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "walter"]
LOCAL_DOMAINS = ["example.net", "mail.example.net"]
CIPHERS = ["ECDHE-RSA-AES256-GCM-SHA384", "TLS_AES_256_GCM_SHA384",
           "ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"]


class Gen:
    def __init__(self, args):
        self.r = random.Random(args.seed)
        self.t = datetime.datetime.strptime(args.start, "%Y-%m-%d")
        self.end = self.t + datetime.timedelta(days=args.days)
        self.span = (self.end - self.t).total_seconds()
        self.t0 = self.t
        self.lines = []
        self.limit = args.lines
        self.count = 0
        self.written = 0
        self.filter = args.filter
        self.qn = self.r.randrange(1 << 36)
        self.pid = 20000
        self.pending = []   # (time, line) for deferred retries
        self.out = sys.stdout
        self.buf = []

    def qid(self):
        self.qn = (self.qn + self.r.randrange(1, 5000)) % (1 << 40)
        return "%010X" % self.qn

    def stamp(self, t):
        return "%s %2d %02d:%02d:%02d" % (MONTHS[t.month - 1], t.day, t.hour, t.minute,
                                          t.second)

    def emit(self, t, prog, pid, msg):
        self.buf.append((t, "%s mx1 postfix/%s[%d]: %s" % (self.stamp(t), prog, pid, msg)))
        self.count += 1

    def flush(self, upto):
        self.buf.sort(key=lambda x: x[0])
        keep = []
        w = self.out.write
        for t, line in self.buf:
            if upto is None or t <= upto:
                if self.written < self.limit:   # exactly --lines lines
                    w(line + "\n")
                    self.written += 1
            else:
                keep.append((t, line))
        self.buf = keep

    def incident(self, t):
        """Microsoft 'Server busy' on day 2, 09:00-12:30."""
        d = (t - self.t0).total_seconds()
        return 86400 + 9 * 3600 <= d < 86400 + 12.5 * 3600

    def tls_incident(self, t):
        d = (t - self.t0).total_seconds()
        return 14 * 3600 <= d < 16 * 3600

    def session(self, t):
        r = self.r
        host, ipf = r.choice(CLIENTS)
        ip = ipf.format(r.randrange(1, 250))
        client = "%s[%s]" % (host, ip)
        self.pid += 1
        pid = 10000 + self.pid % 50000
        self.emit(t, "smtpd", pid, "connect from " + client)
        t += datetime.timedelta(seconds=r.random())
        outlook = "outlook" in host
        if (outlook and self.tls_incident(t) and r.random() < 0.7) or r.random() < 0.01:
            self.emit(t, "smtpd", pid, "lost connection after STARTTLS from " + client)
            self.emit(t, "smtpd", pid, "disconnect from %s ehlo=1 starttls=0/1 commands=1/2"
                      % client)
            return
        if r.random() < 0.85:
            proto = r.choice(["TLSv1.2", "TLSv1.3"])
            self.emit(t, "smtpd", pid, "Anonymous TLS connection established from %s: %s "
                      "with cipher %s (256/256 bits)" % (client, proto, r.choice(CIPHERS)))
        rcpt = "%s@%s" % (r.choice(USERS), r.choice(LOCAL_DOMAINS))
        sender = "%s@%s" % (r.choice(USERS), r.choice(["gmail.com", "outlook.com",
                                                        "example-shop.de", "web.de"]))
        x = r.random()
        if x < 0.05:
            self.emit(t, "smtpd", pid, "NOQUEUE: reject: RCPT from %s: 554 5.7.1 Service "
                      "unavailable; Client host [%s] blocked using zen.spamhaus.org; "
                      "from=<%s> to=<%s> proto=ESMTP helo=<%s>" % (client, ip, sender, rcpt,
                                                                   host))
            self.emit(t, "smtpd", pid, "disconnect from %s ehlo=1 mail=1 rcpt=0/1 quit=1 "
                      "commands=3/4" % client)
            return
        if x < 0.08:
            self.emit(t, "smtpd", pid, "NOQUEUE: reject: RCPT from %s: 450 4.2.0 <%s>: "
                      "Recipient address rejected: Greylisted, see "
                      "http://postgrey.schweikert.ch/help/%s.html; from=<%s> to=<%s> "
                      "proto=ESMTP helo=<%s>" % (client, rcpt, rcpt.split("@")[1], sender,
                                                 rcpt, host))
            self.emit(t, "smtpd", pid, "disconnect from %s ehlo=1 mail=1 rcpt=0/1 quit=1 "
                      "commands=3/4" % client)
            return
        if x < 0.10:
            bad = "nobody%d@%s" % (r.randrange(100), LOCAL_DOMAINS[0])
            self.emit(t, "smtpd", pid, "NOQUEUE: reject: RCPT from %s: 550 5.1.1 <%s>: "
                      "Recipient address rejected: User unknown in virtual mailbox table; "
                      "from=<%s> to=<%s> proto=ESMTP helo=<%s>" % (client, bad, sender, bad,
                                                                   host))
            self.emit(t, "smtpd", pid, "disconnect from %s ehlo=1 mail=1 rcpt=0/1 quit=1 "
                      "commands=3/4" % client)
            return
        self.message(t, "smtpd", pid, client, sender, [rcpt], inbound=True)
        self.emit(t, "smtpd", pid, "disconnect from %s ehlo=1 mail=1 rcpt=1 data=1 quit=1 "
                  "commands=5" % client)

    def outbound(self, t):
        r = self.r
        n = 1 if r.random() < 0.8 else r.randrange(2, 5)
        rcpts = []
        for _ in range(n):
            dom = r.choices(DESTS, weights=[d[3] for d in DESTS])[0]
            rcpts.append(("%s.%s@%s" % (r.choice(USERS), r.choice(USERS), dom[0]), dom))
        sender = "%s@%s" % (r.choice(USERS), LOCAL_DOMAINS[0])
        self.pid += 1
        pid = 10000 + self.pid % 50000
        ip = "10.0.%d.%d" % (r.randrange(0, 4), r.randrange(1, 250))
        client = "webmail.example.net[%s]" % ip
        self.emit(t, "smtpd", pid, "connect from " + client)
        self.message(t, "submission/smtpd", pid, client, sender, rcpts, inbound=False)
        self.emit(t, "smtpd", pid, "disconnect from %s ehlo=1 auth=1 mail=1 rcpt=%d data=1 "
                  "quit=1 commands=%d" % (client, len(rcpts), 5 + len(rcpts)))

    def message(self, t, smtpd, pid, client, sender, rcpts, inbound):
        r = self.r
        q = self.qid()
        size = int(r.lognormvariate(8.5, 1.2)) + 300
        msgid = "<%d.%s@%s>" % (r.randrange(10 ** 9), q.lower(), sender.split("@")[1])
        self.emit(t, smtpd, pid, "%s: client=%s%s" % (
            q, client, "" if inbound else ", sasl_method=PLAIN, sasl_username=" + sender))
        t += datetime.timedelta(seconds=0.05)
        self.emit(t, "cleanup", pid + 1, "%s: message-id=%s" % (q, msgid))
        self.emit(t, "qmgr", 1500, "%s: from=<%s>, size=%d, nrcpt=%d (queue active)"
                  % (q, sender, size, len(rcpts)))
        if self.filter:
            t += datetime.timedelta(seconds=0.3)
            q2 = self.qid()
            self.emit(t, "smtpd", pid + 3, "%s: client=localhost[127.0.0.1]" % q2)
            self.emit(t, "cleanup", pid + 1, "%s: message-id=%s" % (q2, msgid))
            self.emit(t, "qmgr", 1500, "%s: from=<%s>, size=%d, nrcpt=%d (queue active)"
                      % (q2, sender, size + 800, len(rcpts)))
            for rc in rcpts:
                addr = rc if isinstance(rc, str) else rc[0]
                self.emit(t, "smtp", pid + 2, "%s: to=<%s>, relay=127.0.0.1[127.0.0.1]:10024,"
                          " delay=0.4, delays=0.05/0/0/0.35, dsn=2.0.0, status=sent (250 2.0.0"
                          " from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as %s)"
                          % (q, addr, q2))
            self.emit(t, "qmgr", 1500, "%s: removed" % q)
            q = q2
        arrival = t
        done = t
        for rc in rcpts:
            done = max(done, self.deliver(q, arrival, t, rc, inbound, size))
        self.emit(done, "qmgr", 1500, "%s: removed" % q)

    def deliver(self, q, arrival, t, rc, inbound, size):
        r = self.r
        if inbound:
            t += datetime.timedelta(seconds=r.uniform(0.05, 1.5))
            d = (t - arrival).total_seconds()
            self.emit(t, "local" if r.random() < 0.5 else "virtual", 3000,
                      "%s: to=<%s>, relay=%s, delay=%s, delays=0.05/0.01/0/%s, dsn=2.0.0, "
                      "status=sent (delivered to maildir)" % (
                          q, rc, "local" if r.random() < 0.5 else "virtual", pd(d), pd(d)))
            return t
        addr, (dom, relay, ipp, _) = rc
        if relay is None:
            t += datetime.timedelta(seconds=r.uniform(0.1, 2))
            self.emit(t, "smtp", 4000, "%s: to=<%s>, relay=none, delay=%s, delays=0.05/0/"
                      "%s/0, dsn=5.4.4, status=bounced (Host or domain name not found. Name "
                      "service error for name=%s type=A: Host not found)" % (
                          q, addr, pd((t - arrival).total_seconds()), pd(1.0), dom))
            self.notice(q, t, addr)
            return t
        ms = "outlook" in relay
        tries = 0
        while True:
            t += datetime.timedelta(seconds=r.uniform(0.2, 3))
            d = (t - arrival).total_seconds()
            ip = ipp + str(r.randrange(1, 250))
            rel = "%s[%s]:25" % (relay, ip)
            delays = "%s/%s/%s/%s" % (pd(min(d, 0.1)), pd(0.01), pd(0.3), pd(max(d - 0.4, 0.1)))
            x = r.random()
            if ms and self.incident(t) and x < 0.6 and tries < 6:
                self.emit(t, "smtp", 4000, "%s: to=<%s>, relay=%s, delay=%s, delays=%s, "
                          "dsn=4.7.500, status=deferred (host %s[%s] said: 451 4.7.500 Server "
                          "busy. Please try again later from [192.0.2.25]. (S77714) "
                          "[AM4PEPF00027A5C.eurprd04.prod.outlook.com] (in reply to RCPT TO "
                          "command))" % (q, addr, rel, pd(d), delays, relay, ip))
            elif dom.startswith("uni-example") and x < 0.15 and tries == 0:
                self.emit(t, "smtp", 4000, "%s: to=<%s>, relay=%s, delay=%s, delays=%s, "
                          "dsn=4.7.1, status=deferred (host %s[%s] said: 451 4.7.1 "
                          "<%s>: Recipient address rejected: Greylisted for 300 seconds (in "
                          "reply to RCPT TO command))" % (q, addr, rel, pd(d), delays, relay, ip,
                                                         addr))
                t += datetime.timedelta(seconds=r.uniform(300, 900))
            elif x < 0.01:
                self.emit(t, "smtp", 4000, "%s: to=<%s>, relay=%s, delay=%s, delays=%s, "
                          "dsn=5.1.1, status=bounced (host %s[%s] said: 550 5.1.1 <%s>: "
                          "Recipient address rejected: User unknown (in reply to RCPT TO "
                          "command))" % (q, addr, rel, pd(d), delays, relay, ip, addr))
                self.notice(q, t, addr)
                return t
            elif x < 0.015 and dom == "gmail.com" and tries == 0:
                self.emit(t, "smtp", 4000, "%s: to=<%s>, relay=%s, delay=%s, delays=%s, "
                          "dsn=4.7.28, status=deferred (host %s[%s] said: 421-4.7.28 Gmail "
                          "has detected an unusual rate of unsolicited mail originating from "
                          "your IP address. (in reply to end of DATA command))"
                          % (q, addr, rel, pd(d), delays, relay, ip))
            else:
                proto = r.choice(["TLSv1.2", "TLSv1.3"])
                self.emit(t, "smtp", 4000, "Trusted TLS connection established to %s: %s with "
                          "cipher %s (256/256 bits)" % (rel, proto, r.choice(CIPHERS)))
                self.emit(t, "smtp", 4000, "%s: to=<%s>, relay=%s, delay=%s, delays=%s, "
                          "dsn=2.0.0, status=sent (250 2.0.0 OK  %d %s - gsmtp)"
                          % (q, addr, rel, pd(d), delays, r.randrange(10 ** 9), q.lower()))
                return t
            tries += 1
            t += datetime.timedelta(seconds=r.uniform(600, 1800))

    def notice(self, q, t, addr):
        q2 = self.qid()
        self.emit(t, "bounce", 5000, "%s: sender non-delivery notification: %s" % (q, q2))
        self.emit(t, "cleanup", 5001, "%s: message-id=<%s@mx1.example.net>" % (q2, q2))
        self.emit(t, "qmgr", 1500, "%s: from=<>, size=3200, nrcpt=1 (queue active)" % q2)
        self.emit(t, "local", 5002, "%s: to=<postmaster@example.net>, relay=local, delay=0.01,"
                  " delays=0/0/0/0.01, dsn=2.0.0, status=sent (delivered to mailbox)" % q2)
        self.emit(t, "qmgr", 1500, "%s: removed" % q2)

    def run(self):
        r = self.r
        per_line = 8.0
        n_events = max(1, int(self.limit / per_line))
        step = self.span / n_events
        t = self.t
        next_flush = t
        while self.count < self.limit:
            x = r.random()
            if x < 0.5:
                self.session(t)
            elif x < 0.98:
                self.outbound(t)
            else:
                self.pid += 1
                self.emit(t, "postscreen", 900, "CONNECT from [%s]:%d to [192.0.2.1]:25"
                          % ("203.0.113.%d" % r.randrange(1, 250), r.randrange(1024, 65535)))
                self.emit(t, "postscreen", 900, "PASS NEW [%s]:%d"
                          % ("203.0.113.%d" % r.randrange(1, 250), r.randrange(1024, 65535)))
            t += datetime.timedelta(seconds=r.expovariate(1.0 / step))
            if t >= next_flush:
                # retries reach at most ~4 hours ahead of the arrival
                self.flush(t - datetime.timedelta(hours=4))
                next_flush = t + datetime.timedelta(minutes=10)
        self.flush(None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", default="2024-12-30")
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--filter", action="store_true")
    Gen(ap.parse_args()).run()


if __name__ == "__main__":
    main()
