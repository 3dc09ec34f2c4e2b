"""The reference for `tracevault query --format table`, written here from the format's
description, not from the C code: the header and the exact line of each record."""

RECORD_FIELDS = ["ts_ns", "end_ns", "latency_ns", "pid", "comm", "local", "remote", "method",
                 "path", "status", "req_body_bytes", "resp_body_bytes", "trace_id", "span_id",
                 "flags", "role", "host", "http_version"]
# `--format table`: column widths; TIME, ROLE, METHOD, HOST, PATH, HTTP (the version), COMM
# left-aligned, the numbers right
TABLE_WIDTHS = (("TIME", 24), ("ROLE", 6), ("METHOD", 7), ("HOST", 24), ("PATH", 40),
                ("HTTP", 4), ("STATUS", 6), ("LATENCY_MS", 12), ("PID", 8), ("COMM", 16))
TABLE_HEADER = ("%-24s %-6s %-7s %-24s %-40s %-4s %6s %12s %8s %-16s %s"
                % tuple([n for n, _ in TABLE_WIDTHS] + ["REMOTE"]))


def _shown(ch):
    """A character as the table shows it: printable ones as they are; controls (C0, DEL, C1)
    and the line separators and bidirectional overrides/isolates U+2028-U+202E and
    U+2066-U+2069 as '?' (a byte that is not UTF-8, which a jsonl string cannot carry, is
    one '?' too)."""
    c = ord(ch)
    if c < 0x20 or 0x7F <= c < 0xA0 or 0x2028 <= c <= 0x202E or 0x2066 <= c <= 0x2069:
        return "?"
    return ch


def _table_col(s, width, last=False):
    """A text column: its characters (each control shown as '?'), cut to width characters
    with a '...' ending, padded to width plus one space unless it is the last column."""
    cut = width > 0 and len(s) > width
    out = "".join(_shown(ch) for ch in s[:width - 3 if cut else len(s)])
    if cut:
        out += "..."
    return out if last else out + " " * (width - len(out)) + " "


def rfc3339_ms(ts_ns):
    """2026-01-01T00:00:00.123Z: UTC, milliseconds truncated (not rounded)."""
    import datetime
    secs, ns = divmod(ts_ns, 10**9)
    dt = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ns // 10**6)


def table_row(r):
    """The exact table line of record r (a dict of the jsonl fields), without the newline."""
    return (_table_col(rfc3339_ms(r["ts_ns"]), 24) + _table_col(r.get("role", ""), 6)
            + _table_col(r["method"], 7) + _table_col(r.get("host", ""), 24)
            + _table_col(r["path"], 40) + _table_col(r.get("http_version", ""), 4)
            + "%6d %12.3f %8d " % (r["status"], r["latency_ns"] / 1e6, r["pid"])
            + _table_col(r["comm"], 16) + _table_col(r["remote"], 0, last=True))


def check_table(out, records, what):
    """out (a `--format table` answer) is the header and exactly one line per record, every
    column of every row equal to the reference; raises naming the first different line."""
    want = [TABLE_HEADER] + [table_row(r) for r in records]
    got = out.split("\n")
    assert got[-1] == "", "%s: table does not end in a newline: %r" % (what, out[-200:])
    got = got[:-1]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, "%s: table line %d differs\n got  %r\n want %r" % (what, i, g, w)
    assert len(got) == len(want), "%s: %d table lines, want %d" % (what, len(got), len(want))
