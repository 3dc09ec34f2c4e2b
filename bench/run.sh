#!/usr/bin/env bash
# `make bench`: our durable ingest beside the machine's ceilings measured in the same run
# (raw loopback TCP, raw io_uring write + fdatasync), all on this machine, all on loopback.
set -euo pipefail

BUILD=${1:-build}
BIN=$(cd "$BUILD" && pwd)
MIB=${TV_BENCH_MIB:-1024}
work=$(mktemp -d /tmp/tracevault-bench.XXXXXX)
srv=""
cleanup() {
	[[ -n "$srv" ]] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

val() { awk -v k="$1" '$1 == k { print $2 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

echo "tracevault bench: $MIB MiB per measurement, data dir $work (same filesystem for all)"
tcp=$("$BIN/bench/ceiling_tcp" "$MIB" | val tcp_loopback_MBps)
disk=$("$BIN/bench/ceiling_uring" "$work" "$MIB" | val uring_write_fdatasync_MBps)

"$BIN/tracevaultd" --data "$work/data" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
srv=$!
for ((i = 0; i < 200; i++)); do grep -q '^listening on ' "$work/server.out" && break; sleep 0.05; done
addr=$(awk '/^listening on /{print $3; exit}' "$work/server.out")
[[ -n "$addr" ]] || { echo "bench: tracevaultd did not start: $(cat "$work/server.err")" >&2; exit 1; }

t0=$(cpu_ticks "$srv")
"$BIN/bench/bench_ingest" --server "$addr" --mib "$MIB" >"$work/ingest.out"
t1=$(cpu_ticks "$srv")
ingest=$(val ingest_MBps <"$work/ingest.out")
bytes=$(val ingest_bytes <"$work/ingest.out")
hz=$(getconf CLK_TCK)

awk -v tcp="$tcp" -v disk="$disk" -v ing="$ingest" -v bytes="$bytes" \
    -v scpu="$(( t1 - t0 ))" -v hz="$hz" -v ccpu="$(val client_cpu_s_per_GB <"$work/ingest.out")" \
    -v copied="$(val payload_bytes_copied <"$work/ingest.out")" 'BEGIN {
	bound = tcp < disk ? tcp : disk
	printf "%-40s %10.1f MB/s\n", "ceiling: raw loopback TCP", tcp
	printf "%-40s %10.1f MB/s\n", "ceiling: raw io_uring write + fdatasync", disk
	printf "%-40s %10.1f MB/s  (%.2fx of min(TCP, disk) = %.1f)\n", \
		"tracevault durable ingest (4 MiB blocks)", ing, ing / bound, bound
	printf "%-40s %10.3f s/GB client, %.3f s/GB server\n", "CPU", ccpu, scpu / hz / (bytes / 1e9)
	printf "%-40s %10d\n", "payload bytes copied in user space", copied
}'
