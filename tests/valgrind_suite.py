"""Integration tests with tracevaultd under valgrind's memcheck (issue 13): each test script runs
as ctest runs it, with TV_VALGRIND_DIR set, so every tracevaultd a test starts through
tvtest.Server runs under memcheck (tests/integration/tvtest/procs.py) — the release build's
binary, since valgrind cannot run an ASan one. Afterwards every memcheck report is read: an
invalid access, a use of an undefined value or a definite leak in any of them fails the run,
and the report is printed.

  valgrind_suite.py --test-build DIR --server BINARY [--source DIR] [TEST_NAME ...]

TEST_NAMEs are tests/integration file names without .py (default: every test_*.py). ctest runs
a few of them in `make test` (valgrind/server_tests); `make valgrind` runs them all. Exit 0 when
every test passed and memcheck found nothing, 1 otherwise, 77 (SKIP) when valgrind or the
server binary is missing."""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77
TEST_TIMEOUT_S = 3600  # one test script under memcheck, at most
LOG_DIR_MODE = 0o1733  # sticky, writable and searchable by all, listable by its owner only


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--test-build", required=True, help="the build dir the tests run from")
    p.add_argument("--server", required=True, help="tracevaultd built without sanitizers")
    p.add_argument("--source", default=os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))
    p.add_argument("tests", nargs="*")
    a = p.parse_args()
    if not shutil.which("valgrind"):
        print("SKIP: valgrind is not installed (scripts/deps.sh installs it)")
        return SKIP
    if not os.access(a.server, os.X_OK):
        print("SKIP: no tracevaultd without sanitizers at %s (make builds it; valgrind cannot "
              "run the ASan build)" % a.server)
        return SKIP
    integ = os.path.join(a.source, "tests", "integration")
    names = a.tests or sorted(os.path.basename(f)[:-3]
                              for f in glob.glob(os.path.join(integ, "test_*.py")))
    logs = tempfile.mkdtemp(prefix="tv-valgrind-")
    # memcheck writes its report as the daemon's uid, which a test may make nobody
    # (test_systemd_units): anyone may create a file here, none list or remove another's
    os.chmod(logs, LOG_DIR_MODE)
    env = dict(os.environ, TV_BIN_DIR=a.test_build, TV_GEN_DIR=os.path.join(a.test_build, "gen"),
               TV_SOURCE_DIR=a.source, PYTHONDONTWRITEBYTECODE="1", TV_VALGRIND_DIR=logs,
               TV_VALGRIND_SERVER=os.path.abspath(a.server))
    failed, skipped = [], []
    t_all = time.monotonic()
    try:
        for name in names:
            t0 = time.monotonic()
            r = subprocess.run(["/usr/bin/python3", os.path.join(integ, name + ".py")], env=env,
                               cwd=a.test_build, capture_output=True, text=True,
                               timeout=TEST_TIMEOUT_S)
            state = {0: "ok", SKIP: "skip"}.get(r.returncode, "FAIL(%d)" % r.returncode)
            print("%-8s %-40s %6.1f s" % (state, name, time.monotonic() - t0), flush=True)
            if r.returncode == SKIP:  # the whole file or some of its cases: say which, why
                skipped.append(name)
                print("".join("         %s\n" % ln for ln in r.stdout.splitlines()
                              if ln.startswith("SKIP:")), end="")
            elif r.returncode != 0:
                failed.append(name)
                print((r.stdout + r.stderr)[-4000:])
        bad, servers = [], 0
        for f in sorted(glob.glob(os.path.join(logs, "tracevaultd-*.log"))):
            text = open(f, errors="replace").read()
            servers += 1
            errors = [int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) errors", text)]
            lost = [int(n.replace(",", "")) for n in
                    re.findall(r"definitely lost: ([\d,]+) bytes", text)]
            # a server killed with SIGKILL (kill -9 tests) writes no summary: nothing to judge
            if any(errors) or any(lost):
                bad.append(f)
                print("memcheck report %s:\n%s" % (f, text[-6000:]))
        print("valgrind: %d tests (%d failed, %d skipped in whole or in part), %d tracevaultd "
              "runs under memcheck, "
              "%d with errors or definite leaks, %.0f s" % (
                  len(names), len(failed), len(skipped), servers, len(bad),
                  time.monotonic() - t_all))
        if failed:
            print("failed under valgrind: %s" % " ".join(failed))
        if not servers and not skipped:
            print("no tracevaultd ran under memcheck: the run proves nothing")
            return 1
        return 1 if failed or bad else 0
    finally:
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
