#!/usr/bin/env python3
"""Realistic synthetic trace records for the block benchmarks (issue 12): 230 path templates
with Zipf weights and Pareto ids, 4 hosts, 3 programs with 8 pids, 400 client addresses with
keep-alive reuse, 6 methods, statuses with 4xx/5xx and NO_RESPONSE, log-normal latencies and
response sizes per template, Poisson arrivals at ~116/s with a diurnal swing and 6x bursts; a
TRACE_FRACTION of records carry a W3C trace id (half of them one of a recent trace's).
Writes OUT.jsonl (as `tracevault query --format jsonl` prints them) and OUT.pb (each record
as a varint length + TraceRecord protobuf, in ts order) for bench_blocks.
usage: realistic_records.py OUT N [TRACE_FRACTION] [SEED]"""
import argparse
import json
import math
import random


def parse_args():
    """The arguments, parsed before anything else runs: the seed also draws the templates.
    --help prints the usage; a missing or malformed argument is a usage error (exit 2)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\nusage:")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT", help="writes OUT.jsonl and OUT.pb")
    ap.add_argument("n", metavar="N", type=int, help="how many records")
    ap.add_argument("trace_fraction", metavar="TRACE_FRACTION", type=float, nargs="?",
                    default=0.3, help="share of records with a trace id (default 0.3)")
    ap.add_argument("seed", metavar="SEED", type=int, nargs="?", default=12,
                    help="random seed (default 12)")
    a = ap.parse_args()
    if a.n < 0 or not 0 <= a.trace_fraction <= 1:
        ap.error("N must be >= 0 and TRACE_FRACTION 0 to 1")
    return a


ARGS = parse_args()
OUT = ARGS.out
N = ARGS.n
TRACE_FRAC = ARGS.trace_fraction
rnd = random.Random(ARGS.seed)


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


RES = ["users", "orders", "carts", "products", "items", "sessions", "payments", "invoices",
       "reviews", "search", "inventory", "shipments", "accounts", "tokens", "images", "coupons"]
TEMPLATES = []
for r in RES:
    for v in ("v1", "v2"):
        TEMPLATES += [("/api/%s/%s" % (v, r), False), ("/api/%s/%s/{id}" % (v, r), True),
                      ("/api/%s/%s/{id}/history" % (v, r), True),
                      ("/api/%s/%s?page={n}&sort=created_at" % (v, r), True)]
for i in range(60):
    TEMPLATES.append(("/static/%s/%s.%08x.%s" % (rnd.choice(["js", "css", "img"]),
                      rnd.choice(["app", "vendor", "main", "logo", "icons", "chunk%d" % i]),
                      rnd.getrandbits(32), rnd.choice(["js", "css", "png", "svg"])), False))
TEMPLATES += [("/", False), ("/healthz", False), ("/metrics", False), ("/login", False),
              ("/checkout", False), ("/favicon.ico", False)]
TW = [1.0 / (i + 1) ** 1.1 for i in range(len(TEMPLATES))]  # zipf over templates
rnd.shuffle(TW)
TINFO = [(math.exp(rnd.gauss(math.log(6e6), 0.8)), math.exp(rnd.gauss(math.log(2000), 1.5)))
         for _ in TEMPLATES]  # per template median latency ns, median response bytes
HOSTS = ["shop.example.com", "api.example.com", "static.example.com", "10.0.0.5:8080"]
COMMS = [("nginx", [4101, 4102, 4103, 4104], "0.0.0.0:443"), ("node", [5120], "10.0.0.5:8080"),
         ("gunicorn", [6001, 6002, 6003], "10.0.0.5:8000")]
METHODS = ["GET"] * 75 + ["POST"] * 15 + ["PUT"] * 4 + ["DELETE"] * 3 + ["HEAD"] * 2 + ["OPTIONS"]
CLIENTS = ["10.1.%d.%d" % (rnd.randrange(256), rnd.randrange(1, 255)) for _ in range(400)]


def status_of(method, tpl):
    x = rnd.random()
    if x < 0.001:
        return 0, 1  # NO_RESPONSE
    if x < 0.006:
        return rnd.choice([500, 502, 503, 504]), 0
    if x < 0.03:
        return 404, 0
    if x < 0.045:
        return rnd.choice([401, 403, 400, 429]), 0
    if x < 0.10 and method == "GET" and tpl.startswith("/static"):
        return 304, 0
    if x < 0.11:
        return 302, 0
    return (201 if method == "POST" else 204 if method == "DELETE" else 200), 0


def records():
    t = 1_764_540_000_000_000_000
    conns = []
    traces = []
    out = []
    burst_until = 0
    for i in range(N):
        rate = 116.0 * (1 + 0.6 * math.sin(i / N * 2 * math.pi))
        if t > burst_until and rnd.random() < 0.0005:
            burst_until = t + int(rnd.uniform(2, 20) * 1e9)
        if t < burst_until:
            rate *= 6
        t += int(rnd.expovariate(rate) * 1e9)
        ti = rnd.choices(range(len(TEMPLATES)), TW)[0]
        tpl, has_id = TEMPLATES[ti]
        path = tpl.replace("{id}", str(int(rnd.paretovariate(0.7)) % 2_000_000)) \
                  .replace("{n}", str(rnd.randrange(1, 40)))
        if tpl.startswith("/static") or tpl in ("/", "/healthz", "/metrics", "/favicon.ico"):
            method = "GET"
        else:
            method = rnd.choice(METHODS)
        comm, pids, local = COMMS[0] if tpl.startswith("/static") or rnd.random() < 0.5 else \
            rnd.choice(COMMS[1:])
        pid = rnd.choice(pids)
        # keep-alive: reuse a connection (remote ip:port) most of the time
        if not conns or rnd.random() < 0.15:
            conns.append("%s:%d" % (rnd.choice(CLIENTS), rnd.randrange(32768, 61000)))
            if len(conns) > 200:
                conns.pop(rnd.randrange(len(conns)))
        remote = rnd.choice(conns)
        status, flags = status_of(method, tpl)
        med_lat, med_resp = TINFO[ti]
        lat = int(math.exp(rnd.gauss(math.log(med_lat), 0.9)))
        if status >= 500:
            lat *= rnd.choice([1, 5, 30])
        resp = 0 if status in (0, 204, 304) or method == "HEAD" else \
            int(math.exp(rnd.gauss(math.log(med_resp), 0.3 if has_id else 0.05)))
        req = int(math.exp(rnd.gauss(math.log(400), 1.0))) if method in ("POST", "PUT") else 0
        trace_id = span_id = ""
        if rnd.random() < TRACE_FRAC:
            if traces and rnd.random() < 0.5:
                trace_id = rnd.choice(traces[-20:])  # other spans of a recent trace
            else:
                trace_id = "%032x" % rnd.getrandbits(128)
                traces.append(trace_id)
            span_id = "%016x" % rnd.getrandbits(64)
        role = "client" if rnd.random() < 0.2 else "server"
        out.append(dict(ts_ns=t, end_ns=t + lat, latency_ns=lat, pid=pid, comm=comm, local=local,
                        remote=remote, method=method, path=path, status=status,
                        req_body_bytes=req, resp_body_bytes=resp, trace_id=trace_id,
                        span_id=span_id, flags=flags, role=role,
                        host="static.example.com" if tpl.startswith("/static")
                        else rnd.choice(HOSTS[:2]) if comm == "nginx" else HOSTS[3],
                        http_version="1.0" if rnd.random() < 0.02 else "1.1"))
    return out


FIELDS = ["ts_ns", "end_ns", "latency_ns", "pid", "comm", "local", "remote", "method", "path",
          "status", "req_body_bytes", "resp_body_bytes", "trace_id", "span_id", "flags", "role",
          "host", "http_version"]
TAGS = {f: i + 1 for i, f in enumerate(FIELDS[:17])}
TAGS["role"], TAGS["host"], TAGS["http_version"] = 18, 19, 20


def proto(r):
    """The TraceRecord as protobuf-c packs it: fields in number order, defaults left out."""
    b = bytearray()
    for f in sorted(FIELDS, key=lambda f: TAGS[f]):
        v = r[f]
        if not v:
            continue
        if isinstance(v, int):
            b += varint(TAGS[f] << 3) + varint(v)
        else:
            e = v.encode()
            b += varint(TAGS[f] << 3 | 2) + varint(len(e)) + e
    return bytes(b)


def main():
    recs = records()
    with open(OUT + ".jsonl", "w") as j, open(OUT + ".pb", "wb") as p:
        for r in recs:
            j.write(json.dumps({f: r[f] for f in FIELDS}, separators=(",", ":")) + "\n")
            b = proto(r)
            p.write(varint(len(b)) + b)


if __name__ == "__main__":
    main()
