#!/usr/bin/env bash
# `make fuzz`: runs every libFuzzer harness of BUILD/fuzz (a TV_FUZZ build, tests/fuzz/README.md)
# for SECONDS each, one after the other on one core (-jobs is not used: the machine is shared),
# from its seed corpus and past crashes, and reports per harness the executions, the corpus it
# grew and any crash (its input is saved under BUILD/fuzz/work/NAME/artifacts/). New inputs go to
# BUILD/fuzz/work/NAME/corpus, never into the checked-in seeds. Exit 1 when a harness crashed.
# Usage: scripts/fuzz.sh BUILD_DIR [SECONDS] [NAME...]
set -uo pipefail

build=${1:?usage: scripts/fuzz.sh BUILD_DIR [SECONDS] [NAME...]}
secs=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
src=$(cd "$(dirname "$0")/.." && pwd)
names=("$@")
if ((${#names[@]} == 0)); then
  for h in "$build"/fuzz/fuzz_*; do names+=("$(basename "$h" | sed 's/^fuzz_//')"); done
fi

failed=0
printf '%-16s %8s %12s %10s %8s  %s\n' harness seconds execs execs/s corpus result
for name in "${names[@]}"; do
  bin=$build/fuzz/fuzz_$name
  work=$build/fuzz/work/$name
  mkdir -p "$work/corpus" "$work/artifacts"
  inputs=("$src/tests/fuzz/corpus/$name")
  [[ -d $src/tests/fuzz/regressions/$name ]] && inputs+=("$src/tests/fuzz/regressions/$name")
  log=$work/last.log
  start=$(date +%s)
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" "${inputs[@]}" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  units=$(find "$work/corpus" -type f | wc -l)
  if ((rc == 0)); then
    result=ok
  else
    failed=1
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="CRASH (exit $rc): ${crash:-see $log}"
  fi
  printf '%-16s %8s %12s %10s %8s  %s\n' "$name" "$took" "${execs:-?}" "${rate:-?}" "$units" "$result"
  if ((rc != 0)); then
    grep -E 'ERROR|property failed|SUMMARY' "$log" | head -5 | sed 's/^/    /'
  fi
done
exit $failed
