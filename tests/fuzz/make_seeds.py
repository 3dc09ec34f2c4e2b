#!/usr/bin/env python3
"""Writes the seed corpus of the harnesses whose inputs are plain bytes: http_parse (HTTP/1.x
exchanges as curl sends them and nginx answers them), tcp_reasm (those exchanges as TCP
segments of a connection: handshake, in order, out of order, retransmitted, with a lost
segment) and version 1 blocks for block (tests/integration/tvtest/blocks.py, the independent
encoder; versions 2 and 3 come from the real builder: TV_FUZZ_WRITE_SEEDS=DIR fuzz_block).
Each file is in its harness's input encoding (the comment at the top of fuzz_NAME.c).
Usage: tests/fuzz/make_seeds.py   (writes into tests/fuzz/corpus/, run from anywhere)"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from tvtest import blocks  # noqa: E402

CURL_GET = (b"GET /api/v1/items?id=7&token=s3cr3t HTTP/1.1\r\nHost: example.com:8080\r\n"
            b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n"
            b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
CURL_POST = (b"POST /login HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\n"
             b"Accept: */*\r\nAuthorization: Basic dXNlcjpwYXNz\r\nCookie: sid=abc\r\n"
             b"Content-Type: application/json\r\nContent-Length: 27\r\n\r\n"
             b'{"user":"u","pass":"hunter"}'[:27])
CURL_CHUNKED = (b"PUT /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: text/plain\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n"
                b"X-Trailer: 1\r\n\r\n")
ABS_FORM = b"GET http://user:pw@example.org:81/a?b=c HTTP/1.0\r\nHost: other\r\n\r\n"
CONNECT = b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n"
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00"

NGINX_200 = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 06:00:00 GMT\r\n"
             b"Content-Type: application/json\r\nContent-Length: 15\r\nConnection: keep-alive\r\n"
             b'\r\n{"items":[1,2]}')
NGINX_CHUNKED = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n"
                 b"Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
                 b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n")
NGINX_404 = (b"HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n"
             b"Content-Length: 9\r\nSet-Cookie: a=b\r\n\r\nnot found")
NGINX_304 = b"HTTP/1.1 304 Not Modified\r\nServer: nginx/1.22.1\r\nETag: \"x\"\r\n\r\n"
CLOSE_DELIMITED = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"
SWITCHING = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"\r\n\x81\x05hello")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"


def write(name, sub, data):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def http_seed(flags, body_max, splits, stream):
    """fuzz_http_parse's input: options, then (len, cut, op) split records, then the bytes."""
    out = bytes([flags, body_max, len(splits)])
    for ln, cut, op in splits:
        out += struct.pack("<HBB", ln, cut, op)
    return out + stream


def http_seeds():
    req, resp, head_no_body, headers, creds = 0, 1, 0x80, 2, 4
    write("get_whole", "http_parse", http_seed(req, 0, [], CURL_GET))
    write("get_bytewise", "http_parse",
          http_seed(req, 0, [(1, 0, 0)] * 32, CURL_GET))
    write("post_headers_split", "http_parse",
          http_seed(req | headers, 64, [(40, 0, 0), (200, 0, 0)], CURL_POST))
    write("post_creds_kept_cut_copy", "http_parse",
          http_seed(req | headers | creds, 16, [(120, 20, 0)], CURL_POST))
    write("pipelined", "http_parse",
          http_seed(req, 0, [(len(CURL_GET) - 3, 0, 0), (10, 0, 0)],
                    CURL_GET + CURL_CHUNKED + ABS_FORM + HEAD))
    write("chunked_body_kept", "http_parse",
          http_seed(req, 255, [(70, 0, 0), (5, 0, 0), (9, 0, 0)], CURL_CHUNKED))
    write("connect_then_tunnel", "http_parse",
          http_seed(req, 0, [(len(CONNECT), 0, 3)], CONNECT + b"\x16\x03\x01\x00\x05hello"))
    write("upgrade", "http_parse", http_seed(req, 0, [(50, 0, 0)], UPGRADE))
    write("h2_preface", "http_parse", http_seed(req, 0, [(8, 0, 0)], H2_PREFACE))
    write("query_strip", "http_parse", http_seed(req | 0x10, 0, [], CURL_GET))
    write("query_keep", "http_parse", http_seed(req | 0x20, 0, [], ABS_FORM))
    write("small_head_limit", "http_parse", http_seed(req | 0x40, 0, [(30, 0, 0)], CURL_GET))
    write("midstream", "http_parse",
          http_seed(req | 8, 0, [(7, 0, 0)], b"x\":1}\r\n" + CURL_GET))
    write("responses_keepalive", "http_parse",
          http_seed(resp, 32, [(60, 0, 0), (3, 0, 0)], NGINX_200 + NGINX_CHUNKED + NGINX_404))
    write("response_head", "http_parse", http_seed(resp | head_no_body, 0, [], NGINX_200))
    write("response_304_close", "http_parse",
          http_seed(resp, 0, [(20, 0, 0)], NGINX_304 + CLOSE_DELIMITED))
    write("response_101", "http_parse", http_seed(resp, 0, [(90, 0, 0)], SWITCHING))
    write("response_continue", "http_parse", http_seed(resp, 0, [(3, 0, 0)], CONTINUE))
    write("response_cut_copy", "http_parse",
          http_seed(resp | headers, 8, [(40, 30, 0), (100, 0, 0)], NGINX_404 + NGINX_200))


def seg(conn, from_server, seq_off, ack_off, flags, payload_len, cap_len, step=0, expire=0):
    """One fuzz_tcp_reasm record: offsets from the connection's base sequence numbers."""
    b0 = conn | (4 if from_server else 0) | 8 | (0x10 if expire else 0)
    capw = min(cap_len, 0xfff) | (step << 12)
    return struct.pack("<BIIBHH", b0, seq_off, ack_off, flags, payload_len, capw)


def tcp_seeds():
    SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
    q, r = len(CURL_GET), len(NGINX_200)
    hs = seg(0, 0, 0, 0, SYN, 0, 0) + seg(0, 1, 0, 1, SYN | ACK, 0, 0) + \
        seg(0, 0, 1, 1, ACK, 0, 0)
    exchange = seg(0, 0, 1, 1, PSH | ACK, q, q, 1) + seg(0, 1, 1, 1 + q, PSH | ACK, r, r, 1)
    close = seg(0, 0, 1 + q, 1 + r, FIN | ACK, 0, 0, 1) + \
        seg(0, 1, 1 + r, 2 + q, FIN | ACK, 0, 0) + seg(0, 0, 2 + q, 2 + r, ACK, 0, 0)
    write("handshake_exchange_close", "tcp_reasm", bytes([0]) + hs + exchange + close)
    # the request in three segments, the last two swapped, one retransmitted, cut copies
    parts = seg(0, 0, 1, 1, ACK, 30, 30) + seg(0, 0, 61, 1, ACK, q - 60, q - 60) + \
        seg(0, 0, 31, 1, ACK, 30, 10) + seg(0, 0, 31, 1, ACK, 30, 30)
    write("out_of_order_retransmit", "tcp_reasm", bytes([0]) + hs + parts + close)
    # a lost segment: the hole is given up by expire after the timeout (15: 5 s steps)
    lost = seg(0, 0, 1, 1, ACK, 30, 30) + seg(0, 0, 61, 1, ACK, 40, 40) + \
        seg(0, 0, 101, 1, ACK, 20, 20, 15, 1)
    write("hole_expired", "tcp_reasm", bytes([0]) + hs + lost + close)
    # connections already open: picked up by server port 80, or by the request probe
    mid = seg(1, 0, 100, 200, ACK | PSH, q, q) + seg(1, 1, 200, 100 + q, ACK | PSH, r, r)
    write("midstream_port", "tcp_reasm", bytes([1]) + mid + seg(1, 0, 100 + q, 0, RST, 0, 0))
    write("midstream_probe", "tcp_reasm", bytes([2]) + mid)
    # two connections (IPv4 wrapping its sequence space, IPv6), a table of one: overflow
    two = seg(1, 0, 0, 0, SYN, 0, 0) + seg(3, 0, 0, 0, SYN, 0, 0) + \
        seg(1, 1, 0, 1, SYN | ACK, 0, 0) + seg(1, 0, 1, 1, ACK | PSH, 4000 % 3000, 1000)
    write("two_conns_table_of_one", "tcp_reasm", bytes([1 << 2]) + two)
    write("idle_expire", "tcp_reasm",
          bytes([0]) + hs + b"".join(seg(0, 0, 1, 1, ACK, 0, 0, 15, 1) for _ in range(8)))


class RawRecord:
    """What blocks.encode_block reads of a record: its ts_ns and its protobuf bytes."""

    def __init__(self, ts_ns, path):
        self.ts_ns = ts_ns
        body = bytes([0x08]) + blocks.varint(ts_ns) + bytes([0x4a, len(path)]) + path
        self._bytes = body

    def SerializeToString(self):
        return self._bytes


def block_seeds():
    recs = [RawRecord(1767225600000000000 + i * 1000, b"/v1/%d" % i) for i in range(5)]
    # option byte 0x55: fix CRCs (a no-op here), 7-byte pieces, seek 5/16 in
    write("v1_none_5", "block", bytes([0x55]) + blocks.encode_block(0xb1, recs))


if __name__ == "__main__":
    http_seeds()
    tcp_seeds()
    block_seeds()
