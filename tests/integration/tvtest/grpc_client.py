"""An independent gRPC client (interop) through grpcio and the generated Python messages only:
Write (whole segments of blocks from tvtest.blocks) and Query."""
import sys

from .blocks import crc32c, encode_block
from .procs import GEN_DIR, skip


def grpc_modules():
    """(grpc, tracevault_pb2), or SKIP when python3-grpcio is missing."""
    try:
        import grpc
    except ImportError:
        skip("python3-grpcio is not installed for /usr/bin/python3")
    sys.path.insert(0, GEN_DIR)
    import tracevault_pb2
    return grpc, tracevault_pb2


class GrpcClient:
    """Write/Query/Delete through grpcio and the generated messages only."""

    def __init__(self, addr, timeout_s=30):
        self.grpc, self.pb = grpc_modules()
        self.timeout_s = timeout_s
        self.ch = self.grpc.insecure_channel(addr, options=[
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20)])
        ser = lambda m: m.SerializeToString()  # noqa: E731
        self.write = self.ch.stream_stream("/tracevault.v1.TraceStore/Write",
                                           request_serializer=ser,
                                           response_deserializer=self.pb.WriteResponse.FromString)
        self.query_rpc = self.ch.unary_stream(
            "/tracevault.v1.TraceStore/Query", request_serializer=ser,
            response_deserializer=self.pb.QueryResponse.FromString)

    def write_segment(self, segment_id, blocks, chunk_bytes=4096):
        """blocks: [(block_id, [TraceRecord])]; returns the last WriteResponse (committed)."""
        return self.write_encoded(segment_id,
                                  [(block_id, encode_block(block_id, recs))
                                   for block_id, recs in blocks], chunk_bytes)

    def write_encoded(self, segment_id, blocks, chunk_bytes=4096):
        """Like write_segment, for blocks already encoded: [(block_id, bytes)]."""
        pb = self.pb
        reqs = [pb.WriteRequest(command=pb.WriteCommand(type=pb.OPEN_SEGMENT,
                                                        segment_id=segment_id))]
        for block_id, data in blocks:
            reqs.append(pb.WriteRequest(command=pb.WriteCommand(type=pb.OPEN_BLOCK,
                                                                block_id=block_id,
                                                                length=len(data))))
            for off in range(0, len(data), chunk_bytes):
                piece = data[off:off + chunk_bytes]
                reqs.append(pb.WriteRequest(chunk=pb.Chunk(block_id=block_id, offset=off,
                                                           crc32c=crc32c(piece), data=piece)))
        reqs.append(pb.WriteRequest(command=pb.WriteCommand(type=pb.COMMIT,
                                                            segment_id=segment_id)))
        responses = list(self.write(iter(reqs), timeout=self.timeout_s))
        return responses[-1]

    def query(self, from_ns, to_ns, limit=0):
        recs = []
        for resp in self.query_rpc(self.pb.QueryRequest(from_ns=from_ns, to_ns=to_ns, limit=limit),
                                   timeout=self.timeout_s):
            recs.extend(resp.records)
        return recs

    def close(self):
        self.ch.close()
