/* An S3 client for the under-store (issue 14): the few S3 calls tracevaultd needs to keep
 * segments in any S3-compatible object store (AWS, Ceph RADOS Gateway, MinIO), over libcurl
 * with libcurl's own SigV4 signing (CURLOPT_AWS_SIGV4) and libxml2 for the XML bodies. The
 * under-store (server/under/persist.c, to come) is built on it; it knows nothing of segments.
 *
 * One client = one bucket, one set of credentials, one CURL easy handle reused for every call
 * (keep-alive: one TCP/TLS connection while the server keeps it open). NOT thread-safe: one
 * client per thread; calls on one client never overlap. Calls block until the response is in.
 *
 * Errors: every call returns 0 or a negative errno and, on failure, writes one line into
 * `err` (at most `errlen` bytes, always NUL-terminated when errlen > 0) naming the request and
 * what S3 said, e.g. "PUT s3://b/k: 403 SignatureDoesNotMatch". The mapping:
 *   403 (SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied, ...)  -EACCES
 *   404 (NoSuchBucket, NoSuchKey, NoSuchUpload)                         -ENOENT
 *   416 InvalidRange, or a range past the object's end                  -ERANGE
 *   409 (BucketNotEmpty, OperationAborted)                              -EBUSY
 *   412 PreconditionFailed (tv_s3_put_object_if_absent: the key exists)  -EEXIST
 *   413 EntityTooLarge                                                   -EFBIG
 *   other 4xx (InvalidArgument, EntityTooSmall, InvalidPart, ...)       -EINVAL
 *   5xx (InternalError, SlowDown, ServiceUnavailable), or an <Error>
 *   inside a 200 (CompleteMultipartUpload may answer so)                -EIO
 *   connection refused / unreachable (the socket's errno)               -ECONNREFUSED, ...
 *   connect timeout, or slower than the low-speed limit                 -ETIMEDOUT
 *   connection reset, nothing answered                                   -ECONNRESET
 *   TLS failure                                                          -EPROTO
 *   pread of the source failed (its errno) or came short                -EIO or that errno
 * Credentials never appear in `err`, in a URL or in any log: they live in the client only.
 *
 * Retries: none, anywhere in this module. The caller decides: a client's write to tracevaultd
 * is never retried (its failure is the client's answer), reads and background persistence
 * may retry (the data is durable locally). A retry hidden here would break both rules. (curl
 * itself opens a fresh connection when the kept-alive one turns out closed by the server
 * before the request went out, rewinding the body: that is not an S3 retry, no request was
 * answered; checked here across a restart of RGW between two PUTs on one client.)
 *
 * Payload hash (x-amz-content-sha256, which Debian's curl 7.88 needs sent explicitly for RGW
 * to verify the signature, ../shared/NOTES.md): the SHA-256 of the body where the body is in
 * memory (put_object, CompleteMultipartUpload's XML, the empty body of GET/HEAD/DELETE); and
 * UNSIGNED-PAYLOAD where the body is streamed from a file descriptor (put_fd, upload_part,
 * put_file), because hashing it would read every byte from disk twice before the first byte
 * is sent. The headers and the request are signed either way; over https TLS protects the body.
 *
 * 100-continue: curl sends "Expect: 100-continue" before a body over 1 MiB, so a refusal (403,
 * 404) comes before the body is sent. It cannot be turned off with an empty "Expect:" header:
 * curl 7.88 signs that header, does not send it, and RGW answers SignatureDoesNotMatch.
 *
 * Keys: 1..TV_S3_KEY_MAX bytes, sent percent-encoded (every byte but A-Z a-z 0-9 - . _ ~ /).
 * Buckets: S3's DNS-style names (3..63 of a-z 0-9 . -), addressed path-style
 * (ENDPOINT/BUCKET/KEY), which RGW and MinIO serve without wildcard DNS. */
#ifndef TV_UNDER_S3_H
#define TV_UNDER_S3_H

#include <stddef.h>
#include <stdint.h>

/* tv_s3_put_file sends an object of at least this many bytes as a multipart upload */
#define TV_S3_MULTIPART_BYTES (64ull << 20)
/* the part size tv_s3_put_file uses (the last part takes the remainder) */
#define TV_S3_PART_BYTES (16ull << 20)
/* S3's bounds on a part (every part but the last) and on a multipart upload */
#define TV_S3_PART_MIN_BYTES (5ull << 20)
#define TV_S3_PART_MAX_BYTES (5ull << 30)
#define TV_S3_MAX_PARTS 10000
/* S3's bound on a single PUT (larger objects must go multipart) */
#define TV_S3_PUT_MAX_BYTES (5ull << 30)
/* S3's bound on a key, in bytes */
#define TV_S3_KEY_MAX 1024
/* connect (TCP + TLS) must finish within this */
#define TV_S3_CONNECT_TIMEOUT_MS 10000
/* a transfer slower than TV_S3_LOW_SPEED_BYTES per second for TV_S3_LOW_SPEED_TIME_S seconds is
 * abandoned (-ETIMEDOUT): a hung server fails a call instead of stalling it forever, while a
 * large object over a slow link still goes through */
#define TV_S3_LOW_SPEED_BYTES 1024
#define TV_S3_LOW_SPEED_TIME_S 30
/* the largest XML response read (a ListObjectsV2 page of 1000 keys of 1024 bytes is ~1.3 MB);
 * a larger one fails the call with -EFBIG */
#define TV_S3_XML_MAX_BYTES (8u << 20)
/* ListObjectsV2's max-keys when the caller passes 0 (also S3's maximum) */
#define TV_S3_LIST_PAGE_KEYS 1000
/* room for an upload id and a part's ETag, with their NUL */
#define TV_S3_UPLOAD_ID_LEN 256
#define TV_S3_ETAG_LEN 80

struct tv_s3;

/* Opens a client of BUCKET at ENDPOINT_URL ("http://127.0.0.1:7480" or "https://host[:port]",
 * no path, no user@) in REGION (e.g. "us-east-1"; RGW accepts any region it is configured
 * for). The strings are copied; the caller keeps its own. No request is made: call
 * tv_s3_head_bucket to check the endpoint, the credentials and the bucket.
 * Returns 0 and *out (freed by tv_s3_close), -EINVAL on a malformed argument (err names which,
 * never the secret's value), -ENOMEM. */
int tv_s3_open(struct tv_s3 **out, const char *endpoint_url, const char *region,
	       const char *bucket, const char *access_key, const char *secret_key, char *err,
	       size_t errlen);
/* tv_s3_open's checks of ENDPOINT_URL (http:// or https://, host[:port], no path, query or
 * user@) and REGION (letters, digits, '-'), alone: what a CLI checks as a usage error before
 * anything starts. 0, or -EINVAL with err naming which. */
int tv_s3_check_endpoint(const char *endpoint_url, const char *region, char *err,
			 size_t errlen);
/* Tighter bounds than TV_S3_CONNECT_TIMEOUT_MS and TV_S3_LOW_SPEED_TIME_S for this client's
 * later calls (a reader on a thread that cannot wait long, server/under/read.h): connect
 * within CONNECT_MS, abandon a transfer below TV_S3_LOW_SPEED_BYTES per second for
 * LOW_SPEED_TIME_S seconds (-ETIMEDOUT). 0 keeps either default. */
void tv_s3_set_timeouts(struct tv_s3 *c, unsigned connect_ms, unsigned low_speed_time_s);
/* Closes the connection and frees the client (the copied secret is zeroed first). NULL is a
 * no-op. */
void tv_s3_close(struct tv_s3 *c);

/* The start-up check: can this client list its bucket? (ListObjectsV2 with max-keys=1, not
 * HeadBucket: a HEAD answer has no body, so a 403 could not say SignatureDoesNotMatch from
 * InvalidAccessKeyId; both need the s3:ListBucket permission.) 0, or an error as above
 * (-EACCES bad credentials, -ENOENT no such bucket, -ECONNREFUSED, -ETIMEDOUT, ...). */
int tv_s3_head_bucket(struct tv_s3 *c, char *err, size_t errlen);
/* CreateBucket: the test fixtures' and a fresh deployment's. A bucket this user owns already
 * is success. */
int tv_s3_create_bucket(struct tv_s3 *c, char *err, size_t errlen);

/* PutObject of LEN bytes at BUF (borrowed for the call), at most TV_S3_PUT_MAX_BYTES; the
 * body's SHA-256 is signed. Replaces an existing object. */
int tv_s3_put_object(struct tv_s3 *c, const char *key, const void *buf, size_t len, char *err,
		     size_t errlen);
/* tv_s3_put_object with "If-None-Match: *": the object is stored only when KEY does not exist;
 * when it does, S3 answers 412 PreconditionFailed, the object is left as it was, and this
 * returns -EEXIST. S3 decides atomically: of two such PUTs of one key at once, one wins. (AWS
 * S3 since 2024-08; Ceph RGW: checked on 16.2 by unit/test_s3.c, run by test_s3_client; a
 * store that ignores the header replaces the object, as tv_s3_put_object does.) */
int tv_s3_put_object_if_absent(struct tv_s3 *c, const char *key, const void *buf, size_t len,
			       char *err, size_t errlen);

/* PutObject of the LEN bytes of FD at OFFSET, read with pread as curl sends them (the file
 * position is not used or moved; nothing is held in memory beyond curl's upload buffer).
 * UNSIGNED-PAYLOAD. A pread error fails the call with its errno, a file shorter than
 * OFFSET + LEN with -EIO; either way the server sees a truncated body and stores nothing. */
int tv_s3_put_fd(struct tv_s3 *c, const char *key, int fd, uint64_t offset, uint64_t len,
		 char *err, size_t errlen);

/* How tv_s3_put_file splits an object: multipart from MULTIPART_BYTES on, parts of PART_BYTES.
 * tv_s3_put_limits_default() gives TV_S3_MULTIPART_BYTES and TV_S3_PART_BYTES; a caller (the
 * CLI, a test) may lower them within tv_s3_put_limits_check. */
struct tv_s3_put_limits {
	uint64_t multipart_bytes;
	uint64_t part_bytes;
};
struct tv_s3_put_limits tv_s3_put_limits_default(void);
/* 0, or -EINVAL and err naming the bound: part_bytes within [TV_S3_PART_MIN_BYTES,
 * TV_S3_PART_MAX_BYTES], multipart_bytes at least part_bytes and at most TV_S3_PUT_MAX_BYTES. */
int tv_s3_put_limits_check(const struct tv_s3_put_limits *lim, char *err, size_t errlen);
/* Stores the LEN bytes of FD at OFFSET as KEY: one PutObject below lim->multipart_bytes
 * (tv_s3_put_fd), else a multipart upload of lim->part_bytes parts (at most TV_S3_MAX_PARTS:
 * -EFBIG beyond). LIM NULL means tv_s3_put_limits_default(). On any failure after the upload
 * was created, the upload is aborted before returning, so no part is left billed in the
 * bucket and no object appears; if that abort fails too, err says so after the first error
 * (tv_s3_list_multipart_uploads + tv_s3_mpu_abort clean up later). Returns the first error. */
int tv_s3_put_file(struct tv_s3 *c, const char *key, int fd, uint64_t offset, uint64_t len,
		   const struct tv_s3_put_limits *lim, char *err, size_t errlen);

/* One uploaded part of a multipart upload: its number (1..TV_S3_MAX_PARTS) and the ETag S3
 * answered for it, quotes included, as CompleteMultipartUpload wants it back. */
struct tv_s3_part {
	unsigned number;
	char etag[TV_S3_ETAG_LEN];
};
/* CreateMultipartUpload: the upload id into UPLOAD_ID (TV_S3_UPLOAD_ID_LEN bytes). */
int tv_s3_mpu_create(struct tv_s3 *c, const char *key, char upload_id[TV_S3_UPLOAD_ID_LEN],
		     char *err, size_t errlen);
/* UploadPart NUMBER (1..TV_S3_MAX_PARTS) of UPLOAD_ID from the LEN bytes of FD at OFFSET (as
 * tv_s3_put_fd reads them); the part's ETag into PART. */
int tv_s3_mpu_upload_part(struct tv_s3 *c, const char *key, const char *upload_id,
			  unsigned number, int fd, uint64_t offset, uint64_t len,
			  struct tv_s3_part *part, char *err, size_t errlen);
/* CompleteMultipartUpload of the NPARTS parts (borrowed; ascending numbers). S3 may answer
 * 200 and still fail (an <Error> body): that is an error here (-EIO, or as its code maps). */
int tv_s3_mpu_complete(struct tv_s3 *c, const char *key, const char *upload_id,
		       const struct tv_s3_part *parts, size_t nparts, char *err, size_t errlen);
/* AbortMultipartUpload. An upload that does not exist (NoSuchUpload: aborted or completed
 * already) is success: abort is idempotent. */
int tv_s3_mpu_abort(struct tv_s3 *c, const char *key, const char *upload_id, char *err,
		    size_t errlen);
/* ListMultipartUploads under PREFIX ("" for all), every page: FN(arg, key, upload_id) for each
 * upload in progress (strings valid during the call only). FN returns 0 to go on or a negative
 * errno, which stops the listing and is returned (err as FN left it). FN runs between requests,
 * so it may call this client (e.g. tv_s3_mpu_abort of what it is shown). */
typedef int (*tv_s3_upload_fn)(void *arg, const char *key, const char *upload_id);
int tv_s3_list_multipart_uploads(struct tv_s3 *c, const char *prefix, tv_s3_upload_fn fn,
				 void *arg, char *err, size_t errlen);

/* GetObject of bytes [OFFSET, OFFSET + LEN) of KEY into BUF (LEN bytes, the caller's). Exactly
 * LEN bytes or an error: -ERANGE when the range does not lie within the object (416, or fewer
 * bytes because the object ends first), -EIO when the body came short or long otherwise,
 * -ENOENT no such key, -EINVAL LEN 0. */
int tv_s3_get_range(struct tv_s3 *c, const char *key, uint64_t offset, size_t len, void *buf,
		    char *err, size_t errlen);
/* HeadObject: the object's size in bytes into *SIZE and, when ETAG is not NULL, its ETag
 * (quotes included; a multipart object's ends in "-NPARTS") into ETAG. -ENOENT when KEY (or
 * the bucket: a HEAD answer carries no body that could say which) does not exist. */
int tv_s3_head(struct tv_s3 *c, const char *key, uint64_t *size, char etag[TV_S3_ETAG_LEN],
	       char *err, size_t errlen);
/* DeleteObject. A key that does not exist is success (S3 answers 204 anyway; a 404 NoSuchKey
 * is taken as success too): delete is idempotent. A missing bucket is -ENOENT. */
int tv_s3_delete(struct tv_s3 *c, const char *key, char *err, size_t errlen);

/* ListObjectsV2 under PREFIX ("" for all), PAGE_KEYS keys per request (0:
 * TV_S3_LIST_PAGE_KEYS; at most that), following NextContinuationToken until IsTruncated is
 * false: FN(arg, key, size_bytes) for each object, in S3's order (UTF-8 binary). The key is
 * valid during the call only. FN returns 0 to go on or a negative errno, which stops the
 * listing and is returned (err as FN left it); it runs between requests and may call this
 * client. */
typedef int (*tv_s3_object_fn)(void *arg, const char *key, uint64_t size_bytes);
int tv_s3_list(struct tv_s3 *c, const char *prefix, unsigned page_keys, tv_s3_object_fn fn,
	       void *arg, char *err, size_t errlen);
/* Deletes every object under PREFIX (list, then one DeleteObject per key; PREFIX "" is refused
 * with -EINVAL so that a bug cannot empty the bucket); *DELETED (may be NULL) counts them.
 * Multipart uploads under PREFIX are not touched: abort them with
 * tv_s3_list_multipart_uploads + tv_s3_mpu_abort. */
int tv_s3_delete_prefix(struct tv_s3 *c, const char *prefix, uint64_t *deleted, char *err,
			size_t errlen);

#endif
