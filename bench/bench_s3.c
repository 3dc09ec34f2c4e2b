/* The S3 client (server/under/s3.h) against a real S3 server given by the environment (as
 * tests/unit/test_s3.c): PUT throughput of one file as a single streamed PUT and as a
 * multipart upload, and the latency of range GETs. bench/s3.sh runs it beside `curl -T` of the
 * same file in the same run (bench/README.md, "S3 client").
 *
 *   bench_s3 put FILE KEY single|multipart    one line: mode, bytes, seconds, MiB/s
 *   bench_s3 get KEY RANGE_BYTES COUNT         one line: count, p50 / p99 / max ms
 *
 * Exit 2 on usage errors, 1 when a request fails (its err line on stderr). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "under/s3.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int usage(void)
{
	fprintf(stderr, "usage: bench_s3 put FILE KEY single|multipart\n"
			"       bench_s3 get KEY RANGE_BYTES COUNT\n"
			"(S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_ACCESS_KEY_ID, "
			"AWS_SECRET_ACCESS_KEY in the environment)\n");
	return 2;
}

static int bench_put(struct tv_s3 *c, const char *file, const char *key, const char *mode)
{
	struct tv_s3_put_limits lim = tv_s3_put_limits_default();
	char err[512];
	struct stat st;
	double t0, dt;
	int fd, rc;

	if (strcmp(mode, "single") != 0 && strcmp(mode, "multipart") != 0)
		return usage();
	fd = open(file, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "bench_s3: open %s: %s\n", file, strerror(errno));
		return 1;
	}
	t0 = now_s();
	if (strcmp(mode, "single") == 0)
		rc = tv_s3_put_fd(c, key, fd, 0, (uint64_t)st.st_size, err, sizeof(err));
	else
		rc = tv_s3_put_file(c, key, fd, 0, (uint64_t)st.st_size, &lim, err, sizeof(err));
	dt = now_s() - t0;
	close(fd);
	if (rc) {
		fprintf(stderr, "bench_s3: %s\n", err);
		return 1;
	}
	printf("put %s bytes=%lld seconds=%.3f MiB/s=%.1f\n", mode, (long long)st.st_size, dt,
	       (double)st.st_size / (1 << 20) / dt);
	return 0;
}

static int bench_get(struct tv_s3 *c, const char *key, const char *range_s, const char *count_s)
{
	long range = atol(range_s), count = atol(count_s);
	char err[512];
	uint64_t size;
	double *lat;
	void *buf;
	int rc = 1;

	if (range <= 0 || count <= 0)
		return usage();
	if (tv_s3_head(c, key, &size, NULL, err, sizeof(err))) {
		fprintf(stderr, "bench_s3: %s\n", err);
		return 1;
	}
	if (size < (uint64_t)range) {
		fprintf(stderr, "bench_s3: %s holds %llu bytes, less than one range\n", key,
			(unsigned long long)size);
		return 1;
	}
	lat = calloc((size_t)count, sizeof(*lat));
	buf = malloc((size_t)range);
	if (!lat || !buf)
		goto out;
	srand(1);
	for (long i = 0; i < count; i++) {
		/* a random range, aligned as the under-store reads blocks */
		uint64_t slots = size / (uint64_t)range;
		uint64_t off = ((uint64_t)rand() % slots) * (uint64_t)range;
		double t0 = now_s();

		if (tv_s3_get_range(c, key, off, (size_t)range, buf, err, sizeof(err))) {
			fprintf(stderr, "bench_s3: %s\n", err);
			goto out;
		}
		lat[i] = (now_s() - t0) * 1e3;
	}
	qsort(lat, (size_t)count, sizeof(*lat), cmp_double);
	printf("get range_bytes=%ld count=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", range, count,
	       lat[(count - 1) / 2], lat[(count * 99 - 1) / 100], lat[count - 1]);
	rc = 0;
out:
	free(lat);
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	const char *region = getenv("S3_REGION");
	struct tv_s3 *c;
	char err[512];
	int rc;

	if (argc < 2)
		return usage();
	if (tv_s3_open(&c, getenv("S3_ENDPOINT"), region && *region ? region : "us-east-1",
		       getenv("S3_BUCKET"), getenv("AWS_ACCESS_KEY_ID"),
		       getenv("AWS_SECRET_ACCESS_KEY"), err, sizeof(err))) {
		fprintf(stderr, "bench_s3: %s\n", err);
		return 1;
	}
	if (strcmp(argv[1], "put") == 0 && argc == 5)
		rc = bench_put(c, argv[2], argv[3], argv[4]);
	else if (strcmp(argv[1], "get") == 0 && argc == 5)
		rc = bench_get(c, argv[2], argv[3], argv[4]);
	else
		rc = usage();
	tv_s3_close(c);
	return rc;
}
