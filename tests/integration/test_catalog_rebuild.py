"""The block files are the data and the catalog an index of them (issue 10, kind 1; shared case
rel-01): whatever happens to catalog.db (deleted, empty, garbage, a directory, another program's
database, damaged pages, a row deleted, a -wal left over) start-up never deletes or hides a block
file that verifies: it rebuilds or repairs the catalog from the block files, with their segment
ids (from the file names, so Delete{segment_id} still works), and says so. What does not verify
(a damaged block, a name that is not ours, a second copy of a block) is moved into
DATA/quarantine/ with a .reason file, never deleted. A crash between the catalog commit and the
rename is finished at start; a row without a file is dropped; blocks/ missing while the catalog
lists blocks is a refusal. --rebuild-catalog does the rebuild on demand, --scrub checks every
block completely. See server/RECOVERY.md."""
import os
import shutil
import sqlite3
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
BASE = 1_764_000_000_000_000_000
# three segments of two blocks, ten records each: (segment_id, [(block_id, records)])
SEGMENTS = [(0x5000 + s, [(0x7000 + 16 * s + b,
                           [tvtest.trace_record(BASE + 1000 * (2 * s + b) + i, 100 * s + 10 * b + i)
                            for i in range(10)]) for b in range(2)]) for s in range(3)]
ALL_PIDS = sorted(r.pid for _, blocks in SEGMENTS for _, recs in blocks for r in recs)
CATALOG_FILES = ("catalog.db", "catalog.db-wal", "catalog.db-shm")


def run_tvd(data_dir, *args):
    return subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir] + list(args),
                          capture_output=True, text=True, timeout=60)


class filled_server:
    """`with filled_server() as srv`: a stopped server whose data dir holds SEGMENTS,
    committed; cleaned up (stopped, dir removed) at the end."""

    def __enter__(self):
        self.srv = tvtest.Server()
        try:
            self.srv.start()
            cl = tvtest.GrpcClient(self.srv.addr)
            for seg, blocks in SEGMENTS:
                r = cl.write_segment(seg, blocks)
                assert r.committed, r
            cl.close()
            assert self.srv.stop() == 0
        except BaseException:
            self.srv.cleanup()
            raise
        return self.srv

    def __exit__(self, *exc):
        self.srv.cleanup()


def served_pids(srv):
    cl = tvtest.GrpcClient(srv.addr)
    try:
        return sorted(r.pid for r in cl.query(0, 1 << 63))
    finally:
        cl.close()


def want_segments():
    return {b: seg for seg, blocks in SEGMENTS for b, _ in blocks}


def remove_catalog(d):
    for n in CATALOG_FILES:
        if os.path.exists(os.path.join(d, n)):
            os.unlink(os.path.join(d, n))


def check_rebuilt(srv, log_from):
    """After a restart on a lost catalog: every block served, with its segment, and said."""
    log = srv.log()[log_from:]
    assert "recovery: catalog rebuilt from blocks/: 6 blocks adopted, 0 files quarantined" \
        in log, log
    assert served_pids(srv) == ALL_PIDS
    assert tvtest.catalog_blocks(srv.data_dir) == want_segments()
    assert tvtest.block_files(srv.data_dir) == set(want_segments())


def test_lost_catalog_is_rebuilt_with_segment_ids():
    with filled_server() as srv:
        remove_catalog(srv.data_dir)
        n = len(srv.log())
        srv.start()
        check_rebuilt(srv, n)
        # the segment ids came back from the names: no writer can open one again, and as
        # their writer tokens are gone, only a Delete of block ids removes their blocks
        cl = tvtest.GrpcClient(srv.addr)
        try:
            sid, blocks = SEGMENTS[1]
            _, code, details = cl.write_requests([tvtest.write_cmd(pb.OPEN_SEGMENT,
                                                                   segment_id=sid)])
            assert code == cl.grpc.StatusCode.ALREADY_EXISTS and "committed already" in details, \
                (code, details)
            try:
                cl.delete(pb.DeleteRequest(segment_id=sid, writer_token=7), timeout=30)
                raise AssertionError("Delete of a rebuilt segment by id was accepted")
            except cl.grpc.RpcError as e:
                assert e.code() == cl.grpc.StatusCode.PERMISSION_DENIED, e
                assert "writer is unknown" in e.details(), e.details()
            assert len(cl.query(0, 1 << 63)) == 60
            resp = cl.delete(pb.DeleteRequest(block_ids=[b for b, _ in blocks]), timeout=30)
            assert resp.deleted_blocks == 2, resp
            assert len(cl.query(0, 1 << 63)) == 40
        finally:
            cl.close()


def test_unusable_catalog_is_moved_aside_and_rebuilt():
    """Each unusable form of catalog.db: quarantined with its reason, rebuilt, all served."""
    def garbage(p):
        with open(p, "wb") as f:
            f.write(b"\x00not a database at all\n" * 300)

    def empty(p):
        open(p, "wb").close()

    def directory(p):
        os.unlink(p)
        os.mkdir(p)

    def foreign(p):
        os.unlink(p)
        db = sqlite3.connect(p)
        db.executescript("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT);"
                         "INSERT INTO moz_places VALUES (1, 'https://example.org/');")
        db.close()

    def damaged(p):
        with open(p, "r+b") as f:  # page 2 onwards: the blocks table's b-tree
            f.seek(4096 + 8)
            f.write(b"\xa5" * 2048)

    cases = [(garbage, "is not a SQLite database"), (empty, None),
             (directory, "is not a regular file (a directory)"),
             (foreign, "is not a tracevault catalog: no blocks table"),
             (damaged, "is damaged (SQLite quick_check")]
    for damage, reason in cases:
        with filled_server() as srv:
            p = os.path.join(srv.data_dir, "catalog.db")
            assert not os.path.exists(p + "-wal"), "a clean stop checkpoints the WAL"
            damage(p)
            n = len(srv.log())
            srv.start()
            check_rebuilt(srv, n)
            q = tvtest.quarantined(srv.data_dir)
            if reason is None:  # an empty file is a new catalog: nothing to keep
                assert q == {}, q
                continue
            assert list(q) == ["catalog.db"] and reason in q["catalog.db"], (damage, q)
            assert reason in srv.log()[n:], srv.log()[n:]


def test_wal_left_without_its_database_is_not_replayed():
    """kill -9 leaves catalog.db-wal and -shm beside catalog.db; with catalog.db itself gone,
    SQLite would replay that WAL into the new file. Both go into quarantine/, the catalog is
    rebuilt from the block files."""
    with filled_server() as srv:
        d = srv.data_dir
        srv.start()
        cl = tvtest.GrpcClient(srv.addr)
        extra = [(0x7FF0, [tvtest.trace_record(BASE + 10**6, 5000)])]
        assert cl.write_segment(0x5FFF, extra).committed
        cl.close()
        srv.stop(sig=9)
        assert os.path.getsize(os.path.join(d, "catalog.db-wal")) > 0
        os.unlink(os.path.join(d, "catalog.db"))
        n = len(srv.log())
        srv.start()
        log = srv.log()[n:]
        assert "catalog.db-wal is left over without its database (%s/catalog.db is missing)" \
            % d in log, log
        q = tvtest.quarantined(d)
        assert sorted(q) == ["catalog.db-shm", "catalog.db-wal"], q
        assert served_pids(srv) == sorted(ALL_PIDS + [5000])
        assert tvtest.catalog_blocks(d)[0x7FF0] == 0x5FFF


def test_row_lost_file_adopted_and_file_lost_row_dropped():
    with filled_server() as srv:
        d = srv.data_dir
        lost_row, lost_file = SEGMENTS[0][1][1][0], SEGMENTS[2][1][0][0]
        db = sqlite3.connect(os.path.join(d, "catalog.db"))
        db.execute("DELETE FROM blocks WHERE block_id = ?", (lost_row,))
        db.commit()
        db.close()
        os.unlink(tvtest.block_path(d, lost_file))
        n = len(srv.log())
        srv.start()
        log = srv.log()[n:]
        assert ("recovery: block %016x of segment %016x was not in the catalog: verified and "
                "adopted" % (lost_row, SEGMENTS[0][0])) in log, log
        assert ("recovery: block %016x (segment %016x) is in the catalog but has no file: its "
                "row is dropped" % (lost_file, SEGMENTS[2][0])) in log, log
        gone = {r.pid for r in SEGMENTS[2][1][0][1]}
        assert served_pids(srv) == sorted(set(ALL_PIDS) - gone)
        assert tvtest.catalog_blocks(d)[lost_row] == SEGMENTS[0][0]
        assert tvtest.quarantined(d) == {}


def test_what_does_not_verify_is_quarantined_never_deleted():
    with filled_server() as srv:
        d = srv.data_dir
        remove_catalog(d)
        bad = SEGMENTS[1][1][0][0]
        with open(tvtest.block_path(d, bad), "r+b") as f:  # a payload byte: CRC mismatch
            f.seek(-5, 2)
            byte = f.read(1)
            f.seek(-5, 2)
            f.write(bytes([byte[0] ^ 0x40]))
        # a second copy of a block under another segment's name
        first = SEGMENTS[0][1][0][0]
        shutil.copy(tvtest.block_path(d, first),
                    os.path.join(d, "blocks", tvtest.block_name(0x9999, first)))
        with open(os.path.join(d, "blocks", "notes.txt"), "w") as f:
            f.write("not a block\n")
        os.mkdir(os.path.join(d, "blocks", "subdir"))
        os.symlink("/etc/hostname", os.path.join(d, "blocks", tvtest.block_name(1, 0xABC)))
        os.mkfifo(os.path.join(d, "blocks", tvtest.block_name(1, 0xABD)))
        with open(os.path.join(d, "tmp", "editor.swp"), "w") as f:
            f.write("x")
        srv.start()
        q = tvtest.quarantined(d)
        assert q.pop(tvtest.block_name(SEGMENTS[1][0], bad)).startswith(
            "block payload checksum mismatch"), q
        assert q.pop(tvtest.block_name(0x9999, first)).startswith(
            "a second file of block %016x (blocks/%s is the one kept)"
            % (first, tvtest.block_name(SEGMENTS[0][0], first))), q
        assert q.pop("notes.txt").startswith("not a block file name"), q
        assert q.pop("editor.swp").startswith("not a temp file name"), q
        for n in ("subdir", tvtest.block_name(1, 0xABC), tvtest.block_name(1, 0xABD)):
            assert q.pop(n) == "not a regular file", (n, q)
        assert q == {}, q
        # moved, not deleted: the damaged block's bytes are all there
        assert os.path.getsize(os.path.join(d, "quarantine", tvtest.block_name(
            SEGMENTS[1][0], bad))) > 64
        assert os.readlink(os.path.join(d, "quarantine", tvtest.block_name(1, 0xABC))) == \
            "/etc/hostname"
        gone = {r.pid for r in SEGMENTS[1][1][0][1]}
        assert served_pids(srv) == sorted(set(ALL_PIDS) - gone)
        assert os.listdir(os.path.join(d, "tmp")) == []


def test_crash_between_catalog_commit_and_rename_is_finished():
    """The catalog row is the commit point: a block whose row is committed but whose file is
    still in tmp/ (the rename did not happen) is moved into blocks/ at start; a temp file
    without a row was never committed and goes."""
    with filled_server() as srv:
        d = srv.data_dir
        seg, (blk, recs) = SEGMENTS[2][0], SEGMENTS[2][1][1]
        os.rename(tvtest.block_path(d, blk),
                  os.path.join(d, "tmp", "%016x-%016x.tmp" % (seg, blk)))
        uncommitted = os.path.join(d, "tmp", "%016x-%016x.tmp" % (0x77, 0x78))
        with open(uncommitted, "wb") as f:
            f.write(tvtest.encode_block(0x78, [tvtest.trace_record(BASE, 999)]))
        n = len(srv.log())
        srv.start()
        log = srv.log()[n:]
        assert ("recovery: block %016x of segment %016x: its catalog row was committed before a "
                "crash, its rename was not: moved into blocks/" % (blk, seg)) in log, log
        assert "recovery: removed 1 uncommitted temp files" in log, log
        assert served_pids(srv) == ALL_PIDS
        assert os.listdir(os.path.join(d, "tmp")) == []


def test_legacy_block_names_are_renamed():
    """blocks/<block hex>.tvb (before FORMAT 1): with its row, renamed for the row's segment;
    without one (the catalog lost too), adopted as segment 0, unknown."""
    with filled_server() as srv:
        d = srv.data_dir
        for _, blocks in SEGMENTS:
            for b, _ in blocks:
                os.rename(tvtest.block_path(d, b), os.path.join(d, "blocks", "%016x.tvb" % b))
        srv.start()
        assert tvtest.catalog_blocks(d) == want_segments()
        assert tvtest.block_files(d) == set(want_segments())
        assert served_pids(srv) == ALL_PIDS
        assert srv.stop() == 0
        for _, blocks in SEGMENTS:
            for b, _ in blocks:
                os.rename(tvtest.block_path(d, b), os.path.join(d, "blocks", "%016x.tvb" % b))
        remove_catalog(d)
        srv.start()
        assert tvtest.catalog_blocks(d) == {b: 0 for b in want_segments()}
        assert sorted(os.listdir(os.path.join(d, "blocks"))) == sorted(
            tvtest.block_name(0, b) for b in want_segments())
        assert served_pids(srv) == ALL_PIDS


def test_missing_blocks_dir_is_a_refusal():
    with filled_server() as srv:
        d = srv.data_dir
        os.rename(os.path.join(d, "blocks"), os.path.join(d, "..", os.path.basename(d) + ".b"))
        try:
            p = run_tvd(d, "--listen", "127.0.0.1:0")
            assert p.returncode == 1 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
            assert p.stderr.endswith("tracevaultd: %s/blocks is missing but %s/catalog.db lists "
                                     "6 blocks: restore %s/blocks (or move %s/catalog.db away "
                                     "to start with an empty store)\n" % (d, d, d, d)), p.stderr
            assert not os.path.exists(os.path.join(d, "blocks"))
            assert tvtest.catalog_blocks(d) == want_segments()
        finally:
            os.rename(os.path.join(d, "..", os.path.basename(d) + ".b"),
                      os.path.join(d, "blocks"))
        srv.start()
        assert served_pids(srv) == ALL_PIDS


def test_rebuild_catalog_option():
    with filled_server() as srv:
        d = srv.data_dir
        p = run_tvd(d, "--rebuild-catalog")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "catalog rebuilt: 6 blocks, 0 files quarantined\n", p.stdout
        q = tvtest.quarantined(d)
        assert q == {"catalog.db": "replaced by a catalog rebuilt from blocks/ "
                                   "(--rebuild-catalog)"}, q
        srv.start()
        assert served_pids(srv) == ALL_PIDS
        assert tvtest.catalog_blocks(d) == want_segments()
        p = run_tvd(d, "--rebuild-catalog")  # the data dir is in use
        assert p.returncode == 1 and "is in use" in p.stderr, p.stderr
        p = run_tvd(d, "--scrub", "--rebuild-catalog")
        assert p.returncode == 2 and p.stderr == "tracevaultd: --rebuild-catalog and --scrub " \
            "exclude each other\n", p.stderr
        p = run_tvd(d, "--scrub", "--listen", "127.0.0.1:0")
        assert p.returncode == 2 and p.stderr == "tracevaultd: --listen serves; " \
            "--rebuild-catalog and --scrub do not\n", p.stderr


def test_scrub_checks_every_block_completely():
    with filled_server() as srv:
        d = srv.data_dir
        p = run_tvd(d, "--scrub")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "scrub: 6 blocks checked, 0 damaged (quarantined), 0 missing, " \
                           "0 rows repaired\n", p.stdout
        # a block whose checksums match but whose header claims one record more than it holds:
        # start-up's byte checks adopt it; scrub's record walk finds it
        seg, (blk, recs) = SEGMENTS[0][0], SEGMENTS[0][1][1]
        path = tvtest.block_path(d, blk)
        data = bytearray(open(path, "rb").read())
        struct.pack_into("<I", data, 32, len(recs) + 1)
        struct.pack_into("<I", data, 60, tvtest.crc32c(bytes(data[:60])))
        remove_catalog(d)
        with open(path, "wb") as f:
            f.write(data)
        # and a catalog row that disagrees with a good block's header (max_ts_ns)
        p = run_tvd(d, "--rebuild-catalog")
        assert p.returncode == 0 and p.stdout == "catalog rebuilt: 6 blocks, 0 files " \
                                                 "quarantined\n", (p.stdout, p.stderr)
        other = SEGMENTS[1][1][0][0]
        db = sqlite3.connect(os.path.join(d, "catalog.db"))
        db.execute("UPDATE blocks SET max_ts_ns = max_ts_ns + 5 WHERE block_id = ?", (other,))
        db.commit()
        db.close()
        p = run_tvd(d, "--scrub")
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert p.stdout == "scrub: 6 blocks checked, 1 damaged (quarantined), 0 missing, " \
                           "1 rows repaired\n", p.stdout
        q = tvtest.quarantined(d)
        assert tvtest.block_name(seg, blk) in q, q
        assert "10 records, header says record_count 11" in q[tvtest.block_name(seg, blk)], q
        assert set(tvtest.catalog_blocks(d)) == set(want_segments()) - {blk}
        assert run_tvd(d, "--scrub").returncode == 0
        srv.start()
        assert served_pids(srv) == sorted(set(ALL_PIDS) - {r.pid for r in recs})


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    for t in tests:
        results.run(t)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
