#!/usr/bin/env bash
# The S3 client's throughput and latency against a real S3 server (bench/README.md "S3 client"):
# one file of TV_BENCH_S3_MIB MiB (default 256, on /dev/shm so the disk is not measured) PUT as a
# single streamed PUT, as a multipart upload (TV_S3_MULTIPART_BYTES / TV_S3_PART_BYTES), and by
# `curl -T` with SigV4 (the raw peer), TV_BENCH_ROUNDS rounds (default 3) back to back; then
# TV_BENCH_S3_GETS (default 200) random 4 MiB range GETs of the object, p50/p99.
#   bench/s3.sh BUILD_DIR        with S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_ACCESS_KEY_ID,
#                                AWS_SECRET_ACCESS_KEY in the environment (scripts/s3-ceph.sh
#                                start DIR writes them to DIR/s3.env)
set -euo pipefail
BUILD=${1:?usage: bench/s3.sh BUILD_DIR}
MIB=${TV_BENCH_S3_MIB:-256}
ROUNDS=${TV_BENCH_ROUNDS:-3}
GETS=${TV_BENCH_S3_GETS:-200}
RANGE_BYTES=$((4 * 1024 * 1024))
: "${S3_ENDPOINT:?}" "${S3_BUCKET:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
REGION=${S3_REGION:-us-east-1}
B="$BUILD/bench/bench_s3"
FILE=$(mktemp /dev/shm/tv-bench-s3-XXXXXX)
PREFIX="tv-bench-s3/$$"
trap 'rm -f "$FILE"' EXIT
head -c $((MIB << 20)) /dev/urandom >"$FILE"
s3curl() {
	curl -sS --fail-with-body --aws-sigv4 "aws:amz:$REGION:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}
echo "S3 client bench: $MIB MiB file, $ROUNDS rounds, $S3_ENDPOINT"
for r in $(seq "$ROUNDS"); do
	"$B" put "$FILE" "$PREFIX/single" single
	"$B" put "$FILE" "$PREFIX/multipart" multipart
	s3curl -o /dev/null -T "$FILE" -w "%{time_total} %{size_upload}\n" "$S3_ENDPOINT/$S3_BUCKET/$PREFIX/curl" |
		awk '{ printf "put curl-T bytes=%d seconds=%.3f MiB/s=%.1f\n", $2, $1, $2 / 1048576 / $1 }'
done
"$B" get "$PREFIX/multipart" "$RANGE_BYTES" "$GETS"
for k in single multipart curl; do
	s3curl -X DELETE "$S3_ENDPOINT/$S3_BUCKET/$PREFIX/$k"
done
