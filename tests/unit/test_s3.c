/* The S3 client (server/under/s3.h) against a real S3 server, given by the environment
 * (S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; the bucket must
 * exist): tests/integration/test_s3_client.py starts a one-node Ceph RADOS Gateway and runs
 * this; without the variables it SKIPs (exit 77). Byte-exact put/get, ranges to the last byte
 * and past it, a file range streamed, multipart of 3 parts + a remainder under a lowered
 * threshold, an abort on a part's failure that leaves neither upload nor object, list paging,
 * idempotent deletes, a conditional PUT (If-None-Match: *) refused on an existing key, and
 * the refusals: wrong secret, missing bucket, closed port, a server
 * that never answers (TV_S3_LOW_SPEED_TIME_S, so this file takes that long). Every key
 * lives under a prefix of this run, deleted at the end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "under/s3.h"

#define MIB (1024u * 1024u)
/* the lowered split the multipart tests use: S3's smallest part, so 3 parts + a remainder
 * stay small */
#define TEST_PART_BYTES TV_S3_PART_MIN_BYTES
#define TEST_MULTIPART_BYTES (8ull * MIB)

static const char *endpoint, *region, *bucket, *access_key, *secret_key;
static char prefix[96];
static struct tv_s3 *s3;
static char err[512];

static char *key_of(const char *name)
{
	static char key[256];

	snprintf(key, sizeof(key), "%s%s", prefix, name);
	return key;
}

static void fill(unsigned char *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
}

/* a temporary file of N pattern bytes (seed SEED), unlinked: its fd */
static int temp_file(size_t n, uint32_t seed)
{
	char path[] = "/tmp/tv-s3-test-XXXXXX";
	unsigned char *buf = malloc(n ? n : 1);
	int fd = mkstemp(path);

	assert_non_null(buf);
	assert_true(fd >= 0);
	unlink(path);
	fill(buf, n, seed);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	free(buf);
	return fd;
}

static void assert_object(const char *key, const unsigned char *want, size_t n)
{
	unsigned char *got = malloc(n);
	uint64_t size = 0;

	assert_non_null(got);
	assert_int_equal(tv_s3_head(s3, key, &size, NULL, err, sizeof(err)), 0);
	assert_int_equal(size, n);
	assert_int_equal(tv_s3_get_range(s3, key, 0, n, got, err, sizeof(err)), 0);
	assert_memory_equal(got, want, n);
	free(got);
}

static void assert_gone(const char *key)
{
	uint64_t size;

	assert_int_equal(tv_s3_head(s3, key, &size, NULL, err, sizeof(err)), -ENOENT);
}

static int count_upload(void *arg, const char *key, const char *upload_id)
{
	(void)key;
	(void)upload_id;
	(*(int *)arg)++;
	return 0;
}

static int uploads_under(const char *p)
{
	int n = 0;

	assert_int_equal(tv_s3_list_multipart_uploads(s3, p, count_upload, &n, err, sizeof(err)),
			 0);
	return n;
}

static void test_put_get_byte_exact(void **state)
{
	size_t n = 3 * MIB + 17;
	unsigned char *buf = malloc(n);
	char etag[TV_S3_ETAG_LEN];
	uint64_t size;

	(void)state;
	fill(buf, n, 1);
	assert_int_equal(tv_s3_put_object(s3, key_of("exact"), buf, n, err, sizeof(err)), 0);
	assert_object(key_of("exact"), buf, n);
	/* a single PUT's ETag is the body's MD5: no "-N" part count */
	assert_int_equal(tv_s3_head(s3, key_of("exact"), &size, etag, err, sizeof(err)), 0);
	assert_true(etag[0] == '"' && strchr(etag, '-') == NULL);
	/* an empty object is an object */
	assert_int_equal(tv_s3_put_object(s3, key_of("empty"), "", 0, err, sizeof(err)), 0);
	assert_int_equal(tv_s3_head(s3, key_of("empty"), &size, NULL, err, sizeof(err)), 0);
	assert_int_equal(size, 0);
	free(buf);
}

/* If-None-Match: *: the first PUT stores, a second of the key is refused with -EEXIST (412
 * PreconditionFailed) and the object keeps its first bytes; an unconditional PUT still
 * replaces it (UNDERSTORE.md "Two servers, one bucket") */
static void test_put_if_absent_refuses_an_existing_key(void **state)
{
	unsigned char first[300], second[200];

	(void)state;
	fill(first, sizeof(first), 21);
	fill(second, sizeof(second), 22);
	assert_int_equal(tv_s3_put_object_if_absent(s3, key_of("once"), first, sizeof(first), err,
						    sizeof(err)), 0);
	assert_int_equal(tv_s3_put_object_if_absent(s3, key_of("once"), second, sizeof(second),
						    err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "412 PreconditionFailed"));
	assert_object(key_of("once"), first, sizeof(first));
	assert_int_equal(tv_s3_put_object(s3, key_of("once"), second, sizeof(second), err,
					  sizeof(err)), 0);
	assert_object(key_of("once"), second, sizeof(second));
}

static void test_keys_with_reserved_characters(void **state)
{
	static const char *names[] = {"sp ace+plus=eq&amp%25", "dir/./dot", "ütf-8 ✓", "a//b"};
	unsigned char buf[100];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		fill(buf, sizeof(buf), (uint32_t)i + 7);
		assert_int_equal(tv_s3_put_object(s3, key_of(names[i]), buf, sizeof(buf), err,
						  sizeof(err)), 0);
		assert_object(key_of(names[i]), buf, sizeof(buf));
	}
}

static void test_ranges(void **state)
{
	enum { N = 10000 };
	unsigned char buf[N], got[N];

	(void)state;
	fill(buf, N, 2);
	assert_int_equal(tv_s3_put_object(s3, key_of("ranges"), buf, N, err, sizeof(err)), 0);
	/* first byte, a middle range, the last byte, the last 100 */
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), 0, 1, got, err, sizeof(err)), 0);
	assert_int_equal(got[0], buf[0]);
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), 1234, 4321, got, err, sizeof(err)),
			 0);
	assert_memory_equal(got, buf + 1234, 4321);
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), N - 1, 1, got, err, sizeof(err)),
			 0);
	assert_int_equal(got[0], buf[N - 1]);
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), N - 100, 100, got, err,
					 sizeof(err)), 0);
	assert_memory_equal(got, buf + N - 100, 100);
	/* starting at the end: 416; reaching past the end: a short read, refused */
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), N, 1, got, err, sizeof(err)),
			 -ERANGE);
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), N - 10, 20, got, err, sizeof(err)),
			 -ERANGE);
	assert_non_null(strstr(err, "GET s3://"));
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), 0, N + 1, got, err, sizeof(err)),
			 -ERANGE);
	assert_int_equal(tv_s3_get_range(s3, key_of("ranges"), 0, 0, got, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(tv_s3_get_range(s3, key_of("no-such-key"), 0, 1, got, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "404 NoSuchKey"));
}

static void test_put_fd_streams_a_range(void **state)
{
	size_t n = 3 * MIB;
	int fd = temp_file(n, 3);
	unsigned char *want = malloc(n);

	(void)state;
	fill(want, n, 3);
	assert_int_equal(tv_s3_put_fd(s3, key_of("fd-range"), fd, 12345, 2 * MIB, err,
				      sizeof(err)), 0);
	assert_object(key_of("fd-range"), want + 12345, 2 * MIB);
	/* a file shorter than the range asked: the pread comes short, nothing is stored */
	assert_int_equal(tv_s3_put_fd(s3, key_of("fd-short"), fd, MIB, 3 * MIB, err, sizeof(err)),
			 -EIO);
	assert_non_null(strstr(err, "the file ends at offset"));
	assert_gone(key_of("fd-short"));
	/* a bad descriptor: its errno */
	assert_int_equal(tv_s3_put_fd(s3, key_of("fd-bad"), -1, 0, 10, err, sizeof(err)), -EBADF);
	assert_gone(key_of("fd-bad"));
	close(fd);
	free(want);
}

static void test_multipart_three_parts_and_remainder(void **state)
{
	const struct tv_s3_put_limits lim = {.multipart_bytes = TEST_MULTIPART_BYTES,
					     .part_bytes = TEST_PART_BYTES};
	size_t n = 3 * TEST_PART_BYTES + 12345;
	int fd = temp_file(n + 777, 4);
	unsigned char *want = malloc(n + 777);
	unsigned char got[64];
	char etag[TV_S3_ETAG_LEN];
	uint64_t size;

	(void)state;
	fill(want, n + 777, 4);
	assert_int_equal(tv_s3_put_limits_check(&lim, err, sizeof(err)), 0);
	assert_int_equal(tv_s3_put_file(s3, key_of("mpu"), fd, 777, n, &lim, err, sizeof(err)), 0);
	assert_object(key_of("mpu"), want + 777, n);
	/* four parts: a multipart object's ETag ends in "-4" */
	assert_int_equal(tv_s3_head(s3, key_of("mpu"), &size, etag, err, sizeof(err)), 0);
	assert_non_null(strstr(etag, "-4\""));
	/* across the boundary of parts 1 and 2 */
	assert_int_equal(tv_s3_get_range(s3, key_of("mpu"), TEST_PART_BYTES - 32, sizeof(got), got,
					 err, sizeof(err)), 0);
	assert_memory_equal(got, want + 777 + TEST_PART_BYTES - 32, sizeof(got));
	/* below the threshold: one PUT */
	assert_int_equal(tv_s3_put_file(s3, key_of("mpu-small"), fd, 0, TEST_MULTIPART_BYTES - 1,
					&lim, err, sizeof(err)), 0);
	assert_int_equal(tv_s3_head(s3, key_of("mpu-small"), &size, etag, err, sizeof(err)), 0);
	assert_int_equal(size, TEST_MULTIPART_BYTES - 1);
	assert_null(strchr(etag, '-'));
	assert_int_equal(uploads_under(prefix), 0);
	close(fd);
	free(want);
}

static void test_put_limits_checked(void **state)
{
	struct tv_s3_put_limits lim = tv_s3_put_limits_default();

	(void)state;
	assert_int_equal(lim.multipart_bytes, TV_S3_MULTIPART_BYTES);
	assert_int_equal(lim.part_bytes, TV_S3_PART_BYTES);
	assert_int_equal(tv_s3_put_limits_check(&lim, err, sizeof(err)), 0);
	lim.part_bytes = TV_S3_PART_MIN_BYTES - 1;
	assert_int_equal(tv_s3_put_limits_check(&lim, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "part size"));
	lim = tv_s3_put_limits_default();
	lim.multipart_bytes = lim.part_bytes - 1;
	assert_int_equal(tv_s3_put_limits_check(&lim, err, sizeof(err)), -EINVAL);
	assert_int_equal(tv_s3_put_file(s3, key_of("bad-limits"), 0, 0, 1, &lim, err, sizeof(err)),
			 -EINVAL);
}

static void test_part_failure_aborts_the_upload(void **state)
{
	const struct tv_s3_put_limits lim = {.multipart_bytes = TEST_MULTIPART_BYTES,
					     .part_bytes = TEST_PART_BYTES};
	char p[128];
	/* the file holds 2.5 parts of the 3 + remainder asked: part 3 fails mid-body */
	int fd = temp_file(2 * TEST_PART_BYTES + TEST_PART_BYTES / 2, 5);

	(void)state;
	assert_int_equal(tv_s3_put_file(s3, key_of("abort/obj"), fd, 0,
					3 * TEST_PART_BYTES + 1000, &lim, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "the file ends at offset"));
	assert_null(strstr(err, "abort failed"));
	snprintf(p, sizeof(p), "%sabort/", prefix);
	assert_int_equal(uploads_under(p), 0);
	assert_gone(key_of("abort/obj"));
	close(fd);
}

struct find_upload {
	const char *id;
	int seen;
};

static int find_upload(void *arg, const char *key, const char *upload_id)
{
	struct find_upload *f = arg;

	(void)key;
	if (strcmp(upload_id, f->id) == 0)
		f->seen++;
	return 0;
}

static void test_multipart_steps_and_idempotent_abort(void **state)
{
	char id[TV_S3_UPLOAD_ID_LEN], p[128];
	struct tv_s3_part parts[2];
	struct find_upload f = {0};
	int fd = temp_file(TEST_PART_BYTES + 10, 6);
	int rc;

	(void)state;
	assert_int_equal(tv_s3_mpu_create(s3, key_of("steps/obj"), id, err, sizeof(err)), 0);
	assert_true(id[0]);
	assert_int_equal(tv_s3_mpu_upload_part(s3, key_of("steps/obj"), id, 1, fd, 0,
					       TEST_PART_BYTES, &parts[0], err, sizeof(err)), 0);
	assert_int_equal(parts[0].number, 1);
	assert_true(parts[0].etag[0] == '"');
	snprintf(p, sizeof(p), "%ssteps/", prefix);
	f.id = id;
	assert_int_equal(tv_s3_list_multipart_uploads(s3, p, find_upload, &f, err, sizeof(err)),
			 0);
	assert_int_equal(f.seen, 1);
	assert_int_equal(tv_s3_mpu_abort(s3, key_of("steps/obj"), id, err, sizeof(err)), 0);
	assert_int_equal(uploads_under(p), 0);
	/* aborted already: still success */
	assert_int_equal(tv_s3_mpu_abort(s3, key_of("steps/obj"), id, err, sizeof(err)), 0);
	/* completing an aborted upload fails, and says why: AWS answers 404 NoSuchUpload, RGW 16
	 * 500 InternalError "This multipart completion is already in progress" */
	rc = tv_s3_mpu_complete(s3, key_of("steps/obj"), id, parts, 1, err, sizeof(err));
	assert_true(rc == -ENOENT || rc == -EIO);
	assert_true(strstr(err, "NoSuchUpload") || strstr(err, "500 InternalError"));
	assert_gone(key_of("steps/obj"));
	close(fd);
}

struct listing {
	int n;
	char last[256];
	bool sorted, sizes_ok;
};

static int collect(void *arg, const char *key, uint64_t size_bytes)
{
	struct listing *l = arg;

	if (l->n && strcmp(l->last, key) >= 0)
		l->sorted = false;
	if (size_bytes != strlen(key))
		l->sizes_ok = false;
	snprintf(l->last, sizeof(l->last), "%s", key);
	l->n++;
	return 0;
}

static int stop_at_three(void *arg, const char *key, uint64_t size_bytes)
{
	(void)key;
	(void)size_bytes;
	return ++*(int *)arg == 3 ? -ECANCELED : 0;
}

static void test_list_pages_until_done(void **state)
{
	enum { KEYS = 23 };
	struct listing l = {.sorted = true, .sizes_ok = true};
	char name[64], p[128];
	uint64_t deleted = 0;
	int n = 0;

	(void)state;
	snprintf(p, sizeof(p), "%slist/", prefix);
	for (int i = 0; i < KEYS; i++) {
		const char *key;

		snprintf(name, sizeof(name), "list/k%03d", i);
		key = key_of(name);
		/* each object's size is its key's length, checked from the listing */
		assert_int_equal(tv_s3_put_object(s3, key, key, strlen(key), err, sizeof(err)), 0);
	}
	/* 5 keys a page: 5 requests, each after NextContinuationToken */
	assert_int_equal(tv_s3_list(s3, p, 5, collect, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, KEYS);
	assert_true(l.sorted);
	assert_true(l.sizes_ok);
	/* a callback's error stops the listing and is the answer */
	assert_int_equal(tv_s3_list(s3, p, 2, stop_at_three, &n, err, sizeof(err)), -ECANCELED);
	assert_int_equal(n, 3);
	/* delete_prefix deletes every key, over pages */
	assert_int_equal(tv_s3_delete_prefix(s3, p, &deleted, err, sizeof(err)), 0);
	assert_int_equal(deleted, KEYS);
	memset(&l, 0, sizeof(l));
	assert_int_equal(tv_s3_list(s3, p, 0, collect, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(tv_s3_delete_prefix(s3, "", &deleted, err, sizeof(err)), -EINVAL);
}

static void test_delete_is_idempotent(void **state)
{
	(void)state;
	assert_int_equal(tv_s3_put_object(s3, key_of("del"), "x", 1, err, sizeof(err)), 0);
	assert_int_equal(tv_s3_delete(s3, key_of("del"), err, sizeof(err)), 0);
	assert_gone(key_of("del"));
	assert_int_equal(tv_s3_delete(s3, key_of("del"), err, sizeof(err)), 0);
	assert_int_equal(tv_s3_delete(s3, key_of("never-was"), err, sizeof(err)), 0);
}

static void test_wrong_secret_is_eacces(void **state)
{
	static const char wrong[] = "wrong-secret-Zq8Xv3";
	struct tv_s3 *bad;
	uint64_t size;

	(void)state;
	assert_int_equal(tv_s3_open(&bad, endpoint, region, bucket, access_key, wrong, err,
				    sizeof(err)), 0);
	assert_int_equal(tv_s3_head_bucket(bad, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "403 SignatureDoesNotMatch"));
	assert_null(strstr(err, wrong));
	assert_null(strstr(err, secret_key));
	assert_int_equal(tv_s3_put_object(bad, key_of("denied"), "x", 1, err, sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "PUT s3://"));
	assert_non_null(strstr(err, "SignatureDoesNotMatch"));
	assert_null(strstr(err, wrong));
	assert_int_equal(tv_s3_head(bad, key_of("exact"), &size, NULL, err, sizeof(err)), -EACCES);
	tv_s3_close(bad);
	/* an unknown access key id */
	assert_int_equal(tv_s3_open(&bad, endpoint, region, bucket, "NOSUCHKEYID", secret_key, err,
				    sizeof(err)), 0);
	assert_int_equal(tv_s3_head_bucket(bad, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "InvalidAccessKeyId"));
	assert_null(strstr(err, secret_key));
	tv_s3_close(bad);
	assert_gone(key_of("denied"));
}

static void test_missing_bucket_is_enoent(void **state)
{
	struct tv_s3 *nb;
	char nobucket[64];

	(void)state;
	snprintf(nobucket, sizeof(nobucket), "tv-no-such-bucket-%d", (int)getpid());
	assert_int_equal(tv_s3_open(&nb, endpoint, region, nobucket, access_key, secret_key, err,
				    sizeof(err)), 0);
	assert_int_equal(tv_s3_head_bucket(nb, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "404 NoSuchBucket"));
	assert_int_equal(tv_s3_put_object(nb, "k", "x", 1, err, sizeof(err)), -ENOENT);
	/* deleting a key is idempotent, but not in a bucket that is not there */
	assert_int_equal(tv_s3_delete(nb, "k", err, sizeof(err)), -ENOENT);
	tv_s3_close(nb);
}

static void test_closed_port_is_a_connection_error(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	char url[64];
	struct tv_s3 *down;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	/* a port that was free a moment ago and that nothing listens on */
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(a.sin_port));
	assert_int_equal(tv_s3_open(&down, url, region, bucket, access_key, secret_key, err,
				    sizeof(err)), 0);
	assert_int_equal(tv_s3_head_bucket(down, err, sizeof(err)), -ECONNREFUSED);
	assert_non_null(strstr(err, "GET s3://"));
	assert_null(strstr(err, secret_key));
	tv_s3_close(down);
}

static void test_silent_server_times_out(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	char url[64];
	struct tv_s3 *hung;
	time_t t0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	/* a server that accepts (the kernel's backlog does) and never answers: the low-speed
	 * limit ends the call after TV_S3_LOW_SPEED_TIME_S instead of never */
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(a.sin_port));
	assert_int_equal(tv_s3_open(&hung, url, region, bucket, access_key, secret_key, err,
				    sizeof(err)), 0);
	t0 = time(NULL);
	assert_int_equal(tv_s3_head_bucket(hung, err, sizeof(err)), -ETIMEDOUT);
	assert_true(time(NULL) - t0 >= TV_S3_LOW_SPEED_TIME_S - 1);
	assert_true(time(NULL) - t0 <= TV_S3_LOW_SPEED_TIME_S + 10);
	assert_non_null(strstr(err, "GET s3://"));
	tv_s3_close(hung);
	close(fd);
}

static void test_open_refuses_malformed_arguments(void **state)
{
	struct tv_s3 *x;

	(void)state;
	assert_int_equal(tv_s3_open(&x, "ftp://h", region, bucket, access_key, secret_key, err,
				    sizeof(err)), -EINVAL);
	assert_int_equal(tv_s3_open(&x, "http://user:pw@h", region, bucket, access_key,
				    secret_key, err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "pw"));
	assert_int_equal(tv_s3_open(&x, "http://h/path", region, bucket, access_key, secret_key,
				    err, sizeof(err)), -EINVAL);
	assert_int_equal(tv_s3_open(&x, endpoint, region, "Bad_Bucket", access_key, secret_key,
				    err, sizeof(err)), -EINVAL);
	assert_int_equal(tv_s3_open(&x, endpoint, "us east", bucket, access_key, secret_key, err,
				    sizeof(err)), -EINVAL);
	assert_int_equal(tv_s3_open(&x, endpoint, region, bucket, access_key, "", err,
				    sizeof(err)), -EINVAL);
	assert_null(x);
	/* a trailing slash is taken */
	assert_int_equal(tv_s3_open(&x, "http://127.0.0.1:1/", region, bucket, access_key,
				    secret_key, err, sizeof(err)), 0);
	tv_s3_close(x);
}

static int abort_upload(void *arg, const char *key, const char *upload_id)
{
	(void)arg;
	return tv_s3_mpu_abort(s3, key, upload_id, err, sizeof(err));
}

static int group_teardown(void **state)
{
	(void)state;
	if (tv_s3_list_multipart_uploads(s3, prefix, abort_upload, NULL, err, sizeof(err)) ||
	    tv_s3_delete_prefix(s3, prefix, NULL, err, sizeof(err)))
		fprintf(stderr, "cleanup of %s: %s\n", prefix, err);
	tv_s3_close(s3);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_refuses_malformed_arguments),
		cmocka_unit_test(test_put_get_byte_exact),
		cmocka_unit_test(test_put_if_absent_refuses_an_existing_key),
		cmocka_unit_test(test_keys_with_reserved_characters),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_put_fd_streams_a_range),
		cmocka_unit_test(test_put_limits_checked),
		cmocka_unit_test(test_multipart_three_parts_and_remainder),
		cmocka_unit_test(test_part_failure_aborts_the_upload),
		cmocka_unit_test(test_multipart_steps_and_idempotent_abort),
		cmocka_unit_test(test_list_pages_until_done),
		cmocka_unit_test(test_delete_is_idempotent),
		cmocka_unit_test(test_wrong_secret_is_eacces),
		cmocka_unit_test(test_missing_bucket_is_enoent),
		cmocka_unit_test(test_closed_port_is_a_connection_error),
		cmocka_unit_test(test_silent_server_times_out),
	};
	struct timespec now;

	endpoint = getenv("S3_ENDPOINT");
	region = getenv("S3_REGION");
	bucket = getenv("S3_BUCKET");
	access_key = getenv("AWS_ACCESS_KEY_ID");
	secret_key = getenv("AWS_SECRET_ACCESS_KEY");
	if (!region || !*region)
		region = "us-east-1";
	if (!endpoint || !bucket || !access_key || !secret_key || !*endpoint || !*bucket) {
		printf("SKIP: no S3 server given (S3_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID, "
		       "AWS_SECRET_ACCESS_KEY; tests/integration/test_s3_client.py starts one)\n");
		return 77;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(prefix, sizeof(prefix), "tv-test-s3/%d-%lld/", (int)getpid(),
		 (long long)now.tv_sec * 1000000000ll + now.tv_nsec);
	if (tv_s3_open(&s3, endpoint, region, bucket, access_key, secret_key, err, sizeof(err)) ||
	    tv_s3_head_bucket(s3, err, sizeof(err))) {
		fprintf(stderr, "test_s3: %s\n", err);
		tv_s3_close(s3);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, group_teardown);
}
