#!/usr/bin/env bash
# Where a `tracevault query` process spends its wall time, phase by phase (bench/README.md,
# "Where a small query's time goes"): uprobes on the CLI's own functions and on grpc_init /
# grpc_shutdown, plus the kernel's exec and exit events, recorded by `perf record` for that one
# process only; then one line per run and the median of each phase. Needs root (uprobes) and
# perf. The probes are added under the group tvphase and removed on exit.
set -euo pipefail

usage() {
	cat <<EOF
Usage: bench/query_phases.sh BUILD_DIR HOST:PORT FROM_NS TO_NS [RUNS] [-- QUERY_OPTIONS...]

Runs \`BUILD_DIR/tracevault query --server HOST:PORT --from FROM_NS --to TO_NS\` RUNS times
(default 10, at most 200; output to /dev/null) under perf with uprobes and prints, in ms:
exec->main (dynamic loader + constructors), main->tv_query (options), grpc_init,
channel (completion queue + channel), probe (connect + HTTP/2 until READY), call->first
record (the server's work until its first message), first->last record (printing while
streaming), ->shutdown, grpc_shutdown, ->exit; then the median of each.

Example:
  bench/query_phases.sh build 127.0.0.1:7070 1767272400000000000 1767272460000000000 20
EOF
}
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
(($# >= 4)) || { usage >&2; exit 2; }
build=$1 server=$2 from=$3 to=$4
shift 4
runs=10
if (($#)) && [[ $1 != -- ]]; then runs=$1; shift; fi
[[ ${1:-} == -- ]] && shift
[[ $runs =~ ^[0-9]+$ ]] && ((runs >= 1 && runs <= 200)) || { echo "query_phases.sh: RUNS: 1 to 200" >&2; exit 2; }
bin=$(cd "$build" && pwd)/tracevault
[[ -x $bin ]] || { echo "query_phases.sh: no tracevault in $build" >&2; exit 1; }
command -v perf >/dev/null || { echo "query_phases.sh: perf not found (apt-get install linux-perf)" >&2; exit 1; }

# grpc_init/grpc_shutdown live in libgrpc.so, or in the binary when gRPC is linked statically
grpc=$(ldd "$bin" | awk '/libgrpc\.so/ { print $3 }')
grpc=${grpc:-$bin}
work=$(mktemp -d /tmp/tracevault-phases.XXXXXX)
cleanup() { perf probe -q -d 'tvphase:*' >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
perf probe -q -d 'tvphase:*' >/dev/null 2>&1 || true
for f in main tv_query tv_query%return tv_rpc_channel_new tv_rpc_probe tv_rpc_probe%return \
	start_stream print_record; do
	perf probe -q -x "$bin" -a "tvphase:${f%\%return}=$f" >/dev/null # perf appends __return
done
# gRPC has no debug info here: probe its functions by address when the name lookup fails
for f in grpc_init%return grpc_shutdown grpc_shutdown%return; do
	fn=${f%\%return} ret=${f#"$fn"}
	perf probe -q -x "$grpc" -a "tvphase:$fn=$f" >/dev/null 2>&1 ||
		perf probe -q -x "$grpc" -a "tvphase:$fn=0x$(nm -D --defined-only "$grpc" 2>/dev/null |
			awk -v f="$fn" '$3 == f { print $1 }' | grep . || nm "$grpc" |
			awk -v f="$fn" '$3 == f { print $1 }')$ret" >/dev/null 2>&1
done

for ((i = 0; i < runs; i++)); do
	perf record -q -o "$work/perf.data" -e sched:sched_process_exec -e 'tvphase:*' \
		-e sched:sched_process_exit -- "$bin" query --server "$server" --from "$from" \
		--to "$to" "$@" >/dev/null
	perf script -i "$work/perf.data" -F tid,time,event 2>/dev/null
	echo "END"
done | awk '
function reset() { ex = mn = tq = gi = pr = prr = ss = fr = lr = sd = tr = xt = n = 0; pid0 = "" }
BEGIN { reset(); nph = split("exec->main main->tv_query grpc_init channel probe call->1st 1st->last ->shutdown grpc_shutdown ->exit total", ph, " ") }
$1 == "END" {
	v[1] = mn - ex; v[2] = tq - mn; v[3] = gi - tq; v[4] = pr - gi; v[5] = prr - pr
	v[6] = fr - ss; v[7] = lr - fr; v[8] = sd - lr; v[9] = tr - sd; v[10] = xt - tr; v[11] = xt - ex
	if (!fr) { v[6] = v[7] = 0; v[8] = sd - ss }
	line = ""
	for (k = 1; k <= nph; k++) { all[k, runs] = v[k] * 1000; line = line sprintf(" %s %.1f", ph[k], v[k] * 1000) }
	runs++
	printf "run %d (%d records):%s\n", runs, n, line
	reset(); next
}
{ t = $2 + 0; ev = $3; sub(/:$/, "", ev); if (pid0 == "") pid0 = $1 }
ev == "sched:sched_process_exec" && !ex { ex = t }
ev == "tvphase:main" { mn = t }
ev == "tvphase:tv_query" { tq = t }
ev == "tvphase:grpc_init__return" && !gi { gi = t }
ev == "tvphase:tv_rpc_probe" && !pr { pr = t }
ev == "tvphase:tv_rpc_probe__return" { prr = t }
ev == "tvphase:start_stream" && !ss { ss = t }
ev == "tvphase:print_record" { if (!fr) fr = t; lr = t; n++ }
ev == "tvphase:grpc_shutdown" && !sd { sd = t }
ev == "tvphase:tv_query__return" { tr = t }
ev == "sched:sched_process_exit" && $1 == pid0 { xt = t }
END {
	printf "median (ms):"
	for (k = 1; k <= nph; k++) {
		m = 0
		for (r = 0; r < runs; r++) s[r] = all[k, r]
		# insertion sort of the runs of phase k
		for (r = 1; r < runs; r++) { x = s[r]; j = r - 1; while (j >= 0 && s[j] > x) { s[j + 1] = s[j]; j-- } s[j + 1] = x }
		m = runs % 2 ? s[(runs - 1) / 2] : (s[runs / 2 - 1] + s[runs / 2]) / 2
		printf " %s %.1f", ph[k], m
	}
	printf "\n"
}'
