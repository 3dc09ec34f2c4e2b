#!/usr/bin/env bash
# `make bench`: our durable ingest beside the machine's ceilings measured in the same run
# (raw loopback TCP, io_uring write + fdatasync in the server's sync pattern cross-checked with
# fio, memcpy), zero-copy and --no-zerocopy alternated;
# then the capture bench (bench_capture.py), the under-store bench (bench_under.py) and the
# read bench (read.sh), each step announced by a progress line. TV_BENCH_QUICK=1 (make bench
# QUICK=1) runs every step small, so that make test can run them all (bench/README.md).
set -euo pipefail
# a failure inside $(...) fails the step too: without this a dying bench_ingest left the
# ingest step printing 0.0 and -nan and the run going on
shopt -s inherit_errexit

USAGE="usage: bench/run.sh [BUILD_DIR] (TV_BENCH_QUICK=1: every step small; bench/README.md)"
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	echo "$USAGE"
	exit 0
fi
if (($# > 1)) || [[ ${1:-} == -* ]]; then
	echo "$USAGE" >&2
	exit 2
fi
BUILD=${1:-build}
[[ -d $BUILD ]] || { echo "bench: no build dir '$BUILD' (build first: make)" >&2; exit 1; }
BIN=$(cd "$BUILD" && pwd)
QUICK=${TV_BENCH_QUICK:-0}
[[ $QUICK == 0 || $QUICK == 1 ]] || {
	echo "bench: invalid TV_BENCH_QUICK: '$QUICK' (0 or 1)" >&2
	exit 2
}
# the ingest rounds' size: 64 MiB and 1 round in the quick run (seconds, not minutes)
if [[ $QUICK == 1 ]]; then
	MIB=${TV_BENCH_MIB:-64} ROUNDS=${TV_BENCH_ROUNDS:-1} MEMCPY_MIB=1024
else
	MIB=${TV_BENCH_MIB:-1024} ROUNDS=${TV_BENCH_ROUNDS:-3} MEMCPY_MIB=8192
fi
[[ $MIB =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] || {
	echo "bench: invalid TV_BENCH_MIB '$MIB' or TV_BENCH_ROUNDS '$ROUNDS' (positive integers)" >&2
	exit 2
}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONUNBUFFERED=1 # the Python steps' lines appear as they are printed, also into a pipe

# The steps, in the order they run: NAME:WHAT, run by step_NAME below and announced as
# "bench step K/N: WHAT (elapsed S s)". The one list of them: a new step is a line here and a
# step_ function (and a pattern in tests/integration/test_bench_quick.py, which checks that
# every step printed its figures).
STEPS=(
	"ingest:durable ingest beside the loopback TCP and io_uring disk ceilings"
	"capture:nginx with eBPF capture off and on beside tcpdump -w, eBPF time, lossless rate, parser replay, a window read back beside tshark"
	"under:S3 under-store persist beside raw curl PUT, COMMIT latency, evicted vs local query"
	"read:read side beside SQLite and zstd -3"
	"otlp:OTLP Export over gRPC, spans/s and per server CPU-second, C generator and Node SDK, beside durable block writes of the same size"
)

work=$(mktemp -d /tmp/tracevault-bench.XXXXXX)
srv=""
stop_server() {
	if [[ -n "$srv" ]]; then
		kill "$srv" 2>/dev/null || true
		wait "$srv" 2>/dev/null || true
		srv=""
	fi
}
trap 'stop_server; rm -rf "$work"' EXIT

val() { awk -v k="$1" '$1 == k { print $2 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# ingest MODE ARGS...: one fresh server, one bench_ingest run; prints "MBps client_s/GB server_s/GB copied"
ingest() {
	# called in $(...): a subshell, whose srv the main shell's EXIT trap never sees, so the
	# subshell stops its own server when it exits, also on a failure
	trap stop_server EXIT
	local data="$work/data.$RANDOM"
	"$BIN/tracevaultd" --data "$data" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
	srv=$!
	for ((i = 0; i < 200; i++)); do grep -q '^listening on ' "$work/server.out" && break; sleep 0.05; done
	local addr
	addr=$(awk '/^listening on /{print $3; exit}' "$work/server.out")
	[[ -n "$addr" ]] || { echo "bench: tracevaultd did not start: $(cat "$work/server.err")" >&2; exit 1; }
	local t0 t1
	t0=$(cpu_ticks "$srv")
	"$BIN/bench/bench_ingest" --server "$addr" --mib "$MIB" "$@" >"$work/ingest.out"
	t1=$(cpu_ticks "$srv")
	stop_server
	rm -rf "$data"
	local bytes
	bytes=$(val ingest_bytes <"$work/ingest.out")
	awk -v mbps="$(val ingest_MBps <"$work/ingest.out")" \
	    -v ccpu="$(val client_cpu_s_per_GB <"$work/ingest.out")" \
	    -v scpu="$((t1 - t0))" -v hz="$hz" -v bytes="$bytes" \
	    -v copied="$(val payload_bytes_copied <"$work/ingest.out")" \
	    'BEGIN { printf "%.1f %.3f %.3f %d\n", mbps, ccpu, scpu / hz / (bytes / 1e9), copied }'
}

# fio_blocks DIR MIB: fio's run of the server's sync pattern as far as fio can express it (a
# fresh file per 4 MiB block, 1 MiB writes through io_uring at depth 8, an fdatasync per file
# once its 4 writes are done; no renames, no directory fsyncs): prints MB/s, or "-" without fio
fio_blocks() {
	if ! command -v fio >/dev/null; then
		echo "-"
		return
	fi
	mkdir -p "$1"
	fio --name=blocks --directory="$1" --ioengine=io_uring --rw=write --bs=1M --iodepth=8 \
	    --nrfiles=$(($2 / 4 > 0 ? $2 / 4 : 1)) --filesize=4M --size="$2M" --fdatasync=4 \
	    --file_service_type=sequential --create_on_open=1 --fallocate=none --openfiles=8 \
	    --unlink=1 --output-format=json |
		/usr/bin/python3 -c 'import json, sys; print("%.1f" % (json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"] / 1e6))'
	rmdir "$1"
}

# step_ingest: ROUNDS rounds, each its own ceilings, then zero-copy and --no-zerocopy ingest
step_ingest() {
	local r mode tcp disk old fio mem bound out mbps ccpu scpu copied ratio worst
	local ratios_zc ratios_nc sum_zc sum_nc cpu_zc cpu_nc fio_ratios
	echo "tracevault bench: $MIB MiB per measurement, $ROUNDS rounds, data under $work"
	echo "data dir's file system: $(df --output=fstype,source "$work" | tail -1 | awk '{ print $1 " on " $2 }'); disk ceiling = the server's sync pattern (ceiling_uring --blocks) in the same file system"
	echo "(disk speed here swings 2-4x within minutes: each round measures its own ceilings next to its runs)"
	printf "%-26s %9s %9s %9s %9s %9s %9s %8s %12s %12s %11s\n" "round/mode" "MB/s" "TCP" "disk" \
		"fio" "1file" "memcpy" "x bound" "client s/GB" "server s/GB" "copied"
	ratios_zc="" ratios_nc="" sum_zc=0 sum_nc=0 cpu_zc=0 cpu_nc=0 fio_ratios="" worst=0
	for ((r = 1; r <= ROUNDS; r++)); do
		tcp=$("$BIN/bench/ceiling_tcp" "$MIB" | val tcp_loopback_MBps)
		# the server's own pattern: a file per 4 MiB block fdatasynced as written, a rename +
		# directory fsyncs + a catalog page per segment of 8 blocks (bench/README.md)
		disk=$("$BIN/bench/ceiling_uring" --blocks "$work" "$MIB" 4 8 | val uring_blocks_fdatasync_MBps)
		fio=$(fio_blocks "$work/fio" "$MIB")
		# the old "ceiling", for comparison only: one file, an fdatasync per 32 MiB
		old=$("$BIN/bench/ceiling_uring" --one-file "$work" "$MIB" 32 | val uring_write_fdatasync_MBps)
		mem=$("$BIN/bench/ceiling_memcpy" "$MEMCPY_MIB" | val memcpy_MBps)
		bound=$(awk -v a="$tcp" -v b="$disk" 'BEGIN { print (a < b ? a : b) }')
		[[ $fio == - ]] || fio_ratios+="$(awk -v a="$disk" -v b="$fio" 'BEGIN { printf "%.2f", a / b }') "
		for mode in zerocopy no-zerocopy; do
			if [[ $mode == zerocopy ]]; then out=$(ingest); else out=$(ingest --no-zerocopy); fi
			read -r mbps ccpu scpu copied <<<"$out"
			ratio=$(awk -v a="$mbps" -v b="$bound" 'BEGIN { printf "%.2f", a / b }')
			worst=$(awk -v a="$worst" -v b="$ratio" 'BEGIN { print (b > a ? b : a) }')
			printf "%-26s %9.1f %9.1f %9.1f %9s %9.1f %9.1f %8s %12.3f %12.3f %11d\n" "$r $mode" \
				"$mbps" "$tcp" "$disk" "$fio" "$old" "$mem" "$ratio" "$ccpu" "$scpu" "$copied"
			if [[ $mode == zerocopy ]]; then
				ratios_zc+="$ratio "
				sum_zc=$(awk -v a="$sum_zc" -v b="$mbps" 'BEGIN { print a + b }')
				cpu_zc=$(awk -v a="$cpu_zc" -v c="$ccpu" -v s="$scpu" 'BEGIN { print a + c + s }')
			else
				ratios_nc+="$ratio "
				sum_nc=$(awk -v a="$sum_nc" -v b="$mbps" 'BEGIN { print a + b }')
				cpu_nc=$(awk -v a="$cpu_nc" -v c="$ccpu" -v s="$scpu" 'BEGIN { print a + c + s }')
			fi
		done
	done
	median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
	echo "zero-copy ingest / min(TCP, disk) of its round: median $(median <<<"$ratios_zc")x (per round: $ratios_zc) goal >= 0.8x"
	awk -v zc="$sum_zc" -v nc="$sum_nc" -v czc="$cpu_zc" -v cnc="$cpu_nc" 'BEGIN {
		printf "zero-copy vs --no-zerocopy: %.2fx throughput (mean); CPU per GB, client + server, summed over rounds: %.2f vs %.2f s (%+.0f%%)\n",
			zc / nc, czc, cnc, 100 * (czc / cnc - 1)
	}'
	# the ceiling must bound: reported, never asserted (one slow disk minute can break it)
	awk -v w="$worst" -v n="$((2 * ROUNDS))" 'BEGIN {
		printf "check: ingest / min(TCP, disk) <= 1.0 in every run: %s (max %.2fx over %d runs)\n",
			(w <= 1.0 ? "yes" : "NO, the disk ceiling did not bound ingest"), w, n
	}'
	if [[ -n $fio_ratios ]]; then
		echo "cross-check: disk ceiling / fio same pattern (no renames, no dir fsyncs): median $(median <<<"$fio_ratios")x (per round: $fio_ratios)"
	else
		echo "cross-check: disk ceiling / fio: SKIP: fio not installed (scripts/deps.sh installs it)"
	fi
}

# step_capture: nginx with eBPF capture off vs on, the lossless request rate, parser replay
# (bench/bench_capture.py reuses the integration tests' helpers to run nginx, tracevaultd, wrk)
step_capture() {
	echo "tracevault capture bench (needs root or CAP_BPF+CAP_PERFMON for (i), (i-b) and (ii))"
	TV_BIN_DIR="$BIN" TV_GEN_DIR="$BIN/gen" /usr/bin/python3 "$HERE/bench_capture.py"
}

# step_under: cache-through persist beside a raw curl PUT of the same bytes to a real Ceph RGW
# started for the step (bench/bench_under.py)
step_under() {
	if [[ ${TV_BENCH_UNDER:-1} == 0 ]]; then
		echo "tracevault under-store bench: skipped (TV_BENCH_UNDER=0)"
		return
	fi
	TV_BIN_DIR="$BIN" TV_GEN_DIR="$BIN/gen" /usr/bin/python3 "$HERE/bench_under.py"
}

# step_read: tracevault beside SQLite and zstd -3 on one generated archive (bench/read.sh)
step_read() {
	if [[ ${TV_BENCH_READ:-1} == 0 ]]; then
		echo "tracevault read bench: skipped (TV_BENCH_READ=0)"
		return
	fi
	bash "$HERE/read.sh" --build "$BIN"
}

# step_otlp: OTLP/gRPC Export from bench/otlp_load (C, 1 and 4 in flight) and the Node SDK
# (bench/otlp_node.js), spans per server CPU-second, beside bench_ingest writing blocks of the
# same size in the same round (bench/bench_otlp.py)
step_otlp() {
	if [[ ${TV_BENCH_OTLP:-1} == 0 ]]; then
		echo "tracevault otlp bench: skipped (TV_BENCH_OTLP=0)"
		return
	fi
	TV_BIN_DIR="$BIN" TV_GEN_DIR="$BIN/gen" /usr/bin/python3 "$HERE/bench_otlp.py"
}

# The results (bench/README.md "Results"): RESULTS/<UTC date>-<host>.json, .log and the PNG
# plots, written by bench/report.py from the run's log. A full run writes bench/results/, a
# quick one BUILD_DIR/bench-results/ (never the source tree); TV_BENCH_RESULTS_DIR wins. The
# steps see it as TV_BENCH_RESULTS_DIR (bench_read.py writes its raw window samples there).
if [[ $QUICK == 1 ]]; then
	RESULTS=${TV_BENCH_RESULTS_DIR:-$BIN/bench-results}
else
	RESULTS=${TV_BENCH_RESULTS_DIR:-$HERE/results}
fi
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
export TV_BENCH_RESULTS_DIR=$RESULTS
RUN_ID="$(date -u +%F)-$(hostname)"
rm -f "$RESULTS/read_window_ms.tsv"

# the command of each step, for the results' JSON ("commands"), with this run's sizes
step_command() {
	case $1 in
	ingest) echo "ingest: per round bench/ceiling_tcp $MIB; bench/ceiling_uring DATA_DIR $MIB 32; bench/bench_ingest --server ADDR --mib $MIB [--no-zerocopy] against a fresh tracevaultd --data DIR --listen 127.0.0.1:0 ($ROUNDS rounds)" ;;
	capture) echo "capture: TV_BIN_DIR=$BIN TV_GEN_DIR=$BIN/gen /usr/bin/python3 bench/bench_capture.py" ;;
	under) echo "under: TV_BIN_DIR=$BIN TV_GEN_DIR=$BIN/gen /usr/bin/python3 bench/bench_under.py" ;;
	read) echo "read: bash bench/read.sh --build $BIN" ;;
	otlp) echo "otlp: TV_BIN_DIR=$BIN TV_GEN_DIR=$BIN/gen /usr/bin/python3 bench/bench_otlp.py (bench/otlp_load, bench/otlp_node.js, bench/bench_ingest)" ;;
	*) echo "$1: step_$1 in bench/run.sh" ;;
	esac
}

run_steps() {
	SECONDS=0
	for ((k = 1; k <= ${#STEPS[@]}; k++)); do
		step=${STEPS[k - 1]}
		((k == 1)) || echo
		echo "bench step $k/${#STEPS[@]}: ${step#*:} (elapsed $SECONDS s)"
		"step_${step%%:*}"
	done
	quick_note=""
	[[ $QUICK == 0 ]] || quick_note=" (quick)"
	echo
	echo "bench done: ${#STEPS[@]} steps in $SECONDS s$quick_note"
}
# the whole output also into the log report.py reads (pipefail: a failing step fails the run)
run_steps | tee "$RESULTS/$RUN_ID.log"

cmds=(--command "$({ env | grep '^TV_BENCH_' | grep -v '^TV_BENCH_RESULTS_DIR=' || true; } | sort | tr '\n' ' ')bash bench/run.sh $BUILD")
for step in "${STEPS[@]}"; do cmds+=(--command "$(step_command "${step%%:*}")"); done
quick_arg=()
[[ $QUICK == 0 ]] || quick_arg=(--quick)
echo
/usr/bin/python3 "$HERE/report.py" --log "$RESULTS/$RUN_ID.log" --results-dir "$RESULTS" \
	--run-id "$RUN_ID" --data-dir "$work" --data-dir "$BIN" "${cmds[@]}" "${quick_arg[@]}"
