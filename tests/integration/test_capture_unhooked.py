"""Bytes that move on a socket where the syscall hooks do not look (issue 11, kind 5), on one
keep-alive connection of tests/tools/tv_moves_http.py each:
- a response body sent with splice() from a pipe, and a request body read with splice() into
  one: hooked (sys_exit_splice counts them as sendfile's are), so every exchange is exact;
- a whole response sent with io_uring (tests/tools/tv_uring_io): no syscall tracepoint sees
  it; the kernel's TCP counters (write_seq) show the bytes at the next event, so its request
  is recorded with status 0 and flags LOST|UNSEEN, the bytes are counted in the summary's
  `unhooked:` line, and the later pairs stay right;
- a whole request read with io_uring: no record for it, counted as an unhooked request in the
  summary (and in `lost`), and its response does not pair with the next request.
Sockfilter mode sees the packets whatever moved them: every exchange exact there."""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_socket_moves as moves  # noqa: E402  (MovesHttp and the mode helpers)
import tvtest  # noqa: E402
from tvtest import RawHttp, http_request as req  # noqa: E402

UNHOOKED_RE = r"unhooked: (\d+) bytes in (\d+) gaps, requests (\d+)"
FLAG_LOST, FLAG_UNSEEN = 4, 32
SPLICE_BODY_PAUSE_S = 0.1  # the request body follows its head late enough to be spliced


def unhooked(err):
    m = re.search(UNHOOKED_RE, err)
    assert m, "no unhooked line in: %s" % err
    return tuple(int(g) for g in m.groups())


def records_by_path(recs):
    return {r["path"]: r for r in recs}


def check_exact(recs, served, err, mode, what, skip=()):
    """Each served request (but those in skip) is one record with its status and body bytes
    and flags 0."""
    want = sorted((m, p, s, n) for m, p, s, n, _ in served if p not in skip)
    got = sorted((r["method"], r["path"], r["status"], r["resp_body_bytes"]) for r in recs
                 if r["path"] not in skip)
    assert got == want, "%s (%s): records %s, served %s\n%s" % (what, mode, got, want, err)
    assert all(r["flags"] == 0 for r in recs if r["path"] not in skip), (what, recs)


def test_splice_response_body_keeps_later_pairs(srv, mode):
    paths = ["/len/1000", "/splice/1100", "/len/1200", "/splice/30000", "/len/1300"]
    with moves.MovesHttp() as s:
        recs, nums, err = moves.server_records(
            srv, s, mode, lambda: moves.keepalive(s.port, paths))
        served = s.served()
    assert len(served) == len(paths), served
    check_exact(recs, served, err, mode, "splice out")
    assert nums["lost"] == 0 and nums["resyncs"] == 0, err
    if mode == "tracepoint":
        assert unhooked(err) == (0, 0, 0), err


def test_splice_request_body(srv, mode):
    body = b"p" * 5000

    def traffic():
        with RawHttp(s.port) as c:
            head = req("POST", "/splicein", body=body)[:-len(body)]
            c.send(head)
            time.sleep(SPLICE_BODY_PAUSE_S)
            c.send(body)
            assert c.read_response() == (200, 2)
            c.send(req("GET", "/len/10"))
            assert c.read_response() == (200, 10)
    with moves.MovesHttp() as s:
        recs, nums, err = moves.server_records(srv, s, mode, traffic)
        served = s.served()
    check_exact(recs, served, err, mode, "splice in")
    post = records_by_path(recs)["/splicein"]
    assert post["req_body_bytes"] == len(body), post
    assert nums["lost"] == 0 and nums["resyncs"] == 0, err
    if mode == "tracepoint":
        assert unhooked(err) == (0, 0, 0), err


def test_io_uring_response_is_a_counted_gap(srv, mode):
    paths = ["/len/10", "/uring/1500", "/len/20", "/len/30"]
    with moves.MovesHttp() as s:
        recs, nums, err = moves.server_records(
            srv, s, mode, lambda: moves.keepalive(s.port, paths))
        served = s.served()
    assert len(served) == len(paths), served
    if mode == "sockfilter":
        check_exact(recs, served, err, mode, "io_uring send")
        return
    check_exact(recs, served, err, mode, "io_uring send", skip=("/uring/1500",))
    r = records_by_path(recs)["/uring/1500"]
    assert r["status"] == 0 and r["flags"] == FLAG_LOST | FLAG_UNSEEN, r
    head = len(b"HTTP/1.1 200 OK\r\nContent-Length: 1500\r\n\r\n")
    assert unhooked(err) == (head + 1500, 1, 0), err
    assert nums["responses_lost"] == 1 and nums["lost"] == 0, err


def test_io_uring_request_is_counted(srv, mode):
    hidden = req("GET", "/len/40")

    def traffic():
        with RawHttp(s.port) as c:
            c.send(req("GET", "/uringnext/%d" % len(hidden)))
            assert c.read_response() == (200, 2)
            c.send(hidden)
            assert c.read_response() == (200, 40)
            c.send(req("GET", "/len/50"))
            assert c.read_response() == (200, 50)
    with moves.MovesHttp() as s:
        recs, nums, err = moves.server_records(srv, s, mode, traffic)
        served = s.served()
    assert len(served) == 3, served
    if mode == "sockfilter":
        check_exact(recs, served, err, mode, "io_uring recv")
        return
    check_exact(recs, served, err, mode, "io_uring recv", skip=("/len/40",))
    assert "/len/40" not in records_by_path(recs), recs
    assert unhooked(err) == (len(hidden), 1, 1), err
    assert nums["lost"] == 1 and nums["parser"] == 1, ("the request counted lost", err)


def main():
    return moves.run_cases_in_modes(globals())


if __name__ == "__main__":
    sys.exit(main())
