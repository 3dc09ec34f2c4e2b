"""The closing line of `tracevault query` and `summary` when servers skip blocks says what
kind of skip it was, from the SkippedBlock reasons tracevaultd writes (server/query.c): a
block deleted or quarantined after the query began ("block file gone: ...", e.g. retention
past --retain-query-grace) is not called damaged. A stand-in server answers with chosen
reasons (the real retention race is test_retention's), so each wording is checked exactly,
with exit 3 and every record printed."""
import os
import sys
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()

GONE = ("block file gone: deleted (Delete, or retention past --retain-query-grace) or "
        "quarantined after the query began")
DAMAGED = "block payload checksum mismatch (stored 1234abcd, computed 00000000)"
UNREADABLE = "block file is a symlink"
BASE = 1_800_000_000 * 10**9


class SkippingServer:
    """Query: one batch of 3 records and the skipped blocks with the given reasons, then
    DATA_LOSS, as tracevaultd ends such a stream; Summary: the same blocks in its answer."""

    def __init__(self, reasons):
        self.skipped = [pb.SkippedBlock(block_id=0x100 + i, segment_id=0x7, min_ts_ns=BASE,
                                        max_ts_ns=BASE + 10, reason=r)
                        for i, r in enumerate(reasons)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler("tracevault.v1.TraceStore", {
            "Query": grpc.unary_stream_rpc_method_handler(
                self.query, request_deserializer=pb.QueryRequest.FromString,
                response_serializer=lambda m: m.SerializeToString()),
            "Summary": grpc.unary_unary_rpc_method_handler(
                self.summary, request_deserializer=pb.SummaryRequest.FromString,
                response_serializer=lambda m: m.SerializeToString())})
        self.server.add_generic_rpc_handlers((handler,))
        self.addr = "127.0.0.1:%d" % self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def query(self, req, context):
        yield pb.QueryResponse(records=[tvtest.trace_record(BASE + i) for i in range(3)],
                               skipped=self.skipped)
        context.abort(grpc.StatusCode.DATA_LOSS, "%d blocks skipped" % len(self.skipped))

    def summary(self, req, context):
        return pb.SummaryResponse(skipped=self.skipped)

    def stop(self):
        self.server.stop(None).wait(10)


CASES = [
    ([GONE], "1 block skipped (1 gone: removed while the query ran; warnings above)"),
    ([DAMAGED], "1 block skipped (1 damaged; warnings above)"),
    ([GONE, DAMAGED, UNREADABLE, GONE],
     "4 blocks skipped (1 damaged, 1 unreadable, 2 gone: removed while the query ran; "
     "warnings above)"),
]


def main():
    for reasons, words in CASES:
        srv = SkippingServer(reasons)
        try:
            p = tvtest.run(["query", "--server", srv.addr, "--from", str(BASE), "--to",
                            str(BASE + 100)], timeout=60)
            lines = p.stderr.splitlines()
            assert p.returncode == 3 and len(p.stdout.splitlines()) == 3, (p.returncode, p)
            assert len(lines) == len(reasons) + 1, lines
            assert lines[-1] == "tracevault: query incomplete: %s; every other record was " \
                "printed" % words, lines[-1]
            p = tvtest.run(["summary", "--server", srv.addr, "--from", str(BASE), "--to",
                            str(BASE + 100)], timeout=60)
            lines = p.stderr.splitlines()
            assert p.returncode == 3, (p.returncode, p.stderr)
            assert lines[-1] == "tracevault: summary incomplete: %s" % words, lines[-1]
            print("ok %s" % words)
        finally:
            srv.stop()
    print("PASS")


if __name__ == "__main__":
    main()
