#!/usr/bin/env python3
"""`tracevault summary --by path` over one hour of realistic records (issue 12's goal: the whole
process in <= 200 ms). Generates N records spread over an hour (default 400,000: zipf-weighted
route templates, ids in paths so raw paths are many, mixed methods and statuses, per-route
log-normal latencies, a daily-like rate swing and bursts), imports them with `tracevault put`
into a fresh tracevaultd, then times whole `tracevault summary` processes (wall clock, start
to exit) and the server's CPU time per call (from /proc; the load-independent part on a shared
machine), printing min / p50 / max and the group count. TV_BENCH_SUMMARY_IDS (default 5000)
is how many ids a path template takes: 0 keeps the templates (route-level paths, ~200
groups), 5000 gives ~65k distinct raw paths.
usage: bench_summary.py BUILD_DIR [N] [RUNS]  (run with /usr/bin/python3 or any python3)"""
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 400_000
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 15
IDS = int(os.environ.get("TV_BENCH_SUMMARY_IDS", "5000"))
T0 = 1_764_540_000_000_000_000
HOUR_NS = 3600 * 10**9
rnd = random.Random(12)

RES = ["users", "orders", "carts", "products", "items", "sessions", "payments", "invoices",
       "reviews", "search", "inventory", "shipments", "accounts", "tokens", "images", "coupons"]
TEMPLATES = []
for r in RES:
    for v in ("v1", "v2"):
        TEMPLATES += ["/api/%s/%s" % (v, r), "/api/%s/%s/{id}" % (v, r),
                      "/api/%s/%s/{id}/history" % (v, r),
                      "/api/%s/%s?page={n}&sort=created_at" % (v, r)]
TEMPLATES += ["/static/app.%08x.js" % rnd.getrandbits(32) for _ in range(60)]
TEMPLATES += ["/", "/healthz", "/metrics", "/login", "/checkout", "/favicon.ico"]
WEIGHTS = [1.0 / (i + 1) ** 1.1 for i in range(len(TEMPLATES))]
rnd.shuffle(WEIGHTS)
MEDIAN_NS = [math.exp(rnd.gauss(math.log(6e6), 0.8)) for _ in TEMPLATES]
HOSTS = ["shop.example.com", "api.example.com", "static.example.com", "10.0.0.5:8080"]
COMMS = [("nginx", 4101, "0.0.0.0:443"), ("node", 5120, "10.0.0.5:8080"),
         ("gunicorn", 6001, "10.0.0.5:8000")]
METHODS = ["GET"] * 75 + ["POST"] * 15 + ["PUT"] * 4 + ["DELETE"] * 3 + ["HEAD"] * 2
CLIENTS = ["10.1.%d.%d" % (rnd.randrange(256), rnd.randrange(1, 255)) for _ in range(400)]


def status_of():
    x = rnd.random()
    if x < 0.001:
        return 0
    if x < 0.006:
        return rnd.choice([500, 502, 503, 504])
    if x < 0.03:
        return 404
    if x < 0.045:
        return rnd.choice([401, 403, 400, 429])
    if x < 0.11:
        return 302
    return 200


def write_records(path):
    """N JSON lines over [T0, T0 + 1 h), in ts order."""
    ts = sorted(T0 + int(HOUR_NS * (0.5 + 0.5 * math.sin(rnd.random() * math.pi - math.pi / 2)
                                     if rnd.random() < 0.3 else rnd.random()))
                for _ in range(N))
    idx = rnd.choices(range(len(TEMPLATES)), WEIGHTS, k=N)
    with open(path, "w") as f:
        for t, i in zip(ts, idx):
            tpl = TEMPLATES[i]
            p = tpl if not IDS else tpl.replace("{id}", str(rnd.randrange(1, IDS))).replace(
                "{n}", str(rnd.randrange(1, 50)))
            st = status_of()
            lat = int(MEDIAN_NS[i] * math.exp(rnd.gauss(0, 1.0)))
            comm, pid, local = rnd.choice(COMMS)
            rec = {"ts_ns": t, "end_ns": t + lat, "latency_ns": lat, "pid": pid, "comm": comm,
                   "local": local, "remote": "%s:%d" % (rnd.choice(CLIENTS),
                                                       rnd.randrange(30000, 60000)),
                   "method": rnd.choice(METHODS), "path": p, "status": st,
                   "req_body_bytes": 0, "resp_body_bytes": rnd.randrange(0, 20000),
                   "flags": 1 if st == 0 else 0, "role": "server",
                   "host": rnd.choice(HOSTS), "http_version": "1.1"}
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def server_cpu_ticks(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


def main():
    tv = os.path.join(BUILD, "tracevault")
    tvd = os.path.join(BUILD, "tracevaultd")
    tmp = tempfile.mkdtemp(prefix="tv-bench-summary-")
    srv = None
    try:
        jsonl = os.path.join(tmp, "records.jsonl")
        write_records(jsonl)
        srv = subprocess.Popen([tvd, "--data", os.path.join(tmp, "data"), "--listen",
                                "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
        addr = None
        deadline = time.monotonic() + 30
        while addr is None and time.monotonic() < deadline:
            m = re.search(r"serving (\S+)", srv.stderr.readline())
            addr = m and m.group(1)
        if not addr:
            raise SystemExit("tracevaultd did not start")
        # keep its log flowing so the server never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
        subprocess.run([tv, "put", "--server", addr, jsonl], check=True)
        args = [tv, "summary", "--server", addr, "--from", str(T0), "--to", str(T0 + HOUR_NS),
                "--by", "path", "--top", "20"]
        out = subprocess.run(args + ["--format", "jsonl", "--top", "100000"],
                             capture_output=True, text=True, check=True).stdout
        groups = len(out.splitlines())
        times, cpus = [], []
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        for _ in range(RUNS):
            c = server_cpu_ticks(srv.pid)
            t = time.monotonic()
            subprocess.run(args, stdout=subprocess.DEVNULL, check=True)
            times.append((time.monotonic() - t) * 1000)
            cpus.append((server_cpu_ticks(srv.pid) - c) * tick_ms)
        times.sort()
        cpus.sort()
        print("summary_by_path_1h records=%d groups=%d runs=%d wall_ms min=%.1f p50=%.1f "
              "max=%.1f (goal <= 200) server_cpu_ms min=%.0f p50=%.0f max=%.0f; load %s"
              % (N, groups, RUNS, times[0], times[len(times) // 2], times[-1], cpus[0],
                 cpus[len(cpus) // 2], cpus[-1], open("/proc/loadavg").read().split()[0]))
        subprocess.run(args, check=True)
    finally:
        if srv:
            srv.send_signal(signal.SIGTERM)
            srv.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
