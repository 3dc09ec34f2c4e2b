"""Retention under kill -9 at random moments: a segment is removed whole or kept whole.

Each round restarts tracevaultd on the same data dir and port with a retention limit small
enough that passes run all the time (--retain-bytes on even rounds, --retain-time on odd ones)
and --test-retention-unlink-delay-ms, so that a pass's unlinks take long enough for the kill
to land inside them; WRITERS concurrent streams commit segments of 1-4 blocks whose times grow
with their creation, and a Query loop runs (so unlinks also wait for older queries). The
daemon is killed with SIGKILL after a random delay. After each restart:
  - every segment ever written is served whole or not at all (acked or not): none half
    deleted, no record of a kept segment lost;
  - oldest first: no acknowledged segment is gone while a segment acknowledged before it was
    created (so older) is kept;
  - (--scrub, no daemon) the recovery summary adopted nothing, quarantined nothing, dropped no row; no temp file and
    no retiring row is left, and blocks/ holds exactly the catalog's files;
  - on --retain-bytes rounds the catalog's bytes are within the limit.
Recovery and the files are checked with no daemon running, by `tracevaultd --scrub` after each
kill (exit 0: every block read whole); the last round also stops the daemon cleanly and
scrubs once more.

ROUNDS kills by default (TV_RET_KILL9_ROUNDS overrides it, TV_RET_KILL9_SEED fixes the
seed); the printed summary is the figure."""
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block  # noqa: E402

ROUNDS = int(os.environ.get("TV_RET_KILL9_ROUNDS", "50"))
WRITERS = 3
KILL_AFTER_S = (0.05, 0.45)
MAX_SEGMENTS_PER_WRITER = 200   # bounds each writer's loop in a round
RETAIN_BYTES = 24 << 10         # ~6 segments: nearly every commit starts a pass
RETAIN_TIME = "1s"
UNLINK_DELAY_MS = "25"
SUMMARY_RE = re.compile(
    r"recovery: (\d+) blocks \((\d+) listed, (\d+) adopted, (\d+) renamed, (\d+) rows "
    r"repaired, (\d+) rows without a file dropped\), (\d+) files quarantined, temp files: "
    r"(\d+) removed, (\d+) commits finished; retired segments: (\d+) finished \((\d+) files\)")


class Archive:
    """Every segment written in the test: sid -> (created seq, [ts]), and the ack seq of the
    acknowledged ones."""

    def __init__(self, rng):
        self.rng = rng
        self.lock = threading.Lock()
        self.seq = 0
        self.last_ts = 0
        self.segments = {}
        self.acked = {}
        self.errors = []

    def new_segment(self):
        with self.lock:
            self.seq += 1
            sid = self.rng.getrandbits(62) | 1
            ts0 = max(self.last_ts + 1, time.time_ns())
            blocks, all_ts = [], []
            for _ in range(self.rng.randint(1, 4)):
                n = self.rng.randint(5, 30)
                ts = list(range(ts0, ts0 + n))
                ts0 += n
                recs = [tvtest.trace_record(t, pid=7, path="/k/%x" % sid) for t in ts]
                bid = self.rng.getrandbits(63) | 1
                blocks.append((bid, encode_block(bid, recs)))
                all_ts += ts
            self.last_ts = ts0
            self.segments[sid] = (self.seq, all_ts)
            return sid, blocks

    def ack(self, sid):
        with self.lock:
            self.seq += 1
            self.acked[sid] = self.seq


def writer(client, arc, stop):
    try:
        for _ in range(MAX_SEGMENTS_PER_WRITER):
            if stop.is_set():
                return
            sid, blocks = arc.new_segment()
            try:
                resp = client.write_encoded(sid, blocks, chunk_bytes=2048)
            except client.grpc.RpcError:
                return  # the kill: this segment has no reply
            if not resp.committed:
                arc.errors.append("segment %x: last reply is not its COMMIT: %s" % (sid, resp))
                return
            arc.ack(sid)
    except Exception as e:  # noqa: BLE001 -- reported by the main thread
        arc.errors.append("writer: %r" % e)


def querier(client, stop):
    for _ in range(2000):
        if stop.is_set():
            return
        try:
            client.query(0, 2**63 - 1, limit=300)
        except client.grpc.RpcError:
            return


def catalog(data_dir):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "catalog.db"), uri=True,
                         timeout=10)
    try:
        nbytes = db.execute("SELECT coalesce(SUM(bytes), 0) FROM blocks").fetchone()[0]
        retiring = db.execute("SELECT count(*) FROM retiring").fetchone()[0]
    finally:
        db.close()
    return nbytes, retiring


def recover_and_check_disk(data_dir, figures):
    """With no server running: `tracevaultd --scrub` (start-up recovery, then every block read
    whole) must exit 0 with a clean recovery summary; then tmp/, blocks/ and the catalog must
    agree, with no retiring row left."""
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir, "--scrub"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr[-2000:])
    m = SUMMARY_RE.findall(p.stderr)[-1]
    assert (int(m[2]), int(m[5]), int(m[6])) == (0, 0, 0), \
        "recovery adopted, dropped or quarantined: %s" % (m,)
    figures["retired_at_start"] += int(m[9])
    figures["retired_files"] += int(m[10])
    figures["cut_passes"] += int(m[9]) > 0
    assert tvtest.tmp_files(data_dir) == [], "temp files survived recovery"
    assert tvtest.block_files(data_dir) == set(tvtest.catalog_blocks(data_dir)), \
        "blocks/ and the catalog disagree"
    assert catalog(data_dir)[1] == 0, "retiring rows left after recovery"


def check(client, arc, data_dir, bytes_round):
    """The records served by a running server: every segment whole or absent, oldest first,
    and (bytes_round) the catalog within the limit after the start's pass. Returns (kept, gone
    acked) segment counts."""
    seen = {}
    for r in client.query(0, 2**63 - 1):
        seen[r.ts_ns] = seen.get(r.ts_ns, 0) + 1
    assert all(c == 1 for c in seen.values()), "a record served twice"
    kept, gone_acked = [], []
    known = set()
    for sid, (created, ts) in arc.segments.items():
        known.update(ts)
        present = sum(1 for t in ts if t in seen)
        assert present in (0, len(ts)), \
            "segment %x half there: %d of %d records" % (sid, present, len(ts))
        if present:
            kept.append(sid)
        elif sid in arc.acked:
            gone_acked.append(sid)
    assert set(seen) <= known, "a record nobody wrote"
    # oldest first: a kept segment acked before a gone one was created is older than it
    if gone_acked and kept:
        newest_gone_created = max(arc.segments[s][0] for s in gone_acked)
        for k in kept:
            if k in arc.acked:
                assert not arc.acked[k] < newest_gone_created, \
                    "segment %x kept while a newer acked one is gone" % k
    if bytes_round:
        assert catalog(data_dir)[0] <= RETAIN_BYTES, "over --retain-bytes after a pass"
    return len(kept), len(gone_acked)


def main():
    seed = int(os.environ.get("TV_RET_KILL9_SEED", "0")) or random.randrange(1 << 30)
    print("seed %d (TV_RET_KILL9_SEED)" % seed)
    rng = random.Random(seed)
    arc = Archive(rng)
    srv = tvtest.Server()
    started = time.monotonic()
    figures = dict(retired_at_start=0, retired_files=0, cut_passes=0, passes_logged=0)
    try:
        srv.listen = "127.0.0.1:%d" % tvtest.free_port()
        for i in range(ROUNDS):
            bytes_round = i % 2 == 0
            srv.extra_args = (["--retain-bytes", str(RETAIN_BYTES)] if bytes_round else
                              ["--retain-time", RETAIN_TIME, "--retain-interval", "100ms"]) \
                + ["--test-retention-unlink-delay-ms", UNLINK_DELAY_MS]
            if i:  # after a kill: recovery and the files, with no server running
                recover_and_check_disk(srv.data_dir, figures)
            srv.start()
            if i:
                c = tvtest.GrpcClient(srv.addr)
                try:
                    check(c, arc, srv.data_dir, bytes_round)  # its first pass ran at start
                finally:
                    c.close()
            tvtest.run_until_kill(srv, WRITERS, writer, querier, arc, KILL_AFTER_S, rng)
            assert not arc.errors, arc.errors
        # the last start: recovery, the checks, a clean stop, then the complete scrub
        recover_and_check_disk(srv.data_dir, figures)
        srv.extra_args = []
        srv.start()
        c = tvtest.GrpcClient(srv.addr)
        try:
            kept, gone = check(c, arc, srv.data_dir, False)
        finally:
            c.close()
        figures["passes_logged"] = len(re.findall(r"retention: removed \d+ segments",
                                                  srv.log()))
        assert srv.stop() == 0
        recover_and_check_disk(srv.data_dir, figures)  # the final --scrub exits 0
        assert len(arc.acked) >= ROUNDS, "too few acknowledged segments: %d" % len(arc.acked)
        # how many passes run per round depends on the machine's load: asserted loosely
        assert gone > 0 and figures["passes_logged"] >= 10, \
            ("retention hardly ran: the kills prove nothing", gone, figures)
        assert figures["retired_at_start"] > 0, \
            "no kill landed inside a retention pass (between its commit point and its end)"
    finally:
        srv.cleanup()
    print("kill -9 x%d during retention passes, writes and queries: %d segments acked, %d "
          "kept, %d removed oldest first; 0 half deleted, 0 records of kept segments lost; "
          "%d passes logged; %d restarts found a pass cut between its commit point and its "
          "end (%d segments finished, %d files); scrub clean; %.0f s"
          % (ROUNDS, len(arc.acked), kept, gone, figures["passes_logged"],
             figures["cut_passes"], figures["retired_at_start"], figures["retired_files"],
             time.monotonic() - started))
    print("PASS")


if __name__ == "__main__":
    main()
