"""Damage is contained (issue 10, kind 5): a stored block that fails its checks is skipped,
reported in the stream (QueryResponse.skipped, before the records it would have preceded, and
a DATA_LOSS status naming it), logged and quarantined (DATA/quarantine/, out of the catalog),
while every other record of the range is served exactly; later queries do not trip on it.
Each kind of damage on disk, records that break the format behind a good CRC, a file changed
in place while a query reads it, a query mid-read of a block another query quarantines, and
the CLI (a warning line per block, every other record printed, exit 3) across two servers."""
import os
import shutil
import stat
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc = tvtest.grpc_modules()[0]
DATA_LOSS, OK = grpc.StatusCode.DATA_LOSS, grpc.StatusCode.OK

BASE = 1_790_000_000 * 10**9
rec = tvtest.trace_record  # (ts_ns, pid, path="/")


def recs(t0, n, step=10, pid0=1, path="/"):
    return [rec(t0 + i * step, pid0 + i, path) for i in range(n)]


def keys(records):
    return [(r.ts_ns, r.pid) for r in records]


def merged(*lists):
    """The records of several blocks in query order: ts_ns, then the block listed first."""
    out = []
    for bi, lst in enumerate(lists):
        out += [(r.ts_ns, bi, i, r) for i, r in enumerate(lst)]
    return [r for _, _, _, r in sorted(out, key=lambda x: x[:3])]


def block_path(srv, block_id):
    return tvtest.block_path(srv.data_dir, block_id)


def flip(path, offset, mask=1):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ mask]))


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def replace(path, data):
    """A new file (new inode) in path's place, as a damaged copy would be."""
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.rename(path + ".new", path)


def test_damaged_block_is_skipped_reported_and_quarantined(srv, cl):
    """rel-12's shape: A, then B damaged (one bit of its payload), D interleaved with B, then
    C. The query serves A, D and C exactly, reports B before D's records, ends DATA_LOSS;
    B moves to quarantine/ (0600 in a 0700 dir) and out of the catalog, so the next query is
    complete and OK."""
    t = BASE
    a, b = recs(t, 5000), recs(t + 50_000, 100, pid0=10_001)
    d, c = recs(t + 50_005, 100, pid0=20_001), recs(t + 60_000, 5000, pid0=30_001)
    for seg, bid, rs in ((0xA0, 0xA1, a), (0xB0, 0xB1, b), (0xD0, 0xD1, d), (0xC0, 0xC1, c)):
        cl.write_segment(seg, [(bid, rs)])
    path = block_path(srv, 0xB1)
    flip(path, os.path.getsize(path) - 1)
    with open(path, "rb") as f:
        damaged = f.read()

    got, skipped, code, details, batches = cl.query_all(t, t + 10**9)
    want = keys(merged(a, d, c))
    assert keys(got) == want, "records differ: got %d, want %d" % (len(got), len(want))
    assert code == DATA_LOSS, (code, details)
    assert "block 00000000000000b1: block payload checksum mismatch" in details, details
    assert len(skipped) == 1, skipped
    sk = skipped[0]
    assert (sk.block_id, sk.segment_id, sk.min_ts_ns, sk.max_ts_ns) == \
        (0xB1, 0xB0, b[0].ts_ns, b[-1].ts_ns), sk
    assert sk.records_served == 0 and sk.quarantined, sk
    assert "payload checksum mismatch" in sk.reason, sk.reason
    # the report comes in a batch no later than the first record at or after B's start, and
    # not up front (batches end when full or when a slice of the server's time is spent)
    before, k = 0, 0
    while batches[k][1] == 0:
        before += batches[k][0]
        k += 1
    assert len(batches) > 2 and before > 0, batches
    assert all(r.ts_ns < b[0].ts_ns for r in got[:before])
    first_after = next(i for i, r in enumerate(got) if r.ts_ns >= b[0].ts_ns)
    assert first_after >= before, (first_after, before)

    log = srv.log()
    name = tvtest.block_name(0xB0, 0xB1)
    assert ("quarantine: blocks/%s -> quarantine/%s: block payload checksum mismatch"
            % (name, name)) in log, log
    assert "query: skipped block 00000000000000b1 of segment 00000000000000b0" in log, log
    qdir = os.path.join(srv.data_dir, "quarantine")
    qfile = os.path.join(qdir, name)
    assert stat.S_IMODE(os.stat(qdir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(qfile).st_mode) == 0o600
    with open(qfile, "rb") as f:
        assert f.read() == damaged  # kept as it was found
    assert not os.path.exists(path)
    assert 0xB1 not in tvtest.catalog_blocks(srv.data_dir)

    got2, skipped2, code2, details2, _ = cl.query_all(t, t + 10**9)
    assert code2 == OK and not skipped2, (code2, details2, skipped2)
    assert keys(got2) == want


def test_each_kind_of_damage_is_contained(srv, cl):
    """Damage as found on disks and in data dirs: cut, emptied, a header bit, another block's
    file, a symlink to /etc/passwd, a FIFO (must not hang the server), a directory, a file
    gone. Each block is skipped with its reason while its neighbours are served; only the
    missing one stays in the catalog (nothing to quarantine) and is reported again."""
    with open("/etc/passwd", "rb") as f:
        passwd = f.read()
    kinds = [
        ("cut", lambda p, g: truncate(p, os.path.getsize(p) // 2), "size mismatch", True),
        ("emptied", lambda p, g: truncate(p, 0), "truncated", True),
        ("header bit", lambda p, g: flip(p, 20, 4), "header checksum mismatch", True),
        ("other block", lambda p, g: shutil.copyfile(g, p), "does not match its catalog entry",
         True),
        ("symlink", lambda p, g: (os.unlink(p), os.symlink("/etc/passwd", p)),
         "block file is a symlink", True),
        ("fifo", lambda p, g: (os.unlink(p), os.mkfifo(p, 0o600)),
         "not a regular file", True),
        ("directory", lambda p, g: (os.unlink(p), os.mkdir(p, 0o700)),
         "not a regular file", True),
        ("missing", lambda p, g: os.unlink(p), "block file missing", False),
    ]
    for k, (name, damage, reason, quarantined) in enumerate(kinds):
        t = BASE + 10**12 + k * 10**9
        g, v, h = recs(t, 50, pid0=1), recs(t + 1000, 50, pid0=101), recs(t + 2000, 50, pid0=201)
        gid, vid, hid = 0x2000 + k * 16, 0x2001 + k * 16, 0x2002 + k * 16
        cl.write_segment(gid, [(gid, g)])
        cl.write_segment(vid, [(vid, v)])
        cl.write_segment(hid, [(hid, h)])
        damage(block_path(srv, vid), block_path(srv, gid))
        for attempt in range(2 if quarantined else 3):
            got, skipped, code, details, _ = cl.query_all(t, t + 10**6)
            assert keys(got) == keys(g + h), (name, len(got))
            if attempt and quarantined:
                assert code == OK and not skipped, (name, code, details)
                continue
            assert code == DATA_LOSS, (name, code, details)
            assert [s.block_id for s in skipped] == [vid], (name, skipped)
            assert reason in skipped[0].reason, (name, skipped[0].reason)
            assert skipped[0].quarantined == quarantined, (name, skipped[0])
        assert (vid in tvtest.catalog_blocks(srv.data_dir)) == (not quarantined), name
        assert srv.proc.poll() is None, name
    with open("/etc/passwd", "rb") as f:
        assert f.read() == passwd


def encode_v1_unsorted(block_id, records, min_ts, max_ts):
    """A version 1 block (BLOCK.md) of records in the order given, CRCs right."""
    payload = b"".join(tvtest.varint(len(s)) + s for s in (r.SerializeToString() for r in records))
    head = struct.pack("<IHHQQQIIQQI", 0x4B425654, 1, 0, block_id, min_ts, max_ts, len(records),
                       0, len(payload), len(payload), tvtest.crc32c(payload))
    return head + struct.pack("<I", tvtest.crc32c(head)) + payload


def test_records_breaking_the_format_behind_a_good_crc_are_cut_there(srv, cl):
    """A stored block whose bytes match their CRC but whose records are out of order (a block
    stored before Write checked records): the records up to the break are served, the block
    is reported with how many of its records were sent, and quarantined."""
    t = BASE + 2 * 10**12
    v, g = recs(t, 10, step=1, pid0=1), recs(t + 100, 20, pid0=101)
    cl.write_segment(0x31, [(0x310, v)])
    cl.write_segment(0x32, [(0x320, g)])
    swapped = v[:5] + [v[6], v[5]] + v[7:]
    replace(block_path(srv, 0x310), encode_v1_unsorted(0x310, swapped, v[0].ts_ns, v[-1].ts_ns))
    got, skipped, code, details, _ = cl.query_all(t, t + 10**6)
    assert keys(got) == keys(v[:5] + [v[6]] + g), keys(got)
    assert code == DATA_LOSS and len(skipped) == 1, (code, details, skipped)
    assert skipped[0].records_served == 6, skipped[0]
    assert "out of order" in skipped[0].reason and skipped[0].quarantined, skipped[0]


def big_block(block_id, t0, n=60_000):
    """A zstd block of n records of ~650 raw bytes (~40 MB raw, little on disk): a query
    cannot push it all into the transport's buffers, so a stalled reader stays mid-block."""
    pb = tvtest.grpc_modules()[1]
    raw = [(t0 + i, pb.TraceRecord(ts_ns=t0 + i, pid=i + 1, path="/big/%d/" % i + "a" * 600)
            .SerializeToString()) for i in range(n)]
    return raw, tvtest.encode_block_zstd(block_id, None, raw_records=raw)


def open_block_fds(srv, block_id):
    """The server's descriptors on block_id's file, wherever it is now (or deleted)."""
    fd_dir = "/proc/%d/fd" % srv.proc.pid
    name = "%016x" % block_id
    out = []
    for fd in os.listdir(fd_dir):
        try:
            if name in os.readlink(os.path.join(fd_dir, fd)):
                out.append(fd)
        except OSError:
            pass
    return out


def test_a_query_mid_block_is_not_disturbed_by_another_quarantining_it(srv, cl):
    """Q1 reads X through its descriptor and stalls; X's file is then replaced by a damaged
    copy, which Q2 finds and quarantines (a rename). Q1 goes on reading its own file: every
    record exact, OK. Q3 planned Z but had not opened it when Q2 quarantined it: Z is
    reported as gone (not quarantined by Q3), every other record is served."""
    pb = tvtest.grpc_modules()[1]
    t = BASE + 3 * 10**12
    raw, blk = big_block(0x410, t)
    cl.write_encoded(0x41, [(0x410, blk)])
    q1 = cl.query_rpc(pb.QueryRequest(from_ns=t, to_ns=t + 10**9), timeout=120)
    first = next(q1)
    assert len(first.records) > 0
    assert open_block_fds(srv, 0x410), "Q1 holds no descriptor on the block: not mid-read"
    damaged = bytearray(blk)
    damaged[-1] ^= 1
    replace(block_path(srv, 0x410), bytes(damaged))
    got2, sk2, code2, det2, _ = cl.query_all(t, t + 10**9)
    assert code2 == DATA_LOSS and not got2 and sk2[0].quarantined, (code2, det2)
    got = list(first.records)
    for resp in q1:
        assert not resp.skipped, resp.skipped
        got.extend(resp.records)
    assert [(r.ts_ns, r.pid) for r in got] == [(ts, i + 1) for i, (ts, _) in enumerate(raw)]

    t3 = t + 10**10
    w = big_block(0x420, t3)[1]
    cl.write_encoded(0x42, [(0x420, w)])
    z = recs(t3 + 10**6, 30, pid0=7)
    cl.write_segment(0x43, [(0x430, z)])
    q3 = cl.query_rpc(pb.QueryRequest(from_ns=t3, to_ns=t3 + 10**9), timeout=120)
    n3 = len(next(q3).records)
    flip(block_path(srv, 0x430), os.path.getsize(block_path(srv, 0x430)) - 1)
    got4, sk4, code4, _, _ = cl.query_all(t3 + 10**6, t3 + 10**9)
    assert code4 == DATA_LOSS and sk4[0].block_id == 0x430 and sk4[0].quarantined
    skipped3 = []
    try:
        for resp in q3:
            n3 += len(resp.records)
            skipped3 += resp.skipped
        raise AssertionError("Q3 ended OK without Z")
    except grpc.RpcError as e:
        assert e.code() == DATA_LOSS, e
    assert n3 == 60_000, n3
    assert [s.block_id for s in skipped3] == [0x430], skipped3
    assert "gone" in skipped3[0].reason and not skipped3[0].quarantined, skipped3[0]


def test_a_file_changed_in_place_while_read_is_reported(srv, cl):
    """The payload is read twice (CRC at open, then records): a file changed in place between
    the two is reported as skipped (with the count sent before), never served as if whole."""
    pb = tvtest.grpc_modules()[1]
    t = BASE + 4 * 10**12
    raw, blk = big_block(0x510, t)
    cl.write_encoded(0x51, [(0x510, blk)])
    q = cl.query_rpc(pb.QueryRequest(from_ns=t, to_ns=t + 10**9), timeout=120)
    n = len(next(q).records)
    flip(block_path(srv, 0x510), len(blk) - 1)  # same inode: the reader sees it
    skipped = []
    try:
        for resp in q:
            n += len(resp.records)
            skipped += resp.skipped
        raise AssertionError("a block changed under the query was served as whole")
    except grpc.RpcError as e:
        assert e.code() == DATA_LOSS, e
    assert [s.block_id for s in skipped] == [0x510], skipped
    assert skipped[0].records_served == n <= 60_000, (skipped[0], n)
    assert ("changed while it was read" in skipped[0].reason
            or "does not decompress" in skipped[0].reason), skipped[0].reason


def test_reverse_reports_a_damaged_block_before_what_it_would_precede(srv, cl):
    """Newest first, the mirror of the first case: P, then Q damaged, R interleaved with Q,
    then S. Reverse serves S, R and P exactly reversed, reports Q before any record at or
    below Q's max_ts_ns, ends DATA_LOSS; Q is quarantined."""
    pb = tvtest.grpc_modules()[1]
    t = BASE + 6 * 10**12
    p, q = recs(t, 3000), recs(t + 50_000, 100, pid0=40_001)
    r, s = recs(t + 50_005, 100, pid0=50_001), recs(t + 60_000, 3000, pid0=60_001)
    for seg, bid, rs in ((0x6A0, 0x6A1, p), (0x6B0, 0x6B1, q), (0x6D0, 0x6D1, r),
                         (0x6C0, 0x6C1, s)):
        cl.write_segment(seg, [(bid, rs)])
    flip(block_path(srv, 0x6B1), os.path.getsize(block_path(srv, 0x6B1)) - 1)
    got, skipped, order = [], [], []
    try:
        for resp in cl.query_rpc(pb.QueryRequest(from_ns=t, to_ns=t + 10**9, reverse=True),
                                 timeout=cl.timeout_s):
            for sk in resp.skipped:
                skipped.append(sk)
                order.append(("skip", len(got)))
            got.extend(resp.records)
        code = OK
    except grpc.RpcError as e:
        code = e.code()
    assert keys(got) == keys(merged(p, r, s))[::-1], (len(got),)
    assert code == DATA_LOSS, code
    assert [(k.block_id, k.records_served, k.quarantined) for k in skipped] == \
        [(0x6B1, 0, True)], skipped
    # reported before the first record at or below Q's newest
    first_at_or_below = next(i for i, x in enumerate(got) if x.ts_ns <= q[-1].ts_ns)
    assert order[0][1] <= first_at_or_below, (order, first_at_or_below)
    assert order[0][1] > 0, order  # and not up front: S's newer records came first


def test_cli_prints_every_other_record_warns_and_exits_3(srv, cl):
    """`tracevault query` over two servers, one with a damaged block: every record of both
    servers but that block's is printed in order, one warning line names the block, its time
    range and DATA_LOSS, the exit status is 3; the next run is complete (exit 0)."""
    t = BASE + 5 * 10**12
    a, bad, c = recs(t, 300, pid0=1), recs(t + 10_000, 300, pid0=1001), recs(t + 5, 300, pid0=5001)
    cl.write_segment(0x61, [(0x610, a)])
    cl.write_segment(0x62, [(0x620, bad)])
    with tvtest.Server() as other:
        oc = tvtest.GrpcClient(other.addr)
        try:
            oc.write_segment(0x63, [(0x630, c)])
        finally:
            oc.close()
        flip(block_path(srv, 0x620), 70)
        args = ["query", "--server", "%s,%s" % (srv.addr, other.addr), "--from", str(t),
                "--to", str(t + 10**9)]
        p = tvtest.run(args)
        assert p.returncode == 3, (p.returncode, p.stderr)
        lines = p.stdout.splitlines()
        assert len(lines) == 600, len(lines)
        ts = [int(x.split('"ts_ns":')[1].split(",")[0]) for x in lines]
        assert ts == sorted(r.ts_ns for r in a + c), "not every other record, in order"
        warn = [x for x in p.stderr.splitlines() if x.startswith("tracevault: warning: ")]
        assert len(warn) == 1, p.stderr
        assert ("server %s skipped block 0000000000000620 (segment 0000000000000062, ts_ns %d "
                "to %d): DATA_LOSS: block payload checksum mismatch" % (
                    srv.addr, bad[0].ts_ns, bad[-1].ts_ns)) in warn[0], warn[0]
        assert "(the server quarantined it)" in warn[0], warn[0]
        p2 = tvtest.run(args)
        assert p2.returncode == 0 and p2.stdout == p.stdout, (p2.returncode, p2.stderr)


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=120)
        try:
            for t in tests:
                if not results.run(t, srv, cl) and srv.proc.poll() is not None:
                    print("tracevaultd exited %d: %s" % (srv.proc.returncode, srv.log()))
                    break
        finally:
            cl.close()
        rc = srv.stop()
        if rc != 0:
            results.fail("tracevaultd exit status %d after SIGTERM" % rc)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
