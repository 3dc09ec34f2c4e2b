"""tracevaultd's S3 under-store (issue 14, server/under/UNDERSTORE.md) against a real S3 server:
scripts/s3-ceph.sh's one-node Ceph with a RADOS Gateway on loopback (tvtest.Ceph), started once
for the file and always stopped; the file SKIPs with the reason only if Ceph cannot be installed.

Cases: start-up refusals (wrong secret, missing bucket: exit 1, one line, no secret in it);
cache-through end to end (records back exact, the bucket holds the documented keys with the
block sizes, the manifest lists them); kill -9 after acks (every acknowledged segment's
manifest and blocks are in the bucket); radosgw stopped while a segment is being persisted
(the segment fails naming the S3 error, nothing of it stays in the bucket, in its multipart
uploads or in tmp/, and the next segment after radosgw returns commits); the journal
(UNDERSTORE.md "Catalog state"): kill -9 while a segment's blocks are being uploaded, and the
restart deletes them before it serves; a Delete whose S3 delete radosgw did not answer before a
kill -9 is finished by the restart; the journal (catalog.db's under_pending) is empty after.

bench/bench_under.py (make bench) measures persist throughput and commit latency with this
file's helpers (timed_commit, percentile)."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block  # noqa: E402

BASE_NS = 1_764_000_000 * 10**9  # 2025-11-24T16:00:00Z
START_TIMEOUT_S = 60


def hour_dir(ts_ns):
    t = time.gmtime(ts_ns // 10**9)
    return "%04d/%02d/%02d/%02d" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour)


def seg_dir(prefix, sid, oldest_ns):
    return "%s/v1/%s/%016x/" % (prefix, hour_dir(oldest_ns), sid)


def under_args(ceph, prefix, bucket=None):
    return ["--under", "s3://%s/%s" % (bucket or ceph.bucket, prefix), "--s3-endpoint",
            ceph.endpoint, "--s3-region", ceph.region]


def set_credentials(ceph, secret=None):
    os.environ["AWS_ACCESS_KEY_ID"] = ceph.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = secret or ceph.secret_key


def journal(srv):
    """(under_pending rows as {segment_id: state}, under_persisted segment ids) of the server's
    catalog, read with SQLite itself (read-only; the server may be running: WAL)."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(srv.data_dir, "catalog.db"),
                         uri=True, timeout=10)
    try:
        pending = {sid & (2**64 - 1): state for sid, state in
                   db.execute("SELECT segment_id, state FROM under_pending")}
        persisted = sorted(sid & (2**64 - 1) for (sid,) in
                           db.execute("SELECT segment_id FROM under_persisted"))
    finally:
        db.close()
    return pending, persisted


def stop_clean(srv):
    """SIGTERM: the server exits 0 within the stop timeout, and (sanitized builds) reported
    no error or leak."""
    rc = srv.stop()
    assert rc == 0, (rc, srv.log()[-3000:])
    assert "Sanitizer" not in srv.log(), srv.log()[-6000:]


def last_metrics_addr(srv):
    """The metrics endpoint of the server's last run (its log holds every run's)."""
    found = tvtest.METRICS_LINE_RE.findall(srv.log())
    return found[-1] if found else None


def make_segment(rng, ts0, nblocks, records_per_block, path_bytes=16):
    """(sid, [(bid, bytes)], sorted ts list, oldest ts)."""
    sid = rng.getrandbits(63) | 1
    blocks, all_ts, ts = [], [], ts0
    for _ in range(nblocks):
        recs = [tvtest.trace_record(ts + i, pid=7, path="/" + "p" * path_bytes)
                for i in range(records_per_block)]
        all_ts += [ts + i for i in range(records_per_block)]
        ts += records_per_block
        bid = rng.getrandbits(64) | 1
        blocks.append((bid, encode_block(bid, recs)))
    return sid, blocks, all_ts, ts0


def check_segment_in_bucket(ceph, keys, prefix, sid, blocks, oldest):
    d = seg_dir(prefix, sid, oldest)
    manifest_key = d + "manifest.json"
    assert manifest_key in keys, (manifest_key, sorted(keys))
    for bid, data in blocks:
        k = d + "%016x.blk" % bid
        assert keys.get(k) == len(data), (k, keys.get(k), len(data))
    r = ceph.s3("GET", manifest_key)
    assert r.status == 200, r
    m = json.loads(r.body)
    assert m["format"] == "tracevault-segment-manifest" and m["version"] == 1, m
    assert m["segment_id"] == "%016x" % sid and m["oldest_ts_ns"] == oldest, m
    assert [(b["block_id"], b["bytes"]) for b in m["blocks"]] == \
        [("%016x" % bid, len(data)) for bid, data in blocks], m
    got = ceph.s3("GET", d + "%016x.blk" % blocks[0][0])
    assert got.status == 200 and got.body == blocks[0][1], "block 0's bytes differ"
    return len([k for k in keys if k.startswith(d)])


def test_refusals(ceph):
    """Wrong secret, missing bucket, nothing listening: exit 1 before serving, one line naming
    the cause, no secret in it."""
    wrong = "W" * 40
    cases = [
        (under_args(ceph, "p"), wrong, "SignatureDoesNotMatch",
         "(check AWS_SECRET_ACCESS_KEY)"),
        (under_args(ceph, "p", bucket="no-such-bucket-tv"), None, "NoSuchBucket",
         "(no such bucket)"),
        (["--under", "s3://%s/p" % ceph.bucket, "--s3-endpoint", "http://127.0.0.1:1"], None,
         "Couldn't connect", "(check --s3-endpoint)"),
    ]
    for args, secret, cause, hint in cases:
        set_credentials(ceph, secret)
        srv = tvtest.Server(extra_args=args)
        try:
            try:
                srv.start(timeout=30)
                raise AssertionError("tracevaultd started with %r" % (args,))
            except AssertionError as e:
                if "started with" in str(e):
                    raise
            rc = srv.proc.wait(10)
            lines = srv.log().splitlines()
            assert rc == 1, (rc, lines)
            assert len(lines) == 1 and lines[0].startswith("tracevaultd: --under s3://"), lines
            assert cause in lines[0] and lines[0].endswith(hint), lines
            assert ceph.secret_key not in srv.log() and wrong not in srv.log(), lines
            assert not os.path.exists(os.path.join(srv.data_dir, "FORMAT")), \
                "the data dir was touched before the check"
            print("  refused: %s" % lines[0])
        finally:
            srv.cleanup()
    set_credentials(ceph)


def test_usage(ceph):
    set_credentials(ceph)
    d = "/tmp/tv-under-usage"
    for args, msg in [
        (["--write-type", "cache-through"], "--write-type cache-through needs --under"),
        (["--write-type", "async-through"], "--write-type async-through needs --under"),
        (["--write-type", "write-back"], "invalid --write-type: 'write-back' (must-cache, "
         "cache-through or async-through)"),
        (under_args(ceph, "p") + ["--under-queue-segments", "8"],
         "--under-queue-segments and --under-queue-bytes go with --write-type async-through"),
        (under_args(ceph, "p") + ["--write-type", "async-through", "--under-queue-segments",
                                  "0"], "invalid --under-queue-segments: '0' (1 to 1000000)"),
        (under_args(ceph, "p") + ["--write-type", "async-through", "--under-queue-bytes",
                                  "1K"], "invalid --under-queue-bytes: '1K' (1M to 1024G)"),
        (["--s3-endpoint", ceph.endpoint], "--s3-endpoint and --s3-region go with --under"),
        (["--under", "s3://%s/p" % ceph.bucket], "--under needs --s3-endpoint URL"),
        (["--under", "gs://b/p", "--s3-endpoint", ceph.endpoint], "invalid --under: 'gs://b/p'"),
        (["--under", "s3://%s/p" % ceph.bucket, "--s3-endpoint", "127.0.0.1:1"],
         "invalid --s3-endpoint / --s3-region: s3 endpoint '127.0.0.1:1': not an http://"),
        (["--under", "s3://%s/p" % ceph.bucket, "--s3-endpoint", ceph.endpoint + "/a/path"],
         "invalid --s3-endpoint / --s3-region: s3 endpoint: want scheme://host[:port]"),
        (["--under", "s3://%s/p" % ceph.bucket, "--s3-endpoint", ceph.endpoint,
          "--s3-region", ""], "invalid --s3-endpoint / --s3-region: s3 region ''"),
    ]:
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", d] + args,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and p.stderr.startswith("tracevaultd: " + msg) and \
            p.stderr.count("\n") == 1, (args, p.returncode, p.stderr)
    env = dict(os.environ)
    env.pop("AWS_SECRET_ACCESS_KEY")
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", d] + under_args(ceph, "p"),
                       capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 2 and "AWS_SECRET_ACCESS_KEY" in p.stderr, p


def test_cache_through_end_to_end(ceph):
    set_credentials(ceph)
    rng = random.Random(1)
    prefix = "e2e"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ["--metrics-addr",
                                                                "127.0.0.1:0"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        segs = [make_segment(rng, BASE_NS + i * 10**12, 1 + i, 50 + i) for i in range(3)]
        for sid, blocks, _, _ in segs:
            r = c.write_encoded(sid, blocks, chunk_bytes=1000)
            assert r.committed and sorted(r.committed_block_ids) == sorted(b for b, _ in blocks)
        got = sorted(r.ts_ns for r in c.query(BASE_NS, BASE_NS + 10**15))
        assert got == sorted(t for s in segs for t in s[2]), "records not back exact"
        keys = ceph.list_keys(prefix + "/")
        n = sum(check_segment_in_bucket(ceph, keys, prefix, sid, blocks, oldest)
                for sid, blocks, _, oldest in segs)
        assert n == len(keys) == sum(len(b) + 1 for _, b, _, _ in segs), sorted(keys)
        assert ceph.list_uploads(prefix + "/") == []
        scrape = tvtest.Scrape(tvtest.metrics_addr(srv.log()))
        assert scrape.value("tracevault_server_under_persisted_segments_total") == 3
        assert scrape.value("tracevault_server_under_persisted_objects_total") == len(keys)
        # the journal: no row left, a persisted row per segment (in each COMMIT's transaction)
        assert journal(srv) == ({}, sorted(s[0] for s in segs)), journal(srv)
        c.close()
        print("  3 segments, %d objects: %s" % (len(keys), sorted(keys)[0]))
    finally:
        srv.cleanup()


def test_kill9_after_acks(ceph):
    """Every segment acknowledged before a kill -9 has its manifest and blocks in the bucket."""
    set_credentials(ceph)
    rng = random.Random(2)
    prefix = "kill9"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    acked, stop = [], threading.Event()
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)

        def writer(k):
            for i in range(200):
                if stop.is_set():
                    return
                seg = make_segment(rng, BASE_NS + (k * 1000 + i) * 10**9, rng.randint(1, 3),
                                   rng.randint(5, 80))
                try:
                    r = c.write_encoded(seg[0], seg[1], chunk_bytes=2048)
                except c.grpc.RpcError:
                    return
                if r.committed:
                    acked.append(seg)
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        tvtest.wait_for(lambda: len(acked) >= 10, "10 acked segments", timeout_s=60)
        time.sleep(random.Random(3).uniform(0.05, 0.5))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(60)
        acked_now = list(acked)
        keys = ceph.list_keys(prefix + "/")
        for sid, blocks, _, oldest in acked_now:
            check_segment_in_bucket(ceph, keys, prefix, sid, blocks, oldest)
        print("  %d acked segments, all in the bucket (%d objects there)"
              % (len(acked_now), len(keys)))
        c.close()
    finally:
        srv.cleanup()


def test_delete_removes_objects(ceph):
    """A Delete of a committed segment removes its objects from the bucket (manifest first);
    another segment's stay."""
    set_credentials(ceph)
    rng = random.Random(6)
    prefix = "delete"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        keep = make_segment(rng, BASE_NS + 20 * 10**12, 2, 20)
        gone = make_segment(rng, BASE_NS + 21 * 10**12, 3, 20)
        for seg, token in ((keep, 11), (gone, 12)):
            assert c.write_encoded(seg[0], seg[1], writer_token=token).committed
        keys = ceph.list_keys(prefix + "/")
        check_segment_in_bucket(ceph, keys, prefix, gone[0], gone[1], gone[3])
        code, details, resp = c.delete_segment(gone[0], writer_token=12)
        assert code == c.grpc.StatusCode.OK, (code, details)
        d = seg_dir(prefix, gone[0], gone[3])
        tvtest.wait_for(lambda: not ceph.list_keys(d), "the deleted segment's objects gone",
                        timeout_s=30, interval_s=0.1)
        keys = ceph.list_keys(prefix + "/")
        assert check_segment_in_bucket(ceph, keys, prefix, keep[0], keep[1], keep[3]) == \
            len(keys) == 3, sorted(keys)
        # the journal: the 'deleting' row goes once S3 confirmed, the persisted row with T1
        tvtest.wait_for(lambda: journal(srv) == ({}, [keep[0]]), "the journal settled",
                        timeout_s=30, interval_s=0.1)
        c.close()
    finally:
        srv.cleanup()


def temp_files(srv):
    d = os.path.join(srv.data_dir, "tmp")
    return os.listdir(d) if os.path.isdir(d) else []


def test_rgw_stopped_mid_segment(ceph):
    """radosgw stops while a segment's blocks are being copied: the segment fails with the S3
    error, nothing of it stays in the bucket (objects, multipart uploads) or in tmp/, and the
    next segment after radosgw is back commits."""
    set_credentials(ceph)
    rng = random.Random(4)
    prefix = "rgwstop"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ["--metrics-addr",
                                                                "127.0.0.1:0"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        # 40 blocks of ~4 MiB (records with 64 KiB paths): long enough to stop radosgw in
        sid, blocks, _, oldest = make_segment(rng, BASE_NS + 5 * 10**12, 40, 64,
                                              path_bytes=64 * 1024)
        d = seg_dir(prefix, sid, oldest)
        result = {}

        def put():
            result["r"] = c.write_requests(c.encoded_requests(sid, blocks, 1 << 20))
        t = threading.Thread(target=put)
        t.start()
        # the first block object of the segment in the bucket: the copy is under way
        tvtest.wait_for(lambda: any(k.endswith(".blk") for k in ceph.list_keys(d)),
                        "the segment's first object in the bucket", timeout_s=60,
                        interval_s=0.02)
        ceph.rgw_stop()
        t.join(120)
        _, code, details = result["r"]
        assert code == c.grpc.StatusCode.UNAVAILABLE, (code, details)
        assert "under-store" in details and "s3://" in details, details
        print("  failed: %s: %s" % (code, details))
        assert temp_files(srv) == [], temp_files(srv)
        assert c.query(BASE_NS + 5 * 10**12, BASE_NS + 6 * 10**12) == []
        ceph.rgw_start()
        # the segment's delete is retried until radosgw answers (TV_PERSIST_CLEANUP_RETRY_*)
        tvtest.wait_for(lambda: not ceph.list_keys(d) and not ceph.list_uploads(d),
                        "nothing of the failed segment in the bucket", timeout_s=90,
                        interval_s=0.5)
        assert ceph.list_keys(prefix + "/") == {}, ceph.list_keys(prefix + "/")
        scrape = tvtest.Scrape(tvtest.metrics_addr(srv.log()))
        failures = sum(scrape.value("tracevault_server_under_persist_failures_total",
                                    reason=r)
                       for r in ("auth", "unreachable", "timeout", "server", "local",
                                 "conflict", "other"))
        assert failures == 1, failures
        # the next segment commits, and is there
        seg = make_segment(rng, BASE_NS + 7 * 10**12, 2, 30)
        r = c.write_encoded(seg[0], seg[1])
        assert r.committed, r
        check_segment_in_bucket(ceph, ceph.list_keys(prefix + "/"), prefix, seg[0], seg[1],
                                seg[3])
        # the failed segment's 'uploading' row went once S3 confirmed its delete
        tvtest.wait_for(lambda: journal(srv) == ({}, [seg[0]]), "the journal settled",
                        timeout_s=30, interval_s=0.1)
        c.close()
    finally:
        srv.cleanup()


def test_journal_kill9_mid_upload(ceph):
    """kill -9 while a cache-through segment's blocks are being uploaded (block objects in the
    bucket, no manifest yet, its 'uploading' journal row written): the restart deletes its
    objects before it serves, the segment acknowledged before is whole in both places, and
    the journal is empty."""
    set_credentials(ceph)
    rng = random.Random(7)
    prefix = "jkill"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        acked = make_segment(rng, BASE_NS + 30 * 10**12, 2, 40)
        assert c.write_encoded(acked[0], acked[1]).committed
        assert journal(srv) == ({}, [acked[0]]), journal(srv)
        # 12 blocks of ~4 MiB: long enough to catch between the first object and the manifest
        sid, blocks, _, oldest = make_segment(rng, BASE_NS + 31 * 10**12, 12, 64,
                                              path_bytes=64 * 1024)
        d = seg_dir(prefix, sid, oldest)

        def put():
            try:
                c.write_encoded(sid, blocks, chunk_bytes=1 << 20)
            except c.grpc.RpcError:
                pass  # the server is killed under it
        t = threading.Thread(target=put)
        t.start()
        tvtest.wait_for(lambda: any(k.endswith(".blk") for k in ceph.list_keys(d)),
                        "the segment's first object in the bucket", timeout_s=60,
                        interval_s=0.02)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        t.join(60)
        c.close()
        keys = ceph.list_keys(d)
        assert keys and d + "manifest.json" not in keys, sorted(keys)
        assert journal(srv) == ({sid: "uploading"}, [acked[0]]), journal(srv)
        print("  killed with %d of its %d block objects in the bucket, no manifest"
              % (len(keys), len(blocks)))

        srv.start(timeout=START_TIMEOUT_S)  # same data dir
        # already gone when it serves: the start-up pass runs before the port answers
        assert ceph.list_keys(d) == {} and ceph.list_uploads(d) == [], sorted(ceph.list_keys(d))
        assert journal(srv) == ({}, [acked[0]]), journal(srv)
        assert "1 segments deleted from the bucket" in srv.log(), srv.log()
        keys = ceph.list_keys(prefix + "/")
        assert check_segment_in_bucket(ceph, keys, prefix, acked[0], acked[1], acked[3]) == \
            len(keys) == 3, sorted(keys)
        c = tvtest.GrpcClient(srv.addr)
        got = sorted(r.ts_ns for r in c.query(BASE_NS, BASE_NS + 10**15))
        assert got == acked[2], "the acknowledged segment's records are not back exact"
        c.close()
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_cancel_mid_upload_then_same_id(ceph):
    """A client cancels while its segment's blocks are being uploaded, and writes the same
    segment id again at once (other blocks, the same directory): the cancelled attempt's
    objects are deleted before the new attempt's upload, so the bucket ends with exactly the
    new attempt's objects, and the journal with its persisted row only."""
    set_credentials(ceph)
    rng = random.Random(9)
    prefix = "cancel"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        sid, blocks, _, oldest = make_segment(rng, BASE_NS + 33 * 10**12, 12, 64,
                                              path_bytes=64 * 1024)
        d = seg_dir(prefix, sid, oldest)
        pb = c.pb
        w = tvtest.WriteStream(c)
        w.send(tvtest.write_cmd(pb.OPEN_SEGMENT, segment_id=sid))
        for bid, data in blocks:
            w.send(tvtest.write_cmd(pb.OPEN_BLOCK, block_id=bid, length=len(data)),
                   *tvtest.write_chunks(bid, data, 1 << 20))
        w.send(tvtest.write_cmd(pb.COMMIT, segment_id=sid))
        tvtest.wait_for(lambda: any(k.endswith(".blk") for k in ceph.list_keys(d)),
                        "the segment's first object in the bucket", timeout_s=60,
                        interval_s=0.02)
        w.call.cancel()
        w.end()
        again = (sid,) + make_segment(rng, oldest, 1, 20)[1:]  # same id, same directory
        result = {}

        def write_again():
            try:
                result["r"] = c.write_encoded(sid, again[1])
                return True
            except c.grpc.RpcError as e:  # the cancelled stream may still hold the id
                assert e.code() == c.grpc.StatusCode.ALREADY_EXISTS, e
                return False
        tvtest.wait_for(write_again, "the same id written again", timeout_s=30,
                        interval_s=0.02)
        assert result["r"].committed, result
        want = {d + "manifest.json", d + "%016x.blk" % again[1][0][0]}
        tvtest.wait_for(lambda: set(ceph.list_keys(d)) == want and
                        ceph.list_uploads(d) == [], "only the new attempt's objects",
                        timeout_s=60, interval_s=0.1)
        check_segment_in_bucket(ceph, ceph.list_keys(prefix + "/"), prefix, sid, again[1],
                                oldest)
        tvtest.wait_for(lambda: journal(srv) == ({}, [sid]), "the journal settled",
                        timeout_s=30, interval_s=0.1)
        got = sorted(r.ts_ns for r in c.query(BASE_NS, BASE_NS + 10**15))
        assert got == again[2], "not the new attempt's records"
        c.close()
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_journal_delete_unconfirmed(ceph):
    """A Delete answered while radosgw is down leaves a 'deleting' journal row (the S3 delete
    is retried); after a kill -9 the restart deletes the segment's objects before serving
    and the journal is empty."""
    set_credentials(ceph)
    rng = random.Random(8)
    prefix = "jdel"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        seg = make_segment(rng, BASE_NS + 32 * 10**12, 3, 20)
        assert c.write_encoded(seg[0], seg[1], writer_token=5).committed
        d = seg_dir(prefix, seg[0], seg[3])
        assert len(ceph.list_keys(d)) == 4
        ceph.rgw_stop()
        try:
            code, details, _ = c.delete_segment(seg[0], writer_token=5)
            assert code == c.grpc.StatusCode.OK, (code, details)
            assert journal(srv) == ({seg[0]: "deleting"}, []), journal(srv)
            assert c.query(BASE_NS, BASE_NS + 10**15) == []
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
        finally:
            ceph.rgw_start()
        c.close()
        assert len(ceph.list_keys(d)) == 4  # nobody deleted them yet
        srv.start(timeout=START_TIMEOUT_S)
        assert ceph.list_keys(d) == {}, sorted(ceph.list_keys(d))
        assert journal(srv) == ({}, []), journal(srv)
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_must_cache_with_under(ceph):
    """--write-type must-cache with --under: new segments stay local (nothing uploaded, no
    journal row, never evictable); a segment persisted by an earlier cache-through run on the
    same data dir is still deleted from the bucket by a Delete."""
    set_credentials(ceph)
    rng = random.Random(17)
    prefix = "mustcache"
    old = make_segment(rng, BASE_NS + 30 * 10**12, 2, 20)
    new = make_segment(rng, BASE_NS + 31 * 10**12, 2, 20)
    first = tvtest.Server(extra_args=under_args(ceph, prefix))  # owns the data dir
    srv = None
    try:
        first.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(first.addr)
        assert c.write_encoded(old[0], old[1], writer_token=7).committed
        c.close()
        stop_clean(first)
        before = ceph.list_keys(prefix + "/")
        check_segment_in_bucket(ceph, before, prefix, old[0], old[1], old[3])
        srv = tvtest.Server(data_dir=first.data_dir, extra_args=under_args(ceph, prefix) +
                            ["--write-type", "must-cache", "--local-bytes", "1"])
        srv.start(timeout=START_TIMEOUT_S)
        assert "write type must-cache" in srv.log(), srv.log()
        c = tvtest.GrpcClient(srv.addr)
        assert c.write_encoded(new[0], new[1], writer_token=8).committed
        assert ceph.list_keys(prefix + "/") == before, "must-cache uploaded something"
        assert journal(srv) == ({}, [old[0]]), journal(srv)
        # --local-bytes 1: the persisted segment is evicted and read back, the new one stays
        files = set(os.listdir(os.path.join(srv.data_dir, "blocks")))
        assert files == {"%016x-%016x.tvb" % (new[0], b) for b, _ in new[1]}, files
        got = sorted(r.ts_ns for r in c.query(BASE_NS, BASE_NS + 10**15))
        assert got == sorted(old[2] + new[2]), "records not back exact"
        code, details, _ = c.delete_segment(old[0], writer_token=7)
        assert code == c.grpc.StatusCode.OK, (code, details)
        tvtest.wait_for(lambda: not ceph.list_keys(prefix + "/"), "the old segment's objects "
                        "gone", timeout_s=30, interval_s=0.1)
        c.close()
        stop_clean(srv)
    finally:
        if srv:
            srv.cleanup()
        first.cleanup()


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def timed_commit(c, sid, blocks):
    """Write the segment, wait until its last block is acknowledged whole, then time COMMIT to
    its reply (s)."""
    pb = c.pb
    w = tvtest.WriteStream(c)
    w.send(tvtest.write_cmd(pb.OPEN_SEGMENT, segment_id=sid))
    for bid, data in blocks:
        w.send(tvtest.write_cmd(pb.OPEN_BLOCK, block_id=bid, length=len(data)),
               *tvtest.write_chunks(bid, data, 1 << 20))
    last_bid, last_len = blocks[-1][0], len(blocks[-1][1])
    while True:
        r = w.next()
        if r.block_id == last_bid and r.offset == last_len:
            break
    t = time.monotonic()
    w.send(tvtest.write_cmd(pb.COMMIT, segment_id=sid))
    while True:
        r = w.next()
        if r.committed:
            break
    lat = time.monotonic() - t
    w.end()
    for _ in w.call:
        pass
    return lat


def main():
    only = sys.argv[1:]  # test names to run (default: all)
    res = tvtest.Results(len(tvtest.cases(globals(), only)))
    try:
        with tvtest.Ceph() as ceph:
            for t in tvtest.cases(globals(), only):
                res.run(t, ceph)
    except tvtest.Unavailable as e:
        tvtest.skip(str(e))
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
