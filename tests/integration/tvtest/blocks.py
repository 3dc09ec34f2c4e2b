"""An independent encoder of trace blocks, written from proto/BLOCK.md (versions 1 and 2):
CRC32C, varints and the block bytes of a list of TraceRecord messages."""


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


def zstd_compress(data, level=3):
    """One zstd frame of data through the system's libzstd (ctypes), or None without it."""
    import ctypes
    try:
        z = ctypes.CDLL("libzstd.so.1")
    except OSError:
        return None
    z.ZSTD_compressBound.restype = ctypes.c_size_t
    z.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
    z.ZSTD_compress.restype = ctypes.c_size_t
    z.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                                ctypes.c_size_t, ctypes.c_int]
    z.ZSTD_isError.restype = ctypes.c_uint
    z.ZSTD_isError.argtypes = [ctypes.c_size_t]
    bound = z.ZSTD_compressBound(len(data))
    buf = ctypes.create_string_buffer(bound)
    n = z.ZSTD_compress(buf, bound, data, len(data), level)
    assert not z.ZSTD_isError(n)
    return buf.raw[:n]


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
