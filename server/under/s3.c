/* The S3 client (s3.h): each call builds one request (path-style URL, sorted and pre-encoded
 * query, x-amz-content-sha256), lets libcurl sign it (CURLOPT_AWS_SIGV4) and send it on the
 * client's one easy handle, and turns the answer into 0 or a negative errno plus one line of
 * err, reading S3's XML (errors, listings, upload ids) with libxml2.
 *
 * Debian's curl 7.88 signs the query string as it is given: it neither encodes nor sorts it.
 * So every query here is built already in SigV4's canonical form: parameters sorted by name,
 * every value percent-encoded, a flag parameter written "uploads=" (../shared/NOTES.md).
 *
 * One request at a time runs through perform(): curl_easy_reset() first, so no option of the
 * previous call leaks into the next, while the connection, DNS and TLS session caches stay. */
#include "under/s3.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

/* curl's upload buffer: how much one READFUNCTION call may pread at once (curl's default is
 * 64 KiB; a larger one halves the system calls of a large PUT, bench figures in s3.h's
 * commit) */
#define S3_UPLOAD_BUFFER_BYTES (512 * 1024)
/* the SHA-256 of an empty body, which every body-less request signs */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

struct tv_s3 {
	CURL *curl;
	char *endpoint; /* "http[s]://host[:port]", no trailing '/' */
	char *sigv4;    /* "aws:amz:REGION:s3" */
	char *bucket;
	char *access_key;
	char *secret_key; /* zeroed before it is freed */
	char curl_err[CURL_ERROR_SIZE];
};

/* a growable string or byte buffer; oom sticks, so a chain of appends is checked once */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_free(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = true; /* only short, fixed formats come here */
		return;
	}
	sb_add(b, tmp, (size_t)n);
}

/* RFC 3986 percent-encoding as SigV4 wants it: all but A-Z a-z 0-9 - . _ ~, and '/' too
 * unless KEEP_SLASH (a key in the path keeps its slashes, a query value does not) */
static void sb_encode(struct sbuf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
		    (keep_slash && ch == '/')) {
			sb_add(b, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};

			sb_add(b, e, 3);
		}
	}
}

/* a query parameter "&name=value" (the first without '&'): callers add them sorted by name */
static void sb_param(struct sbuf *q, const char *name, const char *value)
{
	if (q->len)
		sb_str(q, "&");
	sb_str(q, name);
	sb_str(q, "=");
	sb_encode(q, value, false);
}

/* ---- one request ---- */

struct req {
	const char *method; /* for the request line and for messages */
	const char *key;    /* NULL: a request on the bucket */
	const char *query;  /* canonical (sorted, encoded), without '?'; NULL for none */
	const char *range;  /* a Range header value ("bytes=A-B"), or NULL */
	char what[160];     /* which S3 call, in messages when the method does not say it */
	/* the body sent: LEN bytes from BODY, or from FD at FD_OFF when BODY is NULL */
	const unsigned char *body;
	int fd;
	uint64_t fd_off, body_len, sent;
	bool has_body; /* PUT/POST: send BODY_LEN bytes (0 allowed) */
	bool head;
	/* the body received: into DST (at most DST_CAP bytes) on a 2xx when DST is set, else into
	 * RESP (at most TV_S3_XML_MAX_BYTES) */
	unsigned char *dst;
	size_t dst_cap, dst_len;
	struct sbuf resp;
	CURL *curl;
	long status;
	char etag[TV_S3_ETAG_LEN];
	char content_range[96];
	/* what a callback failed with: a negative errno and its reason */
	int cb_err;
	char cb_msg[160];
	/* S3's <Error> of a failed answer */
	char s3_code[64];
	char s3_msg[200];
};

static void req_init(struct req *r, const char *method, const char *key)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->key = key;
	r->fd = -1;
}

static void req_free(struct req *r)
{
	sb_free(&r->resp);
}

static void __attribute__((format(printf, 3, 4))) cb_fail(struct req *r, int e, const char *fmt, ...)
{
	va_list ap;

	if (r->cb_err)
		return;
	r->cb_err = e;
	va_start(ap, fmt);
	vsnprintf(r->cb_msg, sizeof(r->cb_msg), fmt, ap);
	va_end(ap);
}

static size_t read_cb(char *out, size_t size, size_t nitems, void *arg)
{
	struct req *r = arg;
	uint64_t left = r->body_len - r->sent;
	size_t n = size * nitems;
	ssize_t got;

	if (n > left)
		n = (size_t)left;
	if (n == 0)
		return 0;
	if (r->body) {
		memcpy(out, r->body + r->sent, n);
		r->sent += n;
		return n;
	}
	do
		got = pread(r->fd, out, n, (off_t)(r->fd_off + r->sent));
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		cb_fail(r, -errno, "pread at offset %llu: %s",
			(unsigned long long)(r->fd_off + r->sent), strerror(errno));
		return CURL_READFUNC_ABORT;
	}
	if (got == 0) {
		cb_fail(r, -EIO, "the file ends at offset %llu, before the %llu bytes asked",
			(unsigned long long)(r->fd_off + r->sent), (unsigned long long)r->body_len);
		return CURL_READFUNC_ABORT;
	}
	r->sent += (uint64_t)got;
	return (size_t)got;
}

/* curl rewinds the body only to send it again on a fresh connection when a kept-alive one
 * turned out closed by the server before it answered (never an S3-level retry) */
static int seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct req *r = arg;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->body_len)
		return CURL_SEEKFUNC_FAIL;
	r->sent = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct req *r = arg;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	if (r->dst && status >= 200 && status < 300) {
		if (n > r->dst_cap - r->dst_len) {
			cb_fail(r, -EIO, "%ld answer longer than the %zu bytes asked", status,
				r->dst_cap);
			return 0;
		}
		memcpy(r->dst + r->dst_len, data, n);
		r->dst_len += n;
		return n;
	}
	if (r->resp.len + n > TV_S3_XML_MAX_BYTES) {
		cb_fail(r, -EFBIG, "%ld answer larger than TV_S3_XML_MAX_BYTES (%u)", status,
			TV_S3_XML_MAX_BYTES);
		return 0;
	}
	sb_add(&r->resp, data, n);
	if (r->resp.oom) {
		cb_fail(r, -ENOMEM, "out of memory reading the answer");
		return 0;
	}
	return n;
}

/* the header value after "NAME:" into OUT, trimmed, when LINE is that header */
static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name), i, j;

	if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	for (i = nl + 1; i < n && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	for (j = n; j > i && isspace((unsigned char)line[j - 1]); j--)
		;
	if (j - i >= outlen)
		return; /* longer than any S3 sends: left empty, the caller refuses that */
	memcpy(out, line + i, j - i);
	out[j - i] = '\0';
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *arg)
{
	struct req *r = arg;
	size_t n = size * nitems;

	header_value(line, n, "etag", r->etag, sizeof(r->etag));
	header_value(line, n, "content-range", r->content_range, sizeof(r->content_range));
	return n;
}

/* ---- XML ---- */

static xmlDocPtr xml_parse(const struct sbuf *b)
{
	if (!b->len || b->len > TV_S3_XML_MAX_BYTES)
		return NULL;
	return xmlReadMemory(b->p, (int)b->len, "s3.xml", NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* the first element child of PARENT with local name NAME (S3's namespace is ignored) */
static xmlNodePtr xml_child(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0)
			return n;
	return NULL;
}

static bool xml_is(xmlNodePtr n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* the text of PARENT's child NAME into OUT (empty when absent); -ENAMETOOLONG when it does not
 * fit, -ENOMEM */
static int xml_text(xmlNodePtr parent, const char *name, char *out, size_t outlen)
{
	xmlNodePtr n = xml_child(parent, name);
	xmlChar *s;
	int rc = 0;

	out[0] = '\0';
	if (!n)
		return 0;
	s = xmlNodeGetContent(n);
	if (!s)
		return -ENOMEM;
	if (strlen((const char *)s) >= outlen)
		rc = -ENAMETOOLONG;
	else
		strcpy(out, (const char *)s);
	xmlFree(s);
	return rc;
}

/* the text of PARENT's child NAME, allocated (xmlFree), or NULL when absent */
static xmlChar *xml_dup(xmlNodePtr parent, const char *name)
{
	xmlNodePtr n = xml_child(parent, name);

	return n ? xmlNodeGetContent(n) : NULL;
}

/* one line of text: control characters (a newline in S3's message) become spaces */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

/* S3's <Error><Code/><Message/></Error> of R's answer into r->s3_code / r->s3_msg; true when
 * the answer was an <Error> */
static bool parse_error_body(struct req *r)
{
	xmlDocPtr doc = xml_parse(&r->resp);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	bool is_error = xml_is(root, "Error");

	if (is_error) {
		/* too long a code or message is cut rather than dropped */
		if (xml_text(root, "Code", r->s3_code, sizeof(r->s3_code)) == -ENAMETOOLONG)
			r->s3_code[0] = '\0';
		if (xml_text(root, "Message", r->s3_msg, sizeof(r->s3_msg)) == -ENAMETOOLONG)
			r->s3_msg[0] = '\0';
		one_line(r->s3_code);
		one_line(r->s3_msg);
	}
	xmlFreeDoc(doc);
	return is_error;
}

/* ---- errors ---- */

static void __attribute__((format(printf, 5, 6)))
req_err(const struct tv_s3 *c, const struct req *r, char *err, size_t errlen, const char *fmt, ...)
{
	char what[320];
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s s3://%s%s%s%s%s: %s", r->method, c->bucket, r->key ? "/" : "",
		 r->key ? r->key : "", r->what[0] ? " " : "", r->what, what);
	one_line(err);
}

static int errno_of_status(long status, const char *code)
{
	if (status == 403)
		return -EACCES;
	if (status == 404)
		return -ENOENT;
	if (status == 416 || strcmp(code, "InvalidRange") == 0)
		return -ERANGE;
	if (status == 409)
		return -EBUSY;
	if (status == 413 || strcmp(code, "EntityTooLarge") == 0)
		return -EFBIG;
	if (status >= 400 && status < 500)
		return -EINVAL;
	return -EIO; /* 5xx, an <Error> in a 200, a 3xx we do not follow */
}

static int errno_of_curl(CURLcode res, long os_errno)
{
	switch (res) {
	case CURLE_COULDNT_CONNECT:
		return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* ---- perform ---- */

/* Sends R on C's handle and waits for the answer. 0 on a 2xx (r->status, r->resp or r->dst
 * hold the answer), else a negative errno with err written (see s3.h for the mapping). */
static int perform(struct tv_s3 *c, struct req *r, const char *payload_sha256, char *err,
		   size_t errlen)
{
	struct curl_slist *hdrs = NULL, *h;
	struct sbuf url = {0}, line = {0};
	CURLcode res;
	long os_errno = 0;
	int rc = 0;

	r->curl = c->curl;
	sb_str(&url, c->endpoint);
	sb_str(&url, "/");
	sb_str(&url, c->bucket);
	if (r->key) {
		sb_str(&url, "/");
		sb_encode(&url, r->key, true);
	}
	if (r->query) {
		sb_str(&url, "?");
		sb_str(&url, r->query);
	}
	/* the payload hash curl signs (it reads it back from this header) and RGW checks */
	sb_str(&line, "x-amz-content-sha256: ");
	sb_str(&line, payload_sha256);
	if (url.oom || line.oom) {
		rc = -ENOMEM;
		req_err(c, r, err, errlen, "out of memory");
		goto out;
	}
	h = curl_slist_append(hdrs, line.p);
	if (h)
		hdrs = h;
	/* curl's "Expect: 100-continue" before a body over 1 MiB stays: a refusal (403, 404)
	 * comes before the body is sent, for one round trip. (Removing it with "Expect:" is not
	 * an option: curl 7.88 signs that empty header, which it does not send, and every
	 * request fails with SignatureDoesNotMatch.) */
	if (h && r->range) {
		sb_free(&line);
		sb_str(&line, "Range: ");
		sb_str(&line, r->range);
		h = line.oom ? NULL : curl_slist_append(hdrs, line.p);
	}
	if (!h) {
		rc = -ENOMEM;
		req_err(c, r, err, errlen, "out of memory");
		goto out;
	}

	curl_easy_reset(c->curl);
	c->curl_err[0] = '\0';
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->curl, CURLOPT_URL, url.p);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_PATH_AS_IS, 1L); /* a key's "./" is a key, not a path */
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)TV_S3_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, (long)TV_S3_LOW_SPEED_BYTES);
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, (long)TV_S3_LOW_SPEED_TIME_S);
	curl_easy_setopt(c->curl, CURLOPT_AWS_SIGV4, c->sigv4);
	curl_easy_setopt(c->curl, CURLOPT_USERNAME, c->access_key);
	curl_easy_setopt(c->curl, CURLOPT_PASSWORD, c->secret_key);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, r);
	if (r->has_body) {
		/* PUT and POST alike go as an upload of a known length: curl reads the body through
		 * read_cb (no copy of a file's range in memory), and sends no form Content-Type */
		curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c->curl, CURLOPT_UPLOAD_BUFFERSIZE, (long)S3_UPLOAD_BUFFER_BYTES);
		curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
		curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(c->curl, CURLOPT_READDATA, r);
		curl_easy_setopt(c->curl, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(c->curl, CURLOPT_SEEKDATA, r);
		if (strcmp(r->method, "PUT") != 0)
			curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, r->method);
	} else if (r->head) {
		curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, r->method);
	}

	res = curl_easy_perform(c->curl);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->cb_err) {
		rc = r->cb_err;
		req_err(c, r, err, errlen, "%s", r->cb_msg);
		goto out;
	}
	if (res != CURLE_OK) {
		curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
		rc = errno_of_curl(res, os_errno);
		req_err(c, r, err, errlen, "%s", c->curl_err[0] ? c->curl_err : curl_easy_strerror(res));
		goto out;
	}
	if (r->status < 200 || r->status >= 300) {
		bool body = parse_error_body(r);

		rc = errno_of_status(r->status, r->s3_code);
		if (body)
			req_err(c, r, err, errlen, "%ld %s%s%s", r->status,
				r->s3_code[0] ? r->s3_code : "(no code)", r->s3_msg[0] ? ": " : "",
				r->s3_msg);
		else
			req_err(c, r, err, errlen, "%ld (%s)", r->status,
				r->head ? "a HEAD answer carries no S3 error code"
					: "no S3 error body");
	}
out:
	curl_slist_free_all(hdrs);
	sb_free(&url);
	sb_free(&line);
	return rc;
}

static void sha256_hex(const void *buf, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
		strcpy(out, S3_UNSIGNED_PAYLOAD); /* not reached with OpenSSL's default provider */
		return;
	}
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

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

static void __attribute__((format(printf, 3, 4))) set_err(char *err, size_t errlen, const char *fmt, ...)
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

int tv_s3_open(struct tv_s3 **out, const char *endpoint_url, const char *region,
	       const char *bucket, const char *access_key, const char *secret_key, char *err,
	       size_t errlen)
{
	struct tv_s3 *c = NULL;
	const char *host;
	size_t n;
	int rc;

	*out = NULL;
	if (!endpoint_url || !region || !bucket || !access_key || !secret_key) {
		set_err(err, errlen, "s3: endpoint, region, bucket and both keys are required");
		return -EINVAL;
	}
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
	c->endpoint = strndup(endpoint_url, (size_t)(host - endpoint_url) + n);
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
	struct req r;
	int rc;

	req_init(&r, "GET", NULL);
	snprintf(r.what, sizeof(r.what), "(bucket check)");
	r.query = "list-type=2&max-keys=1";
	rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
	req_free(&r);
	return rc;
}

int tv_s3_create_bucket(struct tv_s3 *c, char *err, size_t errlen)
{
	struct req r;
	int rc;

	req_init(&r, "PUT", NULL);
	r.has_body = true;
	r.body = (const unsigned char *)"";
	rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
	if (rc == -EBUSY && strcmp(r.s3_code, "BucketAlreadyOwnedByYou") == 0)
		rc = 0;
	if (rc == 0 && err && errlen)
		err[0] = '\0';
	req_free(&r);
	return rc;
}

int tv_s3_put_object(struct tv_s3 *c, const char *key, const void *buf, size_t len, char *err,
		     size_t errlen)
{
	char sha[65];
	struct req r;
	int rc;

	rc = check_key(c, "PUT", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "PUT", key);
	if (len > TV_S3_PUT_MAX_BYTES) {
		req_err(c, &r, err, errlen, "%zu bytes: above TV_S3_PUT_MAX_BYTES, use multipart",
			len);
		return -EFBIG;
	}
	r.has_body = true;
	r.body = len ? buf : (const unsigned char *)"";
	r.body_len = len;
	sha256_hex(r.body, len, sha);
	rc = perform(c, &r, sha, err, errlen);
	req_free(&r);
	return rc;
}

int tv_s3_put_fd(struct tv_s3 *c, const char *key, int fd, uint64_t offset, uint64_t len,
		 char *err, size_t errlen)
{
	struct req r;
	int rc;

	rc = check_key(c, "PUT", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "PUT", key);
	if (len > TV_S3_PUT_MAX_BYTES) {
		req_err(c, &r, err, errlen, "%llu bytes: above TV_S3_PUT_MAX_BYTES, use multipart",
			(unsigned long long)len);
		return -EFBIG;
	}
	r.has_body = true;
	r.fd = fd;
	r.fd_off = offset;
	r.body_len = len;
	rc = perform(c, &r, S3_UNSIGNED_PAYLOAD, err, errlen);
	req_free(&r);
	return rc;
}

int tv_s3_mpu_create(struct tv_s3 *c, const char *key, char upload_id[TV_S3_UPLOAD_ID_LEN],
		     char *err, size_t errlen)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root;
	struct req r;
	int rc;

	upload_id[0] = '\0';
	rc = check_key(c, "POST", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "POST", key);
	snprintf(r.what, sizeof(r.what), "(create multipart upload)");
	r.query = "uploads=";
	r.has_body = true;
	r.body = (const unsigned char *)"";
	rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
	if (rc)
		goto out;
	doc = xml_parse(&r.resp);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!xml_is(root, "InitiateMultipartUploadResult") ||
	    xml_text(root, "UploadId", upload_id, TV_S3_UPLOAD_ID_LEN) != 0 || !upload_id[0]) {
		upload_id[0] = '\0';
		rc = -EIO;
		req_err(c, &r, err, errlen, "%ld without an UploadId (CreateMultipartUpload)",
			r.status);
	}
out:
	xmlFreeDoc(doc);
	req_free(&r);
	return rc;
}

int tv_s3_mpu_upload_part(struct tv_s3 *c, const char *key, const char *upload_id,
			  unsigned number, int fd, uint64_t offset, uint64_t len,
			  struct tv_s3_part *part, char *err, size_t errlen)
{
	struct sbuf q = {0};
	struct req r;
	int rc;

	memset(part, 0, sizeof(*part));
	rc = check_key(c, "PUT", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "PUT", key);
	if (number < 1 || number > TV_S3_MAX_PARTS || len > TV_S3_PART_MAX_BYTES) {
		req_err(c, &r, err, errlen, "part %u of %llu bytes: want 1..%d, at most %llu bytes",
			number, (unsigned long long)len, TV_S3_MAX_PARTS,
			(unsigned long long)TV_S3_PART_MAX_BYTES);
		return -EINVAL;
	}
	snprintf(r.what, sizeof(r.what), "(part %u)", number);
	sb_printf(&q, "partNumber=%u", number);
	sb_param(&q, "uploadId", upload_id);
	if (q.oom) {
		rc = -ENOMEM;
		req_err(c, &r, err, errlen, "out of memory");
		goto out;
	}
	r.query = q.p;
	r.has_body = true;
	r.fd = fd;
	r.fd_off = offset;
	r.body_len = len;
	rc = perform(c, &r, S3_UNSIGNED_PAYLOAD, err, errlen);
	if (rc)
		goto out;
	if (!r.etag[0]) {
		rc = -EIO;
		req_err(c, &r, err, errlen, "%ld without an ETag", r.status);
		goto out;
	}
	part->number = number;
	strcpy(part->etag, r.etag);
out:
	sb_free(&q);
	req_free(&r);
	return rc;
}

/* text with XML's special characters escaped */
static void sb_xml(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '&')
			sb_str(b, "&amp;");
		else if (*s == '<')
			sb_str(b, "&lt;");
		else if (*s == '>')
			sb_str(b, "&gt;");
		else
			sb_add(b, s, 1);
	}
}

int tv_s3_mpu_complete(struct tv_s3 *c, const char *key, const char *upload_id,
		       const struct tv_s3_part *parts, size_t nparts, char *err, size_t errlen)
{
	struct sbuf q = {0}, body = {0};
	char sha[65];
	struct req r;
	int rc;

	rc = check_key(c, "POST", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "POST", key);
	if (nparts == 0 || nparts > TV_S3_MAX_PARTS) {
		req_err(c, &r, err, errlen, "complete with %zu parts (want 1..%d)", nparts,
			TV_S3_MAX_PARTS);
		return -EINVAL;
	}
	snprintf(r.what, sizeof(r.what), "(complete %zu parts)", nparts);
	sb_param(&q, "uploadId", upload_id);
	sb_str(&body, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts; i++) {
		sb_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>", parts[i].number);
		sb_xml(&body, parts[i].etag);
		sb_str(&body, "</ETag></Part>");
	}
	sb_str(&body, "</CompleteMultipartUpload>");
	if (q.oom || body.oom) {
		rc = -ENOMEM;
		req_err(c, &r, err, errlen, "out of memory");
		goto out;
	}
	r.query = q.p;
	r.has_body = true;
	r.body = (const unsigned char *)body.p;
	r.body_len = body.len;
	sha256_hex(body.p, body.len, sha);
	rc = perform(c, &r, sha, err, errlen);
	/* S3 may answer 200 and fail in the body (the 200 is sent before the parts are joined) */
	if (rc == 0 && parse_error_body(&r)) {
		rc = errno_of_status(0, r.s3_code);
		req_err(c, &r, err, errlen, "%ld then %s%s%s", r.status, r.s3_code,
			r.s3_msg[0] ? ": " : "", r.s3_msg);
	}
out:
	sb_free(&q);
	sb_free(&body);
	req_free(&r);
	return rc;
}

int tv_s3_mpu_abort(struct tv_s3 *c, const char *key, const char *upload_id, char *err,
		    size_t errlen)
{
	struct sbuf q = {0};
	struct req r;
	int rc;

	rc = check_key(c, "DELETE", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "DELETE", key);
	snprintf(r.what, sizeof(r.what), "(abort multipart upload)");
	sb_param(&q, "uploadId", upload_id);
	if (q.oom) {
		rc = -ENOMEM;
		req_err(c, &r, err, errlen, "out of memory");
		goto out;
	}
	r.query = q.p;
	rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
	if (rc == -ENOENT && strcmp(r.s3_code, "NoSuchUpload") == 0) {
		rc = 0;
		if (err && errlen)
			err[0] = '\0';
	}
out:
	sb_free(&q);
	req_free(&r);
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
	char aerr[160];
	int arc = tv_s3_mpu_abort(c, key, upload_id, aerr, sizeof(aerr));

	if (arc && err && errlen) {
		size_t used = strlen(err);

		if (used + 1 < errlen)
			snprintf(err + used, errlen - used, "; abort failed too: %s", aerr);
	}
}
out:
	free(parts);
	return rc;
}

int tv_s3_list_multipart_uploads(struct tv_s3 *c, const char *prefix, tv_s3_upload_fn fn,
				 void *arg, char *err, size_t errlen)
{
	xmlChar *key_marker = NULL, *id_marker = NULL;
	struct sbuf q = {0};
	bool more = true;
	int rc = 0;

	while (more && rc == 0) {
		xmlDocPtr doc;
		xmlNodePtr root;
		xmlChar *trunc;
		struct req r;

		req_init(&r, "GET", NULL);
		snprintf(r.what, sizeof(r.what), "(list multipart uploads of '%s')", prefix);
		sb_free(&q);
		/* sorted by name: key-marker, prefix, upload-id-marker, uploads */
		if (key_marker)
			sb_param(&q, "key-marker", (const char *)key_marker);
		sb_param(&q, "prefix", prefix);
		if (id_marker)
			sb_param(&q, "upload-id-marker", (const char *)id_marker);
		sb_param(&q, "uploads", "");
		if (q.oom) {
			rc = -ENOMEM;
			req_err(c, &r, err, errlen, "out of memory");
			req_free(&r);
			break;
		}
		r.query = q.p;
		rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
		if (rc) {
			req_free(&r);
			break;
		}
		doc = xml_parse(&r.resp);
		root = doc ? xmlDocGetRootElement(doc) : NULL;
		if (!xml_is(root, "ListMultipartUploadsResult")) {
			rc = -EIO;
			req_err(c, &r, err, errlen, "%ld: not a ListMultipartUploadsResult", r.status);
			xmlFreeDoc(doc);
			req_free(&r);
			break;
		}
		for (xmlNodePtr u = root->children; u && rc == 0; u = u->next) {
			xmlChar *k, *id;

			if (!xml_is(u, "Upload"))
				continue;
			k = xml_dup(u, "Key");
			id = xml_dup(u, "UploadId");
			if (k && id)
				rc = fn(arg, (const char *)k, (const char *)id);
			xmlFree(k);
			xmlFree(id);
		}
		trunc = xml_dup(root, "IsTruncated");
		more = trunc && strcmp((const char *)trunc, "true") == 0;
		xmlFree(trunc);
		xmlFree(key_marker);
		xmlFree(id_marker);
		key_marker = xml_dup(root, "NextKeyMarker");
		id_marker = xml_dup(root, "NextUploadIdMarker");
		if (more && rc == 0 && (!key_marker || !*key_marker)) {
			rc = -EIO;
			req_err(c, &r, err, errlen, "truncated listing without NextKeyMarker");
		}
		xmlFreeDoc(doc);
		req_free(&r);
	}
	xmlFree(key_marker);
	xmlFree(id_marker);
	sb_free(&q);
	return rc;
}

int tv_s3_get_range(struct tv_s3 *c, const char *key, uint64_t offset, size_t len, void *buf,
		    char *err, size_t errlen)
{
	unsigned long long a, b, total;
	char range[64];
	struct req r;
	int rc;

	rc = check_key(c, "GET", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "GET", key);
	if (len == 0 || offset + len < offset) {
		req_err(c, &r, err, errlen, "range of %zu bytes at %llu", len,
			(unsigned long long)offset);
		return -EINVAL;
	}
	snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)offset,
		 (unsigned long long)(offset + len - 1));
	r.range = range;
	r.dst = buf;
	r.dst_cap = len;
	rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
	if (rc)
		goto out;
	/* a 206 says where its bytes lie; a 200 (the whole object) is right only from 0 */
	if (r.status == 206) {
		if (sscanf(r.content_range, "bytes %llu-%llu/%llu", &a, &b, &total) != 3 ||
		    a != offset) {
			rc = -EIO;
			req_err(c, &r, err, errlen, "206 with Content-Range '%s' for %s",
				r.content_range, range);
			goto out;
		}
		if (total < offset + len) {
			rc = -ERANGE;
			req_err(c, &r, err, errlen, "%s past the end of the %llu-byte object", range,
				total);
			goto out;
		}
	} else if (offset != 0) {
		rc = -EIO;
		req_err(c, &r, err, errlen, "%ld (not 206) for %s", r.status, range);
		goto out;
	}
	if (r.dst_len != len) {
		rc = r.status == 200 ? -ERANGE : -EIO;
		req_err(c, &r, err, errlen, "short read: %zu of %zu bytes for %s", r.dst_len, len,
			range);
	}
out:
	req_free(&r);
	return rc;
}

int tv_s3_head(struct tv_s3 *c, const char *key, uint64_t *size, char etag[TV_S3_ETAG_LEN],
	       char *err, size_t errlen)
{
	curl_off_t cl = -1;
	struct req r;
	int rc;

	*size = 0;
	if (etag)
		etag[0] = '\0';
	rc = check_key(c, "HEAD", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "HEAD", key);
	r.head = true;
	rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
	if (rc == 0) {
		curl_easy_getinfo(c->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
		if (cl < 0) {
			rc = -EIO;
			req_err(c, &r, err, errlen, "%ld without a Content-Length", r.status);
		} else {
			*size = (uint64_t)cl;
			if (etag)
				strcpy(etag, r.etag);
		}
	}
	req_free(&r);
	return rc;
}

int tv_s3_delete(struct tv_s3 *c, const char *key, char *err, size_t errlen)
{
	struct req r;
	int rc;

	rc = check_key(c, "DELETE", key, err, errlen);
	if (rc)
		return rc;
	req_init(&r, "DELETE", key);
	rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
	if (rc == -ENOENT && strcmp(r.s3_code, "NoSuchBucket") != 0) {
		rc = 0; /* gone already: what delete wanted */
		if (err && errlen)
			err[0] = '\0';
	}
	req_free(&r);
	return rc;
}

int tv_s3_list(struct tv_s3 *c, const char *prefix, unsigned page_keys, tv_s3_object_fn fn,
	       void *arg, char *err, size_t errlen)
{
	xmlChar *token = NULL;
	struct sbuf q = {0};
	bool more = true;
	int rc = 0;

	if (page_keys == 0 || page_keys > TV_S3_LIST_PAGE_KEYS)
		page_keys = TV_S3_LIST_PAGE_KEYS;
	while (more && rc == 0) {
		char num[16];
		xmlDocPtr doc;
		xmlNodePtr root;
		xmlChar *trunc;
		struct req r;

		req_init(&r, "GET", NULL);
		snprintf(r.what, sizeof(r.what), "(list '%s')", prefix);
		sb_free(&q);
		/* sorted by name: continuation-token, list-type, max-keys, prefix */
		if (token)
			sb_param(&q, "continuation-token", (const char *)token);
		sb_param(&q, "list-type", "2");
		snprintf(num, sizeof(num), "%u", page_keys);
		sb_param(&q, "max-keys", num);
		sb_param(&q, "prefix", prefix);
		if (q.oom) {
			rc = -ENOMEM;
			req_err(c, &r, err, errlen, "out of memory");
			req_free(&r);
			break;
		}
		r.query = q.p;
		rc = perform(c, &r, S3_EMPTY_SHA256, err, errlen);
		if (rc) {
			req_free(&r);
			break;
		}
		doc = xml_parse(&r.resp);
		root = doc ? xmlDocGetRootElement(doc) : NULL;
		if (!xml_is(root, "ListBucketResult")) {
			rc = -EIO;
			req_err(c, &r, err, errlen, "%ld: not a ListBucketResult", r.status);
			xmlFreeDoc(doc);
			req_free(&r);
			break;
		}
		for (xmlNodePtr o = root->children; o && rc == 0; o = o->next) {
			xmlChar *k, *sz;
			char *end = NULL;
			unsigned long long size = 0;

			if (!xml_is(o, "Contents"))
				continue;
			k = xml_dup(o, "Key");
			sz = xml_dup(o, "Size");
			if (sz) {
				errno = 0;
				size = strtoull((const char *)sz, &end, 10);
			}
			if (!k || !sz || !end || *end || errno) {
				rc = -EIO;
				req_err(c, &r, err, errlen, "an object without Key or Size");
			} else {
				rc = fn(arg, (const char *)k, size);
			}
			xmlFree(k);
			xmlFree(sz);
		}
		trunc = xml_dup(root, "IsTruncated");
		more = trunc && strcmp((const char *)trunc, "true") == 0;
		xmlFree(trunc);
		xmlFree(token);
		token = xml_dup(root, "NextContinuationToken");
		if (more && rc == 0 && (!token || !*token)) {
			rc = -EIO;
			req_err(c, &r, err, errlen, "truncated listing without NextContinuationToken");
		}
		xmlFreeDoc(doc);
		req_free(&r);
	}
	xmlFree(token);
	sb_free(&q);
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
