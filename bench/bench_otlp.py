"""bench/run.sh's otlp step (issues 15 and 16): OTLP/gRPC ingest in spans/s and spans per
CPU-second of tracevaultd, with the Export latency, beside the durable block ingest of the
same round. Each round, interleaved, each run against a fresh tracevaultd on a temp data dir:
  c1, c4  bench/otlp_load (C, gRPC core): TV_BENCH_OTLP_BATCHES Export calls of 512 spans, 1
          and 4 calls in flight; spans/s (wall, from the first call to the last reply; each
          reply means durable), Export p50/p99 (send to reply), every reply checked;
  node    bench/otlp_node.js: the real OpenTelemetry SDK for Node.js (the versions and npm
          install of tests/integration/test_capture_otel_node.py, into BUILD/npm) exporting
          TV_BENCH_OTLP_NODE_SPANS spans through its BatchSpanProcessor in batches of 512;
          spans/s from the first span to forceFlush done (SKIP line without node/npm);
  ceil1, ceil4  the ingest ceiling of the same round: bench_ingest writing uncompressed blocks
          the size of the c1 / c4 run's stored blocks, one block per segment (what an Export
          makes), with 1 / 4 writers, about as many bytes: its durable MB/s. The OTLP run's
          stored MB/s (its block files' bytes / wall time) over it says how much of the write
          path's rate for the same blocks OTLP keeps after decoding and sealing spans.
Per run the server's CPU (utime + stime from /proc/PID/stat, as run.sh's ingest step) gives
spans per server CPU-second: the "per core" figure. Figures: median [min-max] over rounds.
TV_BENCH_QUICK=1: 1 round, small runs (make test). Run by /usr/bin/python3 with TV_BIN_DIR."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import tvtest  # noqa: E402
import test_capture_otel_node as otel_node  # noqa: E402  (its pinned npm install)

QUICK = os.environ.get("TV_BENCH_QUICK") == "1"


def env_int(name, default):
    v = os.environ.get(name, str(default))
    if not v.isdigit() or int(v) < 1:
        print("bench_otlp.py: invalid %s: '%s' (a positive integer)" % (name, v),
              file=sys.stderr)
        sys.exit(2)
    return int(v)


ROUNDS = env_int("TV_BENCH_OTLP_ROUNDS", 1 if QUICK else 5)
BATCHES = env_int("TV_BENCH_OTLP_BATCHES", 12 if QUICK else 48)  # per C run, 512 spans each
NODE_SPANS = env_int("TV_BENCH_OTLP_NODE_SPANS", 1024 if QUICK else 8192)
SPANS = 512
RUN_TIMEOUT_S = 120  # one client run; the whole step stays bounded by ROUNDS runs of it
HZ = os.sysconf("SC_CLK_TCK")
BIN = os.environ["TV_BIN_DIR"]


def cpu_s(pid):
    """utime + stime of pid, seconds (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def kv(text):
    """'key value' lines -> dict of floats (other lines ignored)."""
    out = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) == 2:
            try:
                out[p[0]] = float(p[1])
            except ValueError:
                pass
    return out


def stored_bytes(data):
    """Bytes of the block files under the data dir's blocks/ (what the run made durable)."""
    total = 0
    for root, _, files in os.walk(os.path.join(data, "blocks")):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


class Server:
    """A fresh tracevaultd on a temp data dir under work, stopped (and its dir removed) on
    exit; .cpu() its CPU seconds so far."""

    def __init__(self, work):
        self.data = tempfile.mkdtemp(dir=work)
        self.proc = subprocess.Popen([os.path.join(BIN, "tracevaultd"), "--data", self.data,
                                      "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise SystemExit("bench_otlp.py: tracevaultd did not start: %r %s"
                             % (line, self.proc.stderr.read()[-2000:]))
        self.addr = line.split()[2]

    def cpu(self):
        return cpu_s(self.proc.pid)

    def stop(self):
        """Stop it; its block files' bytes."""
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        n = stored_bytes(self.data)
        shutil.rmtree(self.data, ignore_errors=True)
        return n


def run_client(argv, env=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
    if p.returncode != 0:
        raise SystemExit("bench_otlp.py: %s failed (exit %d): %s" % (
            os.path.basename(argv[1] if argv[0] == "node" else argv[0]), p.returncode,
            p.stderr.strip()[-2000:]))
    return kv(p.stdout)


def otlp_c(work, in_flight, seed):
    srv = Server(work)
    try:
        c0 = srv.cpu()
        r = run_client([os.path.join(BIN, "bench", "otlp_load"), "--server", srv.addr,
                        "--batches", str(BATCHES), "--spans", str(SPANS), "--in-flight",
                        str(in_flight), "--seed", str(seed), "--max-seconds", "60"])
        r["server_cpu_s"] = srv.cpu() - c0
    finally:
        r_bytes = srv.stop()
    r["stored_bytes"] = r_bytes
    r["stored_MBps"] = r_bytes / r["seconds"] / 1e6
    r["spans_per_cpu_s"] = r["spans_stored"] / r["server_cpu_s"] if r["server_cpu_s"] else 0
    return r


def otlp_node(work, modules):
    srv = Server(work)
    try:
        c0 = srv.cpu()
        env = otel_node.node_env(modules, srv, N=NODE_SPANS)
        r = run_client(["node", os.path.join(HERE, "otlp_node.js")], env=env)
        r["server_cpu_s"] = srv.cpu() - c0
    finally:
        srv.stop()
    r["spans_per_cpu_s"] = r["spans_exported"] / r["server_cpu_s"] if r["server_cpu_s"] else 0
    return r


def ceiling(work, block_bytes, total_bytes, writers):
    """bench_ingest MB/s: uncompressed blocks of block_bytes, one per segment, writers
    writers, about total_bytes in all (at least 1 MiB, its unit)."""
    srv = Server(work)
    try:
        mib = max(1, round(total_bytes / (1 << 20)))
        r = run_client([os.path.join(BIN, "bench", "bench_ingest"), "--server", srv.addr,
                        "--mib", str(mib), "--block-bytes", str(int(block_bytes)),
                        "--blocks-per-segment", "1", "--writers", str(writers)])
    finally:
        srv.stop()
    return r["ingest_bytes"] / r["ingest_seconds"] / 1e6  # its own MB/s has 1 decimal


def spread(xs, fmt="%.0f"):
    return ("%s [%s-%s]" % (fmt, fmt, fmt)) % (statistics.median(xs), min(xs), max(xs))


def main():
    node_skip = None
    modules = None
    try:
        modules = otel_node.npm_modules()
    except tvtest.Unavailable as e:
        node_skip = str(e)
    except subprocess.TimeoutExpired:
        node_skip = "npm install of the OpenTelemetry SDK timed out"
    work = tempfile.mkdtemp(prefix="tracevault-bench-otlp-")
    print("tracevault OTLP bench: %d rounds; per round, each against a fresh tracevaultd: the C "
          "generator (bench/otlp_load) %d Export calls of %d spans at 1 and 4 in flight, the "
          "Node SDK %d spans in batches of %d, bench_ingest with blocks of the same size "
          "(the ingest ceiling); data under %s" % (ROUNDS, BATCHES, SPANS, NODE_SPANS, SPANS,
                                                  work))
    print("%-6s %-6s %9s %9s %9s %9s %11s %9s %10s %10s %7s" % (
        "round", "run", "spans/s", "p50 ms", "p99 ms", "srv cpu s", "spans/cpu-s",
        "cli cpu s", "stored MB/s", "ceil MB/s", "x ceil"))
    res = {k: [] for k in ("c1", "c4", "node")}
    ratios = {"c1": [], "c4": []}
    t0 = time.monotonic()
    try:
        for rnd in range(1, ROUNDS + 1):
            for name, n in (("c1", 1), ("c4", 4)):
                r = otlp_c(work, n, rnd * 10 + n)
                ceil = ceiling(work, r["stored_bytes"] / r["batches_ok"], r["stored_bytes"], n)
                r["ceiling_MBps"] = ceil
                ratios[name].append(r["stored_MBps"] / ceil)
                res[name].append(r)
                print("%-6d %-6s %9.0f %9.2f %9.2f %9.3f %11.0f %9.3f %10.2f %10.2f %7.2f" % (
                    rnd, name, r["spans_per_s"], r["export_p50_us"] / 1e3,
                    r["export_p99_us"] / 1e3, r["server_cpu_s"], r["spans_per_cpu_s"],
                    r["client_cpu_s"], r["stored_MBps"], ceil, ratios[name][-1]))
            if modules:
                r = otlp_node(work, modules)
                res["node"].append(r)
                print("%-6d %-6s %9.0f %9s %9s %9.3f %11.0f %9.3f" % (
                    rnd, "node", r["spans_per_s"], "-", "-", r["server_cpu_s"],
                    r["spans_per_cpu_s"], r["client_cpu_s"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = ROUNDS
    for name, label in (("c1", "C generator, 1 in flight"), ("c4", "C generator, 4 in flight")):
        rs = res[name]
        print("otlp %s: %s spans/s, %s spans per server CPU-s, Export p50 %s ms, p99 %s ms "
              "(%d rounds)" % (label, spread([r["spans_per_s"] for r in rs]),
                               spread([r["spans_per_cpu_s"] for r in rs]),
                               spread([r["export_p50_us"] / 1e3 for r in rs], "%.2f"),
                               spread([r["export_p99_us"] / 1e3 for r in rs], "%.2f"), n))
        print("otlp %s / ingest ceiling, same round: %sx of %s MB/s (stored %s MB/s, blocks of "
              "%s B)" % (label, spread(ratios[name], "%.2f"),
                         spread([r["ceiling_MBps"] for r in rs], "%.2f"),
                         spread([r["stored_MBps"] for r in rs], "%.2f"),
                         spread([r["stored_bytes"] / r["batches_ok"] for r in rs])))
    if node_skip:
        print("otlp Node SDK: SKIP: %s" % node_skip)
    else:
        rs = res["node"]
        print("otlp Node SDK, batches of %d: %s spans/s, %s spans per server CPU-s, SDK process "
              "CPU / wall %s (%d rounds)"
              % (SPANS, spread([r["spans_per_s"] for r in rs]),
                 spread([r["spans_per_cpu_s"] for r in rs]),
                 spread([r["client_cpu_s"] / r["seconds"] for r in rs], "%.2f"), n))
    print("otlp step: %.0f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
