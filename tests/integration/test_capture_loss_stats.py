"""Loss in the archive: a capture with a tiny kernel ring buffer under wrk load drops events;
the counts its exit summary prints must be exactly what `tracevault query --stats` reads back
from the stored block headers (BLOCK.md v2) for the capture's time range, and the records
committed must equal the records the stats count."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BODY = b"x" * 2048
MAX_ROUNDS = 5   # load rounds until the 4 KiB ring overflows (one round almost always does)


def stats(addr, frm, to):
    import json
    p = tvtest.run(["query", "--server", addr, "--from", str(frm), "--to", str(to), "--stats"],
                   check=True)
    return json.loads(p.stdout)


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    if not shutil.which("wrk"):
        tvtest.skip("wrk is not installed")
    with tvtest.Server() as srv, tvtest.Nginx(files={"index.html": BODY}) as ng:
        for attempt in range(MAX_ROUNDS):
            from_ns = time.time_ns()
            cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid), "--ring-bytes", "4096",
                                            "--block-age-ms", "200"]).start()
            try:
                tvtest.wrk("http://127.0.0.1:%d/index.html" % ng.port, threads=2, conns=32,
                           duration_s=2)
            finally:
                rc, err = cap.stop()
            to_ns = time.time_ns() + 1
            assert rc == 0, "capture exited %s: %s" % (rc, err)
            n = tvtest.parse_capture_summary(err)
            st = stats(srv.addr, from_ns, to_ns)
            # what the summary printed is what the archive says, reason by reason
            for key, summary_key in (("lost_ring_full", "ring_full"),
                                     ("lost_map_full", "map_full"), ("lost_parser", "parser"),
                                     ("lost_cache", "cache"), ("lost_failed", "failed"),
                                     ("lost_requests", "lost_requests"), ("records", "sent")):
                assert st[key] == n[summary_key], (key, st, n)
            assert n["kernel"] == n["ring_full"] + n["map_full"], n
            if n["ring_full"] > 0 and n["lost_requests"] > 0:
                print("ok: summary %s == stats %s" % (n, st))
                return
            print("round %d: the 4 KiB ring did not overflow (%d events); again" %
                  (attempt, n["events"]))
        raise AssertionError("a 4 KiB ring never overflowed under wrk in %d rounds"
                             % MAX_ROUNDS)


if __name__ == "__main__":
    main()
