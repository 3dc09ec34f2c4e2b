"""The client waits for a server whose answers are slow (issue 10 kind 7; shared case rel-11):
through a proxy on 127.0.0.1 that delays every chunk 100 ms each way (a 200 ms round trip, as a
WAN link or a busy server), put and query must succeed. gRPC 1.51's minimum connect timeout was
set to 100 ms by our reconnect backoff, so they gave up after ~0.15 s with "TCP connects but no
gRPC server answers"."""
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

DELAY_S = 0.1


class DelayProxy:
    """127.0.0.1:port -> target, each chunk forwarded DELAY_S after it arrived. Threads, one
    pair per connection; stopped by close(), which shuts every socket."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.socks = [self.ls]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            s = socket.create_connection(self.target)
            self.socks += [c, s]
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                time.sleep(DELAY_S)
                dst.sendall(data)
        except OSError:
            return

    def close(self):
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def main():
    tmp = tempfile.mkdtemp(prefix="tv-slow-")
    proxy = None
    try:
        with tvtest.Server() as srv:
            proxy = DelayProxy(srv.addr)
            via = "127.0.0.1:%d" % proxy.port
            path = os.path.join(tmp, "in.jsonl")
            with open(path, "w") as f:
                f.write('{"ts_ns":1764000000000000000,"path":"/slow"}\n')
            start = time.monotonic()
            p = tvtest.run(["put", "--server", via, path], timeout=60)
            assert p.returncode == 0, "put through a 200 ms round trip: exit %d after %.2f s: %s" % (
                p.returncode, time.monotonic() - start, p.stderr.strip())
            p = tvtest.run(["query", "--server", via, "--from", "0", "--to",
                            "1765000000000000000"], timeout=60)
            assert p.returncode == 0 and '"path":"/slow"' in p.stdout and \
                len(p.stdout.splitlines()) == 1, (p.returncode, p.stdout, p.stderr)
            print("ok   put and query through a 200 ms round trip")
        print("1 of 1 tests passed")
        return 0
    finally:
        if proxy:
            proxy.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
