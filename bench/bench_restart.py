"""Durability figures of issue 10 (bench/README.md, "Restart and rebuild"): how long tracevaultd
takes from exec to serving (a) with TV_BENCH_BLOCKS blocks (default 10,000) in its catalog and
(b) with catalog.db deleted, rebuilding it from the block files; plus --rebuild-catalog and
--scrub over the same blocks. Reported, never asserted. Usage (as any user; /usr/bin/python3
with python3-grpcio): bench_restart.py [BUILD_DIR [DATA_PARENT]].

Blocks are written through the real Write rpc: TV_BENCH_SEGMENTS segments (default 50), each
block 10 records (~900 bytes stored, codec 0), so the figures measure per-block costs (names,
rows, opens), not bytes. The page cache is warm (the blocks were just written): set
TV_BENCH_DROP_CACHES=1 (root; it empties the cache of the whole machine) for cold figures."""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build"))
os.environ.setdefault("TV_BIN_DIR", BUILD)
os.environ.setdefault("TV_GEN_DIR", os.path.join(BUILD, "gen"))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import tvtest  # noqa: E402

BLOCKS = int(os.environ.get("TV_BENCH_BLOCKS", "10000"))
SEGMENTS = int(os.environ.get("TV_BENCH_SEGMENTS", "50"))
ROUNDS = int(os.environ.get("TV_BENCH_ROUNDS", "3"))
DROP = os.environ.get("TV_BENCH_DROP_CACHES") == "1"
BASE = 1_764_000_000_000_000_000
RECORDS_PER_BLOCK = 10
START_TIMEOUT_S = 300


def set_block_id(block, block_id):
    """tv_block_set_id in Python: the same block bytes under another id (header CRC fixed)."""
    import struct
    b = bytearray(block)
    struct.pack_into("<Q", b, 8, block_id)
    struct.pack_into("<I", b, 60, tvtest.crc32c(bytes(b[:60])))
    return bytes(b)


def fill(addr):
    """BLOCKS blocks in SEGMENTS segments; returns the ts range of the first block."""
    grpc, pb = tvtest.grpc_modules()
    cl = tvtest.GrpcClient(addr, timeout_s=600)
    per_seg = -(-BLOCKS // SEGMENTS)
    written = 0
    for s in range(SEGMENTS):
        n = min(per_seg, BLOCKS - written)
        if n <= 0:
            break
        t0 = BASE + s * 10**9
        template = tvtest.encode_block(1, [tvtest.trace_record(t0 + i, i, path="/bench/%d" % i)
                                           for i in range(RECORDS_PER_BLOCK)])
        blocks = [(0x100000 * (s + 1) + b, set_block_id(template, 0x100000 * (s + 1) + b))
                  for b in range(n)]
        r = cl.write_encoded(0xB000 + s, blocks, chunk_bytes=1 << 20)
        assert r.committed and len(r.committed_block_ids) == n, r
        written += n
    cl.close()
    return written


def drop_caches():
    if DROP:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def timed_start(data_dir, log):
    """Exec tracevaultd; returns (proc, addr, ms to the 'listening on' line)."""
    drop_caches()
    t0 = time.monotonic()
    proc = subprocess.Popen([tvtest.binary("tracevaultd"), "--data", data_dir, "--listen",
                             "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=log)
    line = proc.stdout.readline().decode()
    ms = (time.monotonic() - t0) * 1e3
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit("bench: tracevaultd did not start: %r" % line)
    return proc, line.split()[-1], ms, t0


def first_query(addr, t0):
    """A first query answered (the first block's range): ms since exec."""
    cl = tvtest.GrpcClient(addr)
    recs = cl.query(BASE, BASE + RECORDS_PER_BLOCK)
    cl.close()
    assert len(recs) > 0
    return (time.monotonic() - t0) * 1e3


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    proc.stdout.close()


def recovery_ms(log_path, since):
    with open(log_path) as f:
        f.seek(since)
        for line in f:
            if line.startswith("recovery: ") and line.rstrip().endswith(" ms") and "listed" in line:
                return float(line.rsplit(";", 1)[1].split()[0])
    return float("nan")


def run_job(data_dir, flag):
    drop_caches()
    t0 = time.monotonic()
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir, flag],
                       capture_output=True, text=True, timeout=START_TIMEOUT_S)
    ms = (time.monotonic() - t0) * 1e3
    if p.returncode != 0:
        raise SystemExit("bench: tracevaultd %s failed: %s" % (flag, p.stderr[-500:]))
    return ms, p.stdout.strip()


def main():
    parent = sys.argv[2] if len(sys.argv) > 2 else None
    work = tempfile.mkdtemp(prefix="tv-bench-restart-", dir=parent)
    data = os.path.join(work, "data")
    log_path = os.path.join(work, "server.log")
    try:
        with open(log_path, "a") as log:
            proc, addr, _, _ = timed_start(data, log)
            t = time.monotonic()
            n = fill(addr)
            fill_s = time.monotonic() - t
            stop(proc)
            print("restart bench: %d blocks in %d segments written in %.1f s (data %s, %s "
                  "page cache)" % (n, SEGMENTS, fill_s, data, "cold" if DROP else "warm"))
            listen, query, rec = [], [], []
            for _ in range(ROUNDS):
                since = os.path.getsize(log_path)
                proc, addr, ms, t0 = timed_start(data, log)
                listen.append(ms)
                query.append(first_query(addr, t0))
                stop(proc)
                rec.append(recovery_ms(log_path, since))
            print("(a) restart, %d blocks in the catalog: exec to 'listening on' %.0f ms, to a "
                  "first query answered %.0f ms (recovery itself %.1f ms); median of %d, "
                  "target <= 1000 ms" % (n, statistics.median(listen), statistics.median(query),
                                         statistics.median(rec), ROUNDS))
            listen, query, rec = [], [], []
            for _ in range(ROUNDS):
                for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
                    if os.path.exists(os.path.join(data, name)):
                        os.unlink(os.path.join(data, name))
                since = os.path.getsize(log_path)
                proc, addr, ms, t0 = timed_start(data, log)
                listen.append(ms)
                query.append(first_query(addr, t0))
                stop(proc)
                rec.append(recovery_ms(log_path, since))
            print("(b) catalog.db deleted, rebuilt from %d block files: exec to 'listening on' "
                  "%.0f ms, to a first query answered %.0f ms (recovery itself %.1f ms); median "
                  "of %d" % (n, statistics.median(listen), statistics.median(query),
                             statistics.median(rec), ROUNDS))
            ms, out = run_job(data, "--rebuild-catalog")
            print("--rebuild-catalog: %.0f ms exec to exit (%s)" % (ms, out))
            ms, out = run_job(data, "--scrub")
            print("--scrub: %.0f ms exec to exit (%s)" % (ms, out))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
