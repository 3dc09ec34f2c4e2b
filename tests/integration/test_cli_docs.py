"""What the docs say about the query CLI against what the code does, where they drifted apart
once: proto/PROTOCOL.md's flags table has a row, with the bit of proto/tracevault.proto, for
every name `query --flags` takes; the --pid range query's error states is the one README's
limits table gives for the filter, and both bounds are accepted while one past is refused;
bench/realistic_records.py answers --help (and a missing argument is exit 2) instead of an
IndexError, and still writes the same records for a seed."""
import hashlib
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

SRC = os.environ.get("TV_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
UNREACHABLE = "127.0.0.1:1"


def read(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


def test_flags_table():
    help_text = tvtest.run(["query", "--help"], check=True).stdout
    m = re.search(r"--flags F\s+(.*?): any of them", help_text, re.S)
    assert m, help_text
    names = [n.strip() for n in re.sub(r"\s+", " ", m.group(1)).split(",")]
    assert "unseen" in names, names
    proto_bits = {name: int(bit) for bit, name in
                  re.findall(r"^\s*//\s+(\d+) ([A-Z_]+):", read("proto/tracevault.proto"), re.M)}
    table = {name: int(bit) for bit, name in
             re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", read("proto/PROTOCOL.md"), re.M)}
    for n in names:
        assert n.upper() in proto_bits, (n, proto_bits)
        assert table.get(n.upper()) == proto_bits[n.upper()], \
            ("PROTOCOL.md flags table", n, table, proto_bits)
    print("ok PROTOCOL.md flags table has %s" % ", ".join(names))


def test_pid_range():
    p = tvtest.run(["query", "--server", UNREACHABLE, "--from", "0", "--pid", "4294967296"])
    assert p.returncode == 2, p
    m = re.search(r"is not a pid \((\d+) to (\d+)\)", p.stderr)
    assert m, p.stderr
    lo, hi = m.group(1), m.group(2)
    row = [line for line in read("README.md").splitlines()
           if line.startswith("| `--pid` (query")]
    assert len(row) == 1 and ("| %s to %s" % (lo, hi)) in row[0], (row, lo, hi)
    for ok in (lo, hi):  # accepted: the query then fails on the unreachable server, exit 1
        p = tvtest.run(["query", "--server", UNREACHABLE, "--from", "0", "--pid", ok])
        assert p.returncode == 1 and "cannot reach server" in p.stderr, (ok, p)
    assert "%s to %s" % (lo, hi) in tvtest.run(["query", "--help"]).stdout
    print("ok --pid %s to %s in the error, --help and README" % (lo, hi))


def test_realistic_records():
    script = os.path.join(SRC, "bench", "realistic_records.py")
    p = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "usage: realistic_records.py" in p.stdout, p
    assert "OUT N [TRACE_FRACTION] [SEED]" in p.stdout, p.stdout
    p = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "usage:" in p.stderr and "Traceback" not in p.stderr, p
    with tempfile.TemporaryDirectory() as d:
        digests = []
        for run in range(2):
            out = os.path.join(d, "r%d" % run)
            subprocess.run([sys.executable, script, out, "200", "0.5", "7"], check=True,
                           timeout=60)
            with open(out + ".jsonl", "rb") as f:
                body = f.read()
            assert body.count(b"\n") == 200, body[:200]
            with open(out + ".pb", "rb") as f:
                digests.append(hashlib.sha256(body + f.read()).hexdigest())
        assert digests[0] == digests[1], digests
    print("ok realistic_records.py --help, usage error, same records per seed")


def main():
    test_flags_table()
    test_pid_range()
    test_realistic_records()
    print("PASS")


if __name__ == "__main__":
    main()
