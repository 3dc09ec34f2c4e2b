#!/usr/bin/env bash
# A real S3 server on loopback for the S3 under-store (issue 14): a one-node Ceph cluster (one
# mon, one OSD on memstore, one RADOS Gateway) from Debian's packages, all its state under DIR.
# Users run it to try the under-store; the integration tests run it through tvtest.Ceph.
#
#   s3-ceph.sh start DIR [--bucket NAME] [--memstore-mib N] [--owner-pid PID]
#   s3-ceph.sh stop DIR | status DIR | rgw-stop DIR | rgw-start DIR
#
# start: mon and RGW on ephemeral free 127.0.0.1 ports, an S3 user with random keys, a bucket,
# and DIR/s3.env (mode 0600) with S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY. Each daemon runs in the foreground of its own session (setsid), so its
# pid is the one this script records in DIR/run/NAME.pid; stop signals only those pids, and only
# while /proc says they still run with DIR's ceph.conf. rgw-stop / rgw-start stop and start the
# gateway alone on the same port (a test's "S3 fails mid-segment").
#
# Exit codes: 0 ok; 1 a daemon or request failed (the message names it, with the tail of its
# log); 2 usage; 3 status: not everything runs; 77 a package is missing ("SKIP: ..." on stderr,
# the tests' SKIP).
set -euo pipefail

PROG=s3-ceph.sh
# bound on each daemon's start and on the first S3 answer
START_TIMEOUT_S=${S3_CEPH_START_TIMEOUT_S:-120}
STOP_TIMEOUT_S=10                               # SIGTERM grace per daemon before SIGKILL
MEMSTORE_MIB_DEFAULT=1024                       # the OSD's memstore: objects live in its RAM
MEMSTORE_MIB_MIN=64
MEMSTORE_MIB_MAX=65536
# the user's bucket quota, % of the memstore: a PUT past it gets 403 QuotaExceeded at once, where
# a full memstore makes the OSD stop taking writes and every PUT wait (room left for RGW's own
# objects and for deleted data its garbage collector has not yet reclaimed)
QUOTA_PERCENT=75
CEPH_CMD_TIMEOUT_S=30 # bound on one ceph / radosgw-admin command
LOG_TAIL_LINES=20     # lines of a failed daemon's log shown in the error
PORT_ATTEMPTS=3       # a free port can be taken between choosing it and the bind: retry so often
# SigV4 region: RGW's default zonegroup ("default") accepts any region in the credential scope;
# us-east-1 is the one AWS SDKs and curl users expect (checked by tests/integration/test_s3_ceph.py)
S3_REGION=us-east-1
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
DAEMONS=(rgw osd mon) # stop order; start order is the reverse

usage() {
	cat <<EOF
usage: $PROG start DIR [--bucket NAME] [--memstore-mib N] [--owner-pid PID]
       $PROG stop DIR | status DIR | rgw-stop DIR | rgw-start DIR

A one-node Ceph cluster (mon + OSD on memstore + RADOS Gateway) on 127.0.0.1, all its state
under DIR, to try tracevaultd's S3 under-store against a real S3 server.

  start DIR        start mon, OSD and RGW on free loopback ports, create an S3 user with random
                   keys and a bucket, write DIR/s3.env (mode 0600); waits at most
                   ${START_TIMEOUT_S} s per step (S3_CEPH_START_TIMEOUT_S)
    --bucket NAME      the bucket to create (default tracevault)
    --memstore-mib N   the OSD's in-memory store, MiB ($MEMSTORE_MIB_MIN..$MEMSTORE_MIB_MAX, default
                       $MEMSTORE_MIB_DEFAULT): the bound on its RAM; the bucket's quota is
                       ${QUOTA_PERCENT}% of it (a PUT past it: 403 QuotaExceeded)
    --owner-pid PID    stop the cluster when process PID exits (what the tests pass)
  stop DIR         stop every daemon started in DIR (SIGTERM, ${STOP_TIMEOUT_S} s, SIGKILL);
                   idempotent
  status DIR       one line per daemon; exit 0 if all run, 3 if not
  rgw-stop DIR     stop only the gateway
  rgw-start DIR    start the gateway again on the same port

Example:
  $PROG start /tmp/s3 && . /tmp/s3/s3.env && export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  curl --aws-sigv4 "aws:amz:\$S3_REGION:s3" --user "\$AWS_ACCESS_KEY_ID:\$AWS_SECRET_ACCESS_KEY" \\
       -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "\$S3_ENDPOINT/\$S3_BUCKET/"
  $PROG stop /tmp/s3
EOF
}

usage_error() {
	echo "$PROG: $*; see $PROG --help" >&2
	exit 2
}

fail() {
	echo "$PROG: $*" >&2
	exit 1
}

# Every command start needs, with the Debian package that has it.
require_packages() {
	local cmd pkg missing=()
	for pair in ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw ceph:ceph-common \
		radosgw-admin:ceph-common monmaptool:ceph-base curl:curl /usr/bin/python3:python3 \
		uuidgen:uuid-runtime setsid:util-linux; do
		cmd=${pair%%:*}
		pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg ($cmd)")
	done
	if ((${#missing[@]})); then
		echo "SKIP: Debian package(s) not installed: ${missing[*]} (run scripts/deps.sh as root)" >&2
		exit 77
	fi
}

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ---- the paths under DIR ---------------------------------------------------------------------
set_paths() {
	DIR=$(realpath -m -- "$1")
	CONF=$DIR/ceph.conf
	RUN=$DIR/run
	LOG=$DIR/log
	ENV_FILE=$DIR/s3.env
	PORTS_FILE=$DIR/ports
}

pid_file() { echo "$RUN/$1.pid"; }
out_file() { echo "$LOG/$1.out"; }
# ceph's own log of a daemon (log file = $LOG/$cluster-$name.log)
ceph_log() {
	case $1 in
	mon) echo "$LOG/ceph-mon.a.log" ;;
	osd) echo "$LOG/ceph-osd.0.log" ;;
	rgw) echo "$LOG/ceph-client.rgw.a.log" ;;
	esac
}

# The pid of daemon $1 if it still runs as ours (its command line names DIR's ceph.conf), else
# nothing: a pid from a stale file may belong to another process by now.
live_pid() {
	local f pid cmd
	f=$(pid_file "$1")
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
	[[ $cmd != *"$CONF"* ]] || echo "$pid"
}

# alive PID: runs and is not a zombie (a dead daemon stays one until init reaps it)
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

log_tail() {
	local f shown=0
	for f in "$(out_file "$1")" "$(ceph_log "$1")"; do
		[[ -s $f ]] || continue
		echo "--- last $LOG_TAIL_LINES lines of $f"
		tail -n "$LOG_TAIL_LINES" "$f"
		shown=1
	done
	((shown)) || echo "--- $1 wrote nothing yet to $(out_file "$1") or $(ceph_log "$1")"
}

daemon_failed() { # NAME WHAT
	{
		echo "$PROG: $1 $2"
		log_tail "$1"
	} >&2
	exit 1
}

cephcli() {
	timeout "$CEPH_CMD_TIMEOUT_S" ceph -c "$CONF" --connect-timeout "$CEPH_CMD_TIMEOUT_S" "$@"
}

# spawn NAME CMD...: CMD in the foreground of its own session, its output in log/NAME.out
spawn() {
	local name=$1
	shift
	SPAWN_OFFSET=$(stat -c %s "$(out_file "$name")" 2>/dev/null || echo 0)
	setsid "$@" </dev/null >>"$(out_file "$name")" 2>&1 &
	echo $! >"$(pid_file "$name")"
}

# Poll CHECK (a function) every 0.2 s until it succeeds; fail naming NAME when its process
# exits or START_TIMEOUT_S passes first.
wait_ready() { # NAME WHAT CHECK
	local name=$1 what=$2 check=$3 pid deadline=$((SECONDS + START_TIMEOUT_S))
	pid=$(<"$(pid_file "$name")")
	while ! "$check"; do
		if ! alive "$pid"; then
			rm -f "$(pid_file "$name")"
			return 1
		fi
		((SECONDS < deadline)) ||
			daemon_failed "$name" "did not $what within ${START_TIMEOUT_S} s (pid $pid)"
		sleep 0.2
	done
}

# port_in_use NAME: the last run of daemon NAME (its output since spawn) could not bind its port
port_in_use() {
	[[ $(tail -c +$((SPAWN_OFFSET + 1)) "$(out_file "$1")") == *"Address already in use"* ]]
}

# ---- start -----------------------------------------------------------------------------------
write_conf() { # MON_PORT RGW_PORT MEMSTORE_BYTES
	cat >"$CONF" <<EOF
# Written by $PROG: a one-node cluster on 127.0.0.1, every path under $DIR.
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$1
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
# without crc modes radosgw cannot reach the mon (get_initial_auth_request returned -13)
ms mon client mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms cluster mode = crc
ms service mode = crc
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
# paxos batches proposals for 1 s by default: each pool RGW creates at start-up waits for it
paxos propose interval = 0.05
paxos min wait = 0.01
run dir = $RUN
admin socket = \$run_dir/\$cluster-\$name.asok
log file = $LOG/\$cluster-\$name.log
mon cluster log file = $LOG/\$cluster.log
crash dir = $DIR/crash
keyring = $DIR/keyring
[client]
admin socket = \$run_dir/\$cluster-\$name.\$pid.asok
[mon]
mon data = $DIR/mon/\$cluster-\$id
[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $3
[client.rgw.a]
# tcp_nodelay: without it beast's small answers wait for the client's delayed ACK: a range
# GET on a kept-alive connection took 43 ms instead of 1.4 ms (measured here, 16.2)
rgw frontends = beast endpoint=127.0.0.1:$2 tcp_nodelay=1
rgw data = $DIR/rgw
admin socket = \$run_dir/\$cluster-\$name.asok
# no lifecycle rules here; its threads sleep 5 s at a time and make radosgw's stop wait for them
rgw enable lc threads = false
# deleted objects' tails wait for RGW's garbage collector: reclaim memstore space within about a
# minute, not 2 hours (a tail is kept 30 s for GETs still reading it)
rgw gc obj min wait = 30
rgw gc processor period = 30
rgw gc processor max time = 30
EOF
	printf 'mon %s\nrgw %s\n' "$1" "$2" >"$PORTS_FILE"
}

mon_port() { awk '$1 == "mon" {print $2}' "$PORTS_FILE"; }
rgw_port() { awk '$1 == "rgw" {print $2}' "$PORTS_FILE"; }

mon_answers() { cephcli mon stat >/dev/null 2>&1; }

start_mon() {
	local attempt port
	for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
		rm -rf "$DIR/mon" "$DIR/monmap"
		mkdir -p "$DIR/mon/ceph-a"
		monmaptool --create --add a "v2:127.0.0.1:$(mon_port)" --fsid "$FSID" "$DIR/monmap" \
			>>"$(out_file mon)" 2>&1 || daemon_failed mon "monmaptool failed"
		ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" >>"$(out_file mon)" 2>&1 ||
			daemon_failed mon "mkfs failed"
		spawn mon ceph-mon -c "$CONF" -i a -f
		wait_ready mon "answer" mon_answers && return 0
		port_in_use mon || daemon_failed mon "exited during start-up"
		port=$(free_port)
		sed -i "s/^mon host = .*/mon host = v2:127.0.0.1:$port/" "$CONF"
		sed -i "s/^mon .*/mon $port/" "$PORTS_FILE"
	done
	daemon_failed mon "could not bind a free port in $PORT_ATTEMPTS attempts"
}

osd_up() { [[ $(cephcli osd dump 2>/dev/null) =~ (^|$'\n')"osd.0 up" ]]; }

start_osd() {
	local id
	id=$(cephcli osd create 2>>"$(out_file osd)") || daemon_failed osd "'ceph osd create' failed"
	[[ $id == 0 ]] || daemon_failed osd "'ceph osd create' gave id '$id', expected 0"
	mkdir -p "$DIR/osd/ceph-0"
	ceph-osd -c "$CONF" -i 0 --mkfs >>"$(out_file osd)" 2>&1 || daemon_failed osd "mkfs failed"
	cephcli osd crush add osd.0 1.0 host=localhost root=default >>"$(out_file osd)" 2>&1 ||
		daemon_failed osd "'ceph osd crush add' failed"
	spawn osd ceph-osd -c "$CONF" -i 0 -f
	wait_ready osd "come up" osd_up || daemon_failed osd "exited during start-up"
}

# RGW answers S3: an anonymous GET / is its ListAllMyBuckets (200 with XML)
rgw_answers() {
	[[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$(rgw_port)/") == 200 ]]
}

start_rgw() { # the port in the conf; a new one only when ALLOW_NEW_PORT=1 and it was taken
	local attempt port
	for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
		spawn rgw radosgw -c "$CONF" -n client.rgw.a -f
		wait_ready rgw "answer S3 on 127.0.0.1:$(rgw_port)" rgw_answers && return 0
		port_in_use rgw || daemon_failed rgw "exited during start-up"
		[[ ${ALLOW_NEW_PORT:-0} == 1 ]] ||
			daemon_failed rgw "exited during start-up: another process holds its port $(rgw_port)"
		port=$(free_port)
		sed -i "s/^rgw frontends = .*/rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1/" "$CONF"
		sed -i "s/^rgw .*/rgw $port/" "$PORTS_FILE"
	done
	daemon_failed rgw "could not bind a free port in $PORT_ATTEMPTS attempts"
}

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
elapsed_s() { # START_MS: the time since then, in seconds with one decimal
	local ms=$(($(now_ms) - $1))
	printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

# s3_request METHOD PATH [curl args...]: a SigV4-signed request with the keys of s3.env; the keys
# go to curl through a config on stdin, never on a command line.
s3_request() {
	local method=$1 path=$2
	shift 2
	printf 'user = "%s:%s"\n' "$ACCESS_KEY" "$SECRET_KEY" |
		curl -s -K - -X "$method" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
			-H "x-amz-content-sha256: $EMPTY_SHA256" "$@" "http://127.0.0.1:$(rgw_port)$path"
}

# stop the cluster once process OWNER_PID exits (a test killed by its timeout cannot stop it).
# Its command line names $CONF, as the daemons' do, so that stop knows it for ours.
start_watchdog() { # OWNER_PID
	local self
	self=$(realpath -- "$0")
	# shellcheck disable=SC2016 # $1.. expand in the watchdog's shell, not here
	setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
		rm -f "$3"; exec "$2" stop "$4"' watchdog "$1" "$self" "$(pid_file watchdog)" "$DIR" "$CONF" \
		</dev/null >>"$(out_file watchdog)" 2>&1 &
	echo $! >"$(pid_file watchdog)"
}

cmd_start() {
	local bucket=tracevault memstore_mib=$MEMSTORE_MIB_DEFAULT owner_pid="" t0 code user_json
	local quota_bytes
	t0=$(now_ms)
	while (($#)); do
		case $1 in
		--bucket) (($# >= 2)) || usage_error "--bucket needs a NAME"; bucket=$2; shift 2 ;;
		--memstore-mib) (($# >= 2)) || usage_error "--memstore-mib needs N"; memstore_mib=$2; shift 2 ;;
		--owner-pid) (($# >= 2)) || usage_error "--owner-pid needs a PID"; owner_pid=$2; shift 2 ;;
		*) usage_error "start: unknown option '$1'" ;;
		esac
	done
	# S3 bucket names: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit
	[[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
		usage_error "invalid --bucket: '$bucket' (3-63 of a-z 0-9 . -, first and last a-z or 0-9)"
	if ! [[ $memstore_mib =~ ^[0-9]{1,6}$ ]] ||
		((memstore_mib < MEMSTORE_MIB_MIN || memstore_mib > MEMSTORE_MIB_MAX)); then
		usage_error "invalid --memstore-mib: '$memstore_mib' ($MEMSTORE_MIB_MIN..$MEMSTORE_MIB_MAX)"
	fi
	if [[ -n $owner_pid ]]; then
		if ! [[ $owner_pid =~ ^[0-9]+$ ]] || ! kill -0 "$owner_pid" 2>/dev/null; then
			usage_error "invalid --owner-pid: '$owner_pid' (no such process)"
		fi
	fi
	require_packages
	for d in "${DAEMONS[@]}"; do
		[[ -z $(live_pid "$d") ]] ||
			fail "a cluster already runs in $DIR ($d pid $(live_pid "$d")); stop it first"
	done
	if [[ -e $DIR ]] && [[ -n $(ls -A -- "$DIR") ]]; then
		# only a previous cluster of this script may be replaced, never someone else's files
		[[ -f $CONF ]] || fail "$DIR is not empty and holds no $PROG cluster"
		rm -rf -- "${DIR:?}"/{mon,osd,rgw,run,log,crash,monmap,ceph.conf,ports,s3.env,keyring}
	fi
	mkdir -p "$DIR" "$RUN" "$LOG" "$DIR/rgw" "$DIR/crash"
	FSID=$(uuidgen)
	write_conf "$(free_port)" "$(free_port)" $((memstore_mib * 1024 * 1024))
	[[ -z $owner_pid ]] || start_watchdog "$owner_pid"
	# a failed start leaves nothing running
	trap 'code=$?; if ((code != 0)); then cmd_stop >/dev/null 2>&1 || true; fi' EXIT

	local steps="" t
	t=$(now_ms)
	start_mon
	steps+="mon $(elapsed_s "$t") s"
	t=$(now_ms)
	start_osd
	steps+=", osd $(elapsed_s "$t") s"
	t=$(now_ms)
	ALLOW_NEW_PORT=1 start_rgw
	steps+=", rgw $(elapsed_s "$t") s"
	t=$(now_ms)

	# RGW makes the keys (random: 20 and 40 of A-Z a-z 0-9), so that they are never on a command
	# line; they come back in its JSON on stdout
	user_json=$(timeout "$CEPH_CMD_TIMEOUT_S" radosgw-admin -c "$CONF" user create --uid tracevault \
		--display-name "tracevault s3-ceph.sh" 2>>"$(out_file rgw)") ||
		daemon_failed rgw "'radosgw-admin user create' failed"
	read -r ACCESS_KEY SECRET_KEY < <(/usr/bin/python3 -c 'import json, sys
k = json.load(sys.stdin)["keys"][0]
print(k["access_key"], k["secret_key"])' <<<"$user_json") ||
		fail "no S3 key in the output of 'radosgw-admin user create'"
	unset user_json
	quota_bytes=$((memstore_mib * 1024 * 1024 * QUOTA_PERCENT / 100))
	{
		timeout "$CEPH_CMD_TIMEOUT_S" radosgw-admin -c "$CONF" quota set --quota-scope=bucket \
			--uid tracevault --max-size="$quota_bytes" &&
			timeout "$CEPH_CMD_TIMEOUT_S" radosgw-admin -c "$CONF" quota enable \
				--quota-scope=bucket --uid tracevault
	} >/dev/null 2>>"$(out_file rgw)" || daemon_failed rgw "'radosgw-admin quota' failed"
	code=$(s3_request PUT "/$bucket" -o "$LOG/bucket-create.xml" -w '%{http_code}') || true
	[[ $code == 200 ]] ||
		fail "creating bucket '$bucket' failed: HTTP ${code:-none}" \
			"$(cat "$LOG/bucket-create.xml" 2>/dev/null)"

	(
		umask 077
		cat >"$ENV_FILE.tmp" <<EOF
S3_ENDPOINT=http://127.0.0.1:$(rgw_port)
S3_REGION=$S3_REGION
S3_BUCKET=$bucket
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
EOF
	)
	mv "$ENV_FILE.tmp" "$ENV_FILE"
	steps+=", user+bucket $(elapsed_s "$t") s"
	trap - EXIT
	echo "s3-ceph: S3 at http://127.0.0.1:$(rgw_port), bucket $bucket" \
		"(quota $((quota_bytes >> 20)) MiB), up in $(elapsed_s "$t0") s ($steps)"
	echo "s3-ceph: use it: set -a; . $ENV_FILE; set +a   stop it: $0 stop $DIR"
}

# ---- stop / status ---------------------------------------------------------------------------
# stop_daemons NAME...: in this order, SIGTERM to each live one, STOP_TIMEOUT_S for it to exit,
# then SIGKILL. One at a time: radosgw's shutdown talks to the OSD and mon, and waits for them
# forever if they went first.
stop_daemons() {
	local name pid stopped=() deadline
	for name in "$@"; do
		pid=$(live_pid "$name")
		if [[ -n $pid ]]; then
			# each runs as the leader of its own session: its group is it and what it spawned
			kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
			deadline=$((SECONDS + STOP_TIMEOUT_S))
			while alive "$pid" && ((SECONDS < deadline)); do
				sleep 0.05
			done
			if alive "$pid"; then
				echo "$PROG: $name (pid $pid) still runs ${STOP_TIMEOUT_S} s after SIGTERM: SIGKILL" >&2
				kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
				while alive "$pid"; do sleep 0.05; done
			fi
			stopped+=("$name")
		fi
		rm -f "$(pid_file "$name")"
	done
	((${#stopped[@]} == 0)) || echo "s3-ceph: stopped ${stopped[*]}"
	# a daemon killed before its clean exit leaves its admin socket behind
	for name in "${DAEMONS[@]}"; do [[ -z $(live_pid "$name") ]] || return 0; done
	rm -f "$RUN"/*.asok
}

cmd_stop() {
	[[ -d $RUN ]] || return 0
	stop_daemons watchdog "${DAEMONS[@]}"
}

cmd_status() {
	local d pid all=0
	for d in mon osd rgw; do
		pid=$(live_pid "$d")
		if [[ -n $pid ]]; then
			echo "$d running pid $pid"
		else
			echo "$d stopped"
			all=3
		fi
	done
	[[ ! -f $PORTS_FILE ]] || echo "endpoint http://127.0.0.1:$(rgw_port)"
	return $all
}

cmd_rgw_stop() { stop_daemons rgw; }

cmd_rgw_start() {
	[[ -f $CONF ]] || fail "no cluster in $DIR (no ceph.conf); run: $PROG start $DIR"
	[[ -z $(live_pid rgw) ]] || fail "rgw already runs (pid $(live_pid rgw))"
	[[ -n $(live_pid osd) && -n $(live_pid mon) ]] ||
		fail "mon and osd must run to start rgw; see $PROG status $DIR"
	require_packages
	ALLOW_NEW_PORT=0 start_rgw
	echo "s3-ceph: rgw answers again at http://127.0.0.1:$(rgw_port)"
}

main() {
	(($# >= 1)) || usage_error "missing command"
	case $1 in
	-h | --help) usage; exit 0 ;;
	start | stop | status | rgw-stop | rgw-start) ;;
	*) usage_error "unknown command '$1'" ;;
	esac
	local cmd=$1
	(($# >= 2)) || usage_error "$cmd: missing DIR"
	[[ -n $2 && $2 != -* ]] || usage_error "$cmd: invalid DIR '$2'"
	set_paths "$2"
	shift 2
	[[ $cmd == start || $# == 0 ]] || usage_error "$cmd: unexpected argument '$1'"
	case $cmd in
	start) cmd_start "$@" ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	rgw-stop) cmd_rgw_stop ;;
	rgw-start) cmd_rgw_start ;;
	esac
}

main "$@"
