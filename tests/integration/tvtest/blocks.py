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


# ---- version 3, written from proto/BLOCK.md "Version 3" alone (not from block_v3.c) ----

_V3_FIELDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18, 19, 20]  # mask bit order
_V3_NUM_COL = {3: 3, 4: 4, 10: 5, 11: 6, 12: 7, 15: 8}
_V3_STR_COL = {5: 9, 6: 10, 7: 11, 8: 12, 9: 13, 18: 14, 19: 15, 20: 16}  # +8: its strings
_M64 = (1 << 64) - 1


def _fields(b):
    """The protobuf fields of b: [(number, wire type, value, raw bytes of the field)]."""
    out, pos = [], 0

    def uv(p):
        v = s = 0
        while True:
            c = b[p]
            v |= (c & 0x7F) << s
            s += 7
            p += 1
            if c < 0x80:
                return v, p
    while pos < len(b):
        start = pos
        key, pos = uv(pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = uv(pos)
        elif wt == 2:
            n, pos = uv(pos)
            val, pos = b[pos:pos + n], pos + n
        elif wt == 1:
            val, pos = b[pos:pos + 8], pos + 8
        elif wt == 5:
            val, pos = b[pos:pos + 4], pos + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, val, b[start:pos]))
    return out


def _lower_hex(s, n):
    return len(s) == n and all(c in b"0123456789abcdef" for c in s)


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)


def v3_trace_hash(trace_id):
    """BLOCK.md: FNV-1a 64 of the 32 bytes, ASCII letters folded to lower case, then fmix64."""
    h = 0xCBF29CE484222325
    for c in trace_id.lower():
        h = ((h ^ c) * 0x100000001B3) & _M64
    return _fmix64(h)


_SALT = [0x47B6137B, 0x44974D91, 0x8824AD5B, 0xA2B7289D, 0x705495C7, 0x2DF1424B, 0x9EFC4947,
         0x5C6BFB31]


def v3_bloom(ids):
    """The split-block Bloom filter of BLOCK.md over ids (32-byte trace ids)."""
    import struct
    n = (len(ids) * 10 + 7) // 8
    n = min((n + 31) // 32 * 32, 256 << 10)
    words = [0] * (n // 4)
    for t in ids:
        h = v3_trace_hash(t)
        blk = ((h >> 32) * (n // 32)) >> 32
        for i in range(8):
            words[blk * 8 + i] |= 1 << ((((h & 0xFFFFFFFF) * _SALT[i]) & 0xFFFFFFFF) >> 27)
    return struct.pack("<%dI" % len(words), *words)


def encode_block_v3(block_id, records, page_records=2048, codec=1):
    """BLOCK.md version 3: records (TraceRecord messages, serialized canonically) sorted by
    ts_ns, pages of page_records, each column a zstd frame when codec 1 and that is smaller."""
    import struct
    recs = sorted(records, key=lambda r: r.ts_ns)
    dirb, pages, traced = b"", b"", []
    raw_total = 0
    for p0 in range(0, len(recs), page_records):
        page = recs[p0:p0 + page_records]
        col = [bytearray() for _ in range(31)]
        dicts = [dict() for _ in range(9)]  # 8 string fields, then trace ids
        prev = page[0].ts_ns
        for r in page:
            f = _fields(r.SerializeToString())
            vals = {num: val for num, wt, val, _ in f}
            kept = b"".join(raw for num, wt, val, raw in f if num not in _V3_FIELDS)
            mask = sum(1 << i for i, num in enumerate(_V3_FIELDS) if num in vals)
            mask |= (1 << 18) if kept else 0
            col[0] += varint(mask)
            col[1] += varint(r.ts_ns - prev)
            prev = r.ts_ns
            if 2 in vals:
                d = (vals[2] - r.ts_ns - vals.get(3, 0)) & _M64
                d = d - (1 << 64) if d >> 63 else d
                col[2] += varint(((d << 1) ^ (d >> 63)) & _M64)
            for num, c in _V3_NUM_COL.items():
                if num in vals:
                    col[c] += varint(vals[num])
            for k, (num, c) in enumerate(_V3_STR_COL.items()):
                if num in vals:
                    s = bytes(vals[num])
                    if s in dicts[k]:
                        col[c] += varint(dicts[k][s])
                    else:
                        col[c] += varint(len(dicts[k]))
                        col[c + 8] += varint(len(s)) + s
                        dicts[k][s] = len(dicts[k])
            if 13 in vals:
                s = bytes(vals[13])
                if len(s) == 32:
                    traced.append(s)
                if s in dicts[8]:
                    col[25] += varint(dicts[8][s])
                elif _lower_hex(s, 32):
                    col[25] += varint(len(dicts[8]))
                    col[26] += bytes.fromhex(s.decode())
                else:
                    col[25] += varint(len(dicts[8]) + 1)
                    col[29] += varint(len(s)) + s
                dicts[8].setdefault(s, len(dicts[8]))
            if 14 in vals:
                s = bytes(vals[14])
                if _lower_hex(s, 16):
                    col[27] += varint(0)
                    col[28] += bytes.fromhex(s.decode())
                else:
                    col[27] += varint(1)
                    col[29] += varint(len(s)) + s
            if kept:
                col[30] += varint(len(kept)) + kept
        stored = []
        for c in col:
            z = zstd_compress(bytes(c)) if codec == 1 and c else b""
            stored.append(z if z and len(z) < len(c) else bytes(c))
        table = b"".join(varint(len(c)) + varint(len(s)) for c, s in zip(col, stored))
        body = table + b"".join(stored)
        raw_len = len(table) + sum(len(c) for c in col)
        raw_total += raw_len
        dirb += struct.pack("<QQIIII", page[0].ts_ns, page[-1].ts_ns, len(page), len(body),
                            raw_len, crc32c(body))
        pages += body
    bloom = v3_bloom(traced) if traced else b""
    payload = dirb + bloom + pages
    raw = len(dirb) + len(bloom) + raw_total
    head = struct.pack("<IHHQQQIIQQII5QIIIII", 0x4B425654, 3, codec, block_id, recs[0].ts_ns,
                       recs[-1].ts_ns, len(recs), 0, raw, len(payload), crc32c(payload), 0,
                       0, 0, 0, 0, 0, 0, len(dirb) // 32, len(bloom), crc32c(dirb),
                       crc32c(bloom))
    assert len(head) == 124
    return head + struct.pack("<I", crc32c(head)) + payload
