#!/usr/bin/env bash
# Commit latency table (issue 12, group commit): {1, 4} concurrent writers x {64 KiB x 1-block,
# 4 MiB x 8-block} segments, each run against a fresh tracevaultd, ROUNDS rounds; prints one
# line per run, then min/median/max per cell. Usage: commit.sh [BUILD_DIR] [SERVER_ARGS...]
# (TV_BENCH_ROUNDS, TV_BENCH_SMALL_MIB, TV_BENCH_LARGE_MIB). The machine is noisy: compare
# medians of runs taken in the same session only. A/B: TV_BENCH_SERVERS="before=/path/a
# after=/path/b" runs every cell with each server in turn, the order alternated per round.
set -euo pipefail

BUILD=${1:-build}
shift || true
BIN=$(cd "$BUILD" && pwd)
ROUNDS=${TV_BENCH_ROUNDS:-3}
SMALL_MIB=${TV_BENCH_SMALL_MIB:-16}
LARGE_MIB=${TV_BENCH_LARGE_MIB:-512}
work=$(mktemp -d /tmp/tracevault-commit.XXXXXX)
srv=""
stop_server() {
	if [[ -n "$srv" ]]; then
		kill "$srv" 2>/dev/null || true
		wait "$srv" 2>/dev/null || true
		srv=""
	fi
}
trap 'stop_server; rm -rf "$work"' EXIT
val() { awk -v k="$1" '$1 == k { print $2 }' "$work/ingest.out"; }

# run SERVER WRITERS SIZE: prints "segs/s MB/s p50_us p99_us"
run() {
	local server=$1 data="$work/data.$RANDOM" args
	shift
	if [[ $2 == small ]]; then
		args=(--mib "$SMALL_MIB" --block-bytes 65536 --blocks-per-segment 1)
	else
		args=(--mib "$LARGE_MIB" --block-bytes 4194304 --blocks-per-segment 8)
	fi
	"$server" --data "$data" --listen 127.0.0.1:0 "${SERVER_ARGS[@]}" \
		>"$work/server.out" 2>"$work/server.err" &
	srv=$!
	for ((i = 0; i < 600; i++)); do grep -q '^listening on ' "$work/server.out" && break; sleep 0.05; done
	local addr
	addr=$(awk '/^listening on /{print $3; exit}' "$work/server.out")
	[[ -n "$addr" ]] || { echo "commit.sh: tracevaultd did not start: $(cat "$work/server.err")" >&2; exit 1; }
	"$BIN/bench/bench_ingest" --server "$addr" --writers "$1" "${args[@]}" >"$work/ingest.out"
	stop_server
	rm -rf "$data"
	echo "$(val segments_per_s) $(val ingest_MBps) $(val commit_p50_us) $(val commit_p99_us)"
}

SERVER_ARGS=("$@")
read -r -a servers <<<"${TV_BENCH_SERVERS:-this=$BIN/tracevaultd}"
printf "%-5s %-8s %-7s %-6s %9s %8s %9s %9s\n" round server writers size "segs/s" "MB/s" "p50_us" "p99_us"
declare -A all
for ((r = 1; r <= ROUNDS; r++)); do
	order=("${servers[@]}")
	if ((r % 2 == 0)); then # alternate which server runs first in each cell
		order=()
		for ((k = ${#servers[@]} - 1; k >= 0; k--)); do order+=("${servers[k]}"); done
	fi
	for w in 1 4; do
		for size in small large; do
			for sv in "${order[@]}"; do
				label=${sv%%=*}
				out=$(run "${sv#*=}" "$w" "$size")
				read -r sps mbps p50 p99 <<<"$out"
				printf "%-5s %-8s %-7s %-6s %9s %8s %9s %9s\n" "$r" "$label" "$w" "$size" \
					"$sps" "$mbps" "$p50" "$p99"
				all[$label.$w.$size]+="$sps $mbps $p50 $p99;"
			done
		done
	done
done
echo "min/median/max over $ROUNDS rounds"
printf "%-8s %-7s %-6s %-24s %-24s %-24s %-24s\n" server writers size "segs/s" "MB/s" "p50_us" "p99_us"
for w in 1 4; do
	for size in small large; do
		for sv in "${servers[@]}"; do
			label=${sv%%=*}
			line=""
			for col in 1 2 3 4; do
				line+=$(tr ';' '\n' <<<"${all[$label.$w.$size]}" | awk -v c="$col" 'NF { print $c }' |
					sort -g | awk '{ v[NR] = $1 } END { printf "%-24s", v[1] "/" v[int((NR + 1) / 2)] "/" v[NR] }')
				line+=" "
			done
			printf "%-8s %-7s %-6s %s\n" "$label" "$w" "$size" "$line"
		done
	done
done
