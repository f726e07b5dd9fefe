"""test_report.py - `sluice report` end to end.

Golden files per log format (tests/data/report/*.log -> *.json, written
from each MTA's real line formats, including the lines quoted in the seed
documents); gzip, several files and stdin; filters and --trace; malformed,
binary and interleaved lines; year rollover; the HTML page in headless
Chromium; and a log written by a real Debian Postfix (private instance,
smtp-source -> postfix -> smtp-sink / a scripted 4xx/5xx peer) whose totals
must agree with pflogsumm's.

Regenerate the golden files after an intended change with
SLUICE_UPDATE_GOLDEN=1 (then read the diff).
"""
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import ROOT, SLUICE, PYTHON

DATA = os.path.join(ROOT, "tests", "data", "report")
GEN = os.path.join(ROOT, "bench", "gen_postfix_log.py")
UPDATE = os.environ.get("SLUICE_UPDATE_GOLDEN") == "1"
CHROMIUM = shutil.which("chromium")
PFLOGSUMM = shutil.which("pflogsumm")


def report(*args, stdin=None, check=True):
    p = subprocess.run([SLUICE, "report", *args], input=stdin, capture_output=True,
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError("sluice report %s: exit %d\n%s" % (
            " ".join(args), p.returncode, p.stderr.decode(errors="replace")[-3000:]))
    return p


def report_json(*args, stdin=None):
    return json.loads(report("--json", *args, stdin=stdin).stdout)


def strip_volatile(doc):
    doc = dict(doc)
    doc.pop("generator", None)
    return doc


class Golden(unittest.TestCase):
    """Each format's log against its golden JSON (and hand-checked totals)."""

    def golden(self, name, *args):
        doc = strip_volatile(report_json("--year", "2024", *args,
                                         os.path.join(DATA, name + ".log")))
        path = os.path.join(DATA, name + ".json")
        if UPDATE or not os.path.exists(path):
            with open(path, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.write("\n")
        with open(path) as f:
            want = json.load(f)
        self.assertEqual(doc, want, "%s: output differs from %s" % (name, path))
        return doc

    def test_postfix(self):
        d = self.golden("postfix")
        t = d["totals"]
        # counted by hand from postfix.log, pflogsumm's definitions
        self.assertEqual((t["received"], t["delivered"], t["deferred"], t["deferrals"],
                          t["bounced"], t["rejected"]), (6, 7, 1, 2, 1, 4))
        self.assertEqual(d["messages"]["reinjected"], 1)      # amavis-style re-injection
        # counted once: 3F1A+4C2B, 5D1E, 6E2F, 7A0B, its notice 8B1C, 9C2D (rejected
        # by cleanup), AD3E (expired)
        self.assertEqual(d["messages"]["messages"], 7)
        self.assertEqual(d["messages"]["still_queued"], 0)
        self.assertEqual(d["messages"]["expired"], 1)
        self.assertEqual(d["input"]["unparsed"], 1)
        # year rollover: Dec 31 2024 then Jan 1 2025
        self.assertEqual([x["date"] for x in d["per_day"]], ["2024-12-31", "2025-01-01"])
        # the seed's "lost connection after STARTTLS" (Postfix 3.10 NOQUEUE form too)
        tls = d["tls"]
        self.assertEqual(tls["inbound"]["lost_after_starttls"], 3)
        self.assertEqual(tls["inbound"]["failed"], 4)
        self.assertEqual(tls["networks"][0]["network"], "157.56.112.0/24")
        self.assertEqual(tls["inbound"]["protocols"], {"TLSv1.2": 1})
        self.assertEqual(tls["outbound"]["protocols"], {"TLSv1.3": 1})
        self.assertEqual(d["totals"]["delivered"], 7)      # the tls= (3.11) line too
        prov = {p["provider"]: p for p in d["providers"]}
        self.assertEqual(prov["Microsoft"]["classes"], {"busy": 1, "reputation_block": 1})
        self.assertEqual(prov["Yahoo"]["classes"], {"rate_limited": 1})
        self.assertEqual(prov["Google"]["sent"], 1)
        g = d["greylisting"]["inbound"]
        self.assertEqual((g["greylisted"], g["passed"], g["retried_from_other_ip"]), (1, 1, 1))
        self.assertEqual(d["master"], [{"text": "reload -- version 3.7.11, configuration "
                                                "/etc/postfix", "count": 1}])

    def test_sendmail(self):
        d = self.golden("sendmail")
        t = d["totals"]
        self.assertEqual((t["received"], t["delivered"], t["deferred"], t["bounced"],
                          t["rejected"]), (5, 6, 1, 1, 1))
        self.assertEqual(t["bytes_received"], 1520 + 12000 + 12500 + 3000 + 4000)
        # the seed's delivery to Outlook via mx3.hotmail.com is Microsoft's
        prov = {p["provider"]: p for p in d["providers"]}
        self.assertEqual(prov["Microsoft"]["sent"], 3)
        self.assertEqual(d["tls"]["inbound"]["failed"], 1)
        self.assertEqual(d["tls"]["outbound"]["ok"], 1)
        self.assertEqual(d["input"]["parsed"]["sendmail"], 19)

    def test_exim(self):
        d = self.golden("exim")
        t = d["totals"]
        self.assertEqual((t["received"], t["delivered"], t["deferred"], t["bounced"],
                          t["rejected"]), (2, 4, 1, 1, 1))
        self.assertEqual(d["messages"]["messages"], 2)     # 16- and 23-character ids
        self.assertEqual(d["tls"]["inbound"]["failed"], 1)
        self.assertEqual(d["tls"]["inbound"]["protocols"], {"TLSv1.3": 1})
        self.assertEqual(d["input"]["unparsed"], 1)

    def test_sluice(self):
        d = self.golden("sluice")
        t = d["totals"]
        self.assertEqual((t["received"], t["delivered"], t["deferred"], t["deferrals"]),
                         (1, 2, 1, 1))
        prov = {p["provider"]: p for p in d["providers"]}
        self.assertEqual(prov["Microsoft"]["classes"], {"rate_limited": 1})
        self.assertEqual(d["tls"]["inbound"]["lost_after_starttls"], 1)

    def test_malformed(self):
        out = tempfile.mktemp(prefix="sluice-unparsed-")
        try:
            d = self.golden("malformed", "--unparsed", out)
            with open(out, "rb") as f:
                unparsed = f.read().splitlines()
        finally:
            if os.path.exists(out):
                os.unlink(out)
        self.assertEqual(d["input"]["cut"], 1)
        self.assertEqual(d["input"]["other_programs"], 1)
        self.assertEqual(len(unparsed), d["input"]["unparsed"])
        self.assertIn(b"Jan 99 00:00:03 mx postfix/smtpd[1]: connect from a.example[192.0.2.1]",
                      unparsed)
        # interleaved journeys are joined by queue id
        self.assertEqual(d["totals"]["delivered"], 3)
        self.assertEqual(d["totals"]["bytes_delivered"], 300)

    def test_text_output(self):
        out = report("--year", "2024", os.path.join(DATA, "postfix.log")).stdout.decode()
        for title in ("Grand Totals", "Per-Day Traffic Summary",
                      "Host/Domain Summary: Message Delivery", "message reject detail",
                      "Providers", "Receive-to-deliver delay", "TLS", "Greylisting",
                      "Incidents"):
            self.assertIn(title, out)
        self.assertRegex(out, r"\n\s+6\s+received\n")


class Inputs(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-report-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_rotated_files_gzip_and_stdin(self):
        with open(os.path.join(DATA, "postfix.log"), "rb") as f:
            lines = f.read().splitlines(keepends=True)
        parts = [lines[:15], lines[15:35], lines[35:]]
        names = ["maillog.2.gz", "maillog.1", "maillog"]
        now = time.time()
        for i, (name, part) in enumerate(zip(names, parts)):
            path = os.path.join(self.dir, name)
            data = b"".join(part)
            if name.endswith(".gz"):
                with gzip.open(path, "wb") as g:
                    g.write(data)
            else:
                with open(path, "wb") as f:
                    f.write(data)
            os.utime(path, (now - 3600 * (3 - i), now - 3600 * (3 - i)))
        whole = report_json("--year", "2024", os.path.join(DATA, "postfix.log"))
        # given in the wrong order: put back in time order
        args = [os.path.join(self.dir, n) for n in ("maillog", "maillog.2.gz", "maillog.1")]
        split = report_json("--year", "2024", *args)
        self.assertEqual(split["totals"], whole["totals"])
        self.assertEqual(split["messages"], whole["messages"])
        with open(os.path.join(DATA, "postfix.log"), "rb") as f:
            piped = report_json("--year", "2024", stdin=f.read())
        self.assertEqual(piped["totals"], whole["totals"])

    def test_year_inferred_from_file_time(self):
        path = os.path.join(self.dir, "maillog")
        shutil.copy(os.path.join(DATA, "postfix.log"), path)
        t = time.mktime((2025, 1, 2, 12, 0, 0, 0, 0, -1))
        os.utime(path, (t, t))
        d = report_json(path)
        self.assertEqual(d["per_day"][0]["date"], "2024-12-31")

    def test_missing_file_is_an_error(self):
        p = report(os.path.join(self.dir, "nope"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"nope", p.stderr)

    def test_help(self):
        out = report("--help").stdout.decode()
        for opt in ("--json", "--html", "--format", "--since", "--until", "--domain",
                    "--provider", "--client", "--trace", "--unparsed"):
            self.assertIn(opt, out)


class Filters(unittest.TestCase):
    LOG = os.path.join(DATA, "postfix.log")

    def test_trace_queue_id(self):
        out = report("--year", "2024", "--trace", "6E2F31C0E91", self.LOG).stdout.decode()
        self.assertIn("queue id 6E2F31C0E91", out)
        self.assertEqual(out.count("deferred <"), 2)
        self.assertIn("class rate_limited", out)
        self.assertIn("TSS04", out)

    def test_trace_message_id_follows_reinjection(self):
        d = report_json("--year", "2024", "--trace", "<new-year@outlook.com>", self.LOG)
        qids = [j["queue_id"] for j in d["journeys"]]
        self.assertEqual(sorted(qids), ["3F1A21C0E8B", "4C2B31C0E8C"])
        child = [j for j in d["journeys"] if j["queue_id"] == "4C2B31C0E8C"][0]
        self.assertEqual(child["parent"], "3F1A21C0E8B")

    def test_trace_follows_bounce_notice(self):
        d = report_json("--year", "2024", "--trace", "7A0B41C0E92", self.LOG)
        self.assertEqual(sorted(j["queue_id"] for j in d["journeys"]),
                         ["7A0B41C0E92", "8B1C51C0E93"])

    def test_trace_unknown(self):
        p = report("--year", "2024", "--trace", "NOSUCHID", self.LOG, check=False)
        self.assertEqual(p.returncode, 1)

    def test_domain(self):
        d = report_json("--year", "2024", "--domain", "gmail.com", self.LOG)
        self.assertEqual(d["totals"]["delivered"], 1)
        self.assertEqual(d["totals"]["rejected"], 0)

    def test_provider(self):
        d = report_json("--year", "2024", "--provider", "Microsoft", self.LOG)
        self.assertEqual(d["totals"]["delivered"], 1)
        self.assertEqual(d["totals"]["bounced"], 1)
        self.assertEqual(d["totals"]["deferrals"], 1)

    def test_client(self):
        d = report_json("--year", "2024", "--client", "157.56.112.0/24", self.LOG)
        self.assertEqual(d["tls"]["inbound"]["failed"], 4)
        self.assertEqual(d["totals"]["received"], 1)
        d = report_json("--year", "2024", "--client", "outlook.com", self.LOG)
        self.assertEqual(d["totals"]["received"], 1)

    def test_since_until(self):
        d = report_json("--year", "2024", "--since", "2025-01-01 00:00",
                        "--until", "2025-01-01 00:06", self.LOG)
        self.assertEqual(d["totals"]["received"], 3)
        self.assertEqual(d["totals"]["rejected"], 0)
        self.assertGreater(d["input"]["outside_window"], 0)


class Generated(unittest.TestCase):
    """A synthetic multi-day log: incidents, and the HTML page in Chromium."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sluice-report-gen-")
        cls.log = os.path.join(cls.dir, "maillog")
        with open(cls.log, "w") as f:
            subprocess.run([PYTHON, GEN, "--lines", "30000", "--days", "3"], stdout=f,
                           check=True, timeout=120)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_incidents(self):
        d = report_json("--year", "2024", self.log)
        kinds = {(i["kind"], i["key"]) for i in d["incidents"]}
        self.assertIn(("deferrals", "Microsoft"), kinds)
        self.assertIn(("tls_failures", "157.56.112.0/24"), kinds)
        ms = [i for i in d["incidents"] if i["key"] == "Microsoft"][0]
        self.assertEqual(ms["dominant_class"], "busy")
        self.assertTrue(ms["start"].startswith("2024-12-31 0"), ms["start"])
        self.assertGreater(ms["affected"], 5)

    @unittest.skipUnless(CHROMIUM, "chromium not installed (scripts/deps.sh installs it)")
    def test_html_in_chromium(self):
        page = os.path.join(self.dir, "report.html")
        report("--year", "2024", "--html", page, self.log)
        with open(page) as f:
            html = f.read()
        self.assertNotRegex(html, r"(?i)(src|href)=\"(https?:)?//")   # self-contained
        self.assertNotIn("<script", html)
        self.assertGreaterEqual(html.count("<svg"), 4)
        profile = tempfile.mkdtemp(prefix="sluice-chromium-")
        shot = os.path.join(ROOT, "build", "report-screenshot.png")
        base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--user-data-dir=" + profile,
                "--enable-logging=stderr", "--v=0"]
        try:
            dom = subprocess.run(base + ["--dump-dom", "file://" + page],
                                 capture_output=True, timeout=120)
            self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
            self.assertGreaterEqual(dom.stdout.count(b"<svg"), 4)
            self.assertNotRegex(dom.stderr.decode(errors="replace"),
                                r"CONSOLE\(|Uncaught|ERR_FILE_NOT_FOUND")
            if os.path.exists(shot):
                os.unlink(shot)
            cap = subprocess.run(base + ["--screenshot=" + shot, "--window-size=1280,2000",
                                         "file://" + page], capture_output=True, timeout=120)
            self.assertEqual(cap.returncode, 0, cap.stderr[-2000:])
            self.assertNotRegex(cap.stderr.decode(errors="replace"), r"CONSOLE\(|Uncaught")
            self.assertGreater(os.path.getsize(shot), 10000)
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def pflogsumm_totals(path):
    """pflogsumm's Grand Totals as numbers (its k/m units undone)."""
    out = subprocess.run([PFLOGSUMM, path], capture_output=True, text=True, timeout=300,
                         check=True).stdout
    def num(label):
        m = re.search(r"^\s*(\d+)([km]?)\s+%s\b" % label, out, re.M)
        if not m:
            raise AssertionError("pflogsumm output lacks %r:\n%s" % (label, out[:2000]))
        return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2)]
    m = re.search(r"deferred\s+\((\d+)\s+deferrals\)", out)
    return {"received": num("received"), "delivered": num("delivered"),
            "deferred": num("deferred"), "deferrals": int(m.group(1)) if m else 0,
            "bounced": num("bounced"), "rejected": num("rejected")}


@unittest.skipUnless(PFLOGSUMM and os.path.exists("/usr/sbin/postfix") and os.geteuid() == 0,
                     "needs root, postfix and pflogsumm (scripts/deps.sh)")
class RealPostfix(unittest.TestCase):
    """A log written by a real Debian Postfix, parsed end to end."""

    def test_real_postfix_log_agrees_with_pflogsumm(self):
        import pfpeer
        import postfix_instance
        peer = pfpeer.Peer().start()
        pf = postfix_instance.PrivatePostfix()
        pf.configure(peer.port)
        try:
            pf.start()
            pf.send("alice@src.example", "bob@sink.example", count=20, sessions=4)
            pf.send("carol@src.example", "x@bounce.example", count=2)
            pf.send("carol@src.example", "y@busy.example", count=2)
            pf.send("dave@src.example", "z@grey.example", count=3)
            pf.send("erin@src.example", "v@block.example", count=1)
            pf.send("eve@src.example", "w@reject.example", count=2)
            ok = pf.wait_log(lambda t: t.count("status=sent") >= 26 and
                             t.count("status=deferred") >= 6 and
                             t.count("status=bounced") >= 3, 90)
            time.sleep(2)
        finally:
            pf.stop()
            peer.stop()
        try:
            self.assertTrue(ok, "postfix did not deliver in time:\n" + pf.log_text()[-3000:])
            want = pflogsumm_totals(pf.log)
            got = report_json(pf.log)
            for k, v in want.items():
                self.assertEqual(got["totals"][k], v, "%s: sluice %d, pflogsumm %d"
                                 % (k, got["totals"][k], v))
            self.assertGreaterEqual(got["totals"]["delivered"], 26)
            self.assertEqual(got["input"]["unparsed"], 0)
            classes = {c["class"] for c in got["reply_classes"]}
            self.assertTrue({"busy", "greylisted", "no_such_user",
                             "reputation_block"} <= classes, classes)
            self.assertEqual(got["greylisting"]["outbound"]["delivered_later"], 1)
        finally:
            pf.cleanup()


if __name__ == "__main__":
    unittest.main()
