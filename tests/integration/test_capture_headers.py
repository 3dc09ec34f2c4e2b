"""capture --headers against a real nginx: request and response header lines are stored in the
records; Authorization and Cookie values are "[redacted]" by default and kept as sent with
--no-redact (which also keeps the ?query); without --headers no header is stored."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BODY = b"hello headers\n"
AUTH = "Bearer s3cr3t-t0ken"
COOKIE = "sid=abc123; theme=dark"


def capture(srv, ng, extra):
    """One capture around one curl request; returns the records stored for it."""
    from_ns = time.time_ns()
    cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid), "--block-age-ms", "200"]
                         + extra).start()
    try:
        p = subprocess.run(["curl", "-s", "-S", "-o", "/dev/null", "-w", "%{http_code}",
                            "-H", "Authorization: " + AUTH, "-H", "Cookie: " + COOKIE,
                            "-H", "X-Probe: visible",
                            "http://127.0.0.1:%d/index.html?token=q1" % ng.port],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout == "200", (p.returncode, p.stdout, p.stderr)
    finally:
        rc, err = cap.stop()
    assert rc == 0, "capture %s exited %s: %s" % (extra, rc, err)
    q = tvtest.run(["query", "--server", srv.addr, "--from", str(from_ns),
                    "--to", str(time.time_ns() + 1)], check=True)
    recs = [json.loads(line) for line in q.stdout.splitlines()]
    assert len(recs) == 1, (extra, recs, err)
    return recs[0]


def pairs(rec, key):
    return [(h["name"], h["value"]) for h in rec.get(key, [])]


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv, tvtest.Nginx(files={"index.html": BODY}) as ng:
        # default: redacted
        r = capture(srv, ng, ["--headers"])
        req = dict(pairs(r, "req_headers"))
        assert req.get("Authorization") == "[redacted]", r
        assert req.get("Cookie") == "[redacted]", r
        assert req.get("X-Probe") == "visible", r
        assert req.get("Host") == "127.0.0.1:%d" % ng.port, r
        assert AUTH not in json.dumps(r) and "abc123" not in json.dumps(r), r
        # the query is kept, the token's value is not
        assert r["path"] == "/index.html?token=REDACTED" and "q1" not in json.dumps(r), r
        resp = dict(pairs(r, "resp_headers"))
        assert resp.get("Content-Length") == str(len(BODY)), r
        assert resp.get("Server", "").startswith("nginx"), r
        assert r["status"] == 200 and r["resp_body_bytes"] == len(BODY), r
        # the table form of a record with headers: every column as the reference gives it
        t = tvtest.run(["query", "--server", srv.addr, "--from", str(r["ts_ns"]),
                        "--to", str(r["ts_ns"] + 1), "--format", "table"], check=True)
        tvtest.check_table(t.stdout, [r], "table of a captured record with headers")

        # --no-redact: intact, and the query string kept
        r = capture(srv, ng, ["--headers", "--no-redact"])
        req = dict(pairs(r, "req_headers"))
        assert req.get("Authorization") == AUTH, r
        assert req.get("Cookie") == COOKIE, r
        assert r["path"] == "/index.html?token=q1", r
        # header order as sent: curl writes Host first, our -H headers after
        names = [n for n, _ in pairs(r, "req_headers")]
        assert names.index("Host") < names.index("Authorization") < names.index("Cookie") \
            < names.index("X-Probe"), names

        # without --headers nothing of them is stored
        r = capture(srv, ng, [])
        assert "req_headers" not in r and "resp_headers" not in r, r

        # put takes the headers back (jsonl round trip through the archive)
        path = os.path.join(ng.dir, "hdr.jsonl")
        rec = dict(r, ts_ns=r["ts_ns"] + 7, req_headers=[{"name": "Cookie",
                                                           "value": "[redacted]"}])
        with open(path, "w") as f:
            f.write(json.dumps(rec) + "\n")
        tvtest.run(["put", "--server", srv.addr, path], check=True)
        q = tvtest.run(["query", "--server", srv.addr, "--from", str(rec["ts_ns"]),
                        "--to", str(rec["ts_ns"] + 1)], check=True)
        back = [json.loads(line) for line in q.stdout.splitlines()]
        assert back == [rec], (back, rec)
    print("capture --headers: ok")


if __name__ == "__main__":
    main()
