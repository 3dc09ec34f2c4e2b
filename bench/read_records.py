"""Deterministic realistic HTTP exchange records for the read benchmark (bench/read.sh): N records
spread over exactly 24 hours from a seed, as the JSON Lines `tracevault put` reads and
`tracevault query --format jsonl` prints (same keys, same order).

What makes them realistic enough to measure a read side on:
- time: a diurnal rate (quiet night, busy afternoon) times random bursts (3-10x for 5-120 s),
  records within one second in order; exactly N records between DAY_START_NS and +24 h;
- paths: ~330 templates under a Zipf law, many with ids drawn from a Pareto law (a long tail of
  distinct paths), some with query strings; 24 hosts under a Zipf law;
- methods, statuses 2xx/3xx/4xx/5xx (and no response), with short incidents during which
  one template returns mostly 5xx and is slow;
- latencies log-normal per template (medians 0.3 ms to 300 ms), heavier for 5xx;
- both roles: ~22% are client records (a service calling another), and ~30% carry a W3C trace
  id; a traced server record is often followed by a client record of the same trace.
usage (stand-alone): read_records.py N SEED OUT.jsonl [TRACE_IDS_OUT]"""
import bisect
import math
import random
import sys

DAY_START_NS = 1767225600 * 10**9  # 2026-01-01T00:00:00Z
DAY_NS = 86400 * 10**9
TRACE_FRACTION = 0.30
CLIENT_FRACTION = 0.22
TRACE_IDS_KEPT = 2000  # trace ids kept (reservoir) for the --trace-id lookups


def _zipf_cum(n, s, rnd):
    w = [1.0 / (i + 1) ** s for i in range(n)]
    rnd.shuffle(w)
    cum, acc = [], 0.0
    for x in w:
        acc += x
        cum.append(acc)
    return cum


class Model:
    """The fixed parts of the archive (templates, hosts, processes), drawn from the seed."""

    def __init__(self, rnd):
        res = ["users", "orders", "carts", "products", "items", "sessions", "payments",
               "invoices", "reviews", "search", "inventory", "shipments", "accounts", "tokens",
               "images", "coupons", "refunds", "addresses", "wishlists", "notifications",
               "subscriptions", "plans", "teams", "projects", "builds", "artifacts", "webhooks",
               "events", "reports", "exports"]
        t = []
        for r in res:
            for v in ("v1", "v2"):
                t += ["/api/%s/%s" % (v, r), "/api/%s/%s/{id}" % (v, r),
                      "/api/%s/%s/{id}/history" % (v, r), "/api/%s/%s?page={n}&sort=created" % (v, r)]
        for i in range(80):
            t.append("/static/%s/%s.%08x.%s" % (rnd.choice(["js", "css", "img"]),
                     rnd.choice(["app", "vendor", "main", "logo", "icons", "chunk%d" % i]),
                     rnd.getrandbits(32), rnd.choice(["js", "css", "png", "svg", "woff2"])))
        t += ["/", "/healthz", "/metrics", "/login", "/logout", "/checkout", "/cart",
              "/favicon.ico", "/robots.txt", "/search?q={n}", "/graphql", "/ws"]
        self.templates = t
        self.tcum = _zipf_cum(len(t), 1.05, rnd)
        # per template: median latency (ns), median response bytes, static?
        self.tinfo = []
        for p in t:
            static = p.startswith("/static") or p in ("/favicon.ico", "/robots.txt")
            med_lat = math.exp(rnd.gauss(math.log(4e5 if static else 1.2e7), 1.0))
            med_resp = math.exp(rnd.gauss(math.log(40000 if static else 1500), 1.2))
            self.tinfo.append((math.log(med_lat), math.log(med_resp), static,
                               "{id}" in p, "{n}" in p))
        self.hosts = ["shop.example.com", "api.example.com", "static.example.com",
                      "admin.example.com", "m.example.com", "partner-api.example.com"] + \
            ["svc-%s.internal:%d" % (n, 8000 + i) for i, n in enumerate(
                ["users", "orders", "payments", "search", "inventory", "auth", "mail", "cdn",
                 "billing", "ledger", "images", "reco", "geo", "fraud", "ship", "cache", "queue",
                 "audit"])]
        self.hcum = _zipf_cum(len(self.hosts), 1.2, rnd)
        self.servers = [("nginx", [4101, 4102, 4103, 4104], "0.0.0.0:443"),
                        ("node", [5120, 5121], "10.0.0.5:8080"),
                        ("gunicorn", [6001, 6002, 6003, 6004], "10.0.0.6:8000"),
                        ("java", [7311], "10.0.0.7:9090")]
        self.clients = [("node", [5120, 5121]), ("gunicorn", [6001, 6002, 6003, 6004]),
                        ("java", [7311]), ("curl", [9001])]
        self.peers = ["10.%d.%d.%d" % (rnd.randrange(1, 4), rnd.randrange(256),
                                       rnd.randrange(1, 255)) for _ in range(600)]
        self.backends = ["10.0.1.%d:%d" % (rnd.randrange(1, 255), rnd.choice([80, 443, 8080, 5432]))
                         for _ in range(40)]
        self.methods = ["GET"] * 74 + ["POST"] * 15 + ["PUT"] * 5 + ["DELETE"] * 3 + \
            ["PATCH"] + ["HEAD"] + ["OPTIONS"]


def _second_weights(rnd):
    """Relative rate of each second of the day: diurnal shape times bursts."""
    w = []
    for s in range(86400):
        h = s / 3600.0
        w.append(0.25 + 0.75 * math.exp(-((h - 15.0) / 5.0) ** 2) + 0.2 * math.exp(-((h - 9.5) / 1.5) ** 2))
    s = 0
    while True:  # bursts: ~one per 10 minutes on average
        s += int(rnd.expovariate(1 / 600.0))
        if s >= 86400:
            break
        k = rnd.uniform(3, 10)
        for x in range(s, min(86400, s + int(rnd.uniform(5, 120)))):
            w[x] *= k
    return w


def _incidents(rnd, n_templates):
    """(start_s, end_s, template) windows where that template fails with 5xx, slow."""
    out = []
    for _ in range(12):
        a = rnd.randrange(86400)
        out.append((a, a + rnd.randrange(60, 900), rnd.randrange(n_templates)))
    return out


def generate(n, seed, out, trace_ids_out=None):
    """Writes n records (JSON Lines, ts_ns order) to the binary file `out`; returns the list
    of up to TRACE_IDS_KEPT trace ids that occur in them (a uniform sample, seeded)."""
    rnd = random.Random(seed)
    m = Model(rnd)
    weights = _second_weights(rnd)
    incidents = _incidents(rnd, len(m.templates))
    total_w = sum(weights)
    tcum, ttot = m.tcum, m.tcum[-1]
    hcum, htot = m.hcum, m.hcum[-1]
    fmt = ('{"ts_ns":%d,"end_ns":%d,"latency_ns":%d,"pid":%d,"comm":"%s","local":"%s",'
           '"remote":"%s","method":"%s","path":"%s","status":%d,"req_body_bytes":%d,'
           '"resp_body_bytes":%d,"trace_id":"%s","span_id":"%s","flags":%d,"role":"%s",'
           '"host":"%s","http_version":"%s"}\n')
    r_random, r_gauss, r_getrandbits = rnd.random, rnd.gauss, rnd.getrandbits

    def r_randrange(a, b=None):
        """randrange(a) or randrange(a, b) from one random(): a third of random.randrange's
        cost, which was a third of the generator's (the ranges are far below 2**53)."""
        return int(r_random() * a) if b is None else a + int(r_random() * (b - a))
    exp, bis = math.exp, bisect.bisect
    conns = [("%s:%d" % (rnd.choice(m.peers), rnd.randrange(32768, 61000))) for _ in range(300)]
    recent_traces = []
    kept, seen_traces = [], 0
    done, acc = 0, 0.0
    buf = []
    for sec in range(86400):
        acc += weights[sec]
        target = n if sec == 86399 else int(round(n * acc / total_w))
        k = target - done
        if k <= 0:
            continue
        sec_ns = DAY_START_NS + sec * 10**9
        offs = sorted(r_randrange(10**9) for _ in range(k))
        inc = [t for a, b, t in incidents if a <= sec < b]
        for off in offs:
            ts = sec_ns + off
            ti = bis(tcum, r_random() * ttot)
            if ti >= len(tcum):
                ti = len(tcum) - 1
            lmed, rmed, static, has_id, has_n = m.tinfo[ti]
            path = m.templates[ti]
            if has_id:
                path = path.replace("{id}", str(int(rnd.paretovariate(0.8)) * 7 + r_randrange(7)))
            if has_n:
                path = path.replace("{n}", str(r_randrange(1, 60)))
            method = "GET" if static or r_random() < 0.5 else m.methods[r_randrange(len(m.methods))]
            client = not static and r_random() < CLIENT_FRACTION
            if client:
                comm, pids = m.clients[r_randrange(len(m.clients))]
                local = "10.0.0.%d:%d" % (5 + r_randrange(3), r_randrange(32768, 61000))
                remote = m.backends[r_randrange(len(m.backends))]
                host = m.hosts[6 + r_randrange(len(m.hosts) - 6)]
                role = "client"
            else:
                if static:
                    comm, pids, local = m.servers[0]
                    host = "static.example.com"
                else:
                    comm, pids, local = m.servers[r_randrange(len(m.servers))]
                    hi = bis(hcum, r_random() * htot)
                    host = m.hosts[min(hi, len(m.hosts) - 1)]
                if r_random() < 0.1:  # keep-alive: mostly the same connections
                    conns[r_randrange(len(conns))] = "%s:%d" % (
                        m.peers[r_randrange(len(m.peers))], r_randrange(32768, 61000))
                remote = conns[r_randrange(len(conns))]
                role = "server"
            pid = pids[r_randrange(len(pids))]
            x = r_random()
            flags = 0
            if inc and ti in inc and x < 0.7:
                status = (500, 502, 503, 504)[r_randrange(4)]
            elif x < 0.0008:
                status, flags = 0, 1  # no response
            elif x < 0.0009:
                status, flags = 200, 2  # partial
            elif x < 0.004:
                status = (500, 502, 503, 504)[r_randrange(4)]
            elif x < 0.03:
                status = 404
            elif x < 0.045:
                status = (400, 401, 403, 409, 422, 429)[r_randrange(6)]
            elif x < 0.11 and static:
                status = 304
            elif x < 0.12:
                status = (301, 302)[r_randrange(2)]
            else:
                status = 201 if method == "POST" else 204 if method == "DELETE" else 200
            lat = int(exp(r_gauss(lmed, 0.8)))
            if status >= 500:
                lat *= (1, 4, 30)[r_randrange(3)]
            resp = 0 if status in (0, 204, 304) or method == "HEAD" else \
                int(exp(r_gauss(rmed, 0.4 if has_id else 0.05)))
            req = int(exp(r_gauss(6.0, 1.0))) if method in ("POST", "PUT", "PATCH") else 0
            trace = span = ""
            if r_random() < TRACE_FRACTION:
                if client and recent_traces and r_random() < 0.7:
                    trace = recent_traces[r_randrange(len(recent_traces))]
                else:
                    trace = "%032x" % r_getrandbits(128)
                    recent_traces.append(trace)
                    if len(recent_traces) > 64:
                        del recent_traces[:32]
                    seen_traces += 1
                    if len(kept) < TRACE_IDS_KEPT:
                        kept.append(trace)
                    else:
                        j = r_randrange(seen_traces)
                        if j < TRACE_IDS_KEPT:
                            kept[j] = trace
                span = "%016x" % r_getrandbits(64)
            buf.append(fmt % (ts, ts + lat, lat, pid, comm, local, remote, method, path, status, req,
                              resp, trace, span, flags, role, host,
                              "1.0" if x > 0.985 else "1.1"))
        done = target
        if len(buf) >= 4096:
            out.write("".join(buf).encode())
            buf = []
    out.write("".join(buf).encode())
    if trace_ids_out is not None:
        trace_ids_out.write("".join(t + "\n" for t in kept))
    return kept


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: read_records.py N SEED OUT.jsonl [TRACE_IDS_OUT]")
    with open(sys.argv[3], "wb") as f:
        ids_f = open(sys.argv[4], "w") if len(sys.argv) == 5 else None
        generate(int(sys.argv[1]), int(sys.argv[2]), f, ids_f)
        if ids_f:
            ids_f.close()
