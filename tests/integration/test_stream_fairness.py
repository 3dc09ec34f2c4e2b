"""No single peer takes every stream slot (issue 13, "valid clients are served throughout"):
tracevaultd counts Write and Query streams per peer address (server/peers.h) within
--max-write-streams-per-peer / --max-query-streams-per-peer, half of the server's limits by
default.

- A flood from 127.0.0.2 (a relay child connects on from that address: grpcio cannot choose
  a source address) holds every stream it can, idle Write streams and Query readers that
  never read, and keeps asking for more, while a valid client on 127.0.0.1 writes segments
  and reads each back exactly: the valid client is never refused, the flood holds exactly
  its share and every stream beyond it ends RESOURCE_EXHAUSTED at once naming the peer and
  the option; tracevault_server_streams_refused_total counts exactly those refusals. Once
  the flood lets go its share is whole again. (Before the per-peer share, the flood took all
  8 Write slots and the valid client's first write ended "too many Write streams: 8 in
  progress".)
- The peer names gRPC gives real connections: on a dual-stack listener ([::]:0) a client of
  127.0.0.1 (a v4-mapped address) is the peer 127.0.0.1, one of ::1 the peer ::/64.
- The shares are logged at start: by default half, a given one kept, one above the server's
  limit counted as that limit.
Time budget: ~10 s (ASan)."""
import collections
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
tvtest.metrics.parser()  # SKIP early when prometheus_client is absent

WRITES, QUERIES = 8, 6                    # the server's limits here
SHARE_W, SHARE_Q = WRITES // 2, QUERIES // 2  # each peer's, by default
FLOOD_WRITES, FLOOD_QUERIES = 20, 8       # what the flood asks for at first
VALID_THREADS, VALID_ROUNDS = 2, 15       # each thread: one write and one query at a time
FLOOD_PEER = "127.0.0.2"
TS_BIG = 1_840_000_000 * 10**9            # a segment a reader that takes nothing stalls on
TS_VALID = 1_841_000_000 * 10**9
REFUSED = "too many %s streams from peer %s: it holds %d, the limit per peer (--max-%s-streams-per-peer)"
S = "tracevault_server_"


def refusal(method, held, peer=FLOOD_PEER):
    return REFUSED % (method, peer, held, method.lower())


def idle_stream(cl, segment_id):
    """A Write stream that opens a segment and then sends nothing (until end())."""
    st = tvtest.WriteStream(cl)
    st.send(tvtest.write_cmd(pb.OPEN_SEGMENT, segment_id=segment_id, writer_token=5))
    return st


def status_of(call):
    """The (code, details) a call ended with (it has ended)."""
    return call.code(), call.details()


def stalled_reader(ch, rng):
    """A Query over the big segment whose client reads its first batch and then nothing: the
    server holds it (and its slot) until the idle timeout. Returns (call, None) when it was
    served, (None, (code, details)) when it was refused."""
    call = ch.unary_stream(tvtest.grpc_client.QUERY,
                           request_serializer=lambda m: m.SerializeToString(),
                           response_deserializer=pb.QueryResponse.FromString)(
        pb.QueryRequest(from_ns=rng[0], to_ns=rng[1]), timeout=60)
    try:
        next(call)  # the server has the call once a batch is here; the rest waits on us
        return call, None
    except grpc.RpcError as e:
        return None, (e.code(), e.details())


class Valid(threading.Thread):
    """Rounds of: commit a 20-record segment in its own range, read it back exactly. Every
    failure, a refusal included, is an error: this peer's share is never used up."""

    def __init__(self, addr, k):
        super().__init__(daemon=True)
        self.cl = tvtest.GrpcClient(addr, timeout_s=30, own_connection=True)
        self.k = k
        self.errors, self.rounds, self.longest_s = [], 0, 0.0

    def run(self):
        for r in range(VALID_ROUNDS):
            t0 = TS_VALID + (self.k * 1000 + r) * 1000
            recs = [tvtest.trace_record(t0 + i, pid=r, path="/valid/%d/%d/%d" % (self.k, r, i))
                    for i in range(20)]
            seg, blk = 0x7000 + self.k * 1000 + r, 0x70000 + self.k * 1000 + r
            data = tvtest.encode_block(blk, recs)
            start = time.monotonic()
            resps, code, details = self.cl.write_requests(
                [tvtest.write_cmd(pb.OPEN_SEGMENT, segment_id=seg),
                 tvtest.write_cmd(pb.OPEN_BLOCK, block_id=blk, length=len(data))]
                + tvtest.write_chunks(blk, data, 1024) + [tvtest.write_cmd(pb.COMMIT)])
            if code != grpc.StatusCode.OK or not resps or not resps[-1].committed:
                self.errors.append("round %d write: %s %s" % (r, code, details))
                continue
            got, skipped, code, details, _ = self.cl.query_all(t0, t0 + 1000)
            if code != grpc.StatusCode.OK or skipped or \
                    [(x.ts_ns, x.path) for x in got] != [(x.ts_ns, x.path) for x in recs]:
                self.errors.append("round %d query: %s %s (%d records)" % (r, code, details,
                                                                            len(got)))
                continue
            self.longest_s = max(self.longest_s, time.monotonic() - start)
            self.rounds += 1
        self.cl.close()


def test_a_flood_from_one_peer_leaves_the_others_served():
    srv = tvtest.Server(extra_args=[
        "--max-write-streams", str(WRITES), "--max-query-streams", str(QUERIES),
        "--max-streams-per-connection", "16", "--idle-timeout-ms", "60000",
        "--metrics-addr", "127.0.0.1:0"])
    srv.start()
    relay = None
    held, readers, clients, qch = [], [], [], None
    try:
        maddr = tvtest.metrics_addr(srv.log())
        setup = tvtest.GrpcClient(srv.addr, timeout_s=60, own_connection=True)
        setup.write_segment(0xB16, [(0xB161, [tvtest.trace_record(TS_BIG + i, pid=i,
                                                                  path="/big/" + "x" * 200)
                                              for i in range(8000)])], chunk_bytes=64 << 10)
        setup.close()
        big = (TS_BIG, TS_BIG + 8000)
        relay = tvtest.Relay(srv.addr, FLOOD_PEER).start()
        # the flood's Write streams, 10 a connection, and its readers on a connection of their
        # own without BDP probing (the window stays 64 KiB, far below one 1 MiB batch)
        clients = [tvtest.GrpcClient(relay.addr, timeout_s=60, own_connection=True)
                   for _ in range(FLOOD_WRITES // 10)]
        held = [idle_stream(clients[i % len(clients)], 0xF000 + i) for i in range(FLOOD_WRITES)]
        # (at least those past the server's limit end: so the old server, without shares, got
        # as far as the valid client, whose first write it refused)
        tvtest.wait_for(lambda: sum(not st.call.running() for st in held) >=
                        FLOOD_WRITES - WRITES, "the flood's Write streams past the limit "
                        "to be refused")
        qch = grpc.insecure_channel(relay.addr, options=[("grpc.http2.bdp_probe", 0),
                                                         ("grpc.use_local_subchannel_pool", 1)])
        refused = collections.Counter()
        for _ in range(FLOOD_QUERIES):
            call, status = stalled_reader(qch, big)
            if call:
                readers.append(call)
            else:
                refused[status] += 1
        time.sleep(0.3)  # no more Write streams end
        ended = [status_of(st.call) for st in held if not st.call.running()]
        held = [st for st in held if st.call.running()]
        for st in ended:
            refused[st] += 1

        # the valid client, while the flood holds its share and keeps asking for more
        stop = threading.Event()
        pressure = collections.Counter()

        def press():
            k = 0
            while not stop.is_set():
                st = idle_stream(clients[k % len(clients)], 0xE000 + k)
                deadline = time.monotonic() + 5
                while st.call.running() and time.monotonic() < deadline:
                    time.sleep(0.005)
                pressure["served" if st.call.running() else status_of(st.call)] += 1
                st.call.cancel()
                st.end()
                call, status = stalled_reader(qch, big)
                if call:
                    pressure["served"] += 1
                    call.cancel()
                else:
                    pressure[status] += 1
                k += 1
        presser = threading.Thread(target=press, daemon=True)
        presser.start()
        valid = [Valid(srv.addr, k) for k in range(VALID_THREADS)]
        start = time.monotonic()
        for v in valid:
            v.start()
        for v in valid:
            v.join(120)
        took = time.monotonic() - start
        stop.set()
        presser.join(60)
        assert not presser.is_alive() and not any(v.is_alive() for v in valid), "a client hung"

        errors = [e for v in valid for e in v.errors]
        print("valid client (%s): %d rounds of write + read back in %.1f s, refusals %d, "
              "longest round %.2f s" % (
                  "127.0.0.1", sum(v.rounds for v in valid), took, len(errors),
                  max(v.longest_s for v in valid)))
        print("flood (%s): holds %d Write and %d Query streams; refused at first %s; "
              "while the valid client ran: %s" % (
                  FLOOD_PEER, len(held), len(readers), dict(refused), dict(pressure)))
        assert not errors, errors[:5]
        assert sum(v.rounds for v in valid) == VALID_THREADS * VALID_ROUNDS
        # the flood: exactly its share, every other stream refused at once, naming it
        assert len(held) == SHARE_W and len(readers) == SHARE_Q, (len(held), len(readers))
        want = {(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal("Write", SHARE_W)):
                FLOOD_WRITES - SHARE_W,
                (grpc.StatusCode.RESOURCE_EXHAUSTED, refusal("Query", SHARE_Q)):
                FLOOD_QUERIES - SHARE_Q}
        assert refused == want, (refused, want)
        assert "served" not in pressure and set(pressure) <= set(want) and \
            sum(pressure.values()) >= 2, pressure
        m = tvtest.Scrape(maddr)
        name = S + "streams_refused_total"
        for method, key in (("write", refusal("Write", SHARE_W)),
                            ("query", refusal("Query", SHARE_Q))):
            n = refused[(grpc.StatusCode.RESOURCE_EXHAUSTED, key)] + \
                pressure[(grpc.StatusCode.RESOURCE_EXHAUSTED, key)]
            assert m.value(name, method=method, reason="per_peer") == n, (method, n, m.text)
            assert m.value(name, method=method, reason="server_limit") == 0, m.text

        # the flood lets go: its share is whole again (its entry went with its last stream)
        for st in held:
            st.call.cancel()
            st.end()
        for call in readers:
            call.cancel()
        held, readers = [], []
        # each held segment (ids 0xF000 + i) is aborted: "cancelled by client", or "stream
        # ended without COMMIT" when the end() after the cancel reaches the server first (3
        # of the 4 under memcheck, the valgrind run)
        flood_aborts = re.compile(r"^segment 000000000000f0[0-9a-f]{2} aborted: ", re.M)
        tvtest.wait_for(lambda: len(flood_aborts.findall(srv.log())) >= SHARE_W,
                        "the flood's streams to be freed")
        time.sleep(0.3)  # the call's slot goes when grpc hands the call back
        again = [idle_stream(clients[0], 0xD000 + i) for i in range(SHARE_W + 1)]
        held = again
        tvtest.wait_for(lambda: sum(not st.call.running() for st in again) >= 1,
                        "one stream past the share to be refused")
        time.sleep(0.3)
        ended = [status_of(st.call) for st in again if not st.call.running()]
        assert ended == [(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal("Write", SHARE_W))], ended
    finally:
        for st in held:
            st.call.cancel()
            st.end()
        for call in readers:
            call.cancel()
        for cl in clients:
            cl.close()
        if qch is not None:
            qch.close()
        if relay is not None:
            relay.stop()
        rc = srv.stop()
        log = srv.log()
        srv.cleanup()
    assert rc == 0 and "tracevaultd: stopped" in log, (rc, log[-2000:])


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_peers_as_grpc_names_real_connections():
    """A dual-stack listener: 127.0.0.1 arrives as a v4-mapped address and is the peer
    127.0.0.1; ::1 is the peer ::/64. Share 1 of 2 Write streams: of each peer's two streams
    one is held and one refused naming the peer (the second peer too, while the first holds
    its one)."""
    if not ipv6_loopback():
        tvtest.skip("no IPv6 loopback here")
    srv = tvtest.Server(listen="[::]:0", extra_args=[
        "--insecure", "--max-write-streams", "2", "--max-write-streams-per-peer", "1",
        "--max-streams-per-connection", "16"])
    srv.start()
    streams, clients = [], []
    try:
        port = srv.addr.rsplit(":", 1)[1]
        for addr, name in (("127.0.0.1:" + port, "127.0.0.1"), ("[::1]:" + port, "::/64")):
            cl = tvtest.GrpcClient(addr, timeout_s=30, own_connection=True)
            clients.append(cl)
            pair = [idle_stream(cl, 0xA000 + len(streams) + k) for k in range(2)]
            streams += pair
            # which of the two the server meets first is grpc's to choose: the other is refused
            tvtest.wait_for(lambda: any(not st.call.running() for st in pair),
                            "one of %s's two streams to end" % name)
            time.sleep(0.2)  # not both
            ended = [status_of(st.call) for st in pair if not st.call.running()]
            assert ended == [(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal("Write", 1, name))], \
                (name, ended, srv.log())
            print("ok peer %s: one of its two Write streams refused naming it, one held" % name)
    finally:
        for st in streams:
            st.call.cancel()
            st.end()
        for cl in clients:
            cl.close()
        srv.stop()
        srv.cleanup()


def test_shares_at_start():
    """The shares are logged at start: half of each limit by default (at least 1), a given
    one kept, one above its server limit counted as that limit."""
    for args, want in (([], (128, 256, 32, 64)),
                       (["--max-write-streams", "1", "--max-query-streams", "3"], (1, 1, 1, 3)),
                       (["--max-write-streams", "8", "--max-write-streams-per-peer", "3",
                         "--max-query-streams-per-peer", "65536"], (3, 8, 64, 64))):
        with tvtest.Server(extra_args=args) as srv:
            line = "tracevaultd: each peer (an IPv4 address, an IPv6 /64) holds at most %d " \
                "of the %d Write and %d of the %d Query streams\n" % want
            assert line in srv.log(), (args, srv.log())
    print("ok shares logged: default half, given, clamped to the server's limit")


def main():
    tests = tvtest.cases(globals(), only=sys.argv[1:])
    results = tvtest.Results(len(tests))
    for t in tests:
        results.run(t)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
