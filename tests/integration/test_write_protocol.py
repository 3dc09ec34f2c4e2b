"""The client's Write stream against a scripted server (grpcio, in this process): what a real
tracevaultd never does but the protocol allows or forbids. A server may ack whole blocks only
(PROTOCOL.md), and the client must then not stall on a window smaller than a block; a commit
reply must list exactly the blocks the stream sent, not one more; every OPEN_SEGMENT carries
the writer's token and its cleanup Delete the same one, so a server can tell its segments."""
import os
import sys
import threading
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()

PAD = ["--pad-bytes", "200"]
SERVICE = "tracevault.v1.TraceStore"


class ScriptedServer:
    """A Write-only TraceStore: acks a block once all its bytes are in (never part of one),
    answers FLUSH with the bytes received and COMMIT with the block ids opened plus extra_ids.
    Records what it saw (per stream: the block ids and their lengths; the OPEN_SEGMENTs and
    the Delete requests). Delete answers OK, removing nothing."""

    def __init__(self, extra_ids=()):
        self.extra_ids = list(extra_ids)
        self.streams = []
        self.opens = []    # (segment_id, writer_token) of each OPEN_SEGMENT
        self.deletes = []  # (segment_id, writer_token) of each Delete
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Write": grpc.stream_stream_rpc_method_handler(
                self.write, request_deserializer=pb.WriteRequest.FromString,
                response_serializer=lambda m: m.SerializeToString()),
            "Delete": grpc.unary_unary_rpc_method_handler(
                self.delete, request_deserializer=pb.DeleteRequest.FromString,
                response_serializer=lambda m: m.SerializeToString())})
        self.server.add_generic_rpc_handlers((handler,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = "127.0.0.1:%d" % port
        self.server.start()

    def write(self, requests, context):
        blocks = {}  # block id -> [length, received]
        order = []
        with self.lock:
            self.streams.append(order)
        for req in requests:
            if req.WhichOneof("value") == "chunk":
                b = blocks[req.chunk.block_id]
                assert req.chunk.offset == b[1], (req.chunk.offset, b)
                b[1] += len(req.chunk.data)
                if b[1] == b[0]:  # whole-block acks only
                    yield pb.WriteResponse(block_id=req.chunk.block_id, offset=b[0])
                continue
            cmd = req.command
            if cmd.type == pb.OPEN_SEGMENT:
                with self.lock:
                    self.opens.append((cmd.segment_id, cmd.writer_token))
            elif cmd.type == pb.OPEN_BLOCK:
                blocks[cmd.block_id] = [cmd.length, 0]
                order.append((cmd.block_id, cmd.length))
            elif cmd.type == pb.FLUSH:
                yield pb.WriteResponse(offset=sum(b[1] for b in blocks.values()))
            elif cmd.type == pb.COMMIT:
                yield pb.WriteResponse(offset=sum(b[1] for b in blocks.values()), committed=True,
                                       committed_block_ids=[i for i, _ in order] + self.extra_ids)
                return

    def delete(self, req, context):
        with self.lock:
            self.deletes.append((req.segment_id, req.writer_token))
        return pb.DeleteResponse()

    def stop(self):
        self.server.stop(0)


def test_whole_block_acker_with_window_below_a_block():
    """PROTOCOL.md lets a server ack whole blocks only. With a 8 KiB window and a block of
    ~50 KB the client may still send the whole current block (every earlier one is acked):
    the segment commits, its one block sent in 4 KiB chunks."""
    srv = ScriptedServer()
    ld = tvtest.Loader(srv.addr, 300, PAD + ["--window-bytes", "8192", "--chunk-bytes", "4096",
                                             "--write-timeout-ms", "5000"])
    try:
        seg = ld.segment(timeout=60)
        assert seg["ok"], ("segment against a whole-block acker failed", ld.stderr_text())
        assert len(srv.streams) == 1 and len(srv.streams[0]) == 1, srv.streams
        length = srv.streams[0][0][1]
        assert length > 3 * 8192, ("the block must outgrow the window", length)
        st = ld.stats()
        assert st["segments_committed"] == 1, st
    finally:
        ld.cleanup()
        srv.stop()


def test_commit_reply_with_an_unsent_block_fails():
    """A commit reply that lists one block id more than the stream sent is a server that
    committed something else: the segment fails with the counts in its reason."""
    srv = ScriptedServer(extra_ids=[0x1234])
    ld = tvtest.Loader(srv.addr, 50, PAD + ["--write-timeout-ms", "5000",
                                            "--delete-timeout-ms", "1000"])
    try:
        seg = ld.segment(timeout=60)
        assert not seg["ok"], "a commit reply with an extra block id was accepted"
        fails = ld.failure_lines()
        assert len(fails) == 1, ld.stderr_text()
        want = "%s: commit reply lists 2 blocks, 1 of the 1 sent" % srv.addr
        assert fails[0][1] == want, (fails[0][1], want)
    finally:
        ld.cleanup()
        srv.stop()


def test_cleanup_delete_carries_the_writer_token():
    """Each OPEN_SEGMENT carries a non-zero writer_token, the same for every segment of one
    writer and another for another writer; the Delete after a failed segment names the
    segment and presents that token (a server removes a segment only with it)."""
    srv = ScriptedServer(extra_ids=[0x1234])  # every commit reply is wrong: every segment fails
    loaders = [tvtest.Loader(srv.addr, 50, PAD + ["--write-timeout-ms", "5000",
                                                  "--delete-timeout-ms", "1000"], tag=k)
               for k in (1, 2)]
    try:
        for ld in loaders + loaders[:1]:
            assert not ld.segment(timeout=60)["ok"]
        with srv.lock:
            opens, deletes = list(srv.opens), list(srv.deletes)
        assert len(opens) == 3 and len(deletes) == 3, (opens, deletes)
        assert sorted(opens) == sorted(deletes), (opens, deletes)
        tokens = [t for _, t in opens]
        assert tokens[0] != 0 and tokens[1] != 0 and tokens[0] != tokens[1], tokens
        assert tokens[2] == tokens[0] and opens[2][0] != opens[0][0], opens
        for ld in loaders:
            fails = ld.failure_lines()
            assert fails and all(f[6].startswith("ok") for f in fails), ld.stderr_text()
    finally:
        for ld in loaders:
            ld.cleanup()
        srv.stop()


def main():
    for t in (test_whole_block_acker_with_window_below_a_block,
              test_commit_reply_with_an_unsent_block_fails,
              test_cleanup_delete_carries_the_writer_token):
        print("---", t.__name__, flush=True)
        t()
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
