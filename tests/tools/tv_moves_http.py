#!/usr/bin/python3
"""Test-only HTTP/1.x server whose connections move between processes and descriptors, end
without a close() and carry bytes the capture's syscall hooks do not see (the integration tests
test_capture_socket_moves.py, test_capture_conn_end.py, test_capture_unhooked.py).

Usage: tv_moves_http.py --log FILE [--dispatch D] [--end E] [--uring PATH]
Listens on 127.0.0.1 on a free port, prints 'port N' once listening, then serves until SIGTERM.
Each connection is served, keep-alive, by (--dispatch):
  plain  the accepting process itself
  fork   a forked child (the parent closes its descriptor at once and goes back to accept)
  dup2   the accepting process through dup2(fd, 100) after closing fd
  dup    the accepting process: the first request on fd, which it then closes, the rest on a dup
  scm    a worker process that got the descriptor over a unix socket (SCM_RIGHTS); the
         acceptor closes its own
Requests:
  GET /len/N           200, N bytes of 'x', Content-Length
  GET /splice/N        200, the head with send, the N body bytes with splice() from a pipe
  POST /splicein       the Content-Length body read with splice() into a pipe; 200 "ok"
  GET /uring/N         the whole 200 response (N body bytes) sent with io_uring (--uring)
  GET /uringnext/L     200 "ok"; then the next request, L bytes, is read with io_uring
  GET /eof/N           HTTP/1.0 200 without a length, N bytes, then the connection ends as
                       --end says, with the serving process:
    close      close()
    exit       os._exit(0), no close()
    kill       prints 'wrote PID' and waits for SIGKILL
    exec       execs /bin/sleep 60 (the socket is O_CLOEXEC)
    closerange close_range() over the descriptor, then waits
    dup2over   dup2(/dev/null, fd), then waits
    shutdown   shutdown(SHUT_WR), then close() 1 s later
    lastref    dup(fd), close(fd), close(dup) 1 s later
Every answered request is logged to FILE as 'METHOD PATH STATUS BODY_BYTES PID'."""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time

LINGER_S = 60       # how long a process waiting to be killed waits at most
LATER_CLOSE_S = 1.0  # shutdown/lastref: the close that comes after the end of the body
HEAD_MAX = 65536

args = None


def log(method, path, status, n):
    with open(args.log, "a") as f:
        f.write("%s %s %d %d %d\n" % (method, path, status, n, os.getpid()))


def read_head(sock, buf):
    """(head bytes, rest) or (None, buf) at the end of the stream."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > HEAD_MAX:
            return None, buf
        d = sock.recv(65536)
        if not d:
            return None, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def content_length(head):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return int(v.strip())
    return 0


def splice_exactly(src_fd, dst_fd, n):
    while n > 0:
        k = os.splice(src_fd, dst_fd, n)
        if k <= 0:
            raise OSError("splice moved nothing")
        n -= k


def uring(fd, op, data=b"", n=0):
    cmd = [args.uring, str(fd), op] + ([str(n)] if op == "recv" else [])
    p = subprocess.run(cmd, input=data, capture_output=True, pass_fds=(fd,), timeout=30)
    if p.returncode != 0:
        raise OSError("tv_uring_io: %s" % p.stderr.decode(errors="replace"))
    return p.stdout


def end_connection(sock):
    fd = sock.detach()
    e = args.end
    if e == "close":
        os.close(fd)
        return
    if e == "exit":
        os._exit(0)
    if e == "kill":
        print("wrote %d" % os.getpid(), flush=True)
        time.sleep(LINGER_S)
        os._exit(1)
    if e == "exec":
        sys.stdout.flush()
        os.execv("/bin/sleep", ["sleep", str(LINGER_S)])
    if e == "closerange":
        os.closerange(fd, fd + 1)  # close_range(2) where the kernel has it
        time.sleep(LINGER_S)
        os._exit(1)
    if e == "dup2over":
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, fd)
        time.sleep(LINGER_S)
        os._exit(1)
    if e == "shutdown":
        s = socket.socket(fileno=fd)
        s.shutdown(socket.SHUT_WR)
        time.sleep(LATER_CLOSE_S)
        s.close()
        return
    if e == "lastref":
        fd2 = os.dup(fd)
        os.close(fd)
        time.sleep(LATER_CLOSE_S)
        os.close(fd2)
        return
    raise ValueError(e)


def serve(sock, first_fd=None):
    """Serves one connection until the client closes it or a /eof request ends it. first_fd
    (dispatch dup): after the first request, that descriptor is closed and sock (a dup) goes
    on."""
    buf = b""
    uring_next = 0
    while True:
        if uring_next:
            buf += uring(sock.fileno(), "recv", n=uring_next)
            uring_next = 0
        head, buf = read_head(sock, buf)
        if head is None:
            sock.close()
            return
        method, path = head.split(b"\r\n")[0].decode().split(" ")[:2]
        body_len = content_length(head)
        kind, _, arg = path[1:].partition("/")
        if method == "POST" and kind == "splicein":
            take = min(len(buf), body_len)
            buf = buf[take:]
            r, w = os.pipe()
            splice_exactly(sock.fileno(), w, body_len - take)
            os.close(w)
            while os.read(r, 65536):
                pass
            os.close(r)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            log(method, path, 200, 2)
        elif kind == "len":
            n = int(arg)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"x" * n)
            log(method, path, 200, n)
        elif kind == "splice":
            n = int(arg)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            r, w = os.pipe()
            os.write(w, b"s" * n)  # n <= 64 KiB: fits the pipe
            os.close(w)
            splice_exactly(r, sock.fileno(), n)
            os.close(r)
            log(method, path, 200, n)
        elif kind == "uring":
            n = int(arg)
            uring(sock.fileno(), "send",
                  b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"u" * n)
            log(method, path, 200, n)
        elif kind == "uringnext":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            log(method, path, 200, 2)
            uring_next = int(arg) - len(buf)
        elif kind == "eof":
            n = int(arg)
            sock.sendall(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n" + b"e" * n)
            log(method, path, 200, n)
            end_connection(sock)
            return
        else:
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            log(method, path, 404, 0)
        if first_fd is not None:
            os.close(first_fd)  # one descriptor of two: the connection goes on
            first_fd = None


def worker(chan):
    """dispatch scm: serves each connection whose descriptor arrives on chan."""
    while True:
        msg, fds, _, _ = socket.recv_fds(chan, 16, 1)
        if not fds:
            os._exit(0)
        serve(socket.socket(fileno=fds[0]))


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--dispatch", default="plain",
                    choices=("plain", "fork", "dup2", "dup", "scm"))
    ap.add_argument("--end", default="close",
                    choices=("close", "exit", "kill", "exec", "closerange", "dup2over",
                             "shutdown", "lastref"))
    ap.add_argument("--uring", default="")
    args = ap.parse_args()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked children are reaped by the kernel
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    chan = None
    if args.dispatch == "scm":
        chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.fork() == 0:
            ls.close()
            chan.close()
            worker(theirs)
        theirs.close()
    print("port %d" % ls.getsockname()[1], flush=True)
    while True:
        conn, _ = ls.accept()
        if args.dispatch == "plain":
            serve(conn)
        elif args.dispatch == "fork":
            if os.fork() == 0:
                ls.close()
                serve(conn)
                os._exit(0)
            conn.close()
        elif args.dispatch == "dup2":
            fd = conn.detach()
            os.dup2(fd, 100)
            os.close(fd)
            serve(socket.socket(fileno=100))
        elif args.dispatch == "dup":
            fd = conn.detach()
            serve(socket.socket(fileno=os.dup(fd)), first_fd=fd)
        else:
            socket.send_fds(chan, [b"c"], [conn.fileno()])
            conn.close()


if __name__ == "__main__":
    main()
