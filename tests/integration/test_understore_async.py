"""tracevaultd's --write-type async-through (issue 14, server/under/UNDERSTORE.md "Write path:
async-through") against a real S3 server: scripts/s3-ceph.sh's one-node Ceph with a RADOS
Gateway on loopback (tvtest.Ceph), started once for the file and always stopped; the file SKIPs
with the reason only if Ceph cannot be installed.

Cases: end to end (every COMMIT acknowledged, then the bucket gets every segment with its
manifest, the gauges drop to 0, the journal holds only persisted rows); radosgw stopped (writes
still acknowledged, the unpersisted gauges grow and retries count, and once radosgw is back
everything persists); kill -9 with queued segments (the restart queues them again and persists
them all); the queue's bound (--under-queue-segments 2: the third COMMIT waits unanswered while
S3 is down, and nothing is dropped); a Delete of a queued segment (its upload is given up,
nothing of it reaches the bucket, the journal settles); an upload queued again whose manifest
is in the bucket (its own: persisted without a PUT; another's: refused, final)."""
import os
import random
import signal
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from test_understore import (BASE_NS, START_TIMEOUT_S, check_segment_in_bucket,  # noqa: E402
                             journal, last_metrics_addr, make_segment, seg_dir,
                             set_credentials, stop_clean, under_args)

ASYNC = ["--write-type", "async-through", "--metrics-addr", "127.0.0.1:0"]
# the backoff's maximum is 10 s (TV_PERSIST_ASYNC_RETRY_MAX_MS): after radosgw returns, a
# queue persists within it plus the uploads
PERSIST_TIMEOUT_S = 60


def gauges(srv):
    s = tvtest.Scrape(last_metrics_addr(srv))
    return {k: s.value("tracevault_server_under_" + k) for k in (
        "unpersisted_segments", "unpersisted_bytes", "persist_retries_total",
        "oldest_unpersisted_age_seconds", "persisted_segments_total")}


def seg_bytes(seg):
    return sum(len(d) for _, d in seg[1])


def all_in_bucket(ceph, prefix, segs):
    keys = ceph.list_keys(prefix + "/")
    return all(seg_dir(prefix, s[0], s[3]) + "manifest.json" in keys for s in segs)


def wait_persisted(ceph, srv, prefix, segs):
    """Every segment's manifest in the bucket and the gauges at 0; then each checked whole."""
    tvtest.wait_for(lambda: all_in_bucket(ceph, prefix, segs) and
                    gauges(srv)["unpersisted_segments"] == 0, "every segment persisted",
                    timeout_s=PERSIST_TIMEOUT_S, interval_s=0.2)
    keys = ceph.list_keys(prefix + "/")
    n = sum(check_segment_in_bucket(ceph, keys, prefix, s[0], s[1], s[3]) for s in segs)
    assert n == len(keys) == sum(len(s[1]) + 1 for s in segs), sorted(keys)
    g = gauges(srv)
    assert g["unpersisted_bytes"] == 0 and g["oldest_unpersisted_age_seconds"] == 0, g
    return g


def records(c):
    return sorted(r.ts_ns for r in c.query(BASE_NS, BASE_NS + 10**16))


def test_async_end_to_end(ceph):
    set_credentials(ceph)
    rng = random.Random(11)
    prefix = "a-e2e"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ASYNC)
    try:
        srv.start(timeout=START_TIMEOUT_S)
        assert "write type async-through" in srv.log()
        c = tvtest.GrpcClient(srv.addr)
        segs = [make_segment(rng, BASE_NS + (40 + i) * 10**12, 1 + i % 3, 30 + i)
                for i in range(6)]
        for s in segs:
            r = c.write_encoded(s[0], s[1], chunk_bytes=1000)
            assert r.committed and sorted(r.committed_block_ids) == sorted(b for b, _ in s[1])
        assert records(c) == sorted(t for s in segs for t in s[2])
        g = wait_persisted(ceph, srv, prefix, segs)
        assert g["persisted_segments_total"] == 6 and g["persist_retries_total"] == 0, g
        assert journal(srv) == ({}, sorted(s[0] for s in segs)), journal(srv)
        c.close()
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_async_rgw_stopped(ceph):
    """radosgw down: COMMITs are still acknowledged (local commit), the unpersisted gauges
    hold them, the uploads are retried (counted); radosgw back: all persist."""
    set_credentials(ceph)
    rng = random.Random(12)
    prefix = "a-rgw"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ASYNC)
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        segs = [make_segment(rng, BASE_NS + (50 + i) * 10**12, 2, 25) for i in range(3)]
        ceph.rgw_stop()
        try:
            for s in segs:
                assert c.write_encoded(s[0], s[1]).committed
            assert records(c) == sorted(t for s in segs for t in s[2])
            tvtest.wait_for(lambda: gauges(srv)["persist_retries_total"] >= 3,
                            "3 retries", timeout_s=30, interval_s=0.1)
            time.sleep(1.1)  # the oldest is at least a second old now
            g = gauges(srv)
            assert g["unpersisted_segments"] == 3, g
            assert tvtest.Scrape(last_metrics_addr(srv)).value(
                "tracevault_server_under_persist_queued") == 3
            assert g["unpersisted_bytes"] == sum(seg_bytes(s) for s in segs), g
            assert g["oldest_unpersisted_age_seconds"] >= 1, g
            assert journal(srv) == ({s[0]: "queued" for s in segs}, []), journal(srv)
            print("  radosgw down: %s" % g)
        finally:
            ceph.rgw_start()
        g = wait_persisted(ceph, srv, prefix, segs)
        assert g["persisted_segments_total"] == 3, g
        assert journal(srv) == ({}, sorted(s[0] for s in segs)), journal(srv)
        assert "uploaded after retries" in srv.log(), srv.log()
        c.close()
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_async_kill9_requeue(ceph):
    """kill -9 with segments acknowledged and queued (radosgw down): the restart queues every
    'queued' journal row again and persists them all."""
    set_credentials(ceph)
    rng = random.Random(13)
    prefix = "a-kill"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ASYNC)
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        segs = [make_segment(rng, BASE_NS + (60 + i) * 10**12, 1 + i % 2, 40) for i in range(4)]
        ceph.rgw_stop()
        try:
            for s in segs:
                assert c.write_encoded(s[0], s[1]).committed
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
        finally:
            ceph.rgw_start()
        c.close()
        assert journal(srv) == ({s[0]: "queued" for s in segs}, []), journal(srv)
        assert ceph.list_keys(prefix + "/") == {}
        srv.start(timeout=START_TIMEOUT_S)
        assert "4 queued for upload again" in srv.log(), srv.log()
        g = wait_persisted(ceph, srv, prefix, segs)
        assert g["persisted_segments_total"] == 4, g
        assert journal(srv) == ({}, sorted(s[0] for s in segs)), journal(srv)
        c = tvtest.GrpcClient(srv.addr)
        assert records(c) == sorted(t for s in segs for t in s[2])
        c.close()
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_async_shutdown_with_queue(ceph):
    """SIGTERM while uploads wait for radosgw: the server gives them up and exits 0 at once
    (no wait on S3), they stay 'queued' in the journal, and the next start persists them."""
    set_credentials(ceph)
    rng = random.Random(16)
    prefix = "a-term"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ASYNC)
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        segs = [make_segment(rng, BASE_NS + (90 + i) * 10**12, 2, 20) for i in range(2)]
        ceph.rgw_stop()
        try:
            for s in segs:
                assert c.write_encoded(s[0], s[1]).committed
            c.close()
            t0 = time.monotonic()
            stop_clean(srv)
            print("  stopped in %.2f s with 2 uploads queued" % (time.monotonic() - t0))
        finally:
            ceph.rgw_start()
        assert journal(srv) == ({s[0]: "queued" for s in segs}, []), journal(srv)
        srv.start(timeout=START_TIMEOUT_S)
        wait_persisted(ceph, srv, prefix, segs)
        assert journal(srv) == ({}, sorted(s[0] for s in segs)), journal(srv)
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_async_queue_bound(ceph):
    """--under-queue-segments 2 with radosgw down: two COMMITs are answered, the third waits
    unanswered (back-pressure), nothing is dropped; radosgw back: it is answered and all three
    persist."""
    set_credentials(ceph)
    rng = random.Random(14)
    prefix = "a-bound"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ASYNC +
                        ["--under-queue-segments", "2"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        segs = [make_segment(rng, BASE_NS + (70 + i) * 10**12, 2, 30) for i in range(3)]
        result = {}
        ceph.rgw_stop()
        try:
            for s in segs[:2]:
                assert c.write_encoded(s[0], s[1]).committed
            t = threading.Thread(target=lambda: result.update(
                r=c.write_encoded(segs[2][0], segs[2][1])))
            t.start()
            t.join(3)
            assert t.is_alive() and "r" not in result, "the third COMMIT was answered"
            g = gauges(srv)
            assert g["unpersisted_segments"] == 2, g
            assert records(c) == sorted(t for s in segs[:2] for t in s[2])
        finally:
            ceph.rgw_start()
        t.join(PERSIST_TIMEOUT_S)
        assert not t.is_alive() and result["r"].committed, result
        g = wait_persisted(ceph, srv, prefix, segs)
        assert g["persisted_segments_total"] == 3, g
        assert records(c) == sorted(t for s in segs for t in s[2])
        assert journal(srv) == ({}, sorted(s[0] for s in segs)), journal(srv)
        c.close()
        stop_clean(srv)
    finally:
        srv.cleanup()


def test_async_delete_queued(ceph):
    """A Delete of a segment still queued (radosgw down) gives its upload up: the gauge drops
    at once, nothing of it reaches the bucket, and its 'deleting' row goes once S3 confirms."""
    set_credentials(ceph)
    rng = random.Random(15)
    prefix = "a-del"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ASYNC)
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        gone = make_segment(rng, BASE_NS + 80 * 10**12, 2, 20)
        keep = make_segment(rng, BASE_NS + 81 * 10**12, 1, 20)
        ceph.rgw_stop()
        try:
            assert c.write_encoded(gone[0], gone[1], writer_token=9).committed
            code, details, _ = c.delete_segment(gone[0], writer_token=9)
            assert code == c.grpc.StatusCode.OK, (code, details)
            tvtest.wait_for(lambda: gauges(srv)["unpersisted_segments"] == 0,
                            "the deleted segment's upload given up", timeout_s=10)
            assert journal(srv) == ({gone[0]: "deleting"}, []), journal(srv)
        finally:
            ceph.rgw_start()
        assert c.write_encoded(keep[0], keep[1]).committed
        wait_persisted(ceph, srv, prefix, [keep])
        tvtest.wait_for(lambda: journal(srv) == ({}, [keep[0]]), "the journal settled",
                        timeout_s=PERSIST_TIMEOUT_S, interval_s=0.2)
        assert ceph.list_keys(seg_dir(prefix, gone[0], gone[3])) == {}
        c.close()
        stop_clean(srv)
    finally:
        srv.cleanup()


def requeue_persisted(srv, sids):
    """The server is stopped: turn the segments' under_persisted rows back into 'queued'
    journal rows, as a crash between an upload's manifest and its catalog transaction leaves
    them (UNDERSTORE.md "Two servers, one bucket": the rules)."""
    db = sqlite3.connect(os.path.join(srv.data_dir, "catalog.db"), timeout=10)
    try:
        with db:
            for sid in sids:
                v = sid - (1 << 64) if sid >= 1 << 63 else sid  # SQLite's INTEGER is signed
                row = db.execute("SELECT oldest_ts_ns FROM under_persisted WHERE segment_id = ?",
                                 (v,)).fetchone()
                assert row, "segment %016x has no under_persisted row" % sid
                db.execute("DELETE FROM under_persisted WHERE segment_id = ?", (v,))
                db.execute("INSERT INTO under_pending (segment_id, oldest_ts_ns, state, at_ns) "
                           "VALUES (?, ?, 'queued', ?)", (v, row[0], time.time_ns()))
    finally:
        db.close()


def test_async_requeue_finds_manifest(ceph):
    """An upload queued again whose manifest is in the bucket already (the crash came after
    the manifest, before the catalog knew): equal bytes, its own, so it is persisted without a
    retry or a PUT; a manifest that differs (another writer's segment of that id) is refused,
    final: not retried, its journal row dropped (it stays local only), the bucket left as it
    is."""
    set_credentials(ceph)
    rng = random.Random(16)
    prefix = "a-own"
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ASYNC)
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        own, other = [make_segment(rng, BASE_NS + (80 + i) * 10**12, 2, 20) for i in range(2)]
        for s in (own, other):
            assert c.write_encoded(s[0], s[1]).committed
        wait_persisted(ceph, srv, prefix, [own, other])
        c.close()
        stop_clean(srv)
        requeue_persisted(srv, [own[0], other[0]])
        # the other's manifest: a different body under the same key
        mkey = seg_dir(prefix, other[0], other[3]) + "manifest.json"
        r = ceph.s3("GET", mkey)
        assert r.status == 200, r
        foreign = r.body.replace(b'"version":1', b'"version":1,"writer":"another"')
        assert foreign != r.body and ceph.s3("PUT", mkey, data=foreign).status == 200
        before = ceph.list_keys(prefix + "/")
        srv.start(timeout=START_TIMEOUT_S)
        assert "2 queued for upload again" in srv.log(), srv.log()
        tvtest.wait_for(lambda: gauges(srv)["unpersisted_segments"] == 0 and
                        journal(srv)[0] == {}, "both uploads ended", timeout_s=PERSIST_TIMEOUT_S,
                        interval_s=0.1)
        g = gauges(srv)
        assert g["persist_retries_total"] == 0, g
        pending, persisted = journal(srv)
        assert own[0] in persisted and other[0] not in persisted, (pending, persisted)
        assert ceph.list_keys(prefix + "/") == before, "the bucket changed"
        assert ceph.s3("GET", mkey).body == foreign, "the other's manifest was replaced"
        assert "%016x" % other[0] in srv.log() and "exists already" in srv.log(), srv.log()
        assert tvtest.Scrape(last_metrics_addr(srv)).value(
            "tracevault_server_under_persist_failures_total", reason="conflict") == 1
        stop_clean(srv)
    finally:
        srv.cleanup()


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
