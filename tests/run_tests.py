#!/usr/bin/python3
"""run_tests.py - run every sluice test and end with 'N passed, N failed'.

Three kinds, all run by `make test`:
  unit         cmocka binaries in build/asan/tests (ASan+UBSan), TAP output
  fuzz         each libFuzzer harness in build/fuzz for a short time
  integration  tests/integration/test_*.py (unittest) against real peers,
               with the ASan build of sluice

Usage: run_tests.py [--only unit|fuzz|integration] [-k SUBSTRING]
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ_SECONDS = int(os.environ.get("SLUICE_FUZZ_SECONDS", "5"))

# LSan needs ptrace-free environments; leaks are reported by the unit tests
# and by the fuzzers. Integration runs abort on any ASan/UBSan error.
os.environ.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []

    def ok(self, name):
        self.passed += 1

    def fail(self, name, detail=""):
        self.failed += 1
        self.failures.append((name, detail))
        print(f"FAIL: {name}\n{detail}", flush=True)


def run_unit(tally, pattern):
    bins = sorted(glob.glob(os.path.join(ROOT, "build/asan/tests/test_*")))
    for b in bins:
        name = os.path.basename(b)
        if pattern and pattern not in name:
            continue
        env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="TAP")
        p = subprocess.run([b], capture_output=True, text=True, env=env, timeout=300)
        out = p.stdout + p.stderr
        oks = re.findall(r"^ok \d+ - (.*)$", out, re.M)
        bad = re.findall(r"^not ok \d+ - (.*)$", out, re.M)
        for t in oks:
            tally.ok(f"{name}:{t}")
        for t in bad:
            tally.fail(f"{name}:{t}", out[-3000:])
        if p.returncode != 0 and not bad:
            tally.fail(f"{name} (exit {p.returncode})", out[-3000:])
        print(f"unit {name}: {len(oks)} ok, {len(bad)} failed", flush=True)


def run_fuzz(tally, pattern):
    for b in sorted(glob.glob(os.path.join(ROOT, "build/fuzz/fuzz_*"))):
        name = os.path.basename(b)
        if not os.access(b, os.X_OK) or os.path.isdir(b):
            continue
        if pattern and pattern not in name:
            continue
        corpus = os.path.join(ROOT, "build/fuzz/corpus", name)
        os.makedirs(corpus, exist_ok=True)
        seeds = os.path.join(ROOT, "tests/fuzz/seeds", name)
        artifacts = os.path.join(ROOT, "build/fuzz/artifacts", name) + "/"
        os.makedirs(artifacts, exist_ok=True)
        args = [b, f"-max_total_time={FUZZ_SECONDS}", "-timeout=10",
                f"-artifact_prefix={artifacts}", corpus]
        if os.path.isdir(seeds):
            args.append(seeds)
        p = subprocess.run(args, capture_output=True, text=True, timeout=FUZZ_SECONDS + 120)
        if p.returncode == 0:
            tally.ok(name)
            print(f"fuzz {name}: ok ({FUZZ_SECONDS}s)", flush=True)
        else:
            tally.fail(f"fuzz {name}", p.stderr[-4000:])


class _Result(unittest.TextTestResult):
    pass


def run_integration(tally, pattern):
    sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = [f"*{pattern}*"]
    suite = loader.discover(os.path.join(ROOT, "tests/integration"), pattern="test_*.py",
                            top_level_dir=os.path.join(ROOT, "tests/integration"))
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=_Result)
    res = runner.run(suite)
    # a test with failing subtests appears once per subtest: count tests
    def test_id(t):
        return getattr(t, "test_case", t).id()
    bad_ids = {test_id(t) for t, _ in res.failures + res.errors}
    bad = len(bad_ids) + len(res.unexpectedSuccesses)
    tally.failed += bad
    tally.skipped += len(res.skipped)
    tally.passed += res.testsRun - bad - len(res.skipped)
    for t, tb in res.failures + res.errors:
        tally.failures.append((str(t), tb))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["unit", "fuzz", "integration"])
    ap.add_argument("-k", dest="pattern")
    args = ap.parse_args()
    os.environ.setdefault("SLUICE_BIN", os.path.join(ROOT, "build/asan/sluice"))
    tally = Tally()
    start = time.time()
    if args.only in (None, "unit"):
        run_unit(tally, args.pattern)
    if args.only in (None, "fuzz"):
        run_fuzz(tally, args.pattern)
    if args.only in (None, "integration"):
        run_integration(tally, args.pattern)
    if tally.failures:
        print("\nfailed:")
        for name, _ in tally.failures:
            print(f"  {name}")
    print(f"\n({time.time() - start:.0f}s)")
    line = f"{tally.passed} passed, {tally.failed} failed"
    if tally.skipped:
        line += f", {tally.skipped} skipped"
    print(line)
    sys.exit(1 if tally.failed else 0)


if __name__ == "__main__":
    main()
