"""tv_load, the test-only driver of the real client pipeline (tests/tools/tv_load.c): Loader runs
it command by command; the keys of the records it wrote, read back with query; and the
client's block placement over several servers (place_block), computed independently."""
import os
import subprocess
import tempfile

from .procs import binary, run


FAIL_LINE_RE = (r"^tracevault: segment ([0-9a-f]{16}) failed: (.*); dropped (\d+) blocks, "
                r"(\d+) records, ts \[(\d+), (\d+)\]; cleanup: (.*)$")


class Loader:
    """A running tv_load. Each command waits for its one answer line on stdout (the readiness
    signal); stderr (the pipeline's failure lines) goes to a file read by stderr_text()."""

    def __init__(self, servers, records, extra_args=(), tag=0, ts_base_ns=None):
        import queue
        import threading
        self.tag = tag
        self.ts_base_ns = ts_base_ns if ts_base_ns is not None else 1767225600 * 10**9 + tag * 10**12
        fd, self.err_path = tempfile.mkstemp(prefix="tv-load-", suffix=".err")
        os.close(fd)
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [binary("tv_load"), "--server", servers, "--records", str(records),
                 "--tag", str(tag), "--ts-base", str(self.ts_base_ns)] + list(extra_args),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        self.lines = queue.Queue()
        # a reader thread turns stdout lines into a queue, so every wait has a timeout
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            first = self._line(60)
            if first != "ready":
                raise AssertionError("tv_load did not start: %r %s" % (first, self.stderr_text()))
        except BaseException:
            self.kill()
            os.unlink(self.err_path)  # the caller gets no object to clean up
            raise

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _line(self, timeout):
        import queue
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("tv_load gave no answer within %ss; stderr: %s"
                                 % (timeout, self.stderr_text()))
        if line is None:
            raise AssertionError("tv_load exited (%s): %s" % (self.proc.wait(), self.stderr_text()))
        return line

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def command(self, command, timeout=120):
        self.send(command)
        return self._line(timeout)

    def answer(self, timeout=120):
        """The answer to a command sent earlier with send()."""
        return self._line(timeout)

    def poll_answer(self):
        """An answer line if one is waiting, else None (never blocks)."""
        import queue
        try:
            line = self.lines.get_nowait()
        except queue.Empty:
            return None
        if line is None:
            raise AssertionError("tv_load exited (%s): %s" % (self.proc.wait(), self.stderr_text()))
        return line

    @staticmethod
    def parse_segment(line):
        """'segment ok first F count N refused K[ seqs A-B,...]' -> dict with the seqs stored
        if the segment committed (the range minus the refused runs)."""
        w = line.split()
        if len(w) < 8 or w[0] != "segment" or w[1] not in ("ok", "failed"):
            raise AssertionError("unexpected tv_load answer %r" % line)
        first, count, refused = int(w[3]), int(w[5]), int(w[7])
        refused_seqs = set()
        if len(w) > 8:
            for seq_run in w[9].split(","):
                a, b = seq_run.split("-")
                refused_seqs.update(range(int(a), int(b) + 1))
        assert len(refused_seqs) == refused, line
        return {"ok": w[1] == "ok", "first": first, "count": count, "refused": refused,
                "seqs": [s for s in range(first, first + count) if s not in refused_seqs]}

    def segment(self, n=None, timeout=120):
        return self.parse_segment(self.command("segment" + ("" if n is None else " %d" % n),
                                               timeout))

    def stats(self):
        import json
        return json.loads(self.command("stats", 30))

    def ts_of(self, seq):
        return self.ts_base_ns + seq

    def stderr_text(self):
        with open(self.err_path) as f:
            return f.read()

    def failure_lines(self):
        import re
        return [re.match(FAIL_LINE_RE, line).groups() for line in self.stderr_text().splitlines()
                if re.match(FAIL_LINE_RE, line)]

    def quit(self, timeout=60):
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("tv_load did not quit within %ss" % timeout)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.close()  # EOF: the driver frees the pipeline and exits
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self.kill()
            os.unlink(self.err_path)


def loader_path_key(path):
    """(tag, seq) from a tv_load record path /tvload/<tag>/<seq>/<pad>, or None."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "tvload":
        return None
    return int(parts[2]), int(parts[3])


def query_keys(servers, from_ns=0, to_ns=2**63, extra=()):
    """`tracevault query` over servers: the (tag, seq) keys in output order, and the ts_ns list."""
    import json
    p = run(["query", "--server", servers, "--from", str(from_ns), "--to", str(to_ns)]
            + list(extra), timeout=300, check=True)
    keys, ts = [], []
    for line in p.stdout.splitlines():
        obj = json.loads(line)
        keys.append(loader_path_key(obj["path"]))
        ts.append(obj["ts_ns"])
    return keys, ts


def place_block(block_id, nservers):
    """tv_place_block (client/write/grpc_writer.c): jump consistent hash, computed independently."""
    if nservers <= 1:
        return 0
    b, j, key = -1, 0, block_id
    while j < nservers:
        b = j
        key = (key * 2862933555777941757 + 1) & (2**64 - 1)
        j = int(float(b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b
