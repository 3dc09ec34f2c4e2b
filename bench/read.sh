#!/usr/bin/env bash
# The read-side benchmark of issue 12 (bench/README.md, "Read side"): tracevault beside an SQLite
# table with an index on ts_ns, beside zstd -3 and beside zstdcat + filter (mawk, grep -F) over
# those zstd -3 JSON Lines (issue 15), on one generated archive, in the same run.
# Reported, never asserted. A thin wrapper: the work is in bench_read.py and read_records.py.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	cat <<EOF
Usage: bench/read.sh [--build DIR] [--records N] [--quick] [--seed S] [--rounds R]
                     [--windows W] [--trace-lookups T] [--zstdcat-windows Z]
                     [--budget-s S] [--keep] [--reuse DIR]

Generates N realistic HTTP exchange records over 24 hours (deterministic from the seed),
loads them with \`tracevault put\` into a fresh tracevaultd and with the sqlite3 CLI into
an SQLite table with an index on ts_ns, compresses them with zstd -3, then measures each
figure of issue 12 beside its SQLite (or zstd -3) peer and, for the 1-minute windows, the
--trace-id lookups and the whole day, beside zstdcat of the zstd -3 file piped through mawk
or grep -F (every record count checked equal), whole processes as a user runs them, in
interleaved rounds:
put/load rate and RSS, stored bytes, 1-minute windows p50/p99 (and with --limit 100),
time to the first record of a 1-hour window, the whole day, --trace-id lookups,
summary --by path over an hour (when the build has it), restart time, records per
CPU-second of a full-day scan. Each figure: median [min-max] over the rounds; zstdcat's:
over its own samples (n=K), each a whole decompress and scan.
Data goes to a temp dir under the build dir, deleted at the end unless --keep.
Needs sqlite3, zstd (zstdcat), mawk, grep and /usr/bin/python3.

  --build DIR        build dir holding tracevault and tracevaultd (default: build)
  --records N        records in the archive (default 3000000; \$TV_BENCH_READ_RECORDS)
  --quick            100000 records, 2 rounds, 20 windows (3 by zstdcat), 10 lookups
                     (\$TV_BENCH_QUICK=1)
  --seed S           generator seed (default 12)
  --rounds R         interleaved rounds per figure (default 5; \$TV_BENCH_READ_ROUNDS,
                     else \$TV_BENCH_ROUNDS)
  --windows W        random 1-minute windows per round (default 50)
  --trace-lookups T  --trace-id lookups per round (default 8)
  --zstdcat-windows Z  of a round's windows, how many zstdcat + mawk also runs
                     (default 1: each is a whole decompress + scan, seconds)
  --budget-s S       time bound of each figure's loop, seconds (default 300); a loop
                     stopped by it says so beside its figure
  --keep             keep the generated data (JSON Lines, data dir, SQLite file)
  --reuse DIR        measure again on a directory kept by --keep (put and the load
                     are not measured; the generator is not run)
  -h, --help         this text

Examples:
  bench/read.sh --quick
  bench/read.sh --build build --records 1000000 --rounds 3
EOF
}

build=build
# 3M records and 5 rounds fit the step's ~260 s of make bench on the slower of our machines
# (AMD EPYC VM, 2026-12-02: 5M took 482 s there; bench/README.md, "Read side")
records=${TV_BENCH_READ_RECORDS:-3000000}
rounds=${TV_BENCH_READ_ROUNDS:-${TV_BENCH_ROUNDS:-5}}
windows=50
trace_lookups=8
zstdcat_windows=1
budget=300
seed=12
keep=()
reuse=()
quick=${TV_BENCH_QUICK:-0}
day_rounds=""
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--build | --records | --seed | --rounds | --windows | --trace-lookups | --budget-s | \
		--zstdcat-windows)
		(($# >= 2)) || { echo "read.sh: $1 needs a value" >&2; exit 2; }
		[[ $1 == --build || $2 =~ ^[0-9]+$ ]] || { echo "read.sh: invalid $1: '$2' (a number)" >&2; exit 2; }
		case $1 in
		--build) build=$2 ;; --records) records=$2 ;; --seed) seed=$2 ;;
		--rounds) rounds=$2 ;; --windows) windows=$2 ;; --trace-lookups) trace_lookups=$2 ;;
		--budget-s) budget=$2 ;; --zstdcat-windows) zstdcat_windows=$2 ;;
		esac
		shift 2 ;;
	--quick) quick=1; shift ;;
	--keep) keep=(--keep); shift ;;
	--reuse)
		[[ -d ${2:-} ]] || { echo "read.sh: invalid --reuse: '${2:-}' (a directory kept by --keep)" >&2; exit 2; }
		reuse=(--reuse "$2"); shift 2 ;;
	*) echo "read.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
done
if [[ $quick == 1 ]]; then
	records=100000 rounds=2 windows=20 trace_lookups=10 zstdcat_windows=3
fi
((records >= 1000 && rounds >= 1 && windows >= 2 && trace_lookups >= 1 && budget >= 1 &&
	zstdcat_windows <= windows)) || {
	echo "read.sh: --records >= 1000, --rounds >= 1, --windows >= 2, --trace-lookups and --budget-s >= 1, --zstdcat-windows <= --windows" >&2
	exit 2
}
for tool in sqlite3 zstd zstdcat mawk grep /usr/bin/python3; do
	command -v "$tool" >/dev/null || { echo "read.sh: $tool not found (scripts/deps.sh installs it)" >&2; exit 1; }
done
[[ -x $build/tracevault && -x $build/tracevaultd ]] || {
	echo "read.sh: no tracevault/tracevaultd in '$build' (build first: make)" >&2
	exit 1
}
day_rounds=$rounds
exec /usr/bin/python3 "$here/bench_read.py" --build "$build" --records "$records" --seed "$seed" \
	--rounds "$rounds" --windows "$windows" --trace-lookups "$trace_lookups" \
	--zstdcat-windows "$zstdcat_windows" \
	--day-rounds "$day_rounds" --budget-s "$budget" "${keep[@]}" "${reuse[@]}"
