"""The read side of issue 12 (bench/README.md, "Read side"): one archive of N realistic records
over 24 hours (bench/read_records.py), loaded with `tracevault put` into a real tracevaultd and
with the sqlite3 CLI into an SQLite table with an index on ts_ns, then each figure measured
beside its peer in the same run, as a user runs them: whole processes, output read through a
pipe. Reported, never asserted. Run it through bench/read.sh (options and environment there)."""
import argparse
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import read_records  # noqa: E402

MINUTE_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
DAY0 = read_records.DAY_START_NS
DAY1 = DAY0 + read_records.DAY_NS
START_TIMEOUT_S = 120
READ_BYTES = 1 << 20
# The one buffer every Run reads its process's output into, made (and its pages touched) once
# here: a fresh one per Run cost 256 page faults inside the timed span (~6 ms on this VM, on
# both peers' small queries), and a fresh bytes object per read (os.read) a fault per 4 KiB of
# output, most of the reader's CPU over a whole day.
READ_BUF = bytearray(b"\n" * READ_BYTES)
HZ = os.sysconf("SC_CLK_TCK")

COLUMNS = ["ts_ns", "end_ns", "latency_ns", "pid", "comm", "local", "remote", "method", "path",
           "status", "req_body_bytes", "resp_body_bytes", "trace_id", "span_id", "flags", "role",
           "host", "http_version"]
INT_COLUMNS = {"ts_ns", "end_ns", "latency_ns", "pid", "status", "req_body_bytes",
               "resp_body_bytes", "flags"}
# The SQLite peer prints the same JSON Lines as `tracevault query --format jsonl` (same keys,
# same order), so both sides pay for formatting and the pipe alike.
SQL_JSON = "json_object(%s)" % ",".join("'%s',%s" % (c, c) for c in COLUMNS)
SQL_SCHEMA = "CREATE TABLE records(%s);\nCREATE INDEX records_ts ON records(ts_ns);\n" % ", ".join(
    "%s %s" % (c, "INTEGER" if c in INT_COLUMNS else "TEXT") for c in COLUMNS)
# Loaded by the sqlite3 CLI alone (its C JSON parser, like put's): .import sends each line
# whole (ASCII mode, unit separator never in a line) into a view whose trigger extracts the
# fields; one transaction, the CLI's default durability (rollback journal, synchronous=FULL),
# as put's one atomic, fsynced segment.
SQL_LOAD = SQL_SCHEMA + (
    "CREATE TEMP VIEW jsonl(line) AS SELECT NULL;\n"
    "CREATE TEMP TRIGGER jsonl_ins INSTEAD OF INSERT ON jsonl BEGIN\n"
    " INSERT INTO records SELECT %s;\nEND;\n"
    "BEGIN;\n.mode ascii\n.separator \"\\037\" \"\\n\"\n.import %%s jsonl\nCOMMIT;\n") % ",".join(
    "json_extract(NEW.line,'$.%s')" % c for c in COLUMNS)
# The third peer, "zstdcat + filter" (bench/README.md): what a user without a database runs on
# the JSON Lines kept as `zstd -3` compressed them (the stored-bytes figure's file): every
# query decompresses and scans the whole file. The time window is mawk comparing the 19 digits
# after "ts_ns": as strings, wherever the key is in the line: every ts_ns from 2001 to 2286 has
# 19 digits, so string order is number order, and exact (awk's and jq's numbers are doubles,
# which round a ts_ns by up to 128 ns; jq 1.6 also prints it rounded). Each match is flushed:
# mawk block-buffers a pipe, which would hide its time to the last record until its exit.
# The trace id is `grep -F` (32 hex digits occur in no other field).
ZST_WINDOW_AWK = ('{ t = substr($0, index($0, "\\"ts_ns\\":") + 8, 19) } '
                  't >= "%d" && t < "%d" { print; fflush() }')
# printed cells are at least this wide, two spaces apart (report.py splits on 2+ spaces)
CELL_WIDTHS = (44, 36, 36, 30)


def log(msg):
    print(msg, flush=True)


def cpu_s_of(pid):
    """utime + stime of a live process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def hwm_kb_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Run:
    """One whole process, or a pipeline of them as a shell's `a | b` runs it (argv a list of
    argvs: each stage's stdout into the next one's stdin, the last one's read here): wall
    seconds from before the first spawn to the last exit, the lines the last stage printed
    (read through a pipe and counted), the seconds to the first and to the last read that
    brought a complete line (first_s, last_s: what a user watching the output sees), CPU
    seconds summed over the stages and the largest peak RSS (wait4); with first_line_only
    every stage is killed at the first complete line."""

    def __init__(self, argv, first_line_only=False, timeout_s=3600):
        stages = argv if isinstance(argv[0], list) else [argv]
        t0 = time.perf_counter()
        procs, prev = [], None
        for a in stages:
            p = subprocess.Popen(a, stdin=prev, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if prev is not None:
                prev.close()  # the next stage holds it now: its exit is the writer's EPIPE
            prev = p.stdout
            procs.append(p)
        self.lines, self.first_s, self.last_s = 0, None, None
        fd = prev.fileno()
        deadline = t0 + timeout_s
        buf = READ_BUF
        killed = False
        while True:
            k = os.readv(fd, [buf])
            if not k:
                break
            n = buf.count(b"\n", 0, k)
            if n:
                self.last_s = time.perf_counter() - t0
                if self.first_s is None:
                    self.first_s = self.last_s
                    if first_line_only:
                        for p in procs:
                            p.kill()
                        killed = True
            self.lines += n
            if time.perf_counter() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError("%s ran longer than %d s" % (stages[-1][0], timeout_s))
        self.cpu_s, self.maxrss_kb, codes = 0.0, 0, []
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            self.cpu_s += ru.ru_utime + ru.ru_stime
            self.maxrss_kb = max(self.maxrss_kb, ru.ru_maxrss)
        self.wall_s = time.perf_counter() - t0
        self.err = "".join(p.stderr.read().decode(errors="replace") for p in procs)
        prev.close()
        for p in procs:
            p.stderr.close()
        if not killed:
            for a, code in zip(stages, codes):
                if code != 0:
                    raise RuntimeError("%s exited %d: %s" % (" ".join(a[:3]), code,
                                                             self.err.strip()[:300]))


class Server:
    def __init__(self, binary, data):
        self.binary, self.data, self.proc, self.addr = binary, data, None, None

    def start(self):
        """Exec tracevaultd; returns seconds from before the spawn to its 'listening on' line."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([self.binary, "--data", self.data, "--listen",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=open(self.data + ".log", "a"))
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError("tracevaultd did not start (see %s.log)" % self.data)
        self.addr = line.split()[2]
        return time.perf_counter() - t0

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc = None


def pct(xs, q):
    """Nearest-rank percentile (p99 of 50 samples is their maximum)."""
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def spread(xs):
    """(median, min, max, n) of per-round figures, for fmt."""
    if not xs:
        return None
    return (statistics.median(xs), min(xs), max(xs), len(xs))


def fmt_n(xs, digits=0):
    """'median [min-max] n=K' of samples (the zstdcat peer's cells: its own sample count)."""
    return fmt(spread(xs), "", digits) + " n=%d" % len(xs) if xs else "-"


def fmt(sp, unit, digits=1):
    if sp is None:
        return "-"
    """'median [min-max]' of a spread; one sample has no range. Equal samples keep theirs
    ('3333 [3333-3333]': CPU time in 10 ms ticks often repeats), so that every cell of a column
    has one shape and the reader sees that the rounds agreed."""
    m, lo, hi, n = sp
    f = "%%.%df" % digits
    u = " " + unit if unit else ""
    if n == 1:
        return (f + u) % m
    return (f + u + " [" + f + "-" + f + "]") % (m, lo, hi)


class Bench:
    def __init__(self, a):
        self.a = a
        self.tv = os.path.join(a.build, "tracevault")
        self.tvd = os.path.join(a.build, "tracevaultd")
        self.work = a.reuse or tempfile.mkdtemp(prefix="bench-read.", dir=a.build)
        self.jsonl = os.path.join(self.work, "records.jsonl")
        self.ids_file = os.path.join(self.work, "trace_ids.txt")
        self.db = os.path.join(self.work, "records.db")
        self.zst = self.jsonl + ".zst"  # zstd -3 of the JSON Lines: sizes() writes it
        self.server = Server(self.tvd, os.path.join(self.work, "data"))
        self.rnd = random.Random(a.seed + 1)
        self.rows = []  # (figure, ours, peer, goal)
        self.notes = []
        self.loads = []
        self.trace_ids = []
        self.zst_mb = 0.0
        self.t_run = time.perf_counter()  # the step's start, for the loads line
        # samples where zstdcat + filter printed as many records as tracevault and SQLite
        self.counts = {"window": 0, "trace": 0, "day": 0}
        self.zst_samples = 0  # rotates the three peers' order (trio)

    def row(self, figure, ours, peer, goal, zst="-"):
        """One line of the table: figure, tracevault, SQLite (or zstd -3), zstdcat + filter,
        goal; each cell padded and two spaces apart, however long (report.py parse_read)."""
        self.rows.append((figure, ours, peer, zst, goal))
        log("  " + "  ".join(c.ljust(w) for c, w in zip((figure, ours, peer, zst), CELL_WIDTHS))
            + "  " + goal)
        # other work on a shared machine moves every figure: say how loaded it was, and
        # when (seconds since the start: what each figure costs of the step's time budget)
        self.loads.append("%s %.1f @%.0fs" % (figure.split(" ")[0], os.getloadavg()[0],
                                             time.perf_counter() - self.t_run))

    def budget_left(self, t0):
        return time.perf_counter() - t0 < self.a.budget_s

    # ---------- tracevault and SQLite as a user runs them ----------
    def tv_query(self, frm, to, extra=(), first=False):
        return Run([self.tv, "query", "--server", self.server.addr, "--from", str(frm), "--to",
                    str(to)] + list(extra), first_line_only=first)

    def sql_query(self, where, limit=None, first=False):
        sql = "SELECT %s FROM records WHERE %s ORDER BY ts_ns%s;" % (
            SQL_JSON, where, " LIMIT %d" % limit if limit else "")
        return Run(["sqlite3", "-readonly", "-batch", self.db, sql], first_line_only=first)

    def zst_query(self, *filters):
        """zstdcat of the zstd -3 JSON Lines, piped through each filter's argv in turn."""
        return Run([["zstdcat", self.zst]] + [list(f) for f in filters])

    def zst_window(self, frm, to):
        return self.zst_query(["mawk", ZST_WINDOW_AWK % (frm, to)])

    @staticmethod
    def window_where(frm, to):
        return "ts_ns >= %d AND ts_ns < %d" % (frm, to)

    def pair(self, i, tv_fn, sql_fn, check=True):
        """Both peers for one sample, the order alternated by i; their record counts must agree."""
        if i % 2 == 0:
            t, s = tv_fn(), sql_fn()
        else:
            s, t = sql_fn(), tv_fn()
        if check and t.lines != s.lines:
            raise RuntimeError("tracevault printed %d records, SQLite %d (sample %d)" %
                               (t.lines, s.lines, i))
        return t, s

    def trio(self, what, tv_fn, sql_fn, zst_fn):
        """The three peers for one sample, their order rotated from one such sample to the
        next; their record counts must agree (a baseline that prints other records is none)."""
        fns, out = (tv_fn, sql_fn, zst_fn), [None, None, None]
        for k in range(3):
            j = (self.zst_samples + k) % 3
            out[j] = fns[j]()
        self.zst_samples += 1
        t, s, z = out
        if not t.lines == s.lines == z.lines:
            raise RuntimeError("%s: tracevault printed %d records, SQLite %d, zstdcat + filter %d"
                               % (what, t.lines, s.lines, z.lines))
        self.counts[what] += 1
        return t, s, z

    # ---------- the steps ----------
    def generate(self):
        t0 = time.perf_counter()
        with open(self.jsonl, "wb") as f, open(self.ids_file, "w") as ids:
            self.trace_ids = read_records.generate(self.a.records, self.a.seed, f, ids)
        log("generated %d records (%.0f MB of JSON Lines, seed %d) in %.1f s under %s" % (
            self.a.records, os.path.getsize(self.jsonl) / 1e6, self.a.seed,
            time.perf_counter() - t0, self.work))

    @staticmethod
    def children_cpu():
        """CPU seconds of every reaped child so far (RUSAGE_CHILDREN)."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def reuse(self):
        """--reuse DIR: the archive of an earlier --keep run; put and the load are not measured."""
        for f in (self.jsonl, self.db, self.server.data):
            if not os.path.exists(f):
                raise RuntimeError("--reuse %s: no %s (a directory kept by --keep)" % (self.work, f))
        self.server.start()
        n = int(subprocess.run(["sqlite3", "-readonly", self.db, "SELECT count(*) FROM records"],
                               capture_output=True, check=True).stdout)
        if n != self.a.records:
            log("--reuse: the archive holds %d records, not %d: measuring %d" % (
                n, self.a.records, n))
            self.a.records = n
        if os.path.exists(self.ids_file):
            with open(self.ids_file) as f:
                self.trace_ids = f.read().split()
        else:  # kept before trace_ids.txt existed: a seeded sample of the table's ids
            rowids = ",".join(str(self.rnd.randrange(1, n + 1)) for _ in range(4000))
            self.trace_ids = subprocess.run(
                ["sqlite3", "-readonly", self.db, "SELECT trace_id FROM records WHERE rowid IN "
                 "(%s) AND trace_id != ''" % rowids], capture_output=True, check=True
            ).stdout.decode().split()
        self.row("put / load", "not measured (--reuse)", "-", "put >= 3x SQLite load")

    def load(self):
        os.makedirs(self.server.data, mode=0o700)
        self.server.start()
        # put and the SQLite load run one after the other (one each: at 10M each takes minutes)
        srv_cpu0 = cpu_s_of(self.server.proc.pid)
        put = Run([self.tv, "put", "--server", self.server.addr, self.jsonl])
        srv_cpu = cpu_s_of(self.server.proc.pid) - srv_cpu0
        srv_hwm = hwm_kb_of(self.server.proc.pid)
        self.cpu_before_load = self.children_cpu()
        script = os.path.join(self.work, "load.sql")
        with open(script, "w") as f:
            f.write(SQL_LOAD % self.jsonl)
        t0 = time.perf_counter()
        with open(script) as f:
            p = subprocess.Popen(["sqlite3", "-batch", self.db], stdin=f, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            out, err = p.communicate()
            load_s = time.perf_counter() - t0
        # sqlite3 is the only child reaped since cpu_before_load: RUSAGE_CHILDREN's difference
        if p.returncode != 0 or err:
            raise RuntimeError("sqlite3 load: %s" % err.decode()[:300])
        load_cpu = self.children_cpu() - self.cpu_before_load
        n = self.a.records
        self.put_rate = n / put.wall_s
        self.load_rate = n / load_s
        self.row("put / load, wall (1 run each)", "%.1fk rec/s, RSS %d MB" % (
            self.put_rate / 1e3, put.maxrss_kb // 1024), "%.1fk rec/s" % (self.load_rate / 1e3),
            "put >= 3x SQLite load (%.2fx), RSS bounded by the cache" % (self.put_rate / self.load_rate))
        self.row("put / load, per CPU-s", "%.1fk rec (put + tracevaultd CPU)" % (
            n / (put.cpu_s + srv_cpu) / 1e3), "%.1fk rec (sqlite3 CPU)" % (n / load_cpu / 1e3),
            "(less moved by other work than wall time)")
        self.notes.append("put: %.1f s wall, %.1f s CPU put + %.1f s tracevaultd (tracevaultd peak "
                          "RSS %d MB); SQLite load %.1f s wall, %.1f s CPU" % (
                              put.wall_s, put.cpu_s, srv_cpu, srv_hwm // 1024, load_s, load_cpu))

    def sizes(self):
        def tree_bytes(d):
            return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
        n = self.a.records
        ours = tree_bytes(os.path.join(self.server.data, "blocks"))
        catalog = sum(os.path.getsize(os.path.join(self.server.data, f))
                      for f in os.listdir(self.server.data) if f.startswith("catalog.db"))
        js = os.path.getsize(self.jsonl)
        # kept on disk: the zstdcat + filter peer reads it
        t0 = time.perf_counter()
        subprocess.run(["zstd", "-3", "-T1", "-q", "-f", self.jsonl, "-o", self.zst], check=True)
        zs, zs_s = os.path.getsize(self.zst), time.perf_counter() - t0
        self.zst_mb = zs / 1e6
        db = os.path.getsize(self.db)
        self.row("stored bytes per record", "%.1f B (JSON/%.1f, %.2fx zstd)" % (
            (ours + catalog) / n, js / (ours + catalog), (ours + catalog) / zs),
            "zstd -3 %.1f B, SQLite %.1f B" % (zs / n, db / n),
            "JSON/ >= 12 and <= 0.6x zstd -3")
        self.notes.append("bytes: blocks %d + catalog %d; JSON Lines %d (%.0f B/rec); zstd -3 -T1 "
                          "%d in %.1f s; SQLite file %d" % (ours, catalog, js, js / n, zs, zs_s, db))

    def windows(self, limit):
        """--windows random 1-minute windows per round, tracevault and SQLite alternated;
        without --limit, --zstdcat-windows of them per round (spread over the round) also
        run by zstdcat + mawk, the three in a rotating order, their counts checked."""
        name = "1-min window%s p50 / p99 (ms)" % (" --limit %d" % limit if limit else "")
        per = {k: [] for k in ("tv50", "tv99", "sq50", "sq99", "tvf", "tvl", "sqf", "sql")}
        zst = {"wall": [], "first": [], "last": [], "x_tv": []}
        nz = 0 if limit else self.a.zstdcat_windows
        z_at = {(k + 1) * self.a.windows // (nz + 1) for k in range(nz)}
        t_start = time.perf_counter()
        stopped = ""
        for r in range(self.a.rounds):
            tv, sq, zw = [], [], []
            tvf, tvl, sqf, sql = [], [], [], []
            for i in range(self.a.windows):
                if not self.budget_left(t_start):
                    stopped = " (time budget: stopped in round %d at window %d)" % (r + 1, i)
                    break
                frm = self.rnd.randrange(DAY0, DAY1 - MINUTE_NS)
                to = frm + MINUTE_NS
                extra = ["--limit", str(limit)] if limit else []

                def tv_fn():
                    return self.tv_query(frm, to, extra)

                def sql_fn():
                    return self.sql_query(self.window_where(frm, to), limit)
                if i in z_at:
                    t, s, z = self.trio("window", tv_fn, sql_fn, lambda: self.zst_window(frm, to))
                    zw.append(z.wall_s * 1e3)
                    zst["x_tv"].append(z.wall_s / t.wall_s)
                    if z.first_s is not None:
                        zst["first"].append(z.first_s * 1e3)
                        zst["last"].append(z.last_s * 1e3)
                else:
                    t, s = self.pair(i, tv_fn, sql_fn)
                tv.append(t.wall_s * 1e3)
                sq.append(s.wall_s * 1e3)
                if t.first_s is not None:  # an empty window has neither
                    tvf.append(t.first_s * 1e3)
                    tvl.append(t.last_s * 1e3)
                    sqf.append(s.first_s * 1e3)
                    sql.append(s.last_s * 1e3)
            if not limit:
                self.save_samples(tv, sq, zw)
            zst["wall"] += zw
            if len(tv) >= 2:
                per["tv50"].append(pct(tv, 0.5))
                per["tv99"].append(pct(tv, 0.99))
                per["sq50"].append(pct(sq, 0.5))
                per["sq99"].append(pct(sq, 0.99))
            if len(tvf) >= 2:
                per["tvf"].append(pct(tvf, 0.5))
                per["tvl"].append(pct(tvl, 0.5))
                per["sqf"].append(pct(sqf, 0.5))
                per["sql"].append(pct(sql, 0.5))
            if stopped:
                break

        def both(a, b, digits=1):
            return "%s / %s" % (fmt(spread(per[a]), "", digits), fmt(spread(per[b]), "", digits))
        goal = "p99 <= 10 ms" if limit else "p99 <= 50 ms, p50 <= SQLite p50 / 2"
        if zst["x_tv"]:
            goal += " (zstdcat / tracevault, same window: median %.0fx)" % statistics.median(
                zst["x_tv"])
        self.row(name, both("tv50", "tv99"), both("sq50", "sq99"), goal + stopped,
                 fmt_n(zst["wall"]) if nz else "-")
        if not limit:
            self.row("1-min window, first / last record p50 (ms)", both("tvf", "tvl"),
                     both("sqf", "sql"), "reported (zstdcat: its median; mawk flushes each match)",
                     "%s / %s" % (fmt_n(zst["first"]), fmt_n(zst["last"])))

    @staticmethod
    def save_samples(tv, sq, zst):
        """The 1-min windows' wall times, every sample, for bench/report.py's latency CDF:
        appended to $TV_BENCH_RESULTS_DIR/read_window_ms.tsv (bench/run.sh sets it)."""
        d = os.environ.get("TV_BENCH_RESULTS_DIR")
        if not d:
            return
        with open(os.path.join(d, "read_window_ms.tsv"), "a") as f:
            for peer, xs in (("tracevault", tv), ("SQLite", sq), ("zstdcat+mawk", zst)):
                f.writelines("%s\t%.3f\n" % (peer, x) for x in xs)

    def first_record(self):
        tv, sq = [], []
        t_start = time.perf_counter()
        for r in range(self.a.rounds):
            rt, rs = [], []
            for i in range(self.a.first_samples):
                if not self.budget_left(t_start):
                    break
                frm = self.rnd.randrange(DAY0, DAY1 - HOUR_NS)
                t, s = self.pair(i, lambda: self.tv_query(frm, frm + HOUR_NS, first=True),
                                 lambda: self.sql_query(self.window_where(frm, frm + HOUR_NS),
                                                        first=True), check=False)
                rt.append(t.first_s * 1e3)
                rs.append(s.first_s * 1e3)
            if rt:
                tv.append(statistics.median(rt))
                sq.append(statistics.median(rs))
        self.row("1-hour window, first record (ms)", fmt(spread(tv), "", 1),
                 fmt(spread(sq), "", 1), "<= 5 ms after the process starts")

    def whole_day(self):
        """Every record, once per round by each of the three (zstdcat alone: its whole
        output is the day), in a rotating order."""
        tv, sq, tv_rate, sq_rate, srv_rate, zs, zs_rate = [], [], [], [], [], [], []
        t_start = time.perf_counter()
        for r in range(self.a.day_rounds):
            if not self.budget_left(t_start):
                break
            box = {}

            def tv_fn():
                s0 = cpu_s_of(self.server.proc.pid)
                run = self.tv_query(DAY0, DAY1)
                box["srv"] = cpu_s_of(self.server.proc.pid) - s0
                return run
            t, s, z = self.trio("day", tv_fn, lambda: self.sql_query("1"), self.zst_query)
            if t.lines != self.a.records:
                raise RuntimeError("whole day: %d records of %d" % (t.lines, self.a.records))
            tv.append(t.wall_s)
            sq.append(s.wall_s)
            zs.append(z.wall_s)
            zs_rate.append(z.lines / z.cpu_s / 1e3)
            tv_rate.append(t.lines / (t.cpu_s + box["srv"]) / 1e3)
            srv_rate.append(t.lines / box["srv"] / 1e3)
            sq_rate.append(s.lines / s.cpu_s / 1e3)
        # the ratios within each round, then their median
        self.row("whole day, all records (s)", fmt(spread(tv), "", 2), fmt(spread(sq), "", 2),
                 ">= 2.5x faster than SQLite (%.2fx; zstdcat %.2fx; medians of the rounds' "
                 "ratios)" % (statistics.median(s / t for s, t in zip(sq, tv)),
                              statistics.median(z / t for z, t in zip(zs, tv))), fmt_n(zs, 2))
        self.row("full-day scan, k rec per CPU-s", "%s (server alone %s)" % (
            fmt(spread(tv_rate), "", 0), fmt(spread(srv_rate), "", 0)), fmt(spread(sq_rate), "", 0),
            "reported (query + tracevaultd CPU; zstdcat's CPU)", fmt_n(zs_rate))

    def trace_lookup(self):
        """--trace-lookups random trace ids per round, tracevault and SQLite alternated; the
        middle one of each round also by zstdcat | grep -F, the three in a rotating order."""
        tv50, tv99, sq50, sq99, zs, zs_x = [], [], [], [], [], []
        z_at = self.a.trace_lookups // 2
        t_start = time.perf_counter()
        stopped = ""
        ids = list(self.trace_ids)
        for r in range(self.a.rounds):
            tv, sq = [], []
            for i in range(self.a.trace_lookups):
                if not self.budget_left(t_start):
                    stopped = " (time budget: %d lookups in round %d)" % (i, r + 1)
                    break
                tid = self.rnd.choice(ids)
                def tv_fn():
                    return self.tv_query(DAY0, DAY1, ["--trace-id", tid])

                def sql_fn():
                    return self.sql_query("trace_id = '%s'" % tid)
                if i == z_at:
                    t, s, z = self.trio("trace", tv_fn, sql_fn,
                                        lambda: self.zst_query(["grep", "-F", tid]))
                    zs.append(z.wall_s * 1e3)
                    zs_x.append(z.wall_s / t.wall_s)
                else:
                    t, s = self.pair(i, tv_fn, sql_fn)
                if t.lines == 0:
                    raise RuntimeError("trace id %s found no record" % tid)
                tv.append(t.wall_s * 1e3)
                sq.append(s.wall_s * 1e3)
            if tv:
                tv50.append(pct(tv, 0.5))
                tv99.append(pct(tv, 0.99))
                sq50.append(pct(sq, 0.5))
                sq99.append(pct(sq, 0.99))
            if stopped:
                break
        self.row("--trace-id over the day p50 / p99 (ms)", "%s / %s" % (
            fmt(spread(tv50), "", 0), fmt(spread(tv99), "", 0)),
            "%s / %s" % (fmt(spread(sq50), "", 0), fmt(spread(sq99), "", 0)),
            "p99 <= 50 ms (SQLite: no index on trace_id%s)%s" % (
                "; zstdcat / tracevault, same id: median %.0fx" % statistics.median(zs_x)
                if zs_x else "", stopped), fmt_n(zs))

    def summary(self):
        probe = subprocess.run([self.tv, "summary", "--help"], capture_output=True)
        if probe.returncode != 0:
            self.row("summary --by path, 1 hour (ms)", "not run: this build has no `summary`",
                     "-", "<= 200 ms")
            return
        tv, sq = [], []
        t_start = time.perf_counter()
        for r in range(self.a.rounds):
            rt, rs = [], []
            for i in range(self.a.first_samples):
                if not self.budget_left(t_start):
                    break
                frm = self.rnd.randrange(DAY0, DAY1 - HOUR_NS)
                # grouped as summary groups: the path before its '?'
                sql = ("SELECT CASE WHEN instr(path, '?') THEN substr(path, 1, instr(path, '?') - 1)"
                       " ELSE path END AS p, count(*), sum(status >= 500), sum(status BETWEEN 400"
                       " AND 499), min(latency_ns), max(latency_ns) FROM records WHERE %s GROUP BY"
                       " p;" % self.window_where(frm, frm + HOUR_NS))
                t, s = self.pair(i, lambda: Run([self.tv, "summary", "--server", self.server.addr,
                                                 "--from", str(frm), "--to", str(frm + HOUR_NS),
                                                 "--by", "path"]),
                                 lambda: Run(["sqlite3", "-readonly", "-batch", self.db, sql]),
                                 check=False)
                rt.append(t.wall_s * 1e3)
                rs.append(s.wall_s * 1e3)
            if rt:
                tv.append(statistics.median(rt))
                sq.append(statistics.median(rs))
        self.row("summary --by path, 1 hour (ms)", fmt(spread(tv), "", 1), fmt(spread(sq), "", 1),
                 "<= 200 ms (SQLite: GROUP BY count, 4xx, 5xx, min/max latency; no quantiles)")

    def restart(self):
        listen, answer, first = [], [], []
        for r in range(self.a.rounds):
            self.server.stop()
            listen.append(self.server.start() * 1e3)
            t0 = time.perf_counter()
            q = self.tv_query(DAY0, DAY1, ["--limit", "1"])
            answer.append(listen[-1] + (time.perf_counter() - t0) * 1e3)
            if q.lines != 1:
                raise RuntimeError("after restart: %d records" % q.lines)
            first.append(self.sql_query("1", limit=1).wall_s * 1e3)
        self.row("restart: exec to listening / to 1st answer", "%s / %s" % (
            fmt(spread(listen), "", 0), fmt(spread(answer), "", 0)),
            "%s (sqlite3: open + 1st row)" % fmt(spread(first), "", 1), "reported")

    def baseline(self):
        """Process start alone, for reading the figures: `tracevault --version` and sqlite3."""
        tv, sq = [], []
        for i in range(2 * self.a.rounds * 5):
            t, s = self.pair(i, lambda: Run([self.tv, "--version"]),
                             lambda: Run(["sqlite3", "-version"]), check=False)
            tv.append(t.wall_s * 1e3)
            sq.append(s.wall_s * 1e3)
        self.row("process start+exit alone (ms)", "%.1f (tracevault --version)" % statistics.median(tv),
                 "%.1f (sqlite3 -version)" % statistics.median(sq), "(context for the above)")
        # An empty window: the process, gRPC's start, the channel and the connection to
        # tracevaultd (the CLI checks every server first), but no Query call. What a query
        # costs before the server can send anything: the floor under "first record".
        floor = []
        for i in range(2 * self.a.rounds * 5):
            floor.append(self.tv_query(DAY0, DAY0).wall_s * 1e3)
        self.row("empty window: start + gRPC + connect (ms)",
                 "%s n=%d" % (fmt(spread(floor), "", 1), len(floor)), "-",
                 "(the floor under the figures below; no Query call)")

    def run(self):
        a = self.a
        log("tracevault read bench: %d records, seed %d, %d rounds, %d windows (%d by zstdcat), "
            "%d trace lookups (1 by zstdcat) per round, budget %d s per figure; data under %s" % (
                a.records, a.seed, a.rounds, a.windows, a.zstdcat_windows, a.trace_lookups,
                a.budget_s, self.work))
        try:
            if not a.reuse:
                self.generate()
            log("  ".join(c.ljust(w) for c, w in zip(
                ("figure", "tracevault", "SQLite / zstd", "zstdcat + filter"),
                (CELL_WIDTHS[0] + 2,) + CELL_WIDTHS[1:])) + "  goal (issue 12)")
            if a.reuse:
                self.reuse()
            else:
                self.load()
            self.sizes()
            self.baseline()
            self.windows(0)
            self.windows(100)
            self.first_record()
            self.whole_day()
            self.trace_lookup()
            self.summary()
            self.restart()
        finally:
            self.server.stop()
            if not a.keep and not a.reuse:
                shutil.rmtree(self.work, ignore_errors=True)
            elif a.keep:
                log("kept %s (bench/read.sh --reuse it)" % self.work)
        log("")
        log("per-round figures: median [min-max] over %d interleaved rounds; p99 is nearest-rank"
            % a.rounds)
        log("zstdcat + filter: median [min-max] of its n samples, each a whole decompress + scan "
            "of %s (%.0f MB): %d 1-min window(s) per round (zstdcat | mawk '%s'), the middle "
            "--trace-id lookup of each round (zstdcat | grep -F ID), each round's whole day "
            "(zstdcat alone)" % (os.path.basename(self.zst), self.zst_mb, a.zstdcat_windows,
                                 ZST_WINDOW_AWK.replace("%d", "FROM", 1).replace("%d", "TO")))
        log("counts check: zstdcat + filter printed as many records as tracevault and SQLite "
            "in every sample: %d 1-min windows, %d --trace-id lookups, %d whole days" % (
                self.counts["window"], self.counts["trace"], self.counts["day"]))
        for n in self.notes:
            log(n)
        log("load average (1 min) after each figure, @ seconds since the start: %s (%d cores)"
            % (", ".join(self.loads), os.cpu_count()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", required=True)
    p.add_argument("--records", type=int, default=5_000_000)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--windows", type=int, default=50)
    p.add_argument("--first-samples", type=int, default=5)
    p.add_argument("--day-rounds", type=int, default=5)
    p.add_argument("--trace-lookups", type=int, default=20)
    p.add_argument("--zstdcat-windows", type=int, default=1)
    p.add_argument("--budget-s", type=int, default=300)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--reuse")
    a = p.parse_args()
    a.build = os.path.abspath(a.build)
    a.reuse = a.reuse and os.path.abspath(a.reuse)
    Bench(a).run()


if __name__ == "__main__":
    main()
