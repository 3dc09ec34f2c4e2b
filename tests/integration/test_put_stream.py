"""put streams blocks while it reads (issue 12, "put that scales"): a file whose blocks are many
times --cache-bytes goes through with the put's peak RSS bounded by the cache, not the file, and
every record is queryable afterwards; a bad line after several blocks were already sent cancels
the segment, so nothing of the file is committed, with the same exit code and FILE:LINE message
as a bad line found before anything was sent."""
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BASE_NS = 1767225600 * 10**9
N_BIG = 36_000          # records of ~3.1 KB of random text: ~110 MB of JSON, ~83 MB of blocks
PATH_CHARS = 3000
CACHE = "8M"
CACHE_BYTES = 8 << 20
TIME = "/usr/bin/time"   # GNU time: the peak RSS of one process
BAD_AT = 12_000
# what put holds besides the cache, whatever the file: two builders' raw records (one parsed
# into while the other is sealed on the sealing thread) and, while sealing, their packed copy
# and the zstd output (a block each), the next sealed block waiting for room, and allocator
# slack; measured +17 MiB over a small put with an 8M cache with one builder
BLOCK_RAW_BYTES = 4 << 20         # the bad line's record index: ~9 blocks (~20 MB) were sealed before it


def record(rng, i, base):
    # base64 of random bytes compresses only to ~3/4: blocks stay big, as the test needs
    return {"ts_ns": base + i, "pid": i + 1, "method": "GET",
            "path": "/" + base64.b64encode(rng.randbytes(PATH_CHARS * 3 // 4)).decode()}


def write_lines(path, lines):
    with open(path, "w") as f:
        for line in lines:
            f.write(line + "\n")


def put_rss(args, tmp):
    """Run tracevault put under /usr/bin/time (killed after 240 s); (exit code, stdout, stderr,
    peak RSS in KiB of put alone). Not our own rusage: Linux carries a parent's high-water RSS
    into a child's across fork+exec, and this script holds the records. ASan's quarantine
    keeps freed memory resident, so it is turned off for the measured runs."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(o for o in (env.get("ASAN_OPTIONS", ""),
                                                "quarantine_size_mb=0") if o)
    rss_file = os.path.join(tmp, "rss")
    p = subprocess.run([TIME, "-f", "%M", "-o", rss_file, tvtest.binary("tracevault"), "put"] +
                       args, capture_output=True, text=True, env=env, timeout=240)
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    return p.returncode, p.stdout, p.stderr, rss


def query(addr, frm, to):
    p = tvtest.run(["query", "--server", addr, "--from", str(frm), "--to", str(to)],
                   timeout=240, check=True)
    return [json.loads(line) for line in p.stdout.splitlines()]


def stored_bytes(data_dir):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(data_dir)
               for f in files if f.endswith(".tvb"))


def main():
    if not os.access(TIME, os.X_OK):
        tvtest.skip("no %s to measure a process's peak RSS" % TIME)
    tmp = tempfile.mkdtemp(prefix="tv-putstream-")
    srv = tvtest.Server().start()
    try:
        rng = random.Random(12)
        big_records = [record(rng, i, BASE_NS) for i in range(N_BIG)]
        big = os.path.join(tmp, "big.jsonl")
        write_lines(big, [json.dumps(r) for r in big_records])
        small = os.path.join(tmp, "small.jsonl")
        small_base = BASE_NS + 10**12
        write_lines(small, [json.dumps(record(rng, i, small_base)) for i in range(10)])

        # the process's own size, with one small block: the baseline the cache bound adds to
        rc, out, err, rss_small = put_rss(["--server", srv.addr, "--cache-bytes", CACHE, small], tmp)
        assert rc == 0 and out == "", (rc, err)
        before = stored_bytes(srv.data_dir)

        rc, out, err, rss_big = put_rss(["--server", srv.addr, "--cache-bytes", CACHE, big], tmp)
        assert rc == 0 and out == "", (rc, err)
        assert err.startswith("put %d records in " % N_BIG), err
        blocks = stored_bytes(srv.data_dir) - before
        bound_kib = rss_small + (2 * CACHE_BYTES + 6 * BLOCK_RAW_BYTES) // 1024
        # the test means something only if holding every block would blow the bound
        assert blocks // 1024 > bound_kib - rss_small + 32 * 1024, \
            "blocks of %d bytes are too few to tell a bounded put from one holding them" % blocks
        print("put of %d records: %d bytes of blocks, peak RSS %d KiB (small put %d KiB, "
              "bound %d KiB)" % (N_BIG, blocks, rss_big, rss_small, bound_kib))
        assert rss_big <= bound_kib, \
            "put held %d KiB, more than the %s cache allows over a small put (%d KiB)" % (
                rss_big, CACHE, rss_small)
        got = query(srv.addr, BASE_NS, BASE_NS + N_BIG)
        assert [(r["ts_ns"], r["pid"], r["path"]) for r in got] == \
            [(r["ts_ns"], r["pid"], r["path"]) for r in big_records], \
            "the streamed put's records differ from the file's (%d of %d)" % (len(got), N_BIG)
        print("ok streamed put: all %d records queryable" % N_BIG)

        # a bad line after several blocks went to the server: the segment is cancelled and
        # deleted, nothing of the file is visible, the message is the line's as always
        bad_base = BASE_NS + 2 * 10**12
        lines = [json.dumps(record(rng, i, bad_base)) for i in range(N_BIG)]
        lines.insert(BAD_AT, '{"ts_ns": "soon"}')
        bad = os.path.join(tmp, "bad.jsonl")
        write_lines(bad, lines)
        rc, out, err, _ = put_rss(["--server", srv.addr, "--cache-bytes", CACHE, bad], tmp)
        assert rc == 1 and out == "", (rc, out, err)
        assert err == "tracevault: %s:%d: field 'ts_ns' must be an integer\n" % (
            bad, BAD_AT + 1), err
        assert query(srv.addr, bad_base, bad_base + N_BIG + 1) == [], \
            "a put cancelled by a bad line left records"
        log = srv.log()
        assert "aborted: cancelled by client" in log, \
            "no block was sent before the bad line (the test needs streaming): %s" % log[-2000:]
        tvtest.wait_for(lambda: not os.listdir(os.path.join(srv.data_dir, "tmp")),
                        "the cancelled segment's temp files to go", timeout_s=30)
        assert len(query(srv.addr, 0, 2**63)) == N_BIG + 10, "other records changed"
        print("ok bad line after streamed blocks: nothing committed, %s" % err.strip())
    finally:
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
