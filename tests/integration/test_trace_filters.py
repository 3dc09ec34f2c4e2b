"""--trace-id queries and the catalog's copies of the blocks' trace-id filters (server/catalog.h,
"Trace-id filters"; proto/BLOCK.md): the first lookup reads each version 3 block's own filter
and copies it into catalog.db; later lookups rule blocks out from the copies without opening
their files (the server's log line counts both), so a lookup opens only the blocks that may
hold the id (and the version 2 block, which has no filter), and builds the records of only the
pages whose trace-id columns may hold it. Answers stay exact, compared with
a reference computed here, when copies are missing (deleted from catalog.db: the files'
filters are read again), after a Delete (its blocks' copies go with their rows), and after
--scrub dropped a copy that disagreed with its block."""
import os
import random
import re
import sqlite3
import subprocess
import sys

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

        got, (planned, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "first lookup")
        assert (planned, opened, sent, ruled, read) == (nblocks, nblocks, 1, 0, V3_BLOCKS + 1), \
            (planned, opened, sent, ruled, read)
        print("ok the first lookup reads every v3 block's own filter (%d) and copies it" % read)

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
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", srv.data_dir, "--scrub"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert "trace-id filter differed" in p.stderr and "1 rows repaired" in p.stderr, \
            p.stderr
        assert 0x5100 + holder not in filter_rows(srv.data_dir)
        srv.start()
        cl = GrpcClient(srv.addr)
        got, (_, opened, sent, ruled, read) = lookup(srv, cl, pb, [t])
        check(got, recs, [t], "after scrub")
        assert read == 1, read
        print("ok --scrub drops a copy that differs from its block's filter")
        cl.close()
    finally:
        srv.stop()
        srv.cleanup()
    print("PASS")


if __name__ == "__main__":
    main()
