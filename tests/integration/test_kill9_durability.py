"""Acknowledged means durable, under kill -9 at random moments (issue 10's durability figure).

Each round restarts tracevaultd on the same data dir and port, runs WRITERS concurrent Write
streams (segments of 1-3 blocks) and a concurrent Query loop, and kills the daemon with SIGKILL
after a random delay. After the restart every segment whose COMMIT reply arrived must be served
exactly once; a segment without a reply must be served wholly or not at all (its commit may
have landed before the reply was lost), never in part and never twice; no temp file survives
recovery. The last round checks the whole archive, every round's records at once.

ROUNDS kills by default (TV_KILL9_ROUNDS overrides it); the printed summary is the figure."""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block  # noqa: E402

ROUNDS = int(os.environ.get("TV_KILL9_ROUNDS", "50"))
WRITERS = 3
KILL_AFTER_S = (0.05, 0.6)         # the random moment of the kill, after the round's start
MAX_SEGMENTS_PER_WRITER = 200      # bounds each writer's loop in a round
ROUND_SPAN_NS = 10**12             # each round writes ts_ns in its own 1000 s window
BASE_NS = 1_700_000_000 * 10**9


class Round:
    """The segments of one round: sid -> sorted list of record ts_ns, and which were acked."""

    def __init__(self, index, rng):
        self.index = index
        self.rng = rng
        self.next_ts = BASE_NS + index * ROUND_SPAN_NS
        self.lock = threading.Lock()
        self.segments = {}
        self.acked = set()
        self.errors = []

    def new_segment(self):
        with self.lock:
            sid = self.rng.getrandbits(63) | 1
            blocks, all_ts = [], []
            for _ in range(self.rng.randint(1, 3)):
                n = self.rng.randint(5, 60)
                ts = list(range(self.next_ts, self.next_ts + n))
                self.next_ts += n
                recs = [tvtest.trace_record(t, pid=self.index, path="/s/%x" % sid) for t in ts]
                bid = self.rng.getrandbits(64) | 1
                blocks.append((bid, encode_block(bid, recs)))
                all_ts += ts
            self.segments[sid] = all_ts
            return sid, blocks

    def window(self):
        lo = BASE_NS + self.index * ROUND_SPAN_NS
        return lo, lo + ROUND_SPAN_NS


def writer(client, rnd, stop):
    try:
        write_segments(client, rnd, stop)
    except Exception as e:  # noqa: BLE001 -- reported by the main thread, not lost in this one
        rnd.errors.append("writer: %r" % e)


def write_segments(client, rnd, stop):
    for _ in range(MAX_SEGMENTS_PER_WRITER):
        if stop.is_set():
            return
        sid, blocks = rnd.new_segment()
        try:
            resp = client.write_encoded(sid, blocks, chunk_bytes=1024)
        except client.grpc.RpcError:
            return  # the kill: this segment has no reply
        if not resp.committed or sorted(resp.committed_block_ids) != sorted(b for b, _ in blocks):
            rnd.errors.append("segment %x: last reply is not its COMMIT: %s" % (sid, resp))
            return
        with rnd.lock:
            rnd.acked.add(sid)


def querier(client, stop):
    for _ in range(1000):
        if stop.is_set():
            return
        try:
            client.query(BASE_NS, BASE_NS + 10**18, limit=500)
        except client.grpc.RpcError:
            return


def check(client, rounds):
    """(lost, duplicated, partial, unacked_visible) over the rounds' windows."""
    lost = dup = partial = unacked_visible = 0
    for rnd in rounds:
        lo, hi = rnd.window()
        seen = {}
        for r in client.query(lo, hi):
            seen[r.ts_ns] = seen.get(r.ts_ns, 0) + 1
        dup += sum(1 for c in seen.values() if c > 1)
        for sid, ts in rnd.segments.items():
            present = sum(1 for t in ts if t in seen)
            if sid in rnd.acked:
                lost += len(ts) - present
            elif present:
                unacked_visible += 1
                if present != len(ts):
                    partial += 1
        known = {t for ts in rnd.segments.values() for t in ts}
        dup += sum(1 for t in seen if t not in known)  # a record nobody wrote
    return lost, dup, partial, unacked_visible


def main():
    rng = random.Random(int(os.environ.get("TV_KILL9_SEED", "0")) or random.randrange(1 << 30))
    srv = tvtest.Server()
    rounds = []
    started = time.monotonic()
    totals = dict(acked_segments=0, acked_records=0, unacked_visible=0)
    try:
        srv.start()
        srv.listen = srv.addr  # every restart on the same port
        for i in range(ROUNDS):
            rnd = Round(i, rng)
            rounds.append(rnd)
            tvtest.run_until_kill(srv, WRITERS, writer, querier, rnd, KILL_AFTER_S, rng)
            assert not rnd.errors, rnd.errors
            srv.start()
            assert tvtest.tmp_files(srv.data_dir) == [], "temp files survived recovery"
            c = tvtest.GrpcClient(srv.addr)
            try:
                lost, dup, partial, unacked_visible = check(c, [rnd])
            finally:
                c.close()
            assert (lost, dup, partial) == (0, 0, 0), \
                "round %d: lost %d, duplicated %d, partly visible segments %d" % (
                    i, lost, dup, partial)
            totals["acked_segments"] += len(rnd.acked)
            totals["acked_records"] += sum(len(rnd.segments[s]) for s in rnd.acked)
            totals["unacked_visible"] += unacked_visible
        # the whole archive once more: no round's recovery touched an earlier round's data
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        try:
            lost, dup, partial, _ = check(c, rounds)
        finally:
            c.close()
        assert (lost, dup, partial) == (0, 0, 0), (lost, dup, partial)
        assert totals["acked_segments"] >= ROUNDS, \
            "too few segments were acknowledged for the kills to mean anything: %s" % totals
    finally:
        srv.cleanup()
    print("kill -9 x%d during writes and queries: %d acknowledged segments (%d records): "
          "0 lost, 0 duplicated, 0 partly visible; %d segments committed without their reply "
          "(served whole); %.0f s" % (ROUNDS, totals["acked_segments"], totals["acked_records"],
                                     totals["unacked_visible"], time.monotonic() - started))
    print("PASS")


if __name__ == "__main__":
    main()
