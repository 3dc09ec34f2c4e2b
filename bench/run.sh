#!/usr/bin/env bash
# `make bench`: our durable ingest beside the machine's ceilings measured in the same run
# (raw loopback TCP, io_uring write + fdatasync in the server's sync pattern cross-checked with
# fio, memcpy), zero-copy | --no-zerocopy x 1 | 4 writers x chunk sizes in interleaved rounds;
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
# the ingest step's sizes (bench/README.md "Ingest rounds"): the headline runs (zero-copy and
# --no-zerocopy, 1 writer, the default chunk) and the ceilings move MIB each; every point of the
# sweep (zero-copy | --no-zerocopy x 1 | 4 writers x CHUNKS) moves SWEEP_MIB; ROUNDS interleaved
# rounds. The quick run is seconds, yet runs every configuration kind once.
if [[ $QUICK == 1 ]]; then
	MIB=${TV_BENCH_MIB:-64} ROUNDS=${TV_BENCH_ROUNDS:-1} MEMCPY_MIB=1024
	SWEEP_MIB=${TV_BENCH_SWEEP_MIB:-32} CHUNKS=${TV_BENCH_CHUNKS:-"64K 4M"}
else
	MIB=${TV_BENCH_MIB:-256} ROUNDS=${TV_BENCH_ROUNDS:-5} MEMCPY_MIB=2048
	SWEEP_MIB=${TV_BENCH_SWEEP_MIB:-128} CHUNKS=${TV_BENCH_CHUNKS:-"64K 256K 1M 4M"}
fi
[[ $MIB =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ && $SWEEP_MIB =~ ^[1-9][0-9]*$ ]] || {
	echo "bench: invalid TV_BENCH_MIB '$MIB', TV_BENCH_ROUNDS '$ROUNDS' or TV_BENCH_SWEEP_MIB '$SWEEP_MIB' (positive integers)" >&2
	exit 2
}
# chunk sizes as bench_ingest --chunk-bytes takes them, written 64K, 1M (KiB, MiB) or bytes
[[ $CHUNKS =~ ^\ *[1-9][0-9]*[KM]?(\ +[1-9][0-9]*[KM]?)*\ *$ ]] || {
	echo "bench: invalid TV_BENCH_CHUNKS: '$CHUNKS' (sizes such as '64K 1M 4M')" >&2
	exit 2
}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONUNBUFFERED=1 # the Python steps' lines appear as they are printed, also into a pipe

# The steps, in the order they run: NAME:WHAT, run by step_NAME below and announced as
# "bench step K/N: WHAT (elapsed S s)". The one list of them: a new step is a line here and a
# step_ function (and a pattern in tests/integration/test_bench_quick.py, which checks that
# every step printed its figures).
STEPS=(
	"ingest:durable ingest, zero-copy | copy x 1 | 4 writers x chunk size, beside the loopback TCP and io_uring disk ceilings"
	"capture:nginx with eBPF capture off and on beside tcpdump -w, eBPF time, lossless rate, parser replay, a window read back beside tshark"
	"under:S3 under-store persist beside raw curl PUT, COMMIT latency, evicted vs local query"
	"read:read side beside SQLite and zstd -3"
	"otlp:OTLP Export over gRPC, spans/s and per server CPU-second, C generator and Node SDK, beside durable block writes of the same size"
)
# TV_BENCH_STEPS=ingest,read: only the named steps, in STEPS' order (to work on one step; the
# results then hold only those). Unset or empty: every step.
if [[ -n ${TV_BENCH_STEPS:-} ]]; then
	chosen=()
	for step in "${STEPS[@]}"; do
		[[ ,$TV_BENCH_STEPS, == *",${step%%:*},"* ]] && chosen+=("$step")
	done
	for name in ${TV_BENCH_STEPS//,/ }; do
		[[ " ${STEPS[*]%%:*} " == *" $name "* ]] || {
			echo "bench: invalid TV_BENCH_STEPS: unknown step '$name' (steps: ${STEPS[*]%%:*})" >&2
			exit 2
		}
	done
	((${#chosen[@]} > 0)) || { echo "bench: invalid TV_BENCH_STEPS: '$TV_BENCH_STEPS' names no step" >&2; exit 2; }
	STEPS=("${chosen[@]}")
fi

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

# ingest MIB ARGS...: one fresh server, one bench_ingest run of MIB MiB with ARGS (--writers,
# --chunk-bytes, --no-zerocopy); prints "MBps client_s/GB server_s/GB copied writers chunk_bytes".
# A fresh server per run: each starts from an empty data dir and catalog, so no run pays for
# the files or the catalog pages an earlier one left (~0.2 s a start, outside the timing).
ingest() {
	# called in $(...): a subshell, whose srv the main shell's EXIT trap never sees, so the
	# subshell stops its own server when it exits, also on a failure
	trap stop_server EXIT
	local mib=$1
	shift
	local data="$work/data.$RANDOM"
	# removed first: the server's shell truncates them only after the fork, and a grep before
	# that would read the last server's "listening on" line
	rm -f "$work/server.out" "$work/server.err"
	"$BIN/tracevaultd" --data "$data" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
	srv=$!
	for ((i = 0; i < 200; i++)); do grep -qs '^listening on ' "$work/server.out" && break; sleep 0.05; done
	local addr
	addr=$(awk '/^listening on /{print $3; exit}' "$work/server.out")
	[[ -n "$addr" ]] || { echo "bench: tracevaultd did not start: $(cat "$work/server.err")" >&2; exit 1; }
	local t0 t1
	t0=$(cpu_ticks "$srv")
	"$BIN/bench/bench_ingest" --server "$addr" --mib "$mib" "$@" >"$work/ingest.out"
	t1=$(cpu_ticks "$srv")
	stop_server
	rm -rf "$data"
	local bytes
	bytes=$(val ingest_bytes <"$work/ingest.out")
	awk -v mbps="$(val ingest_MBps <"$work/ingest.out")" \
	    -v ccpu="$(val client_cpu_s_per_GB <"$work/ingest.out")" \
	    -v scpu="$((t1 - t0))" -v hz="$hz" -v bytes="$bytes" \
	    -v copied="$(val payload_bytes_copied <"$work/ingest.out")" \
	    -v writers="$(val writers <"$work/ingest.out")" \
	    -v chunk="$(val chunk_bytes <"$work/ingest.out")" \
	    'BEGIN { printf "%.1f %.3f %.3f %d %d %d\n", mbps, ccpu, scpu / hz / (bytes / 1e9), copied, writers, chunk }'
}

# fio_blocks DIR NFILES FILE_KIB: fio's run of the server's sync pattern as far as fio can
# express it (a fresh file per block, of the size a block seals to, written in two writes
# through io_uring at depth 8, an fdatasync per file once both are done; no renames, no
# directory fsyncs): prints MB/s, or "-" without fio. fio writes only whole --bs, so the two
# writes are FILE_KIB / 2 rounded up to 4 KiB each (the file up to 8 KiB larger).
fio_blocks() {
	if ! command -v fio >/dev/null; then
		echo "-"
		return
	fi
	local half=$((($3 / 2 + 3) / 4 * 4))
	mkdir -p "$1"
	fio --name=blocks --directory="$1" --ioengine=io_uring --rw=write --bs="${half}k" --iodepth=8 \
	    --nrfiles="$2" --filesize="$((2 * half))k" --size="$((2 * half * $2))k" --fdatasync=2 \
	    --file_service_type=sequential --create_on_open=1 --fallocate=none --openfiles=8 \
	    --unlink=1 --output-format=json |
		/usr/bin/python3 -c 'import json, sys; print("%.1f" % (json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"] / 1e6))'
	rmdir "$1"
}

# bytes_of 64K|1M|N: bytes; size_of BYTES: 64K, 1M or the bytes
bytes_of() { awk -v s="$1" 'BEGIN { u = substr(s, length(s)); n = s + 0; print (u == "K" ? n * 1024 : u == "M" ? n * 1048576 : n) }'; }
size_of() { awk -v b="$1" 'BEGIN { print (b % 1048576 == 0 ? b / 1048576 "M" : b % 1024 == 0 ? b / 1024 "K" : b) }'; }

# step_ingest: ROUNDS interleaved rounds. Each round measures its ceilings, then runs every
# configuration once, in an order rotated by round (no configuration always first or last):
# the headline zero-copy and --no-zerocopy (1 writer, the default chunk, MIB MiB), and the
# sweep, zero-copy | --no-zerocopy x 1 | 4 writers x CHUNKS (SWEEP_MIB MiB each). Every run's
# line goes to the log; bench/ingest_summary.py then prints median [min-max] per configuration
# and the comparisons (bench/README.md "Ingest rounds").
step_ingest() {
	local r i k n stride label mode writers chunk mib tcp disk old fio mem bound out
	local mbps ccpu scpu copied w c ratio args rows="$work/ingest.rows"
	local configs=("zerocopy 1 - $MIB" "no-zerocopy 1 - $MIB")
	for chunk in $CHUNKS; do
		for writers in 1 4; do
			for mode in zerocopy no-zerocopy; do
				configs+=("$mode $writers $chunk $SWEEP_MIB")
			done
		done
	done
	n=${#configs[@]}
	stride=$(((n + ROUNDS - 1) / ROUNDS))
	# Blocks are filled to 4 MiB of raw records (as the capture's --block-bytes) and seal to
	# fewer bytes (the block format): the server stores one file of that size per block, so
	# the disk ceilings write files of that size, as many as the headline run has blocks.
	local sealed sealed_k nblocks ceil_mib
	sealed=$("$BIN/bench/bench_ingest" --sealed-block-bytes | val sealed_block_bytes)
	sealed_k=$(((sealed + 1023) / 1024))
	nblocks=$((MIB / 4 > 0 ? MIB / 4 : 1))
	ceil_mib=$(((nblocks * sealed_k + 1023) / 1024))
	echo "tracevault bench: $ROUNDS rounds of $n runs: headline zero-copy and --no-zerocopy (1 writer, default chunk) $MIB MiB each; sweep zero-copy | --no-zerocopy x 1 | 4 writers x chunk $CHUNKS, $SWEEP_MIB MiB each; data under $work"
	echo "data dir's file system: $(df --output=fstype,source "$work" | tail -1 | awk '{ print $1 " on " $2 }'); disk ceiling = the server's sync pattern (ceiling_uring --blocks) in the same file system"
	echo "blocks: 4 MiB of raw records (MiB below counts them), sealed to $sealed bytes each (MB/s counts sealed bytes); the disk ceilings write $nblocks files of ${sealed_k} KiB ($ceil_mib MiB), as the headline run stores"
	echo "(disk speed here swings 2-4x within minutes: each round measures its own ceilings, then runs every configuration once, the order rotated by round)"
	: >"$rows"
	printf "%-5s %-24s %7s %5s %5s %9s %8s %12s %12s %11s\n" "round" "config" "writers" "chunk" \
		"MiB" "MB/s" "x bound" "client s/GB" "server s/GB" "copied" | tee -a "$rows"
	for ((r = 1; r <= ROUNDS; r++)); do
		tcp=$("$BIN/bench/ceiling_tcp" "$MIB" | val tcp_loopback_MBps)
		# the server's own pattern: a file per 4 MiB block fdatasynced as written, a rename +
		# directory fsyncs + a catalog page per segment of 8 blocks (bench/README.md)
		disk=$("$BIN/bench/ceiling_uring" --blocks "$work" "$ceil_mib" "${sealed_k}K" 8 | val uring_blocks_fdatasync_MBps)
		fio=$(fio_blocks "$work/fio" "$nblocks" "$sealed_k")
		# the old "ceiling", for comparison only: one file, an fdatasync per 32 MiB
		old=$("$BIN/bench/ceiling_uring" --one-file "$work" "$ceil_mib" 32 | val uring_write_fdatasync_MBps)
		mem=$("$BIN/bench/ceiling_memcpy" "$MEMCPY_MIB" | val memcpy_MBps)
		bound=$(awk -v a="$tcp" -v b="$disk" 'BEGIN { print (a < b ? a : b) }')
		echo "round $r ceilings, MB/s: TCP $tcp disk $disk fio $fio 1file $old memcpy $mem; bound min(TCP, disk) $bound" | tee -a "$rows"
		for ((i = 0; i < n; i++)); do
			k=$((((r - 1) * stride + i) % n))
			read -r mode writers chunk mib <<<"${configs[k]}"
			args=(--writers "$writers")
			[[ $chunk == - ]] || args+=(--chunk-bytes "$(bytes_of "$chunk")")
			[[ $mode == zerocopy ]] || args+=(--no-zerocopy)
			out=$(ingest "$mib" "${args[@]}")
			read -r mbps ccpu scpu copied w c <<<"$out"
			# the headline is named by its mode alone, a sweep point by mode/writers/chunk
			label=$mode
			[[ $chunk == - ]] || label="$mode/${writers}w/$chunk"
			ratio=$(awk -v a="$mbps" -v b="$bound" 'BEGIN { printf "%.3f", a / b }')
			printf "%-5s %-24s %6sw %5s %5s %9.1f %8s %12.3f %12.3f %11d\n" "$r" "$label" "$w" \
				"$(size_of "$c")" "$mib" "$mbps" "$ratio" "$ccpu" "$scpu" "$copied" | tee -a "$rows"
		done
	done
	/usr/bin/python3 "$HERE/ingest_summary.py" "$rows"
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
	ingest) echo "ingest: bench/bench_ingest --sealed-block-bytes (S); per round bench/ceiling_tcp $MIB; bench/ceiling_uring --blocks DATA_DIR $MIB/4*S/MiB S/KiB 8; fio (bench/run.sh fio_blocks) $MIB/4 files of S; bench/ceiling_uring --one-file DATA_DIR $MIB/4*S/MiB 32; bench/ceiling_memcpy $MEMCPY_MIB; then, each against a fresh tracevaultd --data DIR --listen 127.0.0.1:0, bench/bench_ingest --server ADDR --mib $MIB --writers 1 [--no-zerocopy] and, for each chunk in $CHUNKS, bench/bench_ingest --server ADDR --mib $SWEEP_MIB --writers 1|4 --chunk-bytes CHUNK [--no-zerocopy] ($ROUNDS rounds, order rotated by round); bench/ingest_summary.py" ;;
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
