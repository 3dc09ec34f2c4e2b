"""put + query against the real tracevaultd: 100k generated records imported in random order,
several time windows compared with a reference computed here (exact records, order, fields),
the same answers after a restart on the same data dir, appends, --limit and the table form;
lines the store cannot hold (ts_ns past 2^63-1, a status no response carries, a trace id that
is not W3C hex) refused by put with FILE:LINE, the whole file with them."""
import datetime
import json
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

FIELDS = ["ts_ns", "end_ns", "latency_ns", "pid", "comm", "local", "remote", "method", "path",
          "status", "req_body_bytes", "resp_body_bytes", "trace_id", "span_id", "flags", "role",
          "host", "http_version"]
BASE_NS = 1767225600 * 10**9          # 2026-01-01T00:00:00Z
SPAN_NS = 2 * 3600 * 10**9            # records spread over two hours
N_RECORDS = 100_000
N_MORE = 3000                         # second put: ~225 KB block, several 64 KiB chunks
# strings a naive JSON writer gets wrong: quotes, backslashes, control bytes, non-ASCII
ODD_PATHS = ['/q?a="b"&c=\\d', "/tab\there", "/nl\nline", "/caf\u00e9/\u20ac/\U0001F600",
             "/ctl\x01\x1f", "/" + "x" * 300]


EDGE_NS = BASE_NS - 3600 * 10**9     # the edge records of the table test, before the rest
EDGES = [
    {"method": "PROPFIND", "comm": "a-command-name-of-20", "path": "/" + "p" * 39},
    {"method": "OPTIONS", "comm": "exactly-16-bytes", "path": "/" + "q" * 40},
    {"method": "", "comm": "", "path": "", "remote": "", "status": 0, "pid": 0, "latency_ns": 0},
    {"method": "G\tT", "comm": "w\u00f6rker", "path": "/caf\u00e9\x01", "remote": "[::1]:443"},
    {"status": 999, "pid": 2**32 - 1, "latency_ns": 123456789012345, "remote":
     "[2001:db8::1234:5678:9abc]:65535"},
    {"latency_ns": 1499, "path": "/" + "\u20ac" * 20},
    # a host wider than its column (24) is cut; one of exactly 24 is not
    {"host": "a-rather-long-host-name.example.com:65535", "role": "client", "http_version": "1.0"},
    {"host": "h" * 24, "role": "", "http_version": ""},
    # u64 fields past jansson's int64, as query prints them: put reads them back (rel-15)
    {"end_ns": 2**64 - 1, "latency_ns": 2**63, "req_body_bytes": 2**64 - 1,
     "resp_body_bytes": 2**63},
]


def make_record(rng, ts_ns):
    latency = rng.randrange(0, 5 * 10**9)
    trace = rng.random() < 0.5
    return {
        "ts_ns": ts_ns,
        "end_ns": ts_ns + latency,
        "latency_ns": latency,
        "pid": rng.randrange(1, 2**32),
        "comm": rng.choice(["nginx", "curl", "python3", "", "w\u00f6rker"]),
        "local": "127.0.0.1:%d" % rng.randrange(1, 65536),
        "remote": rng.choice(["127.0.0.1:%d" % rng.randrange(1, 65536), "[::1]:443", ""]),
        "method": rng.choice(["GET", "POST", "PUT", "DELETE", "HEAD"]),
        "path": rng.choice(ODD_PATHS) if rng.random() < 0.05
        else "/item/%d?x=%d" % (rng.randrange(10**6), rng.randrange(10**9)),
        "status": rng.choice([200, 201, 204, 301, 404, 500, 0, 100, 999]),
        "req_body_bytes": rng.randrange(0, 2**40),
        "resp_body_bytes": rng.choice([0, rng.randrange(0, 2**64)]),
        "trace_id": "%032x" % rng.getrandbits(128) if trace else "",
        "span_id": "%016x" % rng.getrandbits(64) if trace else "",
        "flags": rng.choice([0, 0, 0, 1, 2, 3, 2**32 - 1]),
        "role": rng.choice(["server", "client", ""]),
        "host": rng.choice(["example.com", "127.0.0.1:%d" % rng.randrange(1, 65536), "[::1]:8080",
                            ""]),
        "http_version": rng.choice(["1.1", "1.0", ""]),
    }


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def query(addr, frm, to, fmt="jsonl", extra=()):
    p = tvtest.run(["query", "--server", addr, "--from", str(frm), "--to", str(to),
                    "--format", fmt] + list(extra), timeout=300, check=True)
    return p.stdout


def query_records(addr, frm, to, extra=()):
    out = query(addr, frm, to, extra=extra)
    recs = []
    for line in out.splitlines():
        obj = json.loads(line)
        assert list(obj.keys()) == FIELDS, "field names/order: %r" % list(obj.keys())
        recs.append(obj)
    return recs


def reference(records, frm, to):
    return sorted((r for r in records if frm <= r["ts_ns"] < to), key=lambda r: r["ts_ns"])


def check_window(addr, records, frm, to, label, expect_min=0):
    got = query_records(addr, frm, to)
    want = reference(records, frm, to)
    assert len(want) >= expect_min, "%s: test setup gives %d records" % (label, len(want))
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                     min(len(got), len(want)))
        raise AssertionError("%s [%d, %d): got %d records, want %d; first difference at %d:"
                             "\n got  %r\n want %r" % (label, frm, to, len(got), len(want), first,
                                                       got[first] if first < len(got) else None,
                                                       want[first] if first < len(want) else None))
    print("ok %-28s %7d records" % (label, len(got)))


def rfc3339_ns(ts_ns):
    secs, ns = divmod(ts_ns, 10**9)
    dt = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % ns


def windows(records):
    ts = sorted(r["ts_ns"] for r in records)
    lo, hi = ts[0], ts[-1]
    i, j = len(ts) // 3, 2 * len(ts) // 3
    return [
        ("whole span", lo, hi + 1, len(ts)),
        ("middle, edges between", ts[i] + 1, ts[j] - 1, j - i - 1),
        ("edges on record ts", ts[i], ts[j], j - i),    # ts[i] in, ts[j] out
        ("single record", ts[i], ts[i] + 1, 1),
        ("gap between records", ts[i] + 1, ts[i + 1], 0),
        ("before all data", lo - 10**9, lo, 0),
        ("after all data", hi + 1, hi + 10**9, 0),
    ]


# (line, reason): what the store cannot hold, refused by put on its line (README "put"); a ts_ns
# past 2^63-1 used to pass put and fail the whole segment on the server instead
REFUSED = [
    ('{"ts_ns": %d}' % 2**63, "field 'ts_ns' 9223372036854775808 is beyond 2^63-1 ns"),
    ('{"ts_ns": %d, "status": 70000}' % (EDGE_NS - 10), "field 'status' 70000 is not 0"),
    ('{"ts_ns": %d, "trace_id": "xyz"}' % (EDGE_NS - 10),
     "field 'trace_id' must be \"\" or 32 hex digits: 'xyz'"),
    ('{"ts_ns": %d, "span_id": "0000000000000000"}' % (EDGE_NS - 10),
     "field 'span_id' is all zeros"),
]


def check_refused_lines(srv, tmp):
    """A file of good lines and one refused line (line 7): exit 1 with one stderr line
    FILE:7: reason, and none of the file's lines stored (README: the whole file is refused)."""
    frm, to = EDGE_NS - 1000, EDGE_NS - 900  # before every record of the test
    for n, (line, reason) in enumerate(REFUSED):
        path = os.path.join(tmp, "refused%d.jsonl" % n)
        good = [json.dumps({"ts_ns": frm + i, "path": "/r%d" % i}) for i in range(10)]
        lines = good[:6] + [line] + good[6:]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = tvtest.run(["put", "--server", srv.addr, path])
        want = "tracevault: %s:7: %s" % (path, reason)
        assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and \
            p.stderr.startswith(want), (want, p.returncode, p.stderr)
        assert query(srv.addr, frm, to) == "", "a refused file left records"
        print("ok refused: %s" % p.stderr.strip())
    # the same lines with the bad one fixed go in whole
    path = os.path.join(tmp, "fixed.jsonl")
    with open(path, "w") as f:
        f.write("".join(json.dumps({"ts_ns": frm + i, "trace_id": "AB" * 16}) + "\n"
                        for i in range(3)))
    tvtest.run(["put", "--server", srv.addr, path], check=True)
    got = [json.loads(x)["trace_id"] for x in query(srv.addr, frm, to).splitlines()]
    assert got == ["ab" * 16] * 3, got  # upper-case ids are stored lower-case


def main():
    rng = random.Random(20260101)
    tss = rng.sample(range(BASE_NS, BASE_NS + SPAN_NS), N_RECORDS)  # unique, random order
    records = [make_record(rng, t) for t in tss]
    tmp = tempfile.mkdtemp(prefix="tv-putq-")
    path = os.path.join(tmp, "records.jsonl")
    write_jsonl(path, records)

    srv = tvtest.Server().start()
    try:
        p = tvtest.run(["put", "--server", srv.addr, path], timeout=300, check=True)
        assert p.stdout == "", "put wrote to stdout: %r" % p.stdout[:200]
        assert "put %d records in " % N_RECORDS in p.stderr, p.stderr
        # 100k records of ~300 bytes are > 4 MiB raw: the import must span several blocks
        nblocks = int(p.stderr.split(" in ")[1].split()[0])
        assert nblocks >= 2, p.stderr

        wins = windows(records)
        for label, frm, to, expect in wins:
            check_window(srv.addr, records, frm, to, label)
            assert len(reference(records, frm, to)) == expect, label

        # the same window given as RFC 3339 with nanoseconds and as an offset time
        _, frm, to, _ = wins[2]
        assert query(srv.addr, rfc3339_ns(frm), rfc3339_ns(to)) == query(srv.addr, frm, to)
        frm_s = (frm // 10**9) * 10**9
        off = datetime.datetime.fromtimestamp(frm_s // 10**9, datetime.timezone(
            datetime.timedelta(hours=5, minutes=30))).isoformat()
        assert query(srv.addr, off, to) == query(srv.addr, frm_s, to)
        print("ok rfc3339 forms")

        # --limit: the first N of the window, in order
        got = query_records(srv.addr, wins[0][1], wins[0][2], extra=["--limit", "25"])
        assert got == reference(records, wins[0][1], wins[0][2])[:25]
        print("ok --limit")

        # restart on the same data dir: everything committed is served again, identically
        assert srv.stop() == 0, "tracevaultd exit status after SIGTERM"
        srv.start()  # the same object: its log and data dir are removed once, by cleanup
        for label, frm, to, _ in wins:
            check_window(srv.addr, records, frm, to, "after restart: " + label)

        # a second put appends: its records interleave with the first ones in every answer
        taken = set(tss)
        more_ts = set()
        while len(more_ts) < N_MORE:
            t = rng.randrange(BASE_NS, BASE_NS + SPAN_NS)
            if t not in taken:
                more_ts.add(t)
        more = [make_record(rng, t) for t in more_ts]
        path2 = os.path.join(tmp, "more.jsonl")
        write_jsonl(path2, more)
        # small messages: the block goes out as several chunks at increasing offsets
        p = tvtest.run(["put", "--server", srv.addr, "--max-message-bytes", "65536", path2],
                       check=True)
        assert "put %d records in 1 block\n" % N_MORE in p.stderr, p.stderr
        records += more
        for label, frm, to, _ in windows(records)[:3]:
            check_window(srv.addr, records, frm, to, "after append: " + label)

        # table: a header and one row per record, every column of every row equal to the
        # reference (1000 rows: the odd paths, every comm, statuses 0 and 999 among them)
        ts = sorted(r["ts_ns"] for r in records)
        frm, to = ts[500], ts[1500]
        want = reference(records, frm, to)
        assert len(want) == 1000
        tvtest.check_table(query(srv.addr, frm, to, fmt="table"), want, "table of 1000 records")
        out = query(srv.addr, ts[0] - 10, ts[0], fmt="table")
        assert out == tvtest.TABLE_HEADER + "\n", out

        # put - reads stdin; its records are the edge cases of each table column: cut method,
        # path and comm, control bytes shown as "?" and printable UTF-8 as it is, wide numbers, IPv6 remote
        edge = [dict(make_record(rng, EDGE_NS + i), **e) for i, e in enumerate(EDGES)]
        p = tvtest.run(["put", "--server", srv.addr, "-"], check=True,
                       input="".join(json.dumps(r) + "\n" for r in edge))
        assert "put %d records in 1 block\n" % len(edge) in p.stderr, p.stderr
        assert query_records(srv.addr, EDGE_NS, EDGE_NS + len(edge)) == edge
        tvtest.check_table(query(srv.addr, EDGE_NS, EDGE_NS + len(edge), fmt="table"), edge,
                           "table of edge records")
        print("ok table")

        check_refused_lines(srv, tmp)
    finally:
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
