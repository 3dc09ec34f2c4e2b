/* The S3 client (s3.h): the client (open, close) and the S3 calls, each one request or a few
 * (put_file: create, parts, complete or abort; the listings: a request per page) built and run
 * through the request layer (s3_request.h), which signs, sends and reads the answers. */
#include "under/s3.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "under/s3_request.h"

/* ---- open / close ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_res = CURLE_FAILED_INIT;

/* curl_global_init and xmlInitParser are not thread-safe: once per process, never undone
 * (the process keeps its clients until it exits) */
static void global_init(void)
{
	global_res = curl_global_init(CURL_GLOBAL_DEFAULT);
	xmlInitParser();
}

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool valid_bucket(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63)
		return false;
	for (; *b; b++)
		if (!(islower((unsigned char)*b) || isdigit((unsigned char)*b) || *b == '.' ||
		      *b == '-'))
			return false;
	return true;
}

static bool valid_region(const char *r)
{
	if (!*r || strlen(r) > 64)
		return false;
	for (; *r; r++)
		if (!(isalnum((unsigned char)*r) || *r == '-' || *r == '_'))
			return false;
	return true;
}

int tv_s3_check_endpoint(const char *endpoint_url, const char *region, char *err,
			 size_t errlen)
{
	const char *host;
	size_t n;

	if (strncmp(endpoint_url, "http://", 7) == 0)
		host = endpoint_url + 7;
	else if (strncmp(endpoint_url, "https://", 8) == 0)
		host = endpoint_url + 8;
	else {
		set_err(err, errlen, "s3 endpoint '%s': not an http:// or https:// URL",
			endpoint_url);
		return -EINVAL;
	}
	n = strlen(host);
	while (n && host[n - 1] == '/')
		n--;
	if (!n || memchr(host, '/', n) || memchr(host, '@', n) || memchr(host, '?', n) ||
	    memchr(host, '#', n)) {
		/* no path, query or user@ (credentials go only through the two key arguments) */
		set_err(err, errlen, "s3 endpoint: want scheme://host[:port] without path or user@");
		return -EINVAL;
	}
	if (!valid_region(region)) {
		set_err(err, errlen, "s3 region '%s': want letters, digits and '-'", region);
		return -EINVAL;
	}
	return 0;
}

int tv_s3_open(struct tv_s3 **out, const char *endpoint_url, const char *region,
	       const char *bucket, const char *access_key, const char *secret_key, char *err,
	       size_t errlen)
{
	struct tv_s3 *c = NULL;
	size_t n;
	int rc;

	*out = NULL;
	if (!endpoint_url || !region || !bucket || !access_key || !secret_key) {
		set_err(err, errlen, "s3: endpoint, region, bucket and both keys are required");
		return -EINVAL;
	}
	rc = tv_s3_check_endpoint(endpoint_url, region, err, errlen);
	if (rc)
		return rc;
	if (!valid_bucket(bucket)) {
		set_err(err, errlen, "s3 bucket '%s': want 3..63 of a-z 0-9 . -", bucket);
		return -EINVAL;
	}
	if (!*access_key || strchr(access_key, '\n') || !*secret_key) {
		set_err(err, errlen, "s3: the access key id and the secret key must not be empty");
		return -EINVAL;
	}
	pthread_once(&global_once, global_init);
	if (global_res != CURLE_OK) {
		set_err(err, errlen, "s3: curl_global_init: %s", curl_easy_strerror(global_res));
		return -ENOMEM;
	}
	rc = -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	n = strlen(endpoint_url);
	while (n && endpoint_url[n - 1] == '/') /* tv_s3_check_endpoint: only slashes follow */
		n--;
	c->endpoint = strndup(endpoint_url, n);
	c->bucket = strdup(bucket);
	c->access_key = strdup(access_key);
	c->secret_key = strdup(secret_key);
	n = strlen("aws:amz::s3") + strlen(region) + 1;
	c->sigv4 = malloc(n);
	if (c->sigv4)
		snprintf(c->sigv4, n, "aws:amz:%s:s3", region);
	c->curl = curl_easy_init();
	if (!c->endpoint || !c->bucket || !c->access_key || !c->secret_key || !c->sigv4 || !c->curl)
		goto fail;
	*out = c;
	return 0;
fail:
	set_err(err, errlen, "s3: out of memory opening the client");
	tv_s3_close(c);
	return rc;
}

void tv_s3_close(struct tv_s3 *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	if (c->secret_key) {
		explicit_bzero(c->secret_key, strlen(c->secret_key));
		free(c->secret_key);
	}
	free(c->access_key);
	free(c->bucket);
	free(c->sigv4);
	free(c->endpoint);
	free(c);
}

/* ---- calls ---- */

static int check_key(const struct tv_s3 *c, const char *method, const char *key, char *err,
		     size_t errlen)
{
	size_t n = key ? strlen(key) : 0;

	if (n == 0 || n > TV_S3_KEY_MAX) {
		set_err(err, errlen, "%s s3://%s: key of %zu bytes (want 1..TV_S3_KEY_MAX=%d)",
			method, c->bucket, n, TV_S3_KEY_MAX);
		return -EINVAL;
	}
	return 0;
}

int tv_s3_head_bucket(struct tv_s3 *c, char *err, size_t errlen)
{
	struct tv_s3_req r;
	int rc;

	tv_s3_req_init(&r, "GET", NULL);
	snprintf(r.what, sizeof(r.what), "(bucket check)");
	r.query = "list-type=2&max-keys=1";
	rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
	tv_s3_req_free(&r);
	return rc;
}

int tv_s3_create_bucket(struct tv_s3 *c, char *err, size_t errlen)
{
	struct tv_s3_req r;
	int rc;

	tv_s3_req_init(&r, "PUT", NULL);
	r.has_body = true;
	r.body = (const unsigned char *)"";
	rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
	if (rc == -EBUSY && strcmp(r.s3_code, "BucketAlreadyOwnedByYou") == 0)
		rc = 0;
	if (rc == 0 && err && errlen)
		err[0] = '\0';
	tv_s3_req_free(&r);
	return rc;
}

/* PutObject of a body in memory; IF_ABSENT sends "If-None-Match: *" (s3.h) */
static int put_object(struct tv_s3 *c, const char *key, const void *buf, size_t len,
		      bool if_absent, char *err, size_t errlen)
{
	char sha[65];
	struct tv_s3_req r;
	int rc;

	rc = check_key(c, "PUT", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "PUT", key);
	r.if_none_match = if_absent;
	if (len > TV_S3_PUT_MAX_BYTES) {
		tv_s3_req_err(c, &r, err, errlen, "%zu bytes: above TV_S3_PUT_MAX_BYTES, use multipart",
			len);
		return -EFBIG;
	}
	r.has_body = true;
	r.body = len ? buf : (const unsigned char *)"";
	r.body_len = len;
	tv_s3_sha256_hex(r.body, len, sha);
	rc = tv_s3_perform(c, &r, sha, err, errlen);
	tv_s3_req_free(&r);
	return rc;
}

int tv_s3_put_object(struct tv_s3 *c, const char *key, const void *buf, size_t len, char *err,
		     size_t errlen)
{
	return put_object(c, key, buf, len, false, err, errlen);
}

int tv_s3_put_object_if_absent(struct tv_s3 *c, const char *key, const void *buf, size_t len,
			       char *err, size_t errlen)
{
	return put_object(c, key, buf, len, true, err, errlen);
}

int tv_s3_put_fd(struct tv_s3 *c, const char *key, int fd, uint64_t offset, uint64_t len,
		 char *err, size_t errlen)
{
	struct tv_s3_req r;
	int rc;

	rc = check_key(c, "PUT", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "PUT", key);
	if (len > TV_S3_PUT_MAX_BYTES) {
		tv_s3_req_err(c, &r, err, errlen, "%llu bytes: above TV_S3_PUT_MAX_BYTES, use multipart",
			(unsigned long long)len);
		return -EFBIG;
	}
	r.has_body = true;
	r.fd = fd;
	r.fd_off = offset;
	r.body_len = len;
	rc = tv_s3_perform(c, &r, TV_S3_UNSIGNED_PAYLOAD, err, errlen);
	tv_s3_req_free(&r);
	return rc;
}

int tv_s3_mpu_create(struct tv_s3 *c, const char *key, char upload_id[TV_S3_UPLOAD_ID_LEN],
		     char *err, size_t errlen)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root;
	struct tv_s3_req r;
	int rc;

	upload_id[0] = '\0';
	rc = check_key(c, "POST", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "POST", key);
	snprintf(r.what, sizeof(r.what), "(create multipart upload)");
	r.query = "uploads=";
	r.has_body = true;
	r.body = (const unsigned char *)"";
	rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
	if (rc)
		goto out;
	doc = tv_s3_xml_parse(&r.resp);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!tv_s3_xml_is(root, "InitiateMultipartUploadResult") ||
	    tv_s3_xml_text(root, "UploadId", upload_id, TV_S3_UPLOAD_ID_LEN) != 0 || !upload_id[0]) {
		upload_id[0] = '\0';
		rc = -EIO;
		tv_s3_req_err(c, &r, err, errlen, "%ld without an UploadId (CreateMultipartUpload)",
			r.status);
	}
out:
	xmlFreeDoc(doc);
	tv_s3_req_free(&r);
	return rc;
}

int tv_s3_mpu_upload_part(struct tv_s3 *c, const char *key, const char *upload_id,
			  unsigned number, int fd, uint64_t offset, uint64_t len,
			  struct tv_s3_part *part, char *err, size_t errlen)
{
	struct tv_s3_buf q = {0};
	struct tv_s3_req r;
	int rc;

	memset(part, 0, sizeof(*part));
	rc = check_key(c, "PUT", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "PUT", key);
	if (number < 1 || number > TV_S3_MAX_PARTS || len > TV_S3_PART_MAX_BYTES) {
		tv_s3_req_err(c, &r, err, errlen, "part %u of %llu bytes: want 1..%d, at most %llu bytes",
			number, (unsigned long long)len, TV_S3_MAX_PARTS,
			(unsigned long long)TV_S3_PART_MAX_BYTES);
		return -EINVAL;
	}
	snprintf(r.what, sizeof(r.what), "(part %u)", number);
	tv_s3_buf_printf(&q, "partNumber=%u", number);
	tv_s3_query_param(&q, "uploadId", upload_id);
	if (q.oom) {
		rc = -ENOMEM;
		tv_s3_req_err(c, &r, err, errlen, "out of memory");
		goto out;
	}
	r.query = q.p;
	r.has_body = true;
	r.fd = fd;
	r.fd_off = offset;
	r.body_len = len;
	rc = tv_s3_perform(c, &r, TV_S3_UNSIGNED_PAYLOAD, err, errlen);
	if (rc)
		goto out;
	if (!r.etag[0]) {
		rc = -EIO;
		tv_s3_req_err(c, &r, err, errlen, "%ld without an ETag", r.status);
		goto out;
	}
	part->number = number;
	strcpy(part->etag, r.etag);
out:
	tv_s3_buf_free(&q);
	tv_s3_req_free(&r);
	return rc;
}

/* text with XML's special characters escaped */
static void sb_xml(struct tv_s3_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '&')
			tv_s3_buf_str(b, "&amp;");
		else if (*s == '<')
			tv_s3_buf_str(b, "&lt;");
		else if (*s == '>')
			tv_s3_buf_str(b, "&gt;");
		else
			tv_s3_buf_add(b, s, 1);
	}
}

int tv_s3_mpu_complete(struct tv_s3 *c, const char *key, const char *upload_id,
		       const struct tv_s3_part *parts, size_t nparts, char *err, size_t errlen)
{
	struct tv_s3_buf q = {0}, body = {0};
	char sha[65];
	struct tv_s3_req r;
	int rc;

	rc = check_key(c, "POST", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "POST", key);
	if (nparts == 0 || nparts > TV_S3_MAX_PARTS) {
		tv_s3_req_err(c, &r, err, errlen, "complete with %zu parts (want 1..%d)", nparts,
			TV_S3_MAX_PARTS);
		return -EINVAL;
	}
	snprintf(r.what, sizeof(r.what), "(complete %zu parts)", nparts);
	tv_s3_query_param(&q, "uploadId", upload_id);
	tv_s3_buf_str(&body, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts; i++) {
		tv_s3_buf_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>", parts[i].number);
		sb_xml(&body, parts[i].etag);
		tv_s3_buf_str(&body, "</ETag></Part>");
	}
	tv_s3_buf_str(&body, "</CompleteMultipartUpload>");
	if (q.oom || body.oom) {
		rc = -ENOMEM;
		tv_s3_req_err(c, &r, err, errlen, "out of memory");
		goto out;
	}
	r.query = q.p;
	r.has_body = true;
	r.body = (const unsigned char *)body.p;
	r.body_len = body.len;
	tv_s3_sha256_hex(body.p, body.len, sha);
	rc = tv_s3_perform(c, &r, sha, err, errlen);
	/* S3 may answer 200 and fail in the body (the 200 is sent before the parts are joined) */
	if (rc == 0 && tv_s3_parse_error_body(&r)) {
		rc = tv_s3_errno_of_status(0, r.s3_code);
		tv_s3_req_err(c, &r, err, errlen, "%ld then %s%s%s", r.status, r.s3_code,
			r.s3_msg[0] ? ": " : "", r.s3_msg);
	}
out:
	tv_s3_buf_free(&q);
	tv_s3_buf_free(&body);
	tv_s3_req_free(&r);
	return rc;
}

int tv_s3_mpu_abort(struct tv_s3 *c, const char *key, const char *upload_id, char *err,
		    size_t errlen)
{
	struct tv_s3_buf q = {0};
	struct tv_s3_req r;
	int rc;

	rc = check_key(c, "DELETE", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "DELETE", key);
	snprintf(r.what, sizeof(r.what), "(abort multipart upload)");
	tv_s3_query_param(&q, "uploadId", upload_id);
	if (q.oom) {
		rc = -ENOMEM;
		tv_s3_req_err(c, &r, err, errlen, "out of memory");
		goto out;
	}
	r.query = q.p;
	rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
	if (rc == -ENOENT && strcmp(r.s3_code, "NoSuchUpload") == 0) {
		rc = 0;
		if (err && errlen)
			err[0] = '\0';
	}
out:
	tv_s3_buf_free(&q);
	tv_s3_req_free(&r);
	return rc;
}

struct tv_s3_put_limits tv_s3_put_limits_default(void)
{
	return (struct tv_s3_put_limits){.multipart_bytes = TV_S3_MULTIPART_BYTES,
					 .part_bytes = TV_S3_PART_BYTES};
}

int tv_s3_put_limits_check(const struct tv_s3_put_limits *lim, char *err, size_t errlen)
{
	if (lim->part_bytes < TV_S3_PART_MIN_BYTES || lim->part_bytes > TV_S3_PART_MAX_BYTES) {
		set_err(err, errlen, "s3 part size %llu bytes: want %llu..%llu",
			(unsigned long long)lim->part_bytes,
			(unsigned long long)TV_S3_PART_MIN_BYTES,
			(unsigned long long)TV_S3_PART_MAX_BYTES);
		return -EINVAL;
	}
	if (lim->multipart_bytes < lim->part_bytes || lim->multipart_bytes > TV_S3_PUT_MAX_BYTES) {
		set_err(err, errlen, "s3 multipart threshold %llu bytes: want %llu..%llu",
			(unsigned long long)lim->multipart_bytes,
			(unsigned long long)lim->part_bytes,
			(unsigned long long)TV_S3_PUT_MAX_BYTES);
		return -EINVAL;
	}
	return 0;
}

int tv_s3_put_file(struct tv_s3 *c, const char *key, int fd, uint64_t offset, uint64_t len,
		   const struct tv_s3_put_limits *lim, char *err, size_t errlen)
{
	struct tv_s3_put_limits def = tv_s3_put_limits_default();
	char upload_id[TV_S3_UPLOAD_ID_LEN];
	struct tv_s3_part *parts = NULL;
	uint64_t nparts;
	int rc;

	if (!lim)
		lim = &def;
	rc = tv_s3_put_limits_check(lim, err, errlen);
	if (rc)
		return rc;
	if (len < lim->multipart_bytes)
		return tv_s3_put_fd(c, key, fd, offset, len, err, errlen);
	nparts = (len + lim->part_bytes - 1) / lim->part_bytes;
	if (nparts > TV_S3_MAX_PARTS) {
		set_err(err, errlen, "PUT s3://%s/%s: %llu bytes need %llu parts of %llu (max %d)",
			c->bucket, key, (unsigned long long)len, (unsigned long long)nparts,
			(unsigned long long)lim->part_bytes, TV_S3_MAX_PARTS);
		return -EFBIG;
	}
	parts = calloc((size_t)nparts, sizeof(*parts));
	if (!parts) {
		set_err(err, errlen, "PUT s3://%s/%s: out of memory", c->bucket, key);
		return -ENOMEM;
	}
	rc = tv_s3_mpu_create(c, key, upload_id, err, errlen);
	if (rc)
		goto out;
	for (uint64_t i = 0; i < nparts; i++) {
		uint64_t at = i * lim->part_bytes;
		uint64_t n = len - at < lim->part_bytes ? len - at : lim->part_bytes;

		rc = tv_s3_mpu_upload_part(c, key, upload_id, (unsigned)(i + 1), fd, offset + at, n,
					   &parts[i], err, errlen);
		if (rc)
			goto abort;
	}
	rc = tv_s3_mpu_complete(c, key, upload_id, parts, (size_t)nparts, err, errlen);
	if (rc == 0)
		goto out;
abort: {
	/* the first error stays the answer; a failed abort is said after it */
	/* "DELETE s3://B/KEY (abort multipart upload): cause": room for the cause after a key */
	char aerr[512];
	int arc = tv_s3_mpu_abort(c, key, upload_id, aerr, sizeof(aerr));

	if (arc && err && errlen) {
		/* the key is in the first error already: of the abort's, only what S3 said */
		const char *cause = strstr(aerr, "): ");
		size_t used = strlen(err);

		if (used + 1 < errlen)
			snprintf(err + used, errlen - used, "; abort failed too: %s",
				 cause ? cause + 3 : aerr);
	}
}
out:
	free(parts);
	return rc;
}

/* ---- listings: one request per page ---- */

/* A listing walked page by page (ListObjectsV2, ListMultipartUploads): QUERY writes the next
 * page's canonical query from the markers the previous page left (none before the first),
 * ENTRY takes each element ITEM of a page, MARKERS keeps the page's markers for the next one
 * (-EIO when a truncated page lacks them or repeats the previous ones). A page whose IsTruncated is not "true" is the last.
 * ENTRY runs between requests, so the caller's callback may use the client. */
struct pager {
	const char *root; /* the answer's root element */
	const char *item; /* the element of one entry */
	void (*query)(struct pager *pg, struct tv_s3_buf *q);
	int (*entry)(struct pager *pg, xmlNodePtr item);
	int (*markers)(struct pager *pg, xmlNodePtr root, bool truncated);
};

static int walk_pages(struct tv_s3 *c, struct pager *pg, const char *what, char *err,
		      size_t errlen)
{
	struct tv_s3_buf q = {0};
	bool more = true;
	int rc = 0;

	while (more && rc == 0) {
		xmlDocPtr doc = NULL;
		xmlNodePtr root;
		xmlChar *trunc;
		struct tv_s3_req r;

		tv_s3_req_init(&r, "GET", NULL);
		snprintf(r.what, sizeof(r.what), "%s", what);
		tv_s3_buf_free(&q);
		pg->query(pg, &q);
		if (q.oom) {
			rc = -ENOMEM;
			tv_s3_req_err(c, &r, err, errlen, "out of memory");
			goto next;
		}
		r.query = q.p;
		rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
		if (rc)
			goto next;
		doc = tv_s3_xml_parse(&r.resp);
		root = doc ? xmlDocGetRootElement(doc) : NULL;
		if (!tv_s3_xml_is(root, pg->root)) {
			rc = -EIO;
			tv_s3_req_err(c, &r, err, errlen, "%ld: not a %s", r.status, pg->root);
			goto next;
		}
		for (xmlNodePtr n = root->children; n && rc == 0; n = n->next)
			if (tv_s3_xml_is(n, pg->item))
				rc = pg->entry(pg, n);
		if (rc)
			goto next; /* the caller's callback: err is as it left it */
		trunc = tv_s3_xml_dup(root, "IsTruncated");
		more = trunc && strcmp((const char *)trunc, "true") == 0;
		xmlFree(trunc);
		rc = pg->markers(pg, root, more);
		if (rc == -EIO)
			tv_s3_req_err(c, &r, err, errlen,
				      "a truncated %s without a new next marker", pg->root);
		else if (rc)
			tv_s3_req_err(c, &r, err, errlen, "out of memory");
next:
		xmlFreeDoc(doc);
		tv_s3_req_free(&r);
	}
	tv_s3_buf_free(&q);
	return rc;
}

/* a truncated page's marker equal to the previous page's would ask for the same page again,
 * forever: a listing must advance */
static bool same_marker(const xmlChar *before, const xmlChar *now)
{
	return before && now && strcmp((const char *)before, (const char *)now) == 0;
}

struct upload_pager {
	struct pager pg; /* first: the pager's callbacks get this struct */
	const char *prefix;
	xmlChar *key_marker, *id_marker;
	tv_s3_upload_fn fn;
	void *arg;
};

static void upload_query(struct pager *pg, struct tv_s3_buf *q)
{
	struct upload_pager *u = (struct upload_pager *)pg;

	/* sorted by name: key-marker, prefix, upload-id-marker, uploads */
	if (u->key_marker)
		tv_s3_query_param(q, "key-marker", (const char *)u->key_marker);
	tv_s3_query_param(q, "prefix", u->prefix);
	if (u->id_marker)
		tv_s3_query_param(q, "upload-id-marker", (const char *)u->id_marker);
	tv_s3_query_param(q, "uploads", "");
}

static int upload_entry(struct pager *pg, xmlNodePtr item)
{
	struct upload_pager *u = (struct upload_pager *)pg;
	xmlChar *k = tv_s3_xml_dup(item, "Key"), *id = tv_s3_xml_dup(item, "UploadId");
	int rc = k && id ? u->fn(u->arg, (const char *)k, (const char *)id) : -EIO;

	xmlFree(k);
	xmlFree(id);
	return rc;
}

static int upload_markers(struct pager *pg, xmlNodePtr root, bool truncated)
{
	struct upload_pager *u = (struct upload_pager *)pg;

	xmlChar *key = tv_s3_xml_dup(root, "NextKeyMarker");
	xmlChar *id = tv_s3_xml_dup(root, "NextUploadIdMarker");
	bool same = same_marker(u->key_marker, key) && same_marker(u->id_marker, id);

	xmlFree(u->key_marker);
	xmlFree(u->id_marker);
	u->key_marker = key;
	u->id_marker = id;
	return truncated && (!key || !*key || same) ? -EIO : 0;
}

int tv_s3_list_multipart_uploads(struct tv_s3 *c, const char *prefix, tv_s3_upload_fn fn,
				 void *arg, char *err, size_t errlen)
{
	struct upload_pager u = {
		.pg = {.root = "ListMultipartUploadsResult", .item = "Upload",
		       .query = upload_query, .entry = upload_entry, .markers = upload_markers},
		.prefix = prefix, .fn = fn, .arg = arg};
	char what[TV_S3_KEY_MAX + 64];
	int rc;

	snprintf(what, sizeof(what), "(list multipart uploads of '%s')", prefix);
	rc = walk_pages(c, &u.pg, what, err, errlen);
	xmlFree(u.key_marker);
	xmlFree(u.id_marker);
	return rc;
}

struct object_pager {
	struct pager pg; /* first: the pager's callbacks get this struct */
	const char *prefix;
	unsigned page_keys;
	xmlChar *token;
	tv_s3_object_fn fn;
	void *arg;
};

static void object_query(struct pager *pg, struct tv_s3_buf *q)
{
	struct object_pager *o = (struct object_pager *)pg;

	/* sorted by name: continuation-token, list-type, max-keys, prefix */
	if (o->token)
		tv_s3_query_param(q, "continuation-token", (const char *)o->token);
	tv_s3_query_param(q, "list-type", "2");
	tv_s3_buf_printf(q, "&max-keys=%u", o->page_keys);
	tv_s3_query_param(q, "prefix", o->prefix);
}

static int object_entry(struct pager *pg, xmlNodePtr item)
{
	struct object_pager *o = (struct object_pager *)pg;
	xmlChar *k = tv_s3_xml_dup(item, "Key"), *sz = tv_s3_xml_dup(item, "Size");
	unsigned long long size = 0;
	char *end = NULL;
	int rc = -EIO; /* an object without Key or Size */

	if (sz) {
		errno = 0;
		size = strtoull((const char *)sz, &end, 10);
	}
	if (k && sz && end && !*end && !errno)
		rc = o->fn(o->arg, (const char *)k, size);
	xmlFree(k);
	xmlFree(sz);
	return rc;
}

static int object_markers(struct pager *pg, xmlNodePtr root, bool truncated)
{
	struct object_pager *o = (struct object_pager *)pg;

	xmlChar *token = tv_s3_xml_dup(root, "NextContinuationToken");
	bool same = same_marker(o->token, token);

	xmlFree(o->token);
	o->token = token;
	return truncated && (!token || !*token || same) ? -EIO : 0;
}

int tv_s3_list(struct tv_s3 *c, const char *prefix, unsigned page_keys, tv_s3_object_fn fn,
	       void *arg, char *err, size_t errlen)
{
	struct object_pager o = {
		.pg = {.root = "ListBucketResult", .item = "Contents", .query = object_query,
		       .entry = object_entry, .markers = object_markers},
		.prefix = prefix, .fn = fn, .arg = arg,
		.page_keys = page_keys == 0 || page_keys > TV_S3_LIST_PAGE_KEYS
				     ? TV_S3_LIST_PAGE_KEYS : page_keys};
	char what[TV_S3_KEY_MAX + 64];
	int rc;

	snprintf(what, sizeof(what), "(list '%s')", prefix);
	rc = walk_pages(c, &o.pg, what, err, errlen);
	xmlFree(o.token);
	return rc;
}

int tv_s3_get_range(struct tv_s3 *c, const char *key, uint64_t offset, size_t len, void *buf,
		    char *err, size_t errlen)
{
	unsigned long long a, b, total;
	char range[64];
	struct tv_s3_req r;
	int rc;

	rc = check_key(c, "GET", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "GET", key);
	if (len == 0 || offset + len < offset) {
		tv_s3_req_err(c, &r, err, errlen, "range of %zu bytes at %llu", len,
			(unsigned long long)offset);
		return -EINVAL;
	}
	snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)offset,
		 (unsigned long long)(offset + len - 1));
	r.range = range;
	r.dst = buf;
	r.dst_cap = len;
	rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
	if (rc)
		goto out;
	/* a 206 says where its bytes lie; a 200 (the whole object) is right only from 0 */
	if (r.status == 206) {
		if (sscanf(r.content_range, "bytes %llu-%llu/%llu", &a, &b, &total) != 3 ||
		    a != offset) {
			rc = -EIO;
			tv_s3_req_err(c, &r, err, errlen, "206 with Content-Range '%s' for %s",
				r.content_range, range);
			goto out;
		}
		if (total < offset + len) {
			rc = -ERANGE;
			tv_s3_req_err(c, &r, err, errlen, "%s past the end of the %llu-byte object", range,
				total);
			goto out;
		}
	} else if (offset != 0) {
		rc = -EIO;
		tv_s3_req_err(c, &r, err, errlen, "%ld (not 206) for %s", r.status, range);
		goto out;
	}
	if (r.dst_len != len) {
		rc = r.status == 200 ? -ERANGE : -EIO;
		tv_s3_req_err(c, &r, err, errlen, "short read: %zu of %zu bytes for %s", r.dst_len, len,
			range);
	}
out:
	tv_s3_req_free(&r);
	return rc;
}

int tv_s3_head(struct tv_s3 *c, const char *key, uint64_t *size, char etag[TV_S3_ETAG_LEN],
	       char *err, size_t errlen)
{
	curl_off_t cl = -1;
	struct tv_s3_req r;
	int rc;

	*size = 0;
	if (etag)
		etag[0] = '\0';
	rc = check_key(c, "HEAD", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "HEAD", key);
	r.head = true;
	rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
	if (rc == 0) {
		curl_easy_getinfo(c->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
		if (cl < 0) {
			rc = -EIO;
			tv_s3_req_err(c, &r, err, errlen, "%ld without a Content-Length", r.status);
		} else {
			*size = (uint64_t)cl;
			if (etag)
				strcpy(etag, r.etag);
		}
	}
	tv_s3_req_free(&r);
	return rc;
}

int tv_s3_delete(struct tv_s3 *c, const char *key, char *err, size_t errlen)
{
	struct tv_s3_req r;
	int rc;

	rc = check_key(c, "DELETE", key, err, errlen);
	if (rc)
		return rc;
	tv_s3_req_init(&r, "DELETE", key);
	rc = tv_s3_perform(c, &r, TV_S3_EMPTY_SHA256, err, errlen);
	if (rc == -ENOENT && strcmp(r.s3_code, "NoSuchBucket") != 0) {
		rc = 0; /* gone already: what delete wanted */
		if (err && errlen)
			err[0] = '\0';
	}
	tv_s3_req_free(&r);
	return rc;
}

struct delete_walk {
	struct tv_s3 *c;
	uint64_t deleted;
	char *err;
	size_t errlen;
};

static int delete_one(void *arg, const char *key, uint64_t size_bytes)
{
	struct delete_walk *w = arg;
	int rc;

	(void)size_bytes;
	rc = tv_s3_delete(w->c, key, w->err, w->errlen);
	if (rc == 0)
		w->deleted++;
	return rc;
}

int tv_s3_delete_prefix(struct tv_s3 *c, const char *prefix, uint64_t *deleted, char *err,
			size_t errlen)
{
	struct delete_walk w = {.c = c, .err = err, .errlen = errlen};
	int rc;

	if (deleted)
		*deleted = 0;
	if (!prefix || !*prefix) {
		set_err(err, errlen, "DELETE s3://%s/*: an empty prefix is refused", c->bucket);
		return -EINVAL;
	}
	/* keys deleted within a page do not disturb the continuation token, which names the
	 * position after the page's last key */
	rc = tv_s3_list(c, prefix, 0, delete_one, &w, err, errlen);
	if (deleted)
		*deleted = w.deleted;
	return rc;
}

void tv_s3_set_timeouts(struct tv_s3 *c, unsigned connect_ms, unsigned low_speed_time_s)
{
	c->connect_timeout_ms = (long)connect_ms;
	c->low_speed_time_s = (long)low_speed_time_s;
}
