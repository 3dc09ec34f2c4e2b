#!/usr/bin/env bash
# `make demo`: the main job end to end on an embedded default — tracevaultd on a temp data dir,
# nginx on loopback, a real eBPF capture of curl traffic, then the records read back by time.
set -euo pipefail

BUILD=${1:-build}
BIN=$(cd "$BUILD" && pwd)
REQUESTS=${TV_DEMO_REQUESTS:-36}
WAIT_TRIES=400 # x 0.05 s: how long any component may take to become ready

work=$(mktemp -d /tmp/tracevault-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# wait_for FILE PATTERN WHAT PID: poll a process's output for its readiness line
wait_for() {
	for ((i = 0; i < WAIT_TRIES; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		kill -0 "$4" 2>/dev/null || break
		sleep 0.05
	done
	echo "demo: $3 did not become ready; its output:" >&2
	cat "$1" "$1.err" 2>/dev/null >&2 || true
	exit 1
}

if [[ $(id -u) -ne 0 ]]; then
	echo "demo: eBPF capture needs root (CAP_BPF, CAP_PERFMON)" >&2
	exit 1
fi

say "starting tracevaultd on $work/data"
"$BIN/tracevaultd" --data "$work/data" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.out.err" &
pids+=($!)
wait_for "$work/server.out" '^listening on ' tracevaultd "${pids[-1]}"
server=$(awk '/^listening on /{print $3; exit}' "$work/server.out")
say "tracevaultd listening on $server"

mkdir -p "$work/nginx/www"
printf 'hello from tracevault\n' >"$work/nginx/www/index.html"
head -c 65536 /dev/urandom >"$work/nginx/www/blob.bin"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log $work/nginx/access.log;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    sendfile on;
    server {
        listen 127.0.0.1:$port;
        root $work/nginx/www;
        location = /api/orders { return 201 "created\n"; }
    }
}
CONF
say "starting nginx on 127.0.0.1:$port"
nginx -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
nginx_pid=$!
pids+=($nginx_pid)
for ((i = 0; i < WAIT_TRIES; i++)); do
	curl -s -o /dev/null "http://127.0.0.1:$port/" && break
	sleep 0.05
done

say "capturing nginx (pid $nginx_pid) with eBPF"
"$BIN/tracevault" capture --server "$server" --pid "$nginx_pid" --ready-fd 3 3>"$work/capture.ready" \
	>"$work/capture.out" 2>"$work/capture.out.err" &
capture_pid=$!
pids+=($capture_pid)
wait_for "$work/capture.ready" 'ready' "tracevault capture" "$capture_pid"
start_ns=$(date +%s%N)

say "sending $REQUESTS requests with curl"
for ((i = 0; i < REQUESTS; i++)); do
	case $((i % 4)) in
	0) curl -s -o /dev/null "http://127.0.0.1:$port/index.html?i=$i" ;;
	1) curl -s -o /dev/null "http://127.0.0.1:$port/blob.bin" ;;
	2) curl -s -o /dev/null -d "{\"order\":$i}" -H 'Content-Type: application/json' \
		-H "traceparent: 00-$(printf '%032x' $((i + 1)))-$(printf '%016x' $((i + 7)))-01" \
		"http://127.0.0.1:$port/api/orders" ;;
	3) curl -s -o /dev/null "http://127.0.0.1:$port/missing-$i" ;;
	esac
done

say "stopping the capture (flush)"
kill -INT "$capture_pid"
wait "$capture_pid" || { echo "demo: tracevault capture failed:" >&2; cat "$work/capture.out.err" >&2; exit 1; }
cat "$work/capture.out.err" >&2
end_ns=$(date +%s%N)

say "records captured in the last minute, read back from tracevaultd by time range"
"$BIN/tracevault" query --server "$server" --from -1m --to now --format table
n=$("$BIN/tracevault" query --server "$server" --from "$start_ns" --to "$end_ns" --format jsonl | wc -l)
say "$n records between $start_ns and $end_ns for $REQUESTS requests sent"
