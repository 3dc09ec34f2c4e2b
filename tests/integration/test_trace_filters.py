"""--trace-id queries and the catalog's copies of the blocks' trace-id filters (server/catalog.h,
"Trace-id filters"; proto/BLOCK.md): COMMIT stores each version 3 block's filter in catalog.db
with its row (the copies equal the blocks' filters byte for byte), so the first lookup right
after the put reads no block file's filter; lookups rule blocks out from the copies without
opening their files (the server's log line counts both), so a lookup opens only the blocks that
may hold the id (and the version 2 block, which has no filter), and builds the records of only
the pages whose trace-id columns may hold it. Answers stay exact, compared with a reference
computed here, when copies are missing (deleted from catalog.db, as in a data dir committed
before copies were taken at COMMIT: the files' filters are read and copied), after a Delete
(its blocks' copies go with their rows), after --scrub dropped a copy that disagreed with its
block, after retention removed a segment, after --scrub quarantined a damaged block (both take
its copy with its row), and after --rebuild-catalog (a new catalog without copies)."""
import os
import random
import re
import sqlite3
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block_v2, encode_block_v3  # noqa: E402
from tvtest.grpc_client import GrpcClient, grpc_modules  # noqa: E402

BASE_NS = 1_767_225_600 * 10**9
V3_BLOCKS = 12          # version 3 blocks with traced records, one segment each
PER_BLOCK = 400
STEP_NS = 10**6
LOG_LINE = re.compile(r"query: planned (\d+) blocks, opened (\d+), examined (\d+) records, sent "
                      r"(\d+), forward, [0-9.]+ ms; trace ids: (\d+) blocks ruled out by the "
                      r"catalog's filters, (\d+) filters read from block files")


def make_blocks(pb, rng):
    """V3_BLOCKS traced v3 blocks (block ids 0x5100+k, segment 0x6000+k), one v3 block without a
    trace id (0x5200, segment 0x7000) and one v2 block (0x5300, segment 0x7100), each over its own stretch of time. Returns
    [(segment, block_id, encoded)], every record as a TraceRecord."""
    out, recs = [], []
    t = BASE_NS
    for k in range(V3_BLOCKS + 2):
        part = []
        for i in range(PER_BLOCK):
            traced = k < V3_BLOCKS or k == V3_BLOCKS + 1
            part.append(pb.TraceRecord(
                ts_ns=t, end_ns=t + 5000, latency_ns=5000, pid=100 + k, comm="svc",
                method="GET", path="/p/%d" % (i % 13), status=200, role="server",
                trace_id="%032x" % rng.getrandbits(128) if traced else "",
                span_id="%016x" % rng.getrandbits(64) if traced else ""))
            t += STEP_NS
        recs.extend(part)
        if k < V3_BLOCKS:
            out.append((0x6000 + k, 0x5100 + k, encode_block_v3(0x5100 + k, part,
                                                               page_records=100)))
        elif k == V3_BLOCKS:
            out.append((0x7000, 0x5200, encode_block_v3(0x5200, part, page_records=100)))
        else:
            out.append((0x7100, 0x5300, encode_block_v2(0x5300, part)))
    return out, recs


def lookup(srv, cl, pb, ids):
    """Query the whole range for ids; returns (records, (planned, opened, sent, ruled_out,
    read)) from the server's log line of it; lookup.examined is its records examined."""
    before = len(LOG_LINE.findall(srv.log()))
    req = pb.QueryRequest(from_ns=BASE_NS, to_ns=BASE_NS + 10**12,
                          filter=pb.QueryFilter(trace_ids=ids))
    got = []
    for resp in cl.query_rpc(req, timeout=60):
        assert not resp.skipped, resp.skipped
        got.extend(resp.records)
    lines = LOG_LINE.findall(srv.log())
    assert len(lines) == before + 1, lines[before:]
    planned, opened, examined, sent, ruled, read = (int(x) for x in lines[-1])
    lookup.examined = examined
    return got, (planned, opened, sent, ruled, read)


def check(got, recs, ids, label):
    want = [r for r in recs if r.trace_id.lower() in {i.lower() for i in ids}]
    assert [r.SerializeToString() for r in got] == [r.SerializeToString() for r in want], \
        (label, len(got), len(want))


def filter_rows(data_dir):
    db = sqlite3.connect(os.path.join(data_dir, "catalog.db"))
    try:
        return dict(db.execute("SELECT block_id, bloom FROM trace_filters").fetchall())
    finally:
        db.close()


def v3_filter(enc):
    """The trace-id filter bytes of an encoded version 3 block (proto/BLOCK.md: page_count at
    108, bloom_bytes at 112, the payload at 128 starts with the 32-byte directory entries)."""
    pages, nbytes = struct.unpack_from("<II", enc, 108)
    start = 128 + pages * 32
    return enc[start:start + nbytes]


def catalog_bytes(data_dir):
    """{block_id: bytes} of the catalog's blocks rows."""
    db = sqlite3.connect(os.path.join(data_dir, "catalog.db"))
    try:
        return dict(db.execute("SELECT block_id, bytes FROM blocks").fetchall())
    finally:
        db.close()


def block_of(rec):
    """The block id make_blocks put rec in."""
    k = (rec.ts_ns - BASE_NS) // STEP_NS // PER_BLOCK
    return 0x5100 + k if k < V3_BLOCKS else 0x5200 if k == V3_BLOCKS else 0x5300


def scrub(data_dir, rc=0):
    """tracevaultd --scrub; rc is its exit status (1: it found a damaged block)."""
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir, "--scrub"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == rc, (p.returncode, p.stderr)
    return p.stderr


def main():
    rng = random.Random(1212)
    pb = grpc_modules()[1]
    blocks, recs = make_blocks(pb, rng)
    nblocks = len(blocks)
    srv = tvtest.Server().start()
    try:
        cl = GrpcClient(srv.addr)
        for seg, bid, enc in blocks:
            cl.write_encoded(seg, [(bid, enc)], writer_token=0x7e57)
        holder = 5  # its records' ids
        t = recs[holder * PER_BLOCK + 17].trace_id

        # COMMIT stored every v3 block's filter with its row (read here while the server runs:
        # the catalog is in WAL mode), equal to the block's own
        rows = filter_rows(srv.data_dir)
        want = {b: v3_filter(enc) for _, b, enc in blocks[:V3_BLOCKS + 1]}
        assert sorted(rows) == sorted(want), sorted(rows)
        assert all(bytes(rows[b]) == want[b] for b in want), \
            [hex(b) for b in want if bytes(rows[b]) != want[b]]
        assert rows[0x5200] == b"" and all(len(want[b]) > 0 for b in want if b != 0x5200)
        print("ok COMMIT copied the %d v3 blocks' filters into the catalog" % len(rows))

        got, (planned, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "first lookup")
        # the holder and the v2 block are opened; a false positive (~1%) may add one
        assert planned == nblocks and read == 0 and ruled >= V3_BLOCKS - 1 and \
            opened == nblocks - ruled and opened <= 3, (planned, opened, sent, ruled, read)
        print("ok the first lookup after the put reads no block file's filter: %d blocks "
              "ruled out, %d opened" % (ruled, opened))

        got, (planned, opened, sent, ruled, read) = lookup(srv, cl, pb, [t.upper()])
        check(got, recs, [t], "second lookup")
        # the holder and the v2 block are opened; a false positive (~1%) may add one
        assert read == 0 and opened == nblocks - ruled and ruled >= V3_BLOCKS - 1, \
            (opened, ruled, read)
        assert opened <= 3, opened
        # in the blocks opened only the pages that may hold the id are built: the holder's
        # (100 records of its 4 pages), the v2 block's 400, a false positive's (one page)
        assert lookup.examined <= PER_BLOCK + 2 * 100, lookup.examined
        print("ok the next lookup opens %d of %d blocks: the catalog's copies rule out %d"
              % (opened, nblocks, ruled))

        two = [t, recs[9 * PER_BLOCK + 3].trace_id]
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, two)
        check(got, recs, two, "two ids")
        assert sent == 2 and read == 0 and 3 <= opened <= 4, (sent, opened, read)
        none = "ab" * 16
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [none])
        assert got == [] and opened <= 2 and read == 0, (opened, read)
        print("ok two ids open their two blocks; an id of no record opens %d (the v2 one)"
              % opened)

        # a Delete takes its blocks' copies with their rows
        code, details, _ = cl.delete_segment(0x6000 + 2, writer_token=0x7e57)
        assert code == cl.grpc.StatusCode.OK, (code, details)
        recs = [r for r in recs if not (2 * PER_BLOCK <= (r.ts_ns - BASE_NS) // STEP_NS
                                        < 3 * PER_BLOCK)]
        got, _ = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "after a Delete")
        cl.close()
        srv.stop()
        rows = filter_rows(srv.data_dir)
        assert sorted(rows) == sorted(b for _, b, _ in blocks[:V3_BLOCKS + 1] if b != 0x5102), \
            sorted(rows)
        print("ok the deleted block's copy went with its row (%d copies left)" % len(rows))

        # copies lost (an older catalog, a crash before the copy): the files' filters decide
        db = sqlite3.connect(os.path.join(srv.data_dir, "catalog.db"))
        db.execute("DELETE FROM trace_filters WHERE block_id % 2 = 1")
        db.commit()
        dropped = len(rows) - db.execute("SELECT count(*) FROM trace_filters").fetchone()[0]
        db.close()
        srv.start()
        cl = GrpcClient(srv.addr)
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "copies missing")
        assert read == dropped and ruled + read + 1 == nblocks - 1, (ruled, read, dropped)
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "copies made again")
        assert read == 0, read
        print("ok %d missing copies: the same answer, their files' filters read and copied"
              % dropped)

        # a copy that lies (all zero: "none of these ids") is what --scrub is for
        cl.close()
        srv.stop()
        db = sqlite3.connect(os.path.join(srv.data_dir, "catalog.db"))
        n = db.execute("UPDATE trace_filters SET bloom = zeroblob(length(bloom)) WHERE "
                       "block_id = ?", (0x5100 + holder,)).rowcount
        db.commit()
        db.close()
        assert n == 1
        err = scrub(srv.data_dir)
        assert "trace-id filter differed" in err and "1 rows repaired" in err, err
        assert 0x5100 + holder not in filter_rows(srv.data_dir)
        srv.start()
        cl = GrpcClient(srv.addr)
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "after scrub")
        assert read == 1, read
        print("ok --scrub drops a copy that differs from its block's filter")
        cl.close()
        srv.stop()

        # retention removes the oldest segments (down to its low-water mark, so more than the
        # one asked for may go): their copies go with their rows
        srv.extra_args = ["--retain-bytes", str(sum(catalog_bytes(srv.data_dir).values()) -
                                                catalog_bytes(srv.data_dir)[0x5100])]
        srv.start()
        cl = GrpcClient(srv.addr)
        gone = re.compile(r"retention: removed (\d+) segments")
        for _ in range(100):
            if gone.search(srv.log()):
                break
            time.sleep(0.05)
        assert gone.search(srv.log()), srv.log()[-2000:]
        kept = catalog_bytes(srv.data_dir)
        assert 0x5100 not in kept and 0x5105 in kept, sorted(kept)
        recs = [r for r in recs if block_of(r) in kept]
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "after retention")
        assert read == 0, read
        cl.close()
        srv.stop()
        srv.extra_args = []
        rows = filter_rows(srv.data_dir)
        assert sorted(rows) == sorted(b for b in kept if b != 0x5300), (sorted(rows), sorted(kept))
        print("ok retention removed %d blocks and their copies with their rows"
              % (V3_BLOCKS + 1 - len(rows)))

        # --scrub quarantines a damaged block (the oldest traced one left but the holder: a
        # byte of its last page flipped): its copy goes with its row
        bad = min(b for b in rows if b != 0x5100 + holder)
        path = os.path.join(srv.data_dir, "blocks", "%016x-%016x.tvb"
                            % (0x6000 + bad - 0x5100, bad))
        with open(path, "r+b") as f:
            f.seek(-3, os.SEEK_END)
            byte = f.read(1)
            f.seek(-3, os.SEEK_END)
            f.write(bytes([byte[0] ^ 0xff]))
        err = scrub(srv.data_dir, rc=1)
        assert "1 damaged" in err, err
        rows = filter_rows(srv.data_dir)
        kept = catalog_bytes(srv.data_dir)
        assert bad not in rows and bad not in kept and len(rows) > 1, sorted(rows)
        assert sorted(rows) == sorted(b for b in kept if b != 0x5300), (sorted(rows), sorted(kept))
        recs = [r for r in recs if block_of(r) in kept]
        print("ok --scrub quarantined the damaged block and its copy went with its row")

        # --rebuild-catalog: a new catalog, without copies; the files' filters are read by
        # the first lookup and copied, the answers the same
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", srv.data_dir,
                            "--rebuild-catalog"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert filter_rows(srv.data_dir) == {}
        left = len(rows)
        srv.start()
        cl = GrpcClient(srv.addr)
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "after --rebuild-catalog")
        assert read == left and ruled == 0, (read, ruled, left)
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "after --rebuild-catalog, again")
        assert read == 0 and ruled >= left - 2, (read, ruled)
        print("ok after --rebuild-catalog the first lookup reads the %d filters and copies them"
              % left)
        cl.close()
    finally:
        srv.stop()
        srv.cleanup()
    print("PASS")


if __name__ == "__main__":
    main()
