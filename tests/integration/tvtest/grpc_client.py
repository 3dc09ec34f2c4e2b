"""An independent gRPC client (interop) through grpcio and the generated Python messages only:
GrpcClient (Write of whole segments of blocks from tvtest.blocks, Write of given requests, Query,
Delete, and the raw-bytes forms of Write and Query), WriteStream (one Write call driven step by
step), and the builders of the messages they send: trace_record(), write_cmd(), write_chunk()
and write_chunks()."""
import queue
import signal
import sys
import threading
import time

from .blocks import crc32c, encode_block
from .procs import GEN_DIR, SLOWDOWN, skip

WRITE = "/tracevault.v1.TraceStore/Write"
QUERY = "/tracevault.v1.TraceStore/Query"
DELETE = "/tracevault.v1.TraceStore/Delete"
SUMMARY = "/tracevault.v1.TraceStore/Summary"


def grpc_modules():
    """(grpc, tracevault_pb2), or SKIP when python3-grpcio is missing."""
    try:
        import grpc
    except ImportError:
        skip("python3-grpcio is not installed for /usr/bin/python3")
    if GEN_DIR not in sys.path:
        sys.path.insert(0, GEN_DIR)
    import tracevault_pb2
    return grpc, tracevault_pb2


def _pb():
    return grpc_modules()[1]


def trace_record(ts_ns, pid=0, path="/", latency_ns=5, **fields):
    """A TraceRecord of an exchange from ts_ns to ts_ns + latency_ns: pid, comm "t",
    127.0.0.1:80 <- 127.0.0.1:5000, GET path, status 200; fields set any other field or replace
    one of these (an empty string or 0 leaves it unset)."""
    values = dict(comm="t", local="127.0.0.1:80", remote="127.0.0.1:5000", method="GET",
                  status=200)
    values.update(fields)
    return _pb().TraceRecord(ts_ns=ts_ns, end_ns=ts_ns + latency_ns, latency_ns=latency_ns,
                             pid=pid, path=path, **values)


def write_cmd(type_, **kw):
    """WriteRequest{command}: a WriteCommand of type_ (pb.OPEN_SEGMENT, ...) with fields kw."""
    pb = _pb()
    return pb.WriteRequest(command=pb.WriteCommand(type=type_, **kw))


def write_chunk(block_id, data, offset, crc=None):
    """WriteRequest{chunk}: data at offset of block_id, with its CRC32C (or crc as given)."""
    pb = _pb()
    return pb.WriteRequest(chunk=pb.Chunk(block_id=block_id, offset=offset,
                                          crc32c=crc32c(data) if crc is None else crc, data=data))


def write_chunks(block_id, data, chunk_bytes=4096, bad_crc_at=None):
    """The chunks of data (a whole block or its start) of chunk_bytes each; the one at offset
    bad_crc_at, if any, with its CRC32C off by one bit."""
    out = []
    for off in range(0, len(data), chunk_bytes):
        piece = data[off:off + chunk_bytes]
        crc = crc32c(piece)
        if bad_crc_at == off:
            crc ^= 1
        out.append(write_chunk(block_id, piece, off, crc))
    return out


class GrpcClient:
    """Write/Query/Delete/Summary through grpcio and the generated messages only. write,
    query_rpc, delete and summary are the multi-callables; write_raw and query_raw send bytes
    as given (no serializer); delete_segment() answers (code, details, DeleteResponse or
    None)."""

    def __init__(self, addr, timeout_s=30, own_connection=False, credentials=None):
        """own_connection: a TCP connection of its own (grpcio otherwise shares one between
        channels of equal target and options). credentials: grpc.ssl_channel_credentials(...)
        for a TLS channel (None: plaintext)."""
        self.grpc, self.pb = grpc_modules()
        pb = self.pb
        self.timeout_s = timeout_s
        options = [("grpc.max_receive_message_length", 16 << 20),
                   ("grpc.max_send_message_length", 16 << 20)] + (
            [("grpc.use_local_subchannel_pool", 1)] if own_connection else [])
        self.ch = (self.grpc.secure_channel(addr, credentials, options=options) if credentials
                   else self.grpc.insecure_channel(addr, options=options))
        ser = lambda m: m.SerializeToString()  # noqa: E731
        self.write = self.ch.stream_stream(WRITE, request_serializer=ser,
                                           response_deserializer=pb.WriteResponse.FromString)
        self.write_raw = self.ch.stream_stream(WRITE, request_serializer=None,
                                               response_deserializer=pb.WriteResponse.FromString)
        self.query_rpc = self.ch.unary_stream(QUERY, request_serializer=ser,
                                              response_deserializer=pb.QueryResponse.FromString)
        self.query_raw = self.ch.unary_stream(QUERY, request_serializer=None,
                                              response_deserializer=pb.QueryResponse.FromString)
        self.delete = self.ch.unary_unary(DELETE, request_serializer=ser,
                                          response_deserializer=pb.DeleteResponse.FromString)
        self.summary = self.ch.unary_unary(SUMMARY, request_serializer=ser,
                                           response_deserializer=pb.SummaryResponse.FromString)

    def write_segment(self, segment_id, blocks, chunk_bytes=4096, writer_token=0):
        """blocks: [(block_id, [TraceRecord])]; returns the last WriteResponse (committed).
        writer_token goes with OPEN_SEGMENT (0: none; a Delete of the segment needs it)."""
        return self.write_encoded(segment_id,
                                  [(block_id, encode_block(block_id, recs))
                                   for block_id, recs in blocks], chunk_bytes, writer_token)

    def encoded_requests(self, segment_id, blocks, chunk_bytes=4096, writer_token=0):
        """The Write requests of one whole segment of blocks already encoded, [(block_id,
        bytes)]: OPEN_SEGMENT, each block's OPEN_BLOCK and chunks, COMMIT."""
        pb = self.pb
        reqs = [write_cmd(pb.OPEN_SEGMENT, segment_id=segment_id, writer_token=writer_token)]
        for block_id, data in blocks:
            reqs.append(write_cmd(pb.OPEN_BLOCK, block_id=block_id, length=len(data)))
            reqs += write_chunks(block_id, data, chunk_bytes)
        reqs.append(write_cmd(pb.COMMIT, segment_id=segment_id))
        return reqs

    def write_encoded(self, segment_id, blocks, chunk_bytes=4096, writer_token=0):
        """Like write_segment, for blocks already encoded: [(block_id, bytes)]."""
        reqs = self.encoded_requests(segment_id, blocks, chunk_bytes, writer_token)
        responses = list(self.write(iter(reqs), timeout=self.timeout_s))
        return responses[-1]

    def write_requests(self, reqs):
        """One Write call of reqs as given; returns (responses, code, details) rather than
        raising when the call fails (code grpc.StatusCode.OK and details "" when it does not)."""
        responses = []
        try:
            for r in self.write(iter(reqs), timeout=self.timeout_s):
                responses.append(r)
            return responses, self.grpc.StatusCode.OK, ""
        except self.grpc.RpcError as e:
            return responses, e.code(), e.details()

    def delete_segment(self, segment_id, writer_token=0, block_ids=()):
        """Delete{segment_id, writer_token, block_ids} -> (code, details, DeleteResponse or
        None), not raising when the call fails."""
        try:
            resp = self.delete(self.pb.DeleteRequest(segment_id=segment_id,
                                                     writer_token=writer_token,
                                                     block_ids=list(block_ids)),
                               timeout=self.timeout_s)
            return self.grpc.StatusCode.OK, "", resp
        except self.grpc.RpcError as e:
            return e.code(), e.details(), None

    def query(self, from_ns, to_ns, limit=0):
        recs = []
        for resp in self.query_rpc(self.pb.QueryRequest(from_ns=from_ns, to_ns=to_ns, limit=limit),
                                   timeout=self.timeout_s):
            recs.extend(resp.records)
        return recs

    def query_all(self, from_ns, to_ns, limit=0, timeout_s=None):
        """A whole Query call that does not raise on its status: (records, skipped, code,
        details, batches), skipped being the QueryResponse.skipped entries in arrival order and
        batches the (records, skipped) counts of each message."""
        recs, skipped, batches = [], [], []
        call = self.query_rpc(self.pb.QueryRequest(from_ns=from_ns, to_ns=to_ns, limit=limit),
                              timeout=timeout_s or self.timeout_s)
        try:
            for resp in call:
                recs.extend(resp.records)
                skipped.extend(resp.skipped)
                batches.append((len(resp.records), len(resp.skipped)))
            return recs, skipped, self.grpc.StatusCode.OK, "", batches
        except self.grpc.RpcError as e:
            return recs, skipped, e.code(), e.details(), batches

    def close(self):
        self.ch.close()


class WriteStream:
    """A Write call of client driven step by step: requests go through a queue (send), replies
    are read one at a time (next), end() half-closes; call is the grpcio call itself."""

    def __init__(self, client):
        self.q = queue.Queue()
        self.call = client.write(iter(self.q.get, None), timeout=client.timeout_s)

    def send(self, *reqs):
        for r in reqs:
            self.q.put(r)

    def next(self):
        return next(self.call)

    def end(self):
        self.q.put(None)

    def wait_acked(self, block_id, length):
        """Read acks of block_id (increasing offsets) until one says length bytes are written;
        bounded: every ack must advance the offset."""
        last = 0
        while last < length:
            ack = self.next()
            assert ack.block_id == block_id and last < ack.offset <= length, (ack, last)
            last = ack.offset


def run_until_kill(srv, writers, writer, querier, state, kill_after_s, rng):
    """One round of the kill -9 tests: `writers` threads running writer(client, state, stop)
    and one running querier(client, stop) against srv, each on a GrpcClient of its own; srv is
    SIGKILLed at a random moment in kill_after_s (seconds, a (lo, hi) pair drawn with rng;
    times SLOWDOWN: memcheck's daemon does as much in that longer time), then stop is set,
    every thread must end within 30 s and the clients are closed. What the threads saw is
    theirs to record in state."""
    stop = threading.Event()
    clients = [GrpcClient(srv.addr, timeout_s=20) for _ in range(writers + 1)]
    threads = [threading.Thread(target=writer, args=(c, state, stop))
               for c in clients[:writers]]
    threads.append(threading.Thread(target=querier, args=(clients[-1], stop)))
    for t in threads:
        t.start()
    time.sleep(rng.uniform(*kill_after_s) * SLOWDOWN)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a client thread hung after the kill"
    for c in clients:
        c.close()
