"""`tracevault query --stats` against the real tracevaultd: loss counters stored in version 2
block headers (BLOCK.md) are summed per time range from the catalog, version 1 blocks (tvtest's
encoder) count no loss, a block with only loss is stored and queryable, and the sums survive a
restart. raw_bytes is the sum of the blocks' header raw_bytes (read here from the files), with
compression_ratio and bytes_per_record derived from it; a catalog from before the raw_bytes
column (the column dropped here with sqlite3) gets it back at start-up from the headers. Blocks
arrive through `tracevault put` and through grpcio with an independent encoder."""
import csv
import io
import json
import os
import sqlite3
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BASE_NS = 1767225600 * 10**9          # 2026-01-01T00:00:00Z
S = 10**9
N_PUT = 1000
KEYS = ["blocks", "records", "bytes", "lost_ring_full", "lost_map_full", "lost_parser",
        "lost_cache", "lost_failed", "lost_total", "lost_requests", "raw_bytes",
        "compression_ratio", "bytes_per_record"]
RAW_BYTES_AT = 40  # BLOCK.md: the header's raw_bytes, u64 little-endian


def header_raw_bytes(path):
    with open(path, "rb") as f:
        return struct.unpack_from("<Q", f.read(64), RAW_BYTES_AT)[0]


def number(v):
    return float(v) if "." in v else int(v)


def stats(addr, frm, to, fmt="jsonl"):
    args = ["query", "--server", addr, "--from", str(frm), "--to", str(to), "--stats",
            "--format", fmt]
    if fmt == "csv":  # bytes: text mode would turn the CRLF line ends into LF
        out = subprocess.run([tvtest.binary("tracevault")] + args, capture_output=True,
                             check=True).stdout
        rows = list(csv.reader(io.StringIO(out.decode(), newline="")))
        assert len(rows) == 2 and out.endswith(b"\r\n") and out.count(b"\r\n") == 2, out
        return {k: number(v) for k, v in zip(*rows)}
    p = tvtest.run(args, check=True)
    if fmt == "table":
        return {k: number(v) for k, v in (line.split() for line in p.stdout.splitlines())}
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    return json.loads(lines[0])


def failed_segment_loss_goes_to_next_block(srv):
    """The C pipeline (tv_load): a segment whose chunk is corrupted fails and is deleted; the
    records it lost are stamped as lost_failed in the next block sealed, which commits."""
    tag = 7
    base = BASE_NS + tag * 10**12
    ld = tvtest.Loader(srv.addr, 100, ["--test-corrupt-chunk", "1"], tag=tag)
    try:
        first = ld.segment(40)
        assert not first["ok"], first
        st = stats(srv.addr, base, base + 10**12)
        assert st["blocks"] == 0 and st["lost_total"] == 0, st  # nothing of it is stored
        second = ld.segment(25)
        assert second["ok"], second
        st = stats(srv.addr, base, base + 10**12)
        assert st["records"] == 25, st
        assert st["lost_failed"] == 40, st
        files = [tvtest.block_path(srv.data_dir, blk)
                 for blk in tvtest.catalog_blocks(srv.data_dir)]
        assert st["blocks"] == len(files) == 1, (st, files)
        assert st["bytes"] == os.path.getsize(files[0]), (st, files)
        assert st["lost_total"] == 40, st
        # and it is counted once: the block after that carries no loss
        assert ld.segment(5)["ok"]
        st = stats(srv.addr, base, base + 10**12)
        assert (st["records"], st["lost_failed"]) == (30, 40), st
        assert ld.quit() == 0
    finally:
        ld.cleanup()


def main():
    if not os.path.exists("/usr/bin/python3"):
        tvtest.skip("no /usr/bin/python3")
    with tvtest.Server() as srv:
        # 1000 records in [BASE, BASE + 1000 s) through put (the C writer: version 2, no loss)
        path = os.path.join(srv.data_dir, "..", "put-%d.jsonl" % os.getpid())
        with open(path, "w") as f:
            for i in range(N_PUT):
                f.write(json.dumps({"ts_ns": BASE_NS + i * S, "method": "GET",
                                    "path": "/p/%d" % i, "status": 200}) + "\n")
        try:
            tvtest.run(["put", "--server", srv.addr, path], check=True)
        finally:
            os.unlink(path)
        put_ids = set(tvtest.catalog_blocks(srv.data_dir))
        put_blocks = len(put_ids)
        assert put_blocks >= 1
        # bytes is the encoded size of the blocks: for put's blocks the size of their files
        # (the file is the encoded block, BLOCK.md), for ours the length we encoded
        size = {b: os.path.getsize(tvtest.block_path(srv.data_dir, b)) for b in put_ids}
        put_bytes = sum(size.values())
        assert put_bytes > put_blocks * 64, size  # more than headers: records are in them

        cli = tvtest.GrpcClient(srv.addr)
        try:
            # a version 1 block at BASE + 2000 s: read as before, counts no loss
            v1 = [tvtest.trace_record(BASE_NS + 2000 * S + i, 0, "/v1/%d" % i, latency_ns=1,
                                      comm="", local="", remote="") for i in range(3)]
            data = tvtest.encode_block(0xA1, v1)
            size[0xA1] = len(data)
            assert cli.write_encoded(0x51, [(0xA1, data)]).committed
            # a version 2 block with loss at BASE + 3000 s, sent in 7-byte chunks so its
            # 112-byte header crosses many chunks on the server
            v2 = [tvtest.trace_record(BASE_NS + 3000 * S + i, 0, "/v2/%d" % i, latency_ns=1,
                                      comm="", local="", remote="") for i in range(2)]
            data = tvtest.encode_block_v2(0xA2, v2, loss=(1, 2, 3, 4, 5), lost_requests=1)
            size[0xA2] = len(data)
            assert cli.write_encoded(0x52, [(0xA2, data)], chunk_bytes=7).committed
            # a block of loss only (no record) at BASE + 4000 s
            data = tvtest.encode_block_v2(0xA3, [], loss=(10, 0, 0, 0, 20),
                                          empty_ts_ns=BASE_NS + 4000 * S, lost_requests=6)
            size[0xA3] = len(data)
            assert cli.write_encoded(0x53, [(0xA3, data)]).committed
            # a block whose loss field was damaged (the header CRC no longer matches) is
            # refused as damaged data (DATA_LOSS, PROTOCOL.md), nothing counted
            bad = bytearray(tvtest.encode_block_v2(0xA4, v2, loss=(1, 0, 0, 0, 0)))
            bad[64] ^= 0x80
            try:
                cli.write_encoded(0x54, [(0xA4, bytes(bad))])
                raise AssertionError("a v2 block with a corrupt loss field was accepted")
            except cli.grpc.RpcError as e:
                assert e.code() == cli.grpc.StatusCode.DATA_LOSS, e
                assert "checksum" in e.details(), e.details()
            # every record is still there for a plain query; the loss-only block adds none
            recs = cli.query(BASE_NS, BASE_NS + 5000 * S)
            assert len(recs) == N_PUT + 5, len(recs)
        finally:
            cli.close()

        def check_all(addr):
            st = stats(addr, BASE_NS, BASE_NS + 5000 * S)
            assert st["from_ns"] == BASE_NS and st["to_ns"] == BASE_NS + 5000 * S, st
            assert st["blocks"] == put_blocks + 3, st
            assert st["records"] == N_PUT + 5, st
            assert (st["lost_ring_full"], st["lost_map_full"], st["lost_parser"],
                    st["lost_cache"], st["lost_failed"]) == (11, 2, 3, 4, 25), st
            assert st["lost_total"] == 45, st  # lost_requests is part of ring_full
            assert st["lost_requests"] == 7, st
            assert st["bytes"] == put_bytes + size[0xA1] + size[0xA2] + size[0xA3], \
                (st["bytes"], size)
            assert st["raw_bytes"] == sum(raw.values()), (st, raw)
            assert st["compression_ratio"] == round(st["raw_bytes"] / st["bytes"], 2), st
            assert st["bytes_per_record"] == round(st["bytes"] / st["records"], 1), st
            return st

        raw = {b: header_raw_bytes(tvtest.block_path(srv.data_dir, b))
               for b in tvtest.catalog_blocks(srv.data_dir)}
        # put's blocks are zstd: their records take more bytes than their files
        assert all(raw[b] > size[b] for b in put_ids), (raw, size)
        whole = check_all(srv.addr)
        # only the v2 block with loss overlaps [BASE+2500 s, BASE+3500 s)
        st = stats(srv.addr, BASE_NS + 2500 * S, BASE_NS + 3500 * S)
        assert (st["blocks"], st["records"], st["lost_total"], st["lost_requests"]) == \
            (1, 2, 15, 1), st
        assert st["bytes"] == size[0xA2], (st, size[0xA2])
        # only the v1 block: no loss
        st = stats(srv.addr, BASE_NS + 1500 * S, BASE_NS + 2500 * S)
        assert (st["blocks"], st["records"], st["lost_total"]) == (1, 3, 0), st
        assert st["bytes"] == size[0xA1], (st, size[0xA1])
        # the loss-only block is found by its time
        st = stats(srv.addr, BASE_NS + 4000 * S, BASE_NS + 4000 * S + 1)
        assert (st["blocks"], st["records"], st["lost_ring_full"], st["lost_failed"]) == \
            (1, 0, 10, 20), st
        assert st["bytes"] == size[0xA3], (st, size[0xA3])
        # an empty window and a window before everything
        st = stats(srv.addr, BASE_NS, BASE_NS)
        assert all(st[k] == 0 for k in KEYS), st
        assert isinstance(st["compression_ratio"], float), st  # a JSON number, 0.00
        st = stats(srv.addr, 1, BASE_NS)
        assert all(st[k] == 0 for k in KEYS), st
        # the table form carries the same numbers
        tab = stats(srv.addr, BASE_NS, BASE_NS + 5000 * S, fmt="table")
        assert all(tab[k] == whole[k] for k in KEYS), (tab, whole)
        # and the csv form
        tab = stats(srv.addr, BASE_NS, BASE_NS + 5000 * S, fmt="csv")
        assert all(tab[k] == whole[k] for k in KEYS), (tab, whole)
        # usage errors
        p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--stats", "--limit", "3"])
        assert p.returncode == 2 and p.stderr.startswith("tracevault: "), p
        # the same entry twice is refused (every record would count twice), as a usage error
        p = tvtest.run(["query", "--server", srv.addr + "," + srv.addr, "--from", "0",
                        "--stats"])
        assert p.returncode == 2 and "listed twice" in p.stderr, p
        # two servers listed: the sums add up (the same server reached under a second
        # name, its gRPC URI, counts twice)
        assert srv.addr.startswith("127.0.0.1:"), srv.addr
        st = stats(srv.addr + ",ipv4:" + srv.addr, BASE_NS, BASE_NS + 5000 * S)
        assert st["lost_total"] == 90 and st["records"] == 2 * (N_PUT + 5), st
        assert st["bytes"] == 2 * whole["bytes"], (st, whole)

        # the catalog keeps the counters across a restart
        srv.stop()
        srv.listen = srv.addr
        srv.start()
        check_all(srv.addr)

        # a catalog from before raw_bytes: start-up adds the column and fills it from the
        # block headers
        srv.stop()
        db = sqlite3.connect(os.path.join(srv.data_dir, "catalog.db"))
        db.execute("ALTER TABLE blocks DROP COLUMN raw_bytes")
        db.commit()
        db.close()
        srv.start()
        check_all(srv.addr)
        assert "raw_bytes of %d blocks read from their headers (0 unreadable)" % len(raw) \
            in srv.log(), srv.log()
        # filled once: the next start finds nothing to fill
        srv.stop()
        srv.start()
        check_all(srv.addr)
        assert srv.log().count("raw_bytes of") == 1, srv.log()
    with tvtest.Server() as srv:
        failed_segment_loss_goes_to_next_block(srv)
    # an unreachable server is a runtime failure naming it
    port = tvtest.free_port()
    p = tvtest.run(["query", "--server", "127.0.0.1:%d" % port, "--from", "0", "--stats"])
    assert p.returncode == 1 and "cannot reach server" in p.stderr, p.stderr
    print("query --stats: ok")


if __name__ == "__main__":
    main()
