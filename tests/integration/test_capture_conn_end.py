"""A connection that ends without a close() of its descriptor (issue 11, kind 3): the server
(tests/tools/tv_moves_http.py) answers GET /eof/300 with an HTTP/1.0 body delimited by the end of
the connection, then the connection ends by the process exiting, a SIGKILL, an exec (the
descriptor is O_CLOEXEC), close_range(), a dup2() over the descriptor, or shutdown(SHUT_WR)
(the close comes 1 s later); or the last of two descriptors is closed 1 s after the first.

The exchange must end when the connection really ends, the moment the client saw the end of the
body (its latency in ms, not the time until the capture stops), with its 300 body bytes, in
tracepoint mode (our FIN from sock/inet_sock_set_state) and sockfilter mode (the server's FIN);
after a close of one of two descriptors it must not end. In tracepoint mode the kernel's entry
of the socket must be gone once TCP has closed it (it leaked when only close() was hooked)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_socket_moves as moves  # noqa: E402  (MovesHttp and the mode helpers)
import tvtest  # noqa: E402

BODY_BYTES = 300
# The record ends at our FIN; the client sees it a few ms later at most on loopback, and the
# capture runs on for SETTLE_S after: a record ending at the capture's end is far past this.
END_SLACK_NS = 100 * 1000 * 1000
SETTLE_S = 1.5
LATER_CLOSE_NS = 1000 * 1000 * 1000  # tv_moves_http.py LATER_CLOSE_S
MAP_WAIT_S = 5


def bpftool(*args):
    p = subprocess.run(["bpftool"] + list(args) + ["-j"], capture_output=True, text=True,
                       timeout=30, check=True)
    return json.loads(p.stdout or "[]")


def bpf_maps(name):
    """{id} of the loaded BPF maps called name."""
    return {m["id"] for m in bpftool("map", "show") if m.get("name") == name}


def map_entries(map_id):
    return len(bpftool("map", "dump", "id", str(map_id)))


def eof_exchange(server, end):
    """GET /eof/300 as HTTP/1.0, read to the end of the stream (for end 'kill', SIGKILL the
    server once the body is in). Returns (body bytes, wall-clock ns when the client saw the
    end)."""
    c = socket.create_connection(("127.0.0.1", server.port), 10)
    try:
        c.sendall(b"GET /eof/%d HTTP/1.0\r\nHost: t\r\n\r\n" % BODY_BYTES)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < BODY_BYTES:
            d = c.recv(65536)
            assert d, "the server ended the stream early: %r" % data
            data += d
        if end == "kill":
            line = server.proc.stdout.readline()
            assert line.startswith("wrote "), line
            os.kill(int(line.split()[1]), signal.SIGKILL)
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
        return len(data.split(b"\r\n\r\n", 1)[1]), time.time_ns()
    finally:
        c.close()


def check_end(srv, mode, end, dispatch="plain"):
    before = bpf_maps("sockets")
    with moves.MovesHttp("--dispatch", dispatch, "--end", end) as s:
        seen = {}

        def traffic():
            seen["body"], seen["eof_ns"] = eof_exchange(s, end)
            if mode == "tracepoint":
                ours = bpf_maps("sockets") - before
                assert len(ours) == 1, ours
                (seen["map"],) = ours
                tvtest.wait_for(lambda: map_entries(seen["map"]) == 0,
                                "the socket's entry leaving the kernel's map", MAP_WAIT_S)
            time.sleep(SETTLE_S)
        recs, nums, err = moves.server_records(srv, s, mode, traffic)
    assert seen["body"] == BODY_BYTES, seen
    assert len(recs) == 1, (end, mode, recs, err)
    r = recs[0]
    assert (r["method"], r["path"], r["status"], r["resp_body_bytes"], r["flags"]) == \
        ("GET", "/eof/%d" % BODY_BYTES, 200, BODY_BYTES, 0), (end, mode, r)
    assert r["end_ns"] <= seen["eof_ns"] + END_SLACK_NS, (
        "the exchange ended %.0f ms after the client saw its end (%s, %s)"
        % ((r["end_ns"] - seen["eof_ns"]) / 1e6, end, mode), r)
    assert nums["lost"] == 0, err
    return r


def test_exit_without_close(srv, mode):
    check_end(srv, mode, "exit")


def test_forked_child_exits_without_close(srv, mode):
    """The parent that accepted closed its descriptor at once: not the end; the child's exit
    is."""
    check_end(srv, mode, "exit", dispatch="fork")


def test_kill9_of_the_owner(srv, mode):
    check_end(srv, mode, "kill")


def test_exec_closes_cloexec_descriptor(srv, mode):
    check_end(srv, mode, "exec")


def test_close_range(srv, mode):
    check_end(srv, mode, "closerange")


def test_dup2_over_the_descriptor(srv, mode):
    check_end(srv, mode, "dup2over")


def test_shutdown_wr_ends_the_body_before_the_close(srv, mode):
    r = check_end(srv, mode, "shutdown")
    assert r["end_ns"] - r["ts_ns"] < LATER_CLOSE_NS / 2, ("ended at shutdown, not close", r)


def test_last_of_two_descriptors_ends_it(srv, mode):
    """close() of one of two descriptors sends no FIN: the body goes on until the second."""
    r = check_end(srv, mode, "lastref")
    assert r["end_ns"] - r["ts_ns"] >= LATER_CLOSE_NS * 0.9, ("ended at the first close", r)


def test_socket_closed_before_accept_or_connect_returns(srv, mode):
    """A socket that reached TCP_CLOSE before accept/connect returned: a non-blocking connect
    refused on loopback (the RST is handled before connect returns EINPROGRESS) and a
    connection the client reset while it waited in the accept queue. sock_state saw their
    TCP_CLOSE before they were in the map; their entries must not stay there (they did, each
    raising a filter slot and leaving user space a connection it never closed), and an exchange
    after them is recorded from both ends as usual. Tracepoint mode chooses by --pid (this
    process is both ends): with --port the closed sockets would not pass, TCP_CLOSE having
    cleared their local port."""
    import struct
    n = 20
    before = bpf_maps("sockets")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on port: connects are refused
    seen = {}

    def traffic():
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
            time.sleep(0.002)
            s.close()
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(n + 1)
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port), 10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # a reset, before the server accepts
        time.sleep(0.1)
        resets = [ls.accept()[0] for _ in range(n)]
        for a in resets:
            a.close()
        c = socket.create_connection(("127.0.0.1", port), 10)
        a, _ = ls.accept()
        c.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        assert a.recv(4096).startswith(b"GET /after ")
        a.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert c.recv(4096).endswith(b"ok")
        c.close()
        a.close()
        ls.close()
        if mode == "tracepoint":
            ours = bpf_maps("sockets") - before
            assert len(ours) == 1, ours
            (seen["map"],) = ours
            tvtest.wait_for(lambda: map_entries(seen["map"]) == 0,
                            "the kernel's map empty once every socket closed", MAP_WAIT_S)
    args = moves.mode_args(mode, port) if mode == "sockfilter" else ["--pid", str(os.getpid())]
    recs, nums, err = tvtest.capture_records(srv, args, traffic)
    got = sorted((r["role"], r["method"], r["path"], r["status"], r["flags"]) for r in recs)
    assert got == [("client", "GET", "/after", 200, 0), ("server", "GET", "/after", 200, 0)], \
        (mode, recs, err)
    assert nums["lost"] == 0, err


def main():
    return moves.run_cases_in_modes(globals())


if __name__ == "__main__":
    sys.exit(main())
