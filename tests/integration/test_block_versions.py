"""Block versions side by side on one real tracevaultd: records put by the CLI (the writer's
default, version 3: pages, a ts index, a trace-id filter), version 2 blocks written by the
v2 encoder of tvtest.blocks (what servers stored before version 3), and version 3 blocks
written by tvtest.blocks.encode_block_v3 from BLOCK.md alone (zstd and plain columns, odd
trace and span ids, headers kept as protobuf), in overlapping time ranges. Every query answer (whole range, 1-minute windows, limits, --trace-id of a record of
each version and of no record) is compared record for record with a reference computed here;
then tracevaultd --scrub verifies both versions, and a damaged page of a version 3 block is
found by scrub and quarantined."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block_v2, encode_block_v3  # noqa: E402
from tvtest.grpc_client import GrpcClient, grpc_modules  # noqa: E402

FIELDS = ["ts_ns", "end_ns", "latency_ns", "pid", "comm", "local", "remote", "method", "path",
          "status", "req_body_bytes", "resp_body_bytes", "trace_id", "span_id", "flags", "role",
          "host", "http_version"]
BASE_NS = 1767225600 * 10**9
SPAN_NS = 10 * 60 * 10**9     # ten minutes
N_V3 = 6000
N_V2 = 3000                   # in 3 blocks of one segment
N_PY3 = 5000                  # in 2 blocks of one segment, pages of 1000


def make_record(rng, ts_ns):
    lat = rng.randrange(0, 10**9)
    traced = rng.random() < 0.3
    return {"ts_ns": ts_ns, "end_ns": ts_ns + lat, "latency_ns": lat,
            "pid": rng.choice([4101, 4102, 5120]), "comm": rng.choice(["nginx", "node"]),
            "local": "10.0.0.5:8080", "remote": "10.1.0.%d:%d" % (rng.randrange(1, 9),
                                                                   rng.randrange(32768, 33000)),
            "method": rng.choice(["GET", "GET", "POST"]),
            "path": rng.choice(["/", "/api/users", "/checkout"]) if rng.random() < 0.7
            else "/api/items/%d" % rng.randrange(10**6),
            "status": rng.choice([200, 200, 200, 404, 503]), "req_body_bytes": 0,
            "resp_body_bytes": rng.randrange(0, 10**5),
            "trace_id": "%032x" % rng.getrandbits(128) if traced else "",
            "span_id": "%016x" % rng.getrandbits(64) if traced else "", "flags": 0,
            "role": "server", "host": "shop.example", "http_version": "1.1"}


def query_records(addr, frm, to, extra=()):
    p = tvtest.run(["query", "--server", addr, "--from", str(frm), "--to", str(to),
                    "--format", "jsonl"] + list(extra), timeout=120, check=True)
    return [json.loads(line) for line in p.stdout.splitlines()]


def reference(records, frm, to, trace=None, limit=0):
    # the merge's order: ts_ns, then block order (equal timestamps are not generated here)
    out = sorted((r for r in records if frm <= r["ts_ns"] < to and
                  (trace is None or r["trace_id"] == trace)), key=lambda r: r["ts_ns"])
    return out[:limit] if limit else out


def check(got, want, label):
    if got != want:
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                 min(len(got), len(want)))
        raise AssertionError("%s: got %d records, want %d; first difference at %d: %r vs %r"
                             % (label, len(got), len(want), i, got[i:i + 1], want[i:i + 1]))
    print("ok %-40s %6d records" % (label, len(got)))


def block_versions(data_dir):
    found = {}
    bdir = os.path.join(data_dir, "blocks")
    for name in os.listdir(bdir):
        with open(os.path.join(bdir, name), "rb") as f:
            head = f.read(6)
        v = int.from_bytes(head[4:6], "little")
        found.setdefault(v, []).append(os.path.join(bdir, name))
    return found


def scrub(data_dir):
    return subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir, "--scrub"],
                          capture_output=True, text=True, timeout=120)


def main():
    rng = random.Random(1203)
    ts = rng.sample(range(BASE_NS, BASE_NS + SPAN_NS), N_V3 + N_V2 + N_PY3)
    v3 = [make_record(rng, t) for t in ts[:N_V3]]
    v2 = [make_record(rng, t) for t in ts[N_V3:N_V3 + N_V2]]
    py3 = [make_record(rng, t) for t in ts[N_V3 + N_V2:]]
    for i, r in enumerate(py3):  # what the columns keep aside: odd ids, absent fields
        if i % 7 == 1 and r["trace_id"]:
            r["trace_id"] = r["trace_id"].upper()
        elif i % 7 == 2:
            r["trace_id"], r["span_id"] = "not-hex-%d" % i, "s%d" % i
        elif i % 7 == 3:
            r["pid"], r["comm"], r["status"], r["end_ns"] = 0, "", 0, r["ts_ns"] - 5
    allrecs = v3 + v2 + py3
    tmp = tempfile.mkdtemp(prefix="tv-versions-")
    srv = tvtest.Server().start()
    try:
        path = os.path.join(tmp, "records.jsonl")
        with open(path, "w") as f:
            for r in v3:
                f.write(json.dumps(r) + "\n")
        tvtest.run(["put", "--server", srv.addr, path], timeout=120, check=True)
        pb = grpc_modules()[1]
        blocks = []
        for k in range(3):
            part = sorted(v2[k::3], key=lambda r: r["ts_ns"])
            recs = [pb.TraceRecord(**r) for r in part]
            blocks.append((0x7200 + k, encode_block_v2(0x7200 + k, recs)))
        GrpcClient(srv.addr).write_encoded(0x72, blocks)
        versions = block_versions(srv.data_dir)
        assert sorted(versions) == [2, 3] and len(versions[2]) == 3, versions
        hdr = pb.Header(name="x-req", value="1")
        msgs = [pb.TraceRecord(**r, req_headers=[hdr] if i % 5 == 0 else [])
                for i, r in enumerate(py3)]
        GrpcClient(srv.addr).write_encoded(0x73, [
            (0x7300, encode_block_v3(0x7300, msgs[:2500], page_records=1000, codec=1)),
            (0x7301, encode_block_v3(0x7301, msgs[2500:], page_records=1000, codec=0))])
        for i, r in enumerate(py3):  # query's jsonl shows the headers a record has
            if i % 5 == 0:
                r["req_headers"] = [{"name": "x-req", "value": "1"}]

        check(query_records(srv.addr, BASE_NS, BASE_NS + SPAN_NS),
              reference(allrecs, BASE_NS, BASE_NS + SPAN_NS), "whole range, v2 + v3 merged")
        # every field, headers too, through grpcio: the records' own bytes came back
        got, skipped, code, details, _ = GrpcClient(srv.addr).query_all(BASE_NS,
                                                                         BASE_NS + SPAN_NS)
        assert code == GrpcClient(srv.addr).grpc.StatusCode.OK and not skipped, details
        want = sorted([pb.TraceRecord(**r) for r in v3 + v2] + msgs, key=lambda m: m.ts_ns)
        assert len(got) == len(want), (len(got), len(want))
        assert [m.SerializeToString() for m in got] == \
            [m.SerializeToString() for m in want], "records differ through grpcio"
        print("ok whole range through grpcio, headers included %7d records" % len(got))
        for i in range(8):
            frm = BASE_NS + rng.randrange(0, SPAN_NS - 60 * 10**9)
            check(query_records(srv.addr, frm, frm + 60 * 10**9),
                  reference(allrecs, frm, frm + 60 * 10**9), "1-minute window %d" % i)
        frm = BASE_NS + SPAN_NS // 2
        check(query_records(srv.addr, frm, BASE_NS + SPAN_NS, ["--limit", "7"]),
              reference(allrecs, frm, BASE_NS + SPAN_NS, limit=7), "--limit 7 mid-range")
        for label, recs in (("v3", v3), ("v2", v2), ("BLOCK.md's v3", py3)):
            t = next(r["trace_id"] for r in recs[len(recs) // 2:] if len(r["trace_id"]) == 32)
            check(query_records(srv.addr, BASE_NS, BASE_NS + SPAN_NS, ["--trace-id", t]),
                  reference(allrecs, BASE_NS, BASE_NS + SPAN_NS, trace=t),
                  "--trace-id of a %s record" % label)
            check(query_records(srv.addr, BASE_NS, BASE_NS + SPAN_NS,
                                ["--trace-id", t.upper()]),
                  reference(allrecs, BASE_NS, BASE_NS + SPAN_NS, trace=t),
                  "--trace-id in upper case (%s)" % label)
        check(query_records(srv.addr, BASE_NS, BASE_NS + SPAN_NS, ["--trace-id", "ab" * 16]),
              [], "--trace-id of no record")
        srv.stop()

        p = scrub(srv.data_dir)
        assert p.returncode == 0, p.stderr
        assert ": 0 damaged" in p.stderr, p.stderr
        print("ok scrub verifies v2 and v3 blocks")

        victim = versions[3][0]
        with open(victim, "r+b") as f:  # a bit of the last page
            f.seek(-2, os.SEEK_END)
            b = f.read(1)
            f.seek(-2, os.SEEK_END)
            f.write(bytes([b[0] ^ 0x08]))
        p = scrub(srv.data_dir)
        assert p.returncode == 1, p.stderr  # damage found
        assert ": 1 damaged" in p.stderr and "checksum mismatch" in p.stderr, p.stderr
        assert not os.path.exists(victim)
        print("ok scrub quarantines a v3 block with a damaged page")
    finally:
        srv.stop()
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
