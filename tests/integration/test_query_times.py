"""`tracevault query` time arguments against the real clock: --to defaults to now, 'now',
relative times (-15m, -1d, -5m), RFC 3339 strings, and the window edges --stats prints, for
records stored around the present. Each answer would differ if the CLI's clock were not the
unix wall clock (CLOCK_REALTIME), e.g. a monotonic or boot clock."""
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

S = 10**9
MIN = 60 * S
H = 60 * MIN
# offsets from the time of the put; the test runs in well under a minute, so no record moves
# across a window edge while it runs (the nearest edges are minutes away)
OFFSETS = {"-23h": -23 * H, "-20m": -20 * MIN, "-10m": -10 * MIN, "-1m": -MIN, "-1s": -S,
           "+1h": H}


def rfc3339(ts_ns):
    secs, ns = divmod(ts_ns, S)
    dt = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % ns


def paths(addr, *window):
    p = tvtest.run(["query", "--server", addr] + list(window), check=True)
    return [json.loads(line)["path"] for line in p.stdout.splitlines()]


def main():
    with tvtest.Server() as srv:
        now0 = time.time_ns()
        lines = "".join(json.dumps({"ts_ns": now0 + off, "path": "/" + name, "method": "GET",
                                    "status": 200}) + "\n"
                        for name, off in sorted(OFFSETS.items(), key=lambda kv: kv[1]))
        tvtest.run(["put", "--server", srv.addr, "-"], input=lines, check=True)

        # --to defaults to now: the future record is out, the last 15 minutes in
        assert paths(srv.addr, "--from", "-15m") == ["/-10m", "/-1m", "/-1s"]
        assert paths(srv.addr, "--from", "-15m", "--to", "now") == ["/-10m", "/-1m", "/-1s"]
        assert paths(srv.addr, "--from", "-1d", "--to", "-5m") == ["/-23h", "/-20m", "/-10m"]
        assert paths(srv.addr, "--from", "-500ms") == []
        assert paths(srv.addr, "--from", "now") == []
        # RFC 3339 edges mixed with relative ones and the default
        assert paths(srv.addr, "--from", rfc3339(now0 - 30 * MIN)) == \
            ["/-20m", "/-10m", "/-1m", "/-1s"]
        assert paths(srv.addr, "--from", "-2h", "--to", rfc3339(now0 + 2 * H)) == \
            ["/-20m", "/-10m", "/-1m", "/-1s", "/+1h"]
        assert paths(srv.addr, "--from", rfc3339(now0 + 30 * MIN), "--to",
                     rfc3339(now0 + 2 * H)) == ["/+1h"]
        print("ok relative, now and RFC 3339 windows")

        # the window --stats reports: from_ns = now - 15 min and to_ns = now, with now read
        # during the run
        t0 = time.time_ns()
        p = tvtest.run(["query", "--server", srv.addr, "--from", "-15m", "--stats"],
                       check=True)
        t1 = time.time_ns()
        st = json.loads(p.stdout)
        assert t0 <= st["to_ns"] <= t1, (t0, st, t1)
        assert st["from_ns"] == st["to_ns"] - 15 * MIN, st
        assert st["records"] == len(OFFSETS), st  # one block holds them all: it overlaps
        # --to now, from an RFC 3339 time: the same clock
        t0 = time.time_ns()
        p = tvtest.run(["query", "--server", srv.addr, "--from", rfc3339(now0), "--to", "now",
                        "--stats"], check=True)
        t1 = time.time_ns()
        st = json.loads(p.stdout)
        assert st["from_ns"] == now0 and t0 <= st["to_ns"] <= t1, (now0, t0, st, t1)
        # a relative --from after an explicit past --to is a usage error naming both
        p = tvtest.run(["query", "--server", srv.addr, "--from", "-1m", "--to",
                        rfc3339(now0 - H)])
        assert p.returncode == 2 and p.stderr == \
            "tracevault: --from (-1m) is after --to (%s)\n" % rfc3339(now0 - H), p
        print("ok --stats window edges")

        # unix seconds typed where T is ns: still ns (the documented meaning, so the window
        # holds nothing), but one warning line per edge names the forms that mean seconds,
        # for query and summary alike; 0, 10^12 ns and up, and non-integers warn nothing
        frm_s, to_s = (now0 - 20 * MIN) // S, (now0 + 10 * S) // S
        for cmd in ("query", "summary"):
            p = tvtest.run([cmd, "--server", srv.addr, "--from", str(frm_s), "--to",
                            str(to_s), "--format", "jsonl"], check=True)
            warn = ["tracevault: warning: --%s %d is read as nanoseconds "
                    "(1970-01-01T00:00:%02d.%09dZ); for unix seconds write %s or %d"
                    % (opt, v, v // S, v % S, rfc3339(v * S)[:19] + "Z", v * S)
                    for opt, v in (("from", frm_s), ("to", to_s))]
            assert p.stderr.splitlines() == warn, (cmd, p.stderr)
        assert paths(srv.addr, "--from", str(frm_s), "--to", str(to_s)) == []
        for window in (["--from", "0", "--to", str(10**12)], ["--from", str(now0 - H)],
                       ["--from", "-1h"], ["--from", str(now0 - H), "--to", "now"]):
            p = tvtest.run(["query", "--server", srv.addr] + window, check=True)
            assert p.stderr == "", (window, p.stderr)
        p = tvtest.run(["query", "--server", srv.addr, "--from", "999999999999"], check=True)
        assert p.stderr == "tracevault: warning: --from 999999999999 is read as nanoseconds " \
            "(1970-01-01T00:16:39.999999999Z)\n", p.stderr  # as seconds: past 2^64 ns
        print("ok bare integers below 10^12 ns warn")
    print("PASS")


if __name__ == "__main__":
    main()
