"""tracevaultd's multipart uploads to the S3 under-store (issue 14: "Multipart upload for blocks
over a named size, aborted on failure"; server/under/UNDERSTORE.md "Layout") against a real
S3 server, scripts/s3-ceph.sh's one-node Ceph (tvtest.Ceph), started once for the file.

--s3-multipart-bytes and --s3-part-bytes lower the defaults (64M, 16M) so that a test-sized
block goes multipart. Cases: the options' usage errors (exit 2, one line); a segment with one
block above the threshold and one below: the big one is a multipart object of the expected
number of parts (its ETag ends in -N, S3's mark of a multipart object), the small one a single
PUT, both byte-exact, records back exact, no upload left open; radosgw stopped while a block's
parts are being uploaded: the segment fails naming S3, and once radosgw is back neither an
object nor an open multipart upload of the segment is left in the bucket."""
import os
import random
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from test_understore import (BASE_NS, START_TIMEOUT_S, make_segment, seg_dir,  # noqa: E402
                             set_credentials, temp_files, under_args)

MIB = 1 << 20
PART_MIB = 5  # S3's smallest part (TV_S3_PART_MIN_BYTES)
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def multipart_args(ceph, prefix):
    return under_args(ceph, prefix) + ["--s3-multipart-bytes", "%dM" % PART_MIB,
                                       "--s3-part-bytes", "%dM" % PART_MIB]


def etags(ceph, prefix):
    """{key: ETag without quotes} under prefix (ListObjectsV2, one page)."""
    r = ceph.s3("GET", query=[("list-type", 2), ("prefix", prefix)])
    assert r.status == 200, r
    root = ET.fromstring(r.body)
    return {c.findtext(S3_NS + "Key"): c.findtext(S3_NS + "ETag").strip('"')
            for c in root.findall(S3_NS + "Contents")}


def test_usage(ceph):
    set_credentials(ceph)
    d = "/tmp/tv-under-multipart-usage"
    for args, msg in [
        (["--s3-part-bytes", "5M"], "--s3-multipart-bytes, --s3-part-bytes and "
         "--s3-connections go with --under"),
        (["--s3-connections", "2"], "--s3-multipart-bytes, --s3-part-bytes and "
         "--s3-connections go with --under"),
        (under_args(ceph, "p") + ["--s3-connections", "0"],
         "invalid --s3-connections: '0' (1 to 16)"),
        (under_args(ceph, "p") + ["--s3-connections", "17"],
         "invalid --s3-connections: '17' (1 to 16)"),
        (under_args(ceph, "p") + ["--s3-part-bytes", "1M"],
         "invalid --s3-multipart-bytes / --s3-part-bytes: s3 part size 1048576 bytes"),
        (under_args(ceph, "p") + ["--s3-multipart-bytes", "5M", "--s3-part-bytes", "6M"],
         "invalid --s3-multipart-bytes / --s3-part-bytes: s3 multipart threshold 5242880 "
         "bytes: want 6291456.."),
        (under_args(ceph, "p") + ["--s3-multipart-bytes", "6G"],
         "invalid --s3-multipart-bytes / --s3-part-bytes: s3 multipart threshold"),
        (under_args(ceph, "p") + ["--s3-part-bytes", "five"],
         "invalid --s3-part-bytes: 'five'"),
    ]:
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", d] + args,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and p.stderr.startswith("tracevaultd: " + msg) and \
            p.stderr.count("\n") == 1, (args, p.returncode, p.stderr)
        assert not os.path.exists(d), "a usage error touched the data dir"


def test_multipart_block(ceph):
    set_credentials(ceph)
    rng = random.Random(21)
    prefix = "mpu"
    srv = tvtest.Server(extra_args=multipart_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        # one block of 190 records with 64 KiB paths (~12 MiB: 3 parts of 5 MiB) ...
        sid, big, big_ts, oldest = make_segment(rng, BASE_NS + 30 * 10**12, 1, 190,
                                                path_bytes=64 * 1024)
        # ... and one small block after it in the same segment
        _, small, small_ts, _ = make_segment(rng, BASE_NS + 31 * 10**12, 1, 40)
        blocks = big + small
        assert len(big[0][1]) > 2 * PART_MIB * MIB and len(small[0][1]) < PART_MIB * MIB
        r = c.write_encoded(sid, blocks, chunk_bytes=1 * MIB)
        assert r.committed, r
        got = sorted(x.ts_ns for x in c.query(BASE_NS, BASE_NS + 10**15))
        assert got == sorted(big_ts + small_ts), "records not back exact"
        d = seg_dir(prefix, sid, oldest)
        tags = etags(ceph, d)
        keys = ceph.list_keys(d)
        want_parts = -(-len(big[0][1]) // (PART_MIB * MIB))
        for (bid, data), multipart in ((big[0], True), (small[0], False)):
            k = d + "%016x.blk" % bid
            assert keys.get(k) == len(data), (k, keys)
            assert tags[k].endswith("-%d" % want_parts) == multipart and \
                ("-" in tags[k]) == multipart, (k, tags[k], want_parts)
            back = ceph.s3("GET", k)
            assert back.status == 200 and back.body == data, "block %016x differs" % bid
        assert sorted(keys) == sorted([d + "manifest.json"] +
                                      [d + "%016x.blk" % b for b, _ in blocks]), sorted(keys)
        assert ceph.list_uploads(prefix + "/") == []
        print("  %d-byte block in %d parts (ETag %s), %d-byte block in one PUT"
              % (len(big[0][1]), want_parts, tags[d + "%016x.blk" % big[0][0]],
                 len(small[0][1])))
        c.close()
    finally:
        srv.cleanup()


def test_rgw_stopped_mid_multipart(ceph):
    """radosgw stops while a block's parts go up: the segment fails naming S3; once radosgw is
    back the upload is aborted and nothing of the segment is left in the bucket."""
    set_credentials(ceph)
    rng = random.Random(22)
    prefix = "mpu-stop"
    srv = tvtest.Server(extra_args=multipart_args(ceph, prefix))
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        # 3 blocks of ~40 MiB, 8 parts each: long enough to stop radosgw during a part
        sid, blocks, _, oldest = make_segment(rng, BASE_NS + 40 * 10**12, 3, 640,
                                              path_bytes=64 * 1024)
        d = seg_dir(prefix, sid, oldest)
        result = {}

        def put():
            result["r"] = c.write_requests(c.encoded_requests(sid, blocks, 1 * MIB))
        t = threading.Thread(target=put)
        t.start()
        tvtest.wait_for(lambda: ceph.list_uploads(d) != [], "a multipart upload of the segment",
                        timeout_s=90, interval_s=0.02)
        ceph.rgw_stop()
        t.join(120)
        assert not t.is_alive(), "the write did not end"
        _, code, details = result["r"]
        assert code == c.grpc.StatusCode.UNAVAILABLE, (code, details)
        assert "under-store" in details and "s3://" in details, details
        print("  failed: %s: %s" % (code, details))
        assert temp_files(srv) == [], temp_files(srv)
        ceph.rgw_start()
        # the abort and the deletes are retried until radosgw answers (UNDERSTORE.md)
        tvtest.wait_for(lambda: not ceph.list_keys(d) and not ceph.list_uploads(d),
                        "no object and no open upload of the failed segment", timeout_s=90,
                        interval_s=0.5)
        assert c.query(BASE_NS + 40 * 10**12, BASE_NS + 41 * 10**12) == []
        c.close()
    finally:
        srv.cleanup()


def main():
    only = sys.argv[1:]
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
