"""Summary read from version 3 columns (server/summary_scan.c) against the record-by-record
path: the same seeded records, in the same blocks of the same segments, written as version 2
blocks to server R and as version 3 blocks (pages of 1 to 2048 records, columns compressed or
not, some records with fields kept outside the columns, some without the group's field) to
server C. For every GroupBy, random windows x random filters (trace ids too, which C reads
record by record) x quantiles x max_groups: the two SummaryResponses are byte-identical, and
each group agrees with the reference of test_summary. C's log shows its records came from the
columns, R's that none did. A v3 block with a damaged last page is skipped and quarantined,
the records of its earlier pages counted (records_served), as the record path counts them."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from test_query_filters import BASE, SPAN, random_record, random_spec  # noqa: E402
from test_summary import BY, DEFAULT_Q, check_group, reference  # noqa: E402
from tvtest.blocks import encode_block_v2, encode_block_v3  # noqa: E402

ROUNDS = 240
TIME_BUDGET_S = 200


def varied_record(rng, pb, ts):
    r = random_record(rng, ts)
    x = rng.random()
    if x < 0.1:  # fields without a column: kept beside the columns (BLOCK.md column 30)
        r.req_headers.append(pb.Header(name="x-k", value=str(rng.randrange(9))))
        r.resp_body = b"body"
    elif x < 0.2:  # the group-by fields absent
        for f in ("path", "host", "method", "comm", "remote", "role"):
            if rng.random() < 0.5:
                r.ClearField(f)
    return r


def write_both(rng, pb, cr, cc):
    """24 segments of 1-3 overlapping blocks, to R as v2 and to C as v3. Returns the records."""
    records = []
    shared_ts = [BASE + rng.randrange(SPAN) for _ in range(40)]
    block_id = 0x5000
    for seg in range(24):
        v2, v3 = [], []
        for _ in range(rng.randrange(1, 4)):
            start = BASE + rng.randrange(SPAN)
            width = rng.choice([1, 1000, SPAN // 8, SPAN // 2])
            n = rng.randrange(1, 600)
            ts = sorted(rng.choice(shared_ts) if rng.random() < 0.1 else
                        start + rng.randrange(width) for _ in range(n))
            recs = [varied_record(rng, pb, t) for t in ts]
            block_id += rng.randrange(1, 50)
            v2.append((block_id, encode_block_v2(block_id, recs)))
            v3.append((block_id, encode_block_v3(block_id, recs,
                                                 page_records=rng.choice([1, 7, 64, 2048]),
                                                 codec=rng.choice([0, 1]))))
            records.extend(recs)
        cr.write_encoded(0x500 + seg, v2)
        cc.write_encoded(0x500 + seg, v3)
    return records


def random_window(rng, records):
    """Windows that cut pages anywhere, empty ones and the whole span."""
    a = rng.choice(records).ts_ns + rng.choice([-1, 0, 1])
    b = rng.choice(records).ts_ns + rng.choice([-1, 0, 1])
    lo, hi = min(a, b), max(a, b)
    return rng.choice([(lo, hi), (lo, hi), (0, BASE * 2), (lo, lo), (lo - SPAN, hi + SPAN)])


def column_reads(log):
    """(records read in columns, records read) summed over the log's summary lines."""
    cols = total = 0
    for line in log.splitlines():
        if line.startswith("summary: planned "):
            words = line.split()
            total += int(words[words.index("read") + 1])
            cols += int(words[words.index("columns),") - 2].lstrip("("))
    return cols, total


def test_rounds(rng, records, cr, cc, deadline):
    pb = cr.pb
    for i in range(ROUNDS):
        if time.monotonic() > deadline:
            raise AssertionError("time budget spent after %d rounds" % i)
        frm, to = random_window(rng, records)
        spec = random_spec(rng, records) if rng.random() < 0.7 else tvtest.FilterSpec()
        by = BY[i % len(BY)]
        quantiles = rng.choice([[], [0.5], [0, 1], [rng.random() for _ in range(5)]])
        max_groups = rng.choice([0, 1, 3, 100000])
        req = pb.SummaryRequest(from_ns=frm, to_ns=to, filter=spec.to_pb(pb),
                                by=getattr(pb, "GROUP_BY_" + by.upper()),
                                max_groups=max_groups, quantiles=quantiles)
        a, b = cr.summary(req, timeout=30), cc.summary(req, timeout=30)
        where = "round %d by %s [%d, %d) %s" % (i, by, frm, to, spec)
        assert a.SerializeToString() == b.SerializeToString(), (where, a, b)
        ref = reference(records, frm, to, spec, by)
        assert b.records == sum(g.count for g in ref), (where, b.records)
        assert not b.skipped and not b.groups_overflowed, where
        assert len(b.groups) == min(len(ref), max_groups or 1000), (where, len(b.groups))
        for got, want in zip(b.groups, ref):
            check_group(where, got, want.recs, list(quantiles) or DEFAULT_Q, want.key)


def test_damaged_last_page(rng, pb):
    """Two pages of 100 records; the last page's bytes flipped: the first page counted."""
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            good = [tvtest.trace_record(BASE + i, path="/g%d" % (i % 3), latency_ns=1000 + i,
                                        status=rng.choice([200, 404, 503]))
                    for i in range(200)]
            cl.write_encoded(1, [(0xB1, encode_block_v3(0xB1, good, page_records=100))])
            path = tvtest.block_path(srv.data_dir, 0xB1)
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) - 1)
                b = f.read(1)[0]
                f.seek(os.path.getsize(path) - 1)
                f.write(bytes([b ^ 1]))
            got = cl.summary(pb.SummaryRequest(from_ns=0, to_ns=BASE * 2, by=pb.GROUP_BY_PATH),
                             timeout=30)
            assert [s.block_id for s in got.skipped] == [0xB1], got.skipped
            assert got.skipped[0].quarantined, got.skipped
            assert got.skipped[0].records_served == 100, got.skipped
            assert "page 1 checksum mismatch" in got.skipped[0].reason, got.skipped
            ref = reference(good[:100], 0, BASE * 2, tvtest.FilterSpec(), "path")
            assert [g.key for g in got.groups] == [g.key for g in ref], got.groups
            for g, want in zip(got.groups, ref):
                check_group("damaged page", g, want.recs, DEFAULT_Q, want.key)
        finally:
            cl.close()
        rc = srv.stop()
        assert rc == 0, "tracevaultd exit status %d: %s" % (rc, srv.log()[-3000:])


def main():
    seed = int(os.environ.get("TV_SEED", random.randrange(2**32)))
    print("seed %d (TV_SEED=%d reruns it)" % (seed, seed))
    rng = random.Random(seed)
    deadline = time.monotonic() + TIME_BUDGET_S
    with tvtest.Server() as r, tvtest.Server() as c:
        cr, cc = tvtest.GrpcClient(r.addr), tvtest.GrpcClient(c.addr)
        try:
            records = write_both(rng, cr.pb, cr, cc)
            print("ok wrote %d records as v2 and v3" % len(records))
            test_rounds(rng, records, cr, cc, deadline)
            print("ok %d rounds: v3 columns == v2 records == reference" % ROUNDS)
            cols, total = column_reads(c.log())
            assert cols > 0 and cols <= total, (cols, total)
            cols_r, total_r = column_reads(r.log())
            assert cols_r == 0 and total_r > 0, (cols_r, total_r)
            print("ok C read %d of %d records from columns, R none" % (cols, total))
            test_damaged_last_page(rng, cr.pb)
            print("ok damaged last page")
            for name, s in (("R", r), ("C", c)):
                rc = s.stop()
                assert rc == 0, "tracevaultd %s exit status %d: %s" % (name, rc, s.log()[-3000:])
        finally:
            cr.close()
            cc.close()


if __name__ == "__main__":
    main()
