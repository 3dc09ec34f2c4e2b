#!/usr/bin/env bash
# Installs the Debian 12 packages tracevault needs to build, test and demo.
# Idempotent: asks apt-get only for what dpkg says is missing, and is quiet when nothing is.
set -euo pipefail

APT_LOCK_TIMEOUT_S=300 # how long to wait for dpkg's lock held by another apt-get

PKGS=(
  # build
  build-essential cmake pkg-config make
  # eBPF: clang compiles the kernel side, bpftool makes vmlinux.h and the skeleton
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  # wire and storage
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  liburing-dev libzstd-dev libsqlite3-dev libisal-dev libjansson-dev
  # SHA-256 for query --format otlp-json (OpenSSL's libcrypto, which gRPC links already)
  libssl-dev
  # --metrics-addr's HTTP endpoint (common/metrics_http.c: the header to build, the library
  # loaded at run time)
  libmicrohttpd-dev
  # capture's check and drop of its capabilities (client/capture/privs.c)
  libcap-dev
  # put's fast JSON Lines reader (client/cli/record_reader.c)
  libyajl-dev
  # tests and demo
  libcmocka-dev nginx-light curl wrk python3-grpcio python3-protobuf
  # libFuzzer for clang's -fsanitize=fuzzer (the harnesses of tests/fuzz, make fuzz)
  libfuzzer-14-dev
  # a second HTTP server for the capture tests (test_capture_load.py)
  lighttpd
  # the openssl CLI: test_tls.py makes its CA and certificates with it (README "TLS")
  openssl
  # the Prometheus text-format parser the metrics tests read scrapes with (test_metrics.py)
  python3-prometheus-client
  iproute2 procps
  # memcheck over tracevaultd in the suite and in make valgrind (tests/valgrind_suite.py)
  valgrind
  # the read bench's peers (bench/read.sh): SQLite, zstd -3 and zstdcat + mawk (Debian's default
  # awk, named because the zstdcat peer runs it by name)
  sqlite3 zstd mawk
  # the capture bench's peers (bench/bench_capture.py): tcpdump -w on the same nginx traffic,
  # tshark reading a minute back from its pcap (wireshark-common's debconf question, whether
  # non-root users may capture, takes its default "no" under DEBIAN_FRONTEND=noninteractive)
  tcpdump tshark
  # the bench results' PNG plots (bench/report.py, run at the end of make bench)
  gnuplot-nox
  # the ingest bench's cross-check of its disk ceiling (bench/run.sh, fio_blocks)
  fio
  # the S3 under-store's client (server/under/): libcurl signs requests (CURLOPT_AWS_SIGV4),
  # libxml2 reads the XML of S3 listings and errors
  libcurl4-openssl-dev libxml2-dev
  # a real S3 server on loopback for the under-store tests and for users to try it
  # (scripts/s3-ceph.sh): the mon, the OSD (memstore), the RADOS Gateway; ceph-common has the
  # ceph and radosgw-admin commands the script runs (a dependency of the others, named because
  # the script calls it directly)
  ceph-mon ceph-osd radosgw ceph-common
  # the browser the page's test drives with playwright-core (tests/integration/test_web_page.py)
  chromium
)

missing=()
for p in "${PKGS[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm for the OpenTelemetry SDK test (tests/integration/test_capture_otel_node.py
# installs the SDK's npm packages into the build dir): Debian's nodejs and npm, asked for only
# when no node/npm is on PATH (a machine may have them from elsewhere, e.g. NodeSource's
# nodejs, which ships npm and conflicts with Debian's npm package)
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# another apt-get (a parallel session, unattended-upgrades) may hold dpkg's lock: wait for it
apt_lock=(-o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT_S")
apt-get "${apt_lock[@]}" update -qq >&2
apt-get "${apt_lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2
