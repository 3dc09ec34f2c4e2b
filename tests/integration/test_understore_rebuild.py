"""`tracevaultd --rebuild-catalog --under s3://BUCKET/PREFIX` (issue 14, server/under/UNDERSTORE.md
"Rebuild from the bucket") and two servers on one bucket ("Two servers, one bucket"), against a
real Ceph RGW (tvtest.Ceph, started once for the file; SKIP only when Ceph cannot be installed).

Cases: the rows a rebuild makes from the bucket are the writing server's rows (every column but
committed_ns, compared in SQLite), marked evicted, and a second run or a run on the writer's own
data dir adds nothing; incomplete segments of each kind (no manifest, a missing or short
object, an unknown version, a manifest that is not JSON, a header that disagrees) are skipped,
counted and listed, one line per kind, exit 1; a segment the local catalog deleted is not
brought back; two servers on one bucket keep their segments apart (the same id in the same
hour: ALREADY_EXISTS from the manifest check, the first's objects untouched; in two hours:
both skipped at rebuild), and a rebuild merges the other server's segments into a data dir;
the usage errors and the bucket check before the data dir is touched."""
import json
import os
import random
import shutil
import sqlite3
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block, encode_block_v2, encode_block_v3  # noqa: E402
from test_understore import (BASE_NS, START_TIMEOUT_S, seg_dir, set_credentials,  # noqa: E402
                             under_args)

HOUR_NS = 3600 * 10**9
# every blocks column but committed_ns (the rebuild's time: the bucket does not keep the commit's)
ROW_COLS = ("block_id, segment_id, min_ts_ns, max_ts_ns, record_count, bytes, lost_ring_full, "
            "lost_map_full, lost_parser, lost_cache, lost_failed, lost_requests, raw_bytes")


def block_of(kind, bid, recs):
    if kind == 1:
        return encode_block(bid, recs)
    if kind == 2:
        return encode_block_v2(bid, recs, loss=(1, 2, 3, 4, 5), lost_requests=6)
    return encode_block_v3(bid, recs)


def segment(rng, ts0, nblocks, nrecs, kind=1):
    """(sid, [(bid, bytes)], [ts], oldest): nblocks blocks of nrecs records from ts0."""
    sid = rng.getrandbits(63) | 1
    blocks, all_ts, ts = [], [], ts0
    for _ in range(nblocks):
        recs = [tvtest.trace_record(ts + i, pid=rng.randint(1, 1000), path="/r")
                for i in range(nrecs)]
        all_ts += [ts + i for i in range(nrecs)]
        ts += nrecs
        bid = rng.getrandbits(63) | 1
        blocks.append((bid, block_of(kind, bid, recs)))
    return sid, blocks, all_ts, ts0


def write_all(srv, segs, token=0):
    c = tvtest.GrpcClient(srv.addr)
    try:
        for sid, blocks, _, _ in segs:
            r = c.write_encoded(sid, blocks, writer_token=token)
            assert r.committed, r
    finally:
        c.close()


def rebuild(ceph, data_dir, prefix, *extra, secret=None):
    env = dict(os.environ)
    if secret:
        env["AWS_SECRET_ACCESS_KEY"] = secret
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir, "--rebuild-catalog"]
                       + under_args(ceph, prefix) + list(extra), capture_output=True, text=True,
                       timeout=120, env=env)
    return p.returncode, p.stdout.splitlines(), p.stderr


def db(data_dir):
    return sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "catalog.db"), uri=True)


def rows(data_dir, where=""):
    with db(data_dir) as c:
        return c.execute("SELECT %s FROM blocks %s ORDER BY block_id" % (ROW_COLS, where)).fetchall()


def table(data_dir, sql):
    with db(data_dir) as c:
        return sorted(c.execute(sql).fetchall())


def s64(v):
    """A u64 as SQLite stores it (the int64 of the same bits)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def summary(prefix, objects, manifests, added, blocks, nbytes, present, skipped):
    return ("catalog rebuild from s3://tracevault/%s/v1/: %d objects listed, %d manifests read; "
            "%d segments added (%d blocks, %d bytes, evicted), %d already in the catalog, "
            "%d skipped" % (prefix, objects, manifests, added, blocks, nbytes, present, skipped))


def test_rows_match_the_writer(ceph):
    """A cache-through server writes segments of block versions 1, 2 (loss counters) and 3 in
    several hours; a rebuild into an empty data dir makes the same blocks rows, a segments row
    each (token 0) and under_persisted rows marked evicted, and reads no block file into
    blocks/; a second run, and a run on the writer's own dir, add nothing."""
    set_credentials(ceph)
    rng = random.Random(11)
    prefix = "match"
    segs = [segment(rng, BASE_NS + i * HOUR_NS + 7, 1 + i % 3, 20 + i, kind=1 + i % 3)
            for i in range(6)]
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    tmp = tempfile.mkdtemp(prefix="tv-rebuild-")
    try:
        srv.start(timeout=START_TIMEOUT_S)
        write_all(srv, segs, token=77)
        assert srv.stop() == 0
        want = rows(srv.data_dir)
        nblocks = sum(len(s[1]) for s in segs)
        nbytes = sum(len(d) for s in segs for _, d in s[1])
        assert len(want) == nblocks and any(r[6] == 1 and r[11] == 6 for r in want), want

        fresh = os.path.join(tmp, "data")
        t0 = time.monotonic()
        rc, out, err = rebuild(ceph, fresh, prefix)
        took = time.monotonic() - t0
        assert rc == 0, (rc, out, err)
        assert out == [summary(prefix, nblocks + len(segs), len(segs), len(segs), nblocks,
                               nbytes, 0, 0)], out
        assert rows(fresh) == want, "the rebuilt rows differ from the writer's"
        assert table(fresh, "SELECT segment_id, state, writer_token FROM segments") == \
            sorted((s64(s[0]), "committed", 0) for s in segs)
        assert table(fresh, "SELECT segment_id, oldest_ts_ns, evicted FROM under_persisted") == \
            sorted((s64(s[0]), s[3], 1) for s in segs)
        assert os.listdir(os.path.join(fresh, "blocks")) == []
        print("  %d segments, %d blocks rebuilt in %.2f s; rows equal to the writer's"
              % (len(segs), nblocks, took))

        rc, out, err = rebuild(ceph, fresh, prefix)
        assert rc == 0 and out == [summary(prefix, nblocks + len(segs), len(segs), 0, 0, 0,
                                           len(segs), 0)], (rc, out, err)
        assert rows(fresh) == want

        before = table(srv.data_dir, "SELECT * FROM blocks")
        rc, out, err = rebuild(ceph, srv.data_dir, prefix)
        assert rc == 0 and out == [summary(prefix, nblocks + len(segs), len(segs), 0, 0, 0,
                                           len(segs), 0)], (rc, out, err)
        assert table(srv.data_dir, "SELECT * FROM blocks") == before, "local rows changed"
        assert table(srv.data_dir, "SELECT segment_id, state, writer_token FROM segments") == \
            sorted((s64(s[0]), "committed", 77) for s in segs), "writer tokens lost"
        assert table(srv.data_dir,
                     "SELECT segment_id, oldest_ts_ns, evicted FROM under_persisted") == \
            sorted((s64(s[0]), s[3], 0) for s in segs)
    finally:
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def manifest_of(ceph, d):
    r = ceph.s3("GET", d + "manifest.json")
    assert r.status == 200, r
    return json.loads(r.body)


def put(ceph, key, data):
    r = ceph.s3("PUT", key, data=data)
    assert r.status == 200, (key, r)


def test_incomplete_segments_skipped(ceph):
    """One complete segment and one incomplete of each kind: only the complete one gets rows;
    the summary has a line per kind naming the directories, the log a line per skip with the
    reason; exit 1 (segments with a manifest were skipped)."""
    set_credentials(ceph)
    rng = random.Random(12)
    prefix = "skip"
    segs = [segment(rng, BASE_NS + 40 * HOUR_NS + i * 10**9, 2, 10) for i in range(7)]
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    tmp = tempfile.mkdtemp(prefix="tv-rebuild-")
    try:
        srv.start(timeout=START_TIMEOUT_S)
        write_all(srv, segs)
        assert srv.stop() == 0
        dirs = [seg_dir(prefix, s[0], s[3]) for s in segs]
        # s1: no manifest; s2: a block object gone; s3: a block object short; s4: version 2;
        # s5: not JSON; s6: the manifest's payload CRC of a block is not its header's
        assert ceph.s3("DELETE", dirs[1] + "manifest.json").status == 204
        assert ceph.s3("DELETE", dirs[2] + "%016x.blk" % segs[2][1][1][0]).status == 204
        put(ceph, dirs[3] + "%016x.blk" % segs[3][1][0][0], segs[3][1][0][1][:-1])
        m = manifest_of(ceph, dirs[4])
        m["version"] = 2
        put(ceph, dirs[4] + "manifest.json", json.dumps(m).encode())
        put(ceph, dirs[5] + "manifest.json", b'{"format": "tracevault-segment-manifest", ')
        m = manifest_of(ceph, dirs[6])
        m["blocks"][0]["payload_crc32c"] ^= 1
        put(ceph, dirs[6] + "manifest.json", json.dumps(m).encode())
        put(ceph, prefix + "/v1/README", b"not a segment")
        put(ceph, dirs[0] + "notes.txt", b"not a block")
        objects = len(ceph.list_keys(prefix + "/"))

        fresh = os.path.join(tmp, "data")
        rc, out, err = rebuild(ceph, fresh, prefix)
        assert rc == 1, (rc, out, err)
        s0 = segs[0]
        assert out == [
            summary(prefix, objects, 6, 1, 2, sum(len(d) for _, d in s0[1]), 0, 6),
            "skipped, bad manifest: 1: " + dirs[5],
            "skipped, unknown manifest format or version: 1: " + dirs[4],
            "skipped, missing or short object: 2: " + " ".join(sorted(dirs[2:4])),
            "skipped, block header disagrees with the manifest: 1: " + dirs[6],
            "skipped, no manifest (never acknowledged): 1: " + dirs[1],
            "ignored, keys outside the layout: 1: %s/v1/README" % prefix,
            "ignored, objects in a segment directory its manifest does not list: 1",
        ], out
        print("  " + "\n  ".join(out))
        for d, why in ((dirs[1], "2 objects and no manifest.json"),
                       (dirs[2], "%016x: its object is not in the bucket" % segs[2][1][1][0]),
                       (dirs[3], "its object has %d bytes, the manifest says %d"
                        % (len(segs[3][1][0][1]) - 1, len(segs[3][1][0][1]))),
                       (dirs[4], "version 2: this server reads version 1"),
                       (dirs[5], "not JSON"),
                       (dirs[6], "payload CRC")):
            line = [x for x in err.splitlines() if d in x]
            assert len(line) == 1 and why in line[0], (d, why, err)
        assert [r[0] for r in rows(fresh)] == sorted(s64(b) for b, _ in s0[1])
        assert table(fresh, "SELECT segment_id FROM under_persisted") == [(s64(s0[0]),)]
    finally:
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_deleted_segment_not_brought_back(ceph):
    """A segment deleted on this server whose objects are back in the bucket (a delete S3 lost,
    put back here by hand) is skipped when the data dir's catalog is rebuilt from the bucket:
    the local Delete wins; exit 0 (no acknowledged segment is missing)."""
    set_credentials(ceph)
    rng = random.Random(13)
    prefix = "deleted"
    keep, gone = (segment(rng, BASE_NS + 50 * HOUR_NS + i * 10**9, 2, 10) for i in range(2))
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        write_all(srv, [keep, gone], token=5)
        d = seg_dir(prefix, gone[0], gone[3])
        saved = {k: ceph.s3("GET", k).body for k in ceph.list_keys(d)}
        c = tvtest.GrpcClient(srv.addr)
        code, details, _ = c.delete_segment(gone[0], writer_token=5)
        c.close()
        assert code == c.grpc.StatusCode.OK, (code, details)
        tvtest.wait_for(lambda: not ceph.list_keys(d), "the deleted segment gone from S3",
                        timeout_s=30, interval_s=0.1)
        assert srv.stop() == 0
        for k in sorted(saved, key=lambda k: k.endswith("manifest.json")):
            put(ceph, k, saved[k])
        rc, out, err = rebuild(ceph, srv.data_dir, prefix)
        assert rc == 0, (rc, out, err)
        assert out == [summary(prefix, 6, 2, 0, 0, 0, 1, 1),
                       "skipped, deleted in the local catalog: 1: " + d], out
        assert "was deleted here" in err, err
        assert [r[1] for r in rows(srv.data_dir)] == [s64(keep[0])] * 2
    finally:
        srv.cleanup()


def test_two_servers_one_bucket(ceph):
    """Servers A and B, two data dirs, one bucket and prefix: each writes its own segments; B's
    segment of an id A used in the same hour ends ALREADY_EXISTS (other blocks, or the very
    same segment again) and A's objects stay as they were; a rebuild of A's data dir adds B's
    segments (A's own stay, not evicted), and one of an empty dir has every segment's rows,
    equal to the writers'."""
    set_credentials(ceph)
    rng = random.Random(14)
    prefix = "two"
    a_segs = [segment(rng, BASE_NS + 60 * HOUR_NS + i * 10**9, 2, 15, kind=3) for i in range(3)]
    b_segs = [segment(rng, BASE_NS + 61 * HOUR_NS + i * 10**9, 1 + i, 15) for i in range(3)]
    a = tvtest.Server(extra_args=under_args(ceph, prefix))
    b = tvtest.Server(extra_args=under_args(ceph, prefix))
    tmp = tempfile.mkdtemp(prefix="tv-rebuild-")
    try:
        a.start(timeout=START_TIMEOUT_S)
        b.start(timeout=START_TIMEOUT_S)
        write_all(a, a_segs)
        write_all(b, b_segs)
        before = ceph.list_keys(prefix + "/")
        a0 = a_segs[0]
        clash = segment(rng, a0[3] + 5, 2, 9)  # another segment in a0's hour ...
        clash = (a0[0],) + clash[1:]           # ... with a0's id
        cb = tvtest.GrpcClient(b.addr)
        for sid, blocks, what in ((a0[0], clash[1], "other blocks"),
                                  (a0[0], a0[1], "the same segment")):
            _, code, details = cb.write_requests(
                [tvtest.write_cmd(cb.pb.OPEN_SEGMENT, segment_id=sid)]
                + [x for bid, data in blocks
                   for x in [tvtest.write_cmd(cb.pb.OPEN_BLOCK, block_id=bid,
                                              length=len(data))]
                   + tvtest.write_chunks(bid, data, 4096)]
                + [tvtest.write_cmd(cb.pb.COMMIT, segment_id=sid)])
            assert code == cb.grpc.StatusCode.ALREADY_EXISTS, (what, code, details)
            assert "exists already" in details and "manifest.json" in details, details
            print("  %s: %s" % (what, details))
        cb.close()
        assert ceph.list_keys(prefix + "/") == before, "a refused write changed the bucket"
        assert a.stop() == 0 and b.stop() == 0
        want = sorted(rows(a.data_dir) + rows(b.data_dir))
        n_a, n_b = len(rows(a.data_dir)), len(rows(b.data_dir))
        nbytes_b = sum(len(d) for s in b_segs for _, d in s[1])

        rc, out, err = rebuild(ceph, a.data_dir, prefix)
        assert rc == 0 and out == [summary(prefix, len(before), 6, 3, n_b, nbytes_b, 3, 0)], \
            (rc, out, err)
        assert rows(a.data_dir) == want
        assert table(a.data_dir, "SELECT segment_id, evicted FROM under_persisted") == sorted(
            [(s64(s[0]), 0) for s in a_segs] + [(s64(s[0]), 1) for s in b_segs])

        fresh = os.path.join(tmp, "data")
        rc, out, err = rebuild(ceph, fresh, prefix)
        assert rc == 0 and out[0] == summary(prefix, len(before), 6, 6, n_a + n_b,
                                             sum(len(d) for s in a_segs + b_segs
                                                 for _, d in s[1]), 0, 0), (rc, out, err)
        assert rows(fresh) == want
    finally:
        a.cleanup()
        b.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_same_id_in_two_hours(ceph):
    """Two servers commit one segment id with oldest records in different hours (different
    keys, so neither refuses): a rebuild takes neither, names both directories, exits 1; a
    block id in two segments is refused the same way."""
    set_credentials(ceph)
    rng = random.Random(15)
    prefix = "dup"
    s1 = segment(rng, BASE_NS + 70 * HOUR_NS, 1, 10)
    s2 = segment(rng, BASE_NS + 71 * HOUR_NS, 2, 10)
    s2 = (s1[0],) + s2[1:]
    ok = segment(rng, BASE_NS + 72 * HOUR_NS, 1, 10)
    t1 = segment(rng, BASE_NS + 73 * HOUR_NS, 1, 10)
    t2 = segment(rng, BASE_NS + 73 * HOUR_NS + 10**9, 1, 10)
    t2 = t2[:1] + ([(t1[1][0][0], t1[1][0][1])],) + t2[2:]  # t1's block under another id
    a = tvtest.Server(extra_args=under_args(ceph, prefix))
    b = tvtest.Server(extra_args=under_args(ceph, prefix))
    tmp = tempfile.mkdtemp(prefix="tv-rebuild-")
    try:
        a.start(timeout=START_TIMEOUT_S)
        b.start(timeout=START_TIMEOUT_S)
        write_all(a, [s1, ok, t1])
        write_all(b, [s2, t2])
        assert a.stop() == 0 and b.stop() == 0
        d = [seg_dir(prefix, s[0], s[3]) for s in (s1, s2, t1, t2)]
        rc, out, err = rebuild(ceph, os.path.join(tmp, "data"), prefix)
        assert rc == 1, (rc, out, err)
        assert out == [summary(prefix, 11, 5, 1, 1, len(ok[1][0][1]), 0, 4),
                       "skipped, id in another directory too: 4: " + " ".join(sorted(d))], out
        assert "segment id %016x is in s3://tracevault/%s too" % (s1[0], d[1]) in err, err
        assert "block id %016x is in s3://tracevault/%s too" % (t1[1][0][0], d[3]) in err, err
        assert [r[1] for r in rows(os.path.join(tmp, "data"))] == [s64(ok[0])]
    finally:
        a.cleanup()
        b.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_usage_and_refusals(ceph):
    set_credentials(ceph)
    tmp = tempfile.mkdtemp(prefix="tv-rebuild-")
    try:
        d = os.path.join(tmp, "data")
        for args, msg in [
            (["--scrub"] + under_args(ceph, "p"), "--under serves or rebuilds"),
            (["--rebuild-catalog", "--write-type", "cache-through"] + under_args(ceph, "p"),
             "--write-type serves; --rebuild-catalog does not"),
            (["--rebuild-catalog", "--under", "s3://%s/p" % ceph.bucket],
             "--under needs --s3-endpoint URL"),
        ]:
            p = subprocess.run([tvtest.binary("tracevaultd"), "--data", d] + args,
                               capture_output=True, text=True, timeout=30)
            assert p.returncode == 2 and p.stderr.startswith("tracevaultd: " + msg) and \
                p.stderr.count("\n") == 1, (args, p.returncode, p.stderr)
        wrong = "W" * 40
        rc, out, err = rebuild(ceph, d, "p", secret=wrong)
        assert rc == 1 and out == [] and err.count("\n") == 1, (rc, out, err)
        assert "SignatureDoesNotMatch" in err and err.endswith(
            "(check AWS_SECRET_ACCESS_KEY)\n") and wrong not in err, err
        assert not os.path.exists(d), "the data dir was made before the bucket check"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cli_ts(addr, frm, to):
    """`tracevault query` (the CLI, jsonl) of [frm, to): the records' ts_ns in its order."""
    p = tvtest.run(["query", "--server", addr, "--from", str(frm), "--to", str(to), "--format",
                    "jsonl"], timeout=120)
    assert p.returncode == 0, p
    return [json.loads(x)["ts_ns"] for x in p.stdout.splitlines()]


def check_whole_segments(got, attempted, acked):
    """got (ts list) is made of whole segments of attempted ({sid: ts list}), each once, and
    holds every acked one: a segment whose reply was lost may be served, whole, never part of
    one (PROTOCOL.md). Returns the sids served."""
    owner = {t: sid for sid, ts in attempted.items() for t in ts}
    assert len(got) == len(set(got)), "a record served twice"
    assert all(t in owner for t in got), "a record nobody wrote"
    served = {}
    for t in got:
        served.setdefault(owner[t], []).append(t)
    for sid, ts in served.items():
        assert sorted(ts) == sorted(attempted[sid]), "segment %016x served in part" % sid
    missing = [sid for sid in acked if sid not in served]
    assert not missing, "acknowledged segments not served: %s" % missing
    return set(served)


def test_kill9_then_rebuild_serves_acked(ceph):
    """kill -9 of a cache-through tracevaultd right after acks; a new server on an empty data
    dir rebuilt from the bucket serves (reading every block back from S3) every acknowledged
    record exactly, through `tracevault query`; a segment whose reply the kill lost is served
    whole or not at all."""
    set_credentials(ceph)
    rng = random.Random(16)
    prefix = "e2e-kill9"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    fresh = tvtest.Server(extra_args=under_args(ceph, prefix))
    attempted, acked, stop, lock = {}, [], threading.Event(), threading.Lock()
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)

        def writer(k):
            wr = random.Random(100 + k)
            for i in range(300):
                if stop.is_set():
                    return
                seg = segment(wr, BASE_NS + 80 * HOUR_NS + (k * 1000 + i) * 10**8,
                              wr.randint(1, 3), wr.randint(5, 60), kind=1 + (i % 3))
                with lock:
                    attempted[seg[0]] = seg[2]
                try:
                    r = c.write_encoded(seg[0], seg[1], chunk_bytes=2048)
                except c.grpc.RpcError:
                    return
                if r.committed:
                    with lock:
                        acked.append(seg[0])
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        tvtest.wait_for(lambda: len(acked) >= 12, "12 acked segments", timeout_s=60)
        time.sleep(rng.uniform(0.05, 0.3))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(60)
        c.close()
        acked_now = list(acked)

        rc, out, err = rebuild(ceph, fresh.data_dir, prefix)
        assert rc == 0, (rc, out, err)
        assert out[0].startswith("catalog rebuild from s3://tracevault/%s/v1/" % prefix), out
        fresh.start(timeout=START_TIMEOUT_S)
        t0 = time.monotonic()
        got = cli_ts(fresh.addr, BASE_NS, BASE_NS + 100 * HOUR_NS)
        took = time.monotonic() - t0
        served = check_whole_segments(got, attempted, acked_now)
        assert os.listdir(os.path.join(fresh.data_dir, "blocks")) == [], "blocks re-cached"
        print("  %d acked, %d served (%d complete but unacknowledged), %d records read back "
              "from S3 in %.2f s; rebuild: %s" % (len(acked_now), len(served),
                                                 len(served) - len(acked_now), len(got), took,
                                                 out[0]))
        assert len(served) == int(out[0].split("; ")[1].split()[0]), out
    finally:
        srv.cleanup()
        fresh.cleanup()


def test_two_servers_serve_every_segment(ceph):
    """Servers A and B on one bucket, each writing its own segments; after each data dir is
    rebuilt from the bucket (merged), A, B and a third server C on an empty data dir rebuilt
    the same way each serve every persisted segment, exactly and alike."""
    set_credentials(ceph)
    rng = random.Random(17)
    prefix = "e2e-two"
    a, b, c3 = (tvtest.Server(extra_args=under_args(ceph, prefix)) for _ in range(3))
    segs = {}
    try:
        a.start(timeout=START_TIMEOUT_S)
        b.start(timeout=START_TIMEOUT_S)
        for i in range(8):
            s = segment(rng, BASE_NS + 90 * HOUR_NS + i * 10**10, 1 + i % 3, 30, kind=1 + i % 3)
            write_all(a if i % 2 else b, [s])
            segs[s[0]] = s[2]
        assert a.stop() == 0 and b.stop() == 0
        answers = []
        for srv, present in ((a, 4), (b, 4), (c3, 0)):
            rc, out, err = rebuild(ceph, srv.data_dir, prefix)
            assert rc == 0 and "%d segments added" % (8 - present) in out[0] and \
                "%d already in the catalog" % present in out[0], (rc, out, err)
            srv.start(timeout=START_TIMEOUT_S)
            got = cli_ts(srv.addr, BASE_NS, BASE_NS + 100 * HOUR_NS)
            assert check_whole_segments(got, segs, list(segs)) == set(segs)
            answers.append(got)
        assert answers[0] == answers[1] == answers[2]
        print("  3 servers serve the same %d records of 8 segments" % len(answers[0]))
    finally:
        for srv in (a, b, c3):
            srv.cleanup()


def bench(ceph):
    """TV_UNDER_BENCH=1: a rebuild of TV_UNDER_BENCH_SEGMENTS (default 200) segments of 4
    blocks into an empty data dir, timed, and the first query of it (every block read back)."""
    set_credentials(ceph)
    rng = random.Random(18)
    prefix = "bench-rebuild"
    n = int(os.environ.get("TV_UNDER_BENCH_SEGMENTS", "200"))
    segs = [segment(rng, BASE_NS + 200 * HOUR_NS + i * 10**10, 4, 50, kind=3) for i in range(n)]
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    fresh = tvtest.Server(extra_args=under_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        write_all(srv, segs)
        assert srv.stop() == 0
        t0 = time.monotonic()
        rc, out, err = rebuild(ceph, fresh.data_dir, prefix)
        el = time.monotonic() - t0
        assert rc == 0 and rows(fresh.data_dir) == rows(srv.data_dir), (rc, out, err)
        fresh.start(timeout=START_TIMEOUT_S)
        t0 = time.monotonic()
        got = cli_ts(fresh.addr, BASE_NS, BASE_NS + 10**18)
        q = time.monotonic() - t0
        assert len(got) == n * 200
        print("  bench rebuild: %d segments, %d blocks, %.1f MiB: %.2f s (%.0f blocks/s: a "
              "range GET each, and the manifest per segment); then a query of all %d records "
              "read back from S3: %.2f s" % (n, 4 * n, sum(len(d) for s in segs
                                                           for _, d in s[1]) / 2**20,
                                              el, 4 * n / el, len(got), q))
    finally:
        srv.cleanup()
        fresh.cleanup()


def main():
    only = sys.argv[1:]  # test names to run (default: all)
    res = tvtest.Results(len(tvtest.cases(globals(), only)))
    try:
        with tvtest.Ceph() as ceph:
            for t in tvtest.cases(globals(), only):
                res.run(t, ceph)
            if os.environ.get("TV_UNDER_BENCH"):
                bench(ceph)
    except tvtest.Unavailable as e:
        tvtest.skip(str(e))
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
