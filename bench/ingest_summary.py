#!/usr/bin/python3
"""bench/ingest_summary.py: the summary of `make bench`'s ingest step (bench/run.sh step_ingest
runs it on the lines the step printed). Reads the step's per-round lines

  round R ceilings, MB/s: TCP T disk D fio F|- 1file O memcpy M; bound min(TCP, disk) B
  R LABEL Nw CHUNK MIB MBPS XBOUND CLIENT_S_PER_GB SERVER_S_PER_GB COPIED

and prints, per configuration, median [min-max] over the rounds of MB/s, x bound (MB/s over
min(TCP, disk) of the same round), client and server CPU seconds per GB; then zero-copy vs
--no-zerocopy and 4 vs 1 writers (ratios taken within one round, then their median [min-max]),
the best chunk size per mode and writers, the bound check over every run and the fio cross-
check. bench/report.py parses these lines into the results' JSON (bench/README.md, "Ingest
rounds").

usage: ingest_summary.py ROWS_FILE"""
import re
import statistics
import sys

N = r"[0-9]+(?:\.[0-9]+)?"
CEIL_RE = re.compile(r"^round ([0-9]+) ceilings, MB/s: TCP (%s) disk (%s) fio (%s|-) 1file (%s) "
                     r"memcpy (%s); bound min\(TCP, disk\) (%s)$" % ((N,) * 6), re.M)
RUN_RE = re.compile(r"^([0-9]+)\s+(\S+)\s+([0-9]+)w\s+([0-9]+[KM]?)\s+([0-9]+)\s+(%s)\s+(%s)\s+"
                    r"(%s)\s+(%s)\s+([0-9]+)$" % ((N,) * 4), re.M)
MODES = (("zerocopy", "zero-copy"), ("no-zerocopy", "--no-zerocopy"))


def spread(vals, fmt, unit=""):
    """'median[unit] [min-max]' of vals, each printed with fmt."""
    return ("%s%s [%s-%s]" % (fmt, unit, fmt, fmt)) % (statistics.median(vals), min(vals),
                                                       max(vals))


def chunk_bytes(s):
    return int(s[:-1]) * {"K": 1 << 10, "M": 1 << 20}[s[-1]] if s[-1] in "KM" else int(s)


def main():
    if len(sys.argv) != 2:
        print("usage: bench/ingest_summary.py ROWS_FILE", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        text = f.read()
    ceil = {int(m.group(1)): m.groups()[1:] for m in CEIL_RE.finditer(text)}
    # runs[label] = {"w", "chunk", "mib", "rows": {round: (MB/s, x bound, client, server, copied)}}
    runs, order = {}, []
    for m in RUN_RE.finditer(text):
        label = m.group(2)
        if label not in runs:
            order.append(label)
            runs[label] = {"mode": label.split("/")[0], "w": int(m.group(3)),
                           "chunk": m.group(4), "mib": int(m.group(5)), "rows": {}}
        runs[label]["rows"][int(m.group(1))] = tuple(float(v) for v in m.groups()[5:10])
    if not ceil or not runs:
        print("ingest_summary: no ingest rows in %s" % sys.argv[1], file=sys.stderr)
        return 1
    rounds = sorted(ceil)
    print("ingest summary: median [min-max] over %d rounds; x bound = MB/s / min(TCP, disk) of "
          "the run's own round" % len(rounds))
    print("  %-24s %7s %5s %5s  %-22s %-21s %-21s %-24s %s" % (
        "config", "writers", "chunk", "MiB", "MB/s", "x bound", "client s/GB", "server s/GB",
        "copied B"))
    for label in order:
        r = runs[label]
        cols = list(zip(*r["rows"].values()))
        print("  %-24s %6dw %5s %5d  %-22s %-21s %-21s %-24s %d" % (
            label, r["w"], r["chunk"], r["mib"], spread(cols[0], "%.1f"),
            spread(cols[1], "%.3f"), spread(cols[2], "%.3f"), spread(cols[3], "%.3f"),
            statistics.median(cols[4])))
    names = ("TCP", "disk", "fio", "1file", "memcpy")
    parts = []
    for i, name in enumerate(names):
        vals = [float(ceil[k][i]) for k in rounds if ceil[k][i] != "-"]
        parts.append("%s %s" % (name, spread(vals, "%.1f") if vals else "-"))
    print("ceilings over the rounds, MB/s: " + ", ".join(parts))

    # the headline's ratio to its round's bound, as before the sweep existed
    zc = runs.get("zerocopy")
    if zc:
        per = [zc["rows"][k][1] for k in sorted(zc["rows"])]
        print("zero-copy ingest / min(TCP, disk) of its round: median %.2fx (per round: %s) "
              "goal >= 0.8x" % (statistics.median(per), " ".join("%.2f" % v for v in per)))

    def ratios(a, b):
        """MB/s of a over b, per round where both ran."""
        return [a["rows"][k][0] / b["rows"][k][0] for k in sorted(a["rows"])
                if k in b["rows"] and b["rows"][k][0] > 0]

    nc = runs.get("no-zerocopy")
    if zc and nc:
        cpu = [statistics.median(r["rows"][k][2] + r["rows"][k][3] for k in r["rows"])
               for r in (zc, nc)]
        sweep = []
        for label in order:
            other = "no-zerocopy" + label[len("zerocopy"):]
            if label.startswith("zerocopy/") and other in runs:
                sweep += ratios(runs[label], runs[other])
        print("zero-copy vs --no-zerocopy, same round: %s MB/s at the headline (1 writer, "
              "%s chunk, %d MiB); CPU per GB, client + server: %.2f vs %.2f s (%+.0f%%); "
              "every sweep point: %s" % (
                  spread(ratios(zc, nc), "%.2f", "x"), zc["chunk"], zc["mib"], cpu[0], cpu[1],
                  100 * (cpu[0] / cpu[1] - 1),
                  spread(sweep, "%.2f", "x") if sweep else "none"))
    parts = []
    for mode, name in MODES:
        vals = []
        for label in order:
            r = runs[label]
            if r["mode"] == mode and "/" in label and r["w"] == 1:
                four = runs.get(label.replace("/1w/", "/4w/"))
                if four:
                    vals += ratios(four, r)
        if vals:
            parts.append("%s %s" % (name, spread(vals, "%.2f", "x")))
    if parts:
        print("4 vs 1 writers, MB/s same round and chunk: %s" % ", ".join(parts))
    best = []
    for mode, name in MODES:
        for w in (1, 4):
            pts = [(chunk_bytes(runs[lb]["chunk"]), runs[lb]["chunk"],
                    statistics.median(v[0] for v in runs[lb]["rows"].values()))
                   for lb in order if "/" in lb and runs[lb]["mode"] == mode and
                   runs[lb]["w"] == w]
            if pts:
                top = max(pts, key=lambda p: p[2])
                best.append("  %s, %d writer%s: %s %.1f MB/s (%s)" % (
                    name, w, "s" if w > 1 else "", top[1], top[2],
                    ", ".join("%s %.1f" % (p[1], p[2]) for p in sorted(pts))))
    if best:
        print("best chunk size by median MB/s (every chunk size's median in brackets):")
        print("\n".join(best))
    # the ceiling must bound: reported, never asserted (one slow disk minute can break it)
    xs = [v[1] for r in runs.values() for v in r["rows"].values()]
    worst = max(xs)
    print("check: ingest / min(TCP, disk) <= 1.0 in every run: %s (max %.2fx over %d runs)" % (
        "yes" if worst <= 1.0 else "NO, the disk ceiling did not bound ingest", worst, len(xs)))
    fio = [float(ceil[k][1]) / float(ceil[k][2]) for k in rounds if ceil[k][2] != "-"]
    if fio:
        print("cross-check: disk ceiling / fio same pattern (no renames, no dir fsyncs): median "
              "%.2fx (per round: %s)" % (statistics.median(fio),
                                         " ".join("%.2f" % v for v in fio)))
    else:
        print("cross-check: disk ceiling / fio: SKIP: fio not installed (scripts/deps.sh "
              "installs it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
