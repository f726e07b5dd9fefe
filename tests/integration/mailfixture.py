"""mailfixture.py - deterministic mailbox fixtures written straight into a
private Dovecot's Maildir++ tree (fast: thousands of messages in well under
a second), plus helpers that read a mailbox back over IMAP for comparison.

A fixture has nested folders, flags and keywords, old INTERNALDATEs (file
mtimes), messages without Message-ID, duplicates (byte-identical copies),
8-bit bodies and, on request, one large message.
"""
import hashlib
import imaplib
import os
import random
import time
from collections import Counter

FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}
KEYWORDS = ["$Label1", "project-x", "$Forwarded"]


def message(i, folder, msgid=True, eightbit=False, size=0):
    hdr = [f"From: sender{i % 17}@example.org", f"To: user@example.net",
           f"Subject: message {i} in {folder}",
           f"Date: Mon, {1 + i % 28} Feb 2010 {i % 24:02d}:{i % 60:02d}:00 +0000"]
    if msgid:
        hdr.append(f"Message-ID: <{i}.{folder.replace('/', '-')}@fixture.example>")
    if eightbit:
        hdr += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit"]
        body = f"Grüße aus Zürich, message {i} — ☃\n".encode() * 5
    else:
        body = f"Body of message {i} in folder {folder}.\n".encode() * (3 + i % 7)
    if size:
        line = b"x" * 76 + b"\n"
        body = line * (size // len(line))
    return ("\n".join(hdr) + "\n\n").encode() + body


class MaildirWriter:
    def __init__(self, server, user):
        self.server, self.user = server, user
        self.n = 0

    def folder_dir(self, folder):
        d = self.server.maildir(self.user, folder)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if folder and folder != "INBOX":
            open(os.path.join(d, "maildirfolder"), "a").close()
        return d

    def add(self, folder, data, flags=(), keywords=(), when=None):
        d = self.folder_dir(folder)
        kwfile = os.path.join(d, "dovecot-keywords")
        letters = "".join(sorted(FLAG_LETTERS[f] for f in flags))
        if keywords:
            if not os.path.exists(kwfile):
                with open(kwfile, "w") as f:
                    for k, kw in enumerate(KEYWORDS):
                        f.write(f"{k} {kw}\n")
            letters += "".join(sorted(chr(ord("a") + KEYWORDS.index(k)) for k in keywords))
        self.n += 1
        name = f"{1300000000 + self.n}.M{self.n}P1.fixture,S={len(data)}:2,{letters}"
        path = os.path.join(d, "cur", name)
        with open(path, "wb") as f:
            f.write(data)
        when = when or (1104537600 + self.n * 3607)         # 2005 onwards
        os.utime(path, (when, when))

    def done(self):
        self.server.chown_tree(self.user)


def standard(server, user, scale=1.0, big=False, seed=7):
    """The migration fixture; returns the number of messages written."""
    rnd = random.Random(seed)
    w = MaildirWriter(server, user)
    s = server.sep
    plan = [("INBOX", 600), (f"Archive{s}2019", 300), (f"Archive{s}2019{s}Q1", 200),
            (f"Work{s}Projects{s}Alpha", 300), ("Sent Items", 200), ("Trash", 100),
            ("Junk", 100), ("Drafts", 50), ("Lists", 100)]
    count = 0
    for folder, n in plan:
        n = max(3, int(n * scale))
        made = []
        for i in range(n):
            data = message(count + i, folder, msgid=(i % 23 != 5), eightbit=(i % 11 == 3))
            flags = [f for k, f in enumerate(sorted(FLAG_LETTERS)) if rnd.random() < 0.3]
            kws = [k for k in KEYWORDS if rnd.random() < 0.1]
            w.add(folder, data, flags, kws)
            made.append((data, flags, kws))
        for data, flags, kws in made[:max(1, n // 50)]:        # duplicates
            w.add(folder, data, flags, kws)
            count += 1
        count += n
    if big:
        w.add("Big", message(999999, "Big", size=20 * 1024 * 1024), ["\\Seen"])
        count += 1
    w.done()
    return count


def snapshot(port, user, password, folders=None, ssl=False):
    """folder -> Counter of (sha1 of content, sorted flags, INTERNALDATE)."""
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, password)
    out = {}
    typ, data = m.list()
    names = []
    for line in data:
        flags, _, rest = line.decode().partition(") ")
        if "\\Noselect" in flags:
            continue
        sep_and_name = rest.split(" ", 1)[1]
        names.append(sep_and_name.strip('"'))
    for name in folders or names:
        typ, _ = m.select(f'"{name}"', readonly=True)
        if typ != "OK":
            continue
        typ, data = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
        c = Counter()
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = item[0].decode()
            flags = meta.split("FLAGS (", 1)[1].split(")", 1)[0].split()
            flags = " ".join(sorted(f for f in flags if f != "\\Recent"))
            idate = meta.split('INTERNALDATE "', 1)[1].split('"', 1)[0]
            c[(hashlib.sha1(item[1]).hexdigest(), flags, idate)] += 1
        out[name] = c
    m.logout()
    return out


def tree_digest(server, user):
    """Multiset of (folder dir, message content) of a Maildir tree."""
    base = os.path.join(server.dir, "mail", user)
    c = Counter()
    for root, dirs, files in os.walk(base):
        if os.path.basename(root) not in ("cur", "new", "tmp"):
            continue
        for n in files:
            with open(os.path.join(root, n), "rb") as f:
                c[(os.path.relpath(os.path.dirname(root), base),
                   n.split(":2,")[-1] if ":2," in n else "",
                   hashlib.sha1(f.read()).hexdigest())] += 1
    return c
