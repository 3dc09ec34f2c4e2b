"""An independent encoder of trace blocks, written from proto/BLOCK.md (versions 1 and 2):
CRC32C, varints and the block bytes of a list of TraceRecord messages, stored as is or (through
libzstd with ctypes) compressed with a chosen level and window."""


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode_block(block_id, records):
    """BLOCK.md: 64-byte little-endian header, then length-delimited TraceRecords sorted by
    ts_ns (stable), codec 0 (stored as is)."""
    import struct
    recs = sorted(records, key=lambda r: r.ts_ns)
    payload = b"".join(varint(len(b)) + b for b in (r.SerializeToString() for r in recs))
    head = struct.pack("<IHHQQQIIQQI", 0x4B425654, 1, 0, block_id, recs[0].ts_ns,
                       recs[-1].ts_ns, len(recs), 0, len(payload), len(payload),
                       crc32c(payload))
    assert len(head) == 60
    return head + struct.pack("<I", crc32c(head)) + payload


def encode_block_v2(block_id, records, loss=(0, 0, 0, 0, 0), empty_ts_ns=0, lost_requests=0):
    """BLOCK.md version 2: the v1 fields, 4 reserved bytes, the five u64 loss counters
    (ring_full, map_full, parser, cache, failed), u32 lost_requests, the CRC32C of [0, 108),
    then the payload (codec 0). With no records the range is [empty_ts_ns, empty_ts_ns]."""
    import struct
    recs = sorted(records, key=lambda r: r.ts_ns)
    payload = b"".join(varint(len(b)) + b for b in (r.SerializeToString() for r in recs))
    lo = recs[0].ts_ns if recs else empty_ts_ns
    hi = recs[-1].ts_ns if recs else empty_ts_ns
    head = struct.pack("<IHHQQQIIQQII5QI", 0x4B425654, 2, 0, block_id, lo, hi, len(recs), 0,
                       len(payload), len(payload), crc32c(payload), 0, *loss, lost_requests)
    assert len(head) == 108
    return head + struct.pack("<I", crc32c(head)) + payload


def _zstd():
    import ctypes
    z = ctypes.CDLL("libzstd.so.1")
    z.ZSTD_compressBound.restype = ctypes.c_size_t
    z.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
    z.ZSTD_createCCtx.restype = ctypes.c_void_p
    z.ZSTD_freeCCtx.argtypes = [ctypes.c_void_p]
    z.ZSTD_CCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    z.ZSTD_CCtx_setParameter.restype = ctypes.c_size_t
    z.ZSTD_compress2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_char_p, ctypes.c_size_t]
    z.ZSTD_compress2.restype = ctypes.c_size_t
    z.ZSTD_isError.argtypes = [ctypes.c_size_t]
    z.ZSTD_isError.restype = ctypes.c_uint
    return ctypes, z


ZSTD_C_COMPRESSION_LEVEL, ZSTD_C_WINDOW_LOG = 100, 101  # zstd.h's ZSTD_cParameter values


def zstd_compress(data, level=3, window_log=0):
    """One zstd frame of data (content size recorded), at level, with window_log if given."""
    ctypes, z = _zstd()
    cctx = z.ZSTD_createCCtx()
    try:
        assert not z.ZSTD_isError(z.ZSTD_CCtx_setParameter(cctx, ZSTD_C_COMPRESSION_LEVEL, level))
        if window_log:
            assert not z.ZSTD_isError(z.ZSTD_CCtx_setParameter(cctx, ZSTD_C_WINDOW_LOG,
                                                               window_log))
        bound = z.ZSTD_compressBound(len(data))
        out = ctypes.create_string_buffer(bound)
        n = z.ZSTD_compress2(cctx, out, bound, data, len(data))
        assert not z.ZSTD_isError(n)
        return out.raw[:n]
    finally:
        z.ZSTD_freeCCtx(cctx)


def encode_block_as(block_id, records, codec=0, min_ts=None, max_ts=None, count=None,
                    raw_bytes=None, flags=0, payload=None, version=2):
    """A block with any header field chosen, for blocks a correct writer never makes: records
    are packed TraceRecord bytes (or messages) framed in the order given (not sorted); each
    of min_ts/max_ts/count/raw_bytes defaults to what the records say (the first and the last
    record's ts_ns, 0 without records); payload, when given, is stored as is. The sizes and
    both CRC32Cs are always right, so only the content checks can refuse it."""
    import struct
    recs = [r if isinstance(r, bytes) else r.SerializeToString() for r in records]
    raw = b"".join(varint(len(b)) + b for b in recs)
    if payload is None:
        payload = zstd_compress(raw) if codec == 1 else raw
        assert payload is not None, "libzstd.so.1 is needed for a zstd block"

    def ts(b):
        from .grpc_client import _pb
        return _pb().TraceRecord.FromString(b).ts_ns
    lo = min_ts if min_ts is not None else (ts(recs[0]) if recs else 0)
    hi = max_ts if max_ts is not None else (ts(recs[-1]) if recs else 0)
    fields = (0x4B425654, version, codec, block_id, lo, hi,
              len(recs) if count is None else count, flags,
              len(raw) if raw_bytes is None else raw_bytes, len(payload), crc32c(payload))
    if version == 1:
        head = struct.pack("<IHHQQQIIQQI", *fields)
    else:
        head = struct.pack("<IHHQQQIIQQII5QI", *fields, 0, 0, 0, 0, 0, 0, 0)
    return head + struct.pack("<I", crc32c(head)) + payload


def encode_block_zstd(block_id, records, level=3, window_log=0, raw_records=None):
    """BLOCK.md version 2 with codec 1: the records (TraceRecord messages, or raw_records:
    [(ts_ns, serialized bytes)] already sorted) as one zstd frame at level and window_log."""
    import struct
    if raw_records is None:
        raw_records = [(r.ts_ns, r.SerializeToString())
                       for r in sorted(records, key=lambda r: r.ts_ns)]
    raw = b"".join(varint(len(b)) + b for _, b in raw_records)
    payload = zstd_compress(raw, level, window_log)
    head = struct.pack("<IHHQQQIIQQII5QI", 0x4B425654, 2, 1, block_id, raw_records[0][0],
                       raw_records[-1][0], len(raw_records), 0, len(raw), len(payload),
                       crc32c(payload), 0, 0, 0, 0, 0, 0, 0)
    return head + struct.pack("<I", crc32c(head)) + payload
