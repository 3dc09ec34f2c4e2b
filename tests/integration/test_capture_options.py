"""`tracevault capture` options that decide when data moves, against nginx and the real
tracevaultd: --duration ends the capture by itself (exit 0, summary, records stored), and
--block-age seals and commits a block while the capture runs, within the age, with no flush
(a capture whose age is an hour shows nothing until it stops). --cache-bytes 1G is accepted."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

DURATION_S = 2
AGE_MS = 300
SLACK_S = 3.0  # scheduling on a shared 2-core machine; far below the one-hour contrast case


def records(srv, path):
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--to", str(2**63)],
                   check=True)
    return [r for r in map(json.loads, p.stdout.splitlines()) if r["path"] == path]


def test_duration_ends_capture(srv, ng):
    t0 = time.monotonic()
    cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid), "--duration", str(DURATION_S),
                                    "--cache-bytes", "1G", "--block-age", "1h"]).start()
    try:
        assert tvtest.curl("http://127.0.0.1:%d/index.html?d" % ng.port) == ["200"]
        _, err = cap.proc.communicate(timeout=DURATION_S + 30)  # no signal: it ends alone
    finally:
        cap.stop()
    elapsed = time.monotonic() - t0
    assert cap.proc.returncode == 0, (cap.proc.returncode, err)
    assert DURATION_S <= elapsed < DURATION_S + 10, elapsed
    nums = tvtest.parse_capture_summary(err)
    assert nums["sent"] == 1 and nums["lost"] == 0, err
    assert [(r["method"], r["status"], r["comm"]) for r in records(srv, "/index.html?d")] == \
        [("GET", 200, "nginx")]


def time_to_visible(srv, ng, age_args, path, wait_s):
    """Seconds from the end of one request to its record being queryable while the capture
    still runs, or None if it is not within wait_s; then the capture is stopped."""
    cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid)] + age_args).start()
    try:
        assert tvtest.curl("http://127.0.0.1:%d%s" % (ng.port, path)) == ["404"]
        t0 = time.monotonic()
        seen = None
        while time.monotonic() - t0 < wait_s:
            if records(srv, path):
                seen = time.monotonic() - t0
                break
            time.sleep(0.05)
        assert cap.proc.poll() is None, "the capture ended by itself"
    finally:
        rc, err = cap.stop()
    assert rc == 0, (rc, err)
    assert len(records(srv, path)) == 1, err  # after the stop's flush in either case
    return seen


def test_block_age_commits_without_flush(srv, ng):
    seen = time_to_visible(srv, ng, ["--block-age", "%dms" % AGE_MS], "/aged", AGE_MS / 1000
                           + SLACK_S)
    assert seen is not None, "record not committed within %d ms + %.1f s" % (AGE_MS, SLACK_S)
    print("block age %d ms: visible after %.2f s" % (AGE_MS, seen))
    # the contrast: with an age of an hour nothing is committed before the capture stops
    seen = time_to_visible(srv, ng, ["--block-age", "1h"], "/not-aged", AGE_MS / 1000 + SLACK_S)
    assert seen is None, "committed after %.2f s with --block-age 1h" % seen


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv, tvtest.Nginx() as ng:
        test_duration_ends_capture(srv, ng)
        print("ok --duration %d" % DURATION_S)
        test_block_age_commits_without_flush(srv, ng)
        print("ok --block-age")
    print("PASS")


if __name__ == "__main__":
    main()
