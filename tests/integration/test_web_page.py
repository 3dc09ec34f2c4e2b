"""The page at GET / (web/index.html) in a real browser: Debian's chromium driven by
playwright-core (npm, pinned, installed into BUILD/npm-playwright) runs tests/web/page_test.js
against a tracevaultd holding known records: it sets a window and a service filter through the
page's controls, checks the figures shown (requests, errors, error rate, the top endpoints in
both sort orders, the newest exchange with its local and UTC times) against the values
computed here from the records, opens a trace (OTLP spans with a captured exchange under the
span that called it), checks the layout from the elements' boxes (no panel's content wider than
the panel; each timeline bar inside the trace panel where the span times sent here put it; a
deep span's name still in its cell) and keeps a screenshot, BUILD/test-artifacts/web_page.png
(the path is printed; docs/web_page.png is a copy of it). SKIP only when /usr/bin/chromium is
absent (scripts/deps.sh installs it)."""
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zoneinfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from test_otlp_ingest import Otlp, otlp_modules  # noqa: E402

PLAYWRIGHT = "playwright-core@1.65.1"
CHROMIUM = "/usr/bin/chromium"
# the browser's zone: not UTC, so that a local time and a UTC time differ on the page
TZ = "America/New_York"
SEC = 1_000_000_000
# the window: 10 minutes starting half an hour ago, on a whole minute
W0 = (time.time_ns() // SEC // 60 - 30) * 60 * SEC
W1 = W0 + 600 * SEC
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
# odd but valid span trees the trace view must show whole: a parent cycle (A -> B -> A, C its
# own parent) and a parent chain deeper than a recursive walk survives
CYCLE = "cccccccccccccccccccccccccccccccc"
CHAIN = "dddddddddddddddddddddddddddddddd"
CHAIN_DEPTH = 3000


def exchange(i, comm, path, status, latency_ms, **kw):
    ts = W0 + (i + 1) * 30 * SEC + i * 1_000_000  # distinct, inside the window
    r = {"ts_ns": ts, "end_ns": ts + latency_ms * 1_000_000, "latency_ns": latency_ms * 1_000_000,
         "pid": 100 if comm == "nginx" else 200, "comm": comm, "method": "GET", "path": path,
         "status": status, "role": "server" if comm == "nginx" else "client",
         "local": "127.0.0.1:8080", "remote": "127.0.0.1:%d" % (40000 + i),
         "host": "shop.example"}
    r.update(kw)
    return r


# nginx: 10 exchanges in the window (2 errors: a 500 and a 503; one 404), curl: 3 more (the
# service filter drops them), and one nginx exchange before the window (the window drops it).
# The newest nginx exchange answers the OTLP client span "GET /api/users" of trace TRACE.
RECORDS = [
    exchange(0, "nginx", "/api/users", 200, 3),
    exchange(1, "nginx", "/login", 200, 12),
    exchange(2, "nginx", "/api/users", 500, 40),
    exchange(3, "curl", "/api/users", 200, 5),
    exchange(4, "nginx", "/health", 200, 1),
    exchange(5, "nginx", "/api/users", 200, 4),
    exchange(6, "nginx", "/login", 404, 2),
    exchange(7, "curl", "/login", 200, 9),
    exchange(8, "nginx", "/api/users", 503, 30),
    exchange(9, "nginx", "/login", 200, 11),
    exchange(10, "curl", "/health", 200, 2),
    exchange(11, "nginx", "/api/users", 200, 6),
    exchange(12, "nginx", "/api/users?page=2", 200, 7, trace_id=TRACE,
             span_id="00f067aa0ba902b7"),
]
BEFORE = exchange(-3, "nginx", "/api/users", 500, 3)  # ts W0 - 60 s
# trace TRACE's OTLP spans: (start, duration) in ns, the start from the newest exchange's ts
TRACE_ROOT = (RECORDS[-1]["ts_ns"] - 2_000_000, 12_000_000)     # POST /checkout
TRACE_CLIENT = (RECORDS[-1]["ts_ns"] - 1_000_000, 9_000_000)    # GET /api/users


def bars(spans):
    """[(start ns, duration ns)] -> [[left, right]]: each span's place on a timeline from the
    earliest start to the latest end, as fractions of it."""
    t0 = min(a for a, _ in spans)
    t1 = max(a + d for a, d in spans)
    return [[(a - t0) / (t1 - t0), (a + d - t0) / (t1 - t0)] for a, d in spans]


def expected():
    """What the page must show for service nginx in [W0, W1], from RECORDS by hand-written
    rules: errors are 5xx (and no response), the path is grouped without its query."""
    recs = [r for r in RECORDS if r["comm"] == "nginx" and W0 <= r["ts_ns"] <= W1]
    groups = {}
    for r in recs:
        g = groups.setdefault(r["path"].split("?")[0], [0, 0])
        g[0] += 1
        g[1] += r["status"] >= 500
    by_count = sorted(([k, c, e] for k, (c, e) in groups.items()), key=lambda x: (-x[1], x[0]))
    by_err = [x[0] for x in sorted(by_count, key=lambda x: (-x[2], x[0]))]
    errors = sum(r["status"] >= 500 for r in recs)
    newest = max(recs, key=lambda r: r["ts_ns"])
    tz = zoneinfo.ZoneInfo(TZ)

    def local(ns, zone):
        d = datetime.datetime.fromtimestamp(ns / SEC, zone)
        return d.strftime("%Y-%m-%d %H:%M:%S.") + "%03d" % (ns // 1_000_000 % 1000)

    return {
        "start_ms": W0 // 1_000_000, "end_ms": W1 // 1_000_000, "service": "nginx",
        "total": len(recs), "errors": errors, "error_rate": "%.1f %%" % (100 * errors / len(recs)),
        "endpoints_by_count": by_count, "endpoints_by_errors": by_err,
        "window_texts": [local(W0, tz), local(W0, datetime.timezone.utc) + " UTC", TZ],
        "newest_local": local(newest["ts_ns"], tz),
        "newest_utc": local(newest["ts_ns"], datetime.timezone.utc) + " UTC",
        "newest_path": newest["path"], "newest_status": newest["status"],
        "trace_id": TRACE,
        # depth, operation, service: the OTLP server span, its client child, and nginx's
        # captured exchange under the client span whose id its traceparent carried
        "trace_tree": [[0, "POST /checkout", "shop"], [1, "GET /api/users", "shop"],
                       [2, "GET /api/users", "nginx"]],
        # where each of those rows' timeline bar starts and ends, as fractions of its track
        # (the trace's first start to its last end); the root's bar spans the whole track
        "trace_bars": bars([TRACE_ROOT, TRACE_CLIENT,
                            (RECORDS[-1]["ts_ns"], RECORDS[-1]["latency_ns"])]),
        # as `tracevault trace` prints it: C (its own parent) is a root; A and B, which no
        # root reaches, start a tree at the earliest of them, A, with B under it
        "cycle": {"id": CYCLE, "tree": [[0, "C"], [0, "A"], [1, "B"]]},
        # every span once, each one level below its parent
        "chain": {"id": CHAIN, "n": CHAIN_DEPTH, "first": [0, "chain 0"],
                  "last": [CHAIN_DEPTH - 1, "chain %d" % (CHAIN_DEPTH - 1)]},
    }


def playwright_modules():
    """BUILD/npm-playwright/node_modules with PLAYWRIGHT installed (once per build dir)."""
    prefix = os.path.join(os.environ["TV_BIN_DIR"], "npm-playwright")
    stamp = os.path.join(prefix, "installed.txt")
    if os.path.exists(stamp) and open(stamp).read() == PLAYWRIGHT + "\n":
        return os.path.join(prefix, "node_modules")
    p = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                        "--prefer-offline", PLAYWRIGHT],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, "npm install %s failed: %s" % (PLAYWRIGHT, p.stderr[-2000:])
    with open(stamp, "w") as f:
        f.write(PLAYWRIGHT + "\n")
    return os.path.join(prefix, "node_modules")


def send_trace(addr):
    """Trace TRACE over OTLP from service shop: POST /checkout (server) calls GET /api/users
    (client, span 00f067aa0ba902b7, the id nginx's exchange carries as its parent)."""
    otlp = Otlp(addr, otlp_modules(tempfile.mkdtemp(prefix="tv-otlp-py-")))
    tid, root = bytes.fromhex(TRACE), random.Random(3).randbytes(8)
    r = otlp.span(tid, root, name="POST /checkout", kind=2, start=TRACE_ROOT[0],
                  dur=TRACE_ROOT[1])
    c = otlp.span(tid, bytes.fromhex("00f067aa0ba902b7"), parent=root, name="GET /api/users",
                  kind=3, start=TRACE_CLIENT[0], dur=TRACE_CLIENT[1])
    assert otlp.export(otlp.request({"shop": [r, c]})).partial_success.rejected_spans == 0
    # the cycle: A's parent B, B's parent A, C's parent C
    t0 = RECORDS[0]["ts_ns"]
    cyc = bytes.fromhex(CYCLE)
    a, b, c = (bytes([0xa0 + i] * 8) for i in range(3))
    spans = [otlp.span(cyc, a, parent=b, name="A", start=t0, dur=3_000_000),
             otlp.span(cyc, b, parent=a, name="B", start=t0 + 1_000_000, dur=1_000_000),
             otlp.span(cyc, c, parent=c, name="C", start=t0 + 2_000_000, dur=1_000_000)]
    assert otlp.export(otlp.request({"loop": spans})).partial_success.rejected_spans == 0
    # the chain: span i's parent is span i - 1
    chain, ids = bytes.fromhex(CHAIN), [(i + 1).to_bytes(8, "big") for i in range(CHAIN_DEPTH)]
    spans = [otlp.span(chain, ids[i], parent=ids[i - 1] if i else b"", name="chain %d" % i,
                       start=t0 + i * 1000, dur=(CHAIN_DEPTH - i) * 1000)
             for i in range(CHAIN_DEPTH)]
    assert otlp.export(otlp.request({"deep": spans})).partial_success.rejected_spans == 0


def main():
    if not os.path.exists(CHROMIUM):
        tvtest.skip("%s is not installed (scripts/deps.sh installs Debian's chromium)" % CHROMIUM)
    modules = playwright_modules()
    artifacts = os.path.join(os.environ["TV_BIN_DIR"], "test-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    shot = os.path.join(artifacts, "web_page.png")
    if os.path.exists(shot):
        os.unlink(shot)
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for r in RECORDS + [BEFORE]:
                f.write(json.dumps(r) + "\n")
        tvtest.run(["put", "--server", srv.addr, f.name], check=True)
        os.unlink(f.name)
        send_trace(srv.addr)
        env = dict(os.environ, NODE_PATH=modules, TZ=TZ, PAGE_URL="http://%s/" % http,
                   EXPECT=json.dumps(expected()), SCREENSHOT=shot)
        p = subprocess.run(["node", os.path.join(os.environ["TV_SOURCE_DIR"], "tests", "web",
                                                 "page_test.js")],
                           env=env, capture_output=True, text=True, timeout=180)
        print(p.stdout, end="")
        print(p.stderr, end="", file=sys.stderr)
        rc = srv.stop()
    if p.returncode != 0:
        print("FAIL: page_test.js exited %d" % p.returncode)
        return 1
    if rc != 0:
        print("FAIL: tracevaultd exit status %d: %s" % (rc, srv.log()[-2000:]))
        return 1
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    print("screenshot kept: " + shot)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
