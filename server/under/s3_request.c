/* The S3 client's request layer (s3_request.h): the URL, the headers and the payload hash of
 * one request, curl's SigV4 signing and transfer on the client's easy handle, the body read
 * from memory or streamed from a file with pread, the answer kept (a range into the caller's
 * buffer, XML up to TV_S3_XML_MAX_BYTES), and the answer or curl's failure turned into a
 * negative errno and one line naming S3's error code.
 *
 * Debian's curl 7.88 signs the query string as it is given: it neither encodes nor sorts it.
 * So every query is built already in SigV4's canonical form: parameters sorted by name, every
 * value percent-encoded, a flag parameter written "uploads=" (../shared/NOTES.md).
 *
 * One request at a time runs through tv_s3_perform(): curl_easy_reset() first, so no option of the
 * previous call leaks into the next, while the connection, DNS and TLS session caches stay. */
#include "under/s3_request.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <openssl/evp.h>

/* curl's upload buffer: how much one READFUNCTION call may pread at once (curl's default is
 * 64 KiB) */
#define S3_UPLOAD_BUFFER_BYTES (512 * 1024)

void tv_s3_buf_free(struct tv_s3_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void tv_s3_buf_add(struct tv_s3_buf *b, const void *s, size_t n)
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

void tv_s3_buf_str(struct tv_s3_buf *b, const char *s)
{
	tv_s3_buf_add(b, s, strlen(s));
}

void __attribute__((format(printf, 2, 3)))
tv_s3_buf_printf(struct tv_s3_buf *b, const char *fmt, ...)
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
	tv_s3_buf_add(b, tmp, (size_t)n);
}

/* RFC 3986 percent-encoding as SigV4 wants it: all but A-Z a-z 0-9 - . _ ~, and '/' too
 * unless KEEP_SLASH (a key in the path keeps its slashes, a query value does not) */
void tv_s3_buf_encode(struct tv_s3_buf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
		    (keep_slash && ch == '/')) {
			tv_s3_buf_add(b, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};

			tv_s3_buf_add(b, e, 3);
		}
	}
}

/* a query parameter "&name=value" (the first without '&'): callers add them sorted by name */
void tv_s3_query_param(struct tv_s3_buf *q, const char *name, const char *value)
{
	if (q->len)
		tv_s3_buf_str(q, "&");
	tv_s3_buf_str(q, name);
	tv_s3_buf_str(q, "=");
	tv_s3_buf_encode(q, value, false);
}

/* ---- one request ---- */

void tv_s3_req_init(struct tv_s3_req *r, const char *method, const char *key)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->key = key;
	r->fd = -1;
}

void tv_s3_req_free(struct tv_s3_req *r)
{
	tv_s3_buf_free(&r->resp);
}

static void __attribute__((format(printf, 3, 4)))
cb_fail(struct tv_s3_req *r, int e, const char *fmt, ...)
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
	struct tv_s3_req *r = arg;
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
	struct tv_s3_req *r = arg;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->body_len)
		return CURL_SEEKFUNC_FAIL;
	r->sent = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct tv_s3_req *r = arg;
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
	tv_s3_buf_add(&r->resp, data, n);
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
	struct tv_s3_req *r = arg;
	size_t n = size * nitems;

	header_value(line, n, "etag", r->etag, sizeof(r->etag));
	header_value(line, n, "content-range", r->content_range, sizeof(r->content_range));
	return n;
}

/* ---- XML ---- */

xmlDocPtr tv_s3_xml_parse(const struct tv_s3_buf *b)
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

bool tv_s3_xml_is(xmlNodePtr n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* the text of PARENT's child NAME into OUT (empty when absent); -ENAMETOOLONG when it does not
 * fit, -ENOMEM */
int tv_s3_xml_text(xmlNodePtr parent, const char *name, char *out, size_t outlen)
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
xmlChar *tv_s3_xml_dup(xmlNodePtr parent, const char *name)
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
bool tv_s3_parse_error_body(struct tv_s3_req *r)
{
	xmlDocPtr doc = tv_s3_xml_parse(&r->resp);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	bool is_error = tv_s3_xml_is(root, "Error");

	if (is_error) {
		/* too long a code or message is cut rather than dropped */
		if (tv_s3_xml_text(root, "Code", r->s3_code, sizeof(r->s3_code)) == -ENAMETOOLONG)
			r->s3_code[0] = '\0';
		if (tv_s3_xml_text(root, "Message", r->s3_msg, sizeof(r->s3_msg)) == -ENAMETOOLONG)
			r->s3_msg[0] = '\0';
		one_line(r->s3_code);
		one_line(r->s3_msg);
	}
	xmlFreeDoc(doc);
	return is_error;
}

/* ---- errors ---- */

void __attribute__((format(printf, 5, 6)))
tv_s3_req_err(const struct tv_s3 *c, const struct tv_s3_req *r, char *err, size_t errlen,
	      const char *fmt, ...)
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

int tv_s3_errno_of_status(long status, const char *code)
{
	if (status == 403)
		return -EACCES;
	if (status == 404)
		return -ENOENT;
	if (status == 416 || strcmp(code, "InvalidRange") == 0)
		return -ERANGE;
	if (status == 409)
		return -EBUSY;
	if (status == 412)
		return -EEXIST; /* PreconditionFailed: If-None-Match: * and the key exists */
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

/* ---- tv_s3_perform ---- */

/* Sends R on C's handle and waits for the answer. 0 on a 2xx (r->status, r->resp or r->dst
 * hold the answer), else a negative errno with err written (see s3.h for the mapping). */
int tv_s3_perform(struct tv_s3 *c, struct tv_s3_req *r, const char *payload_sha256, char *err,
		  size_t errlen)
{
	struct curl_slist *hdrs = NULL, *h;
	struct tv_s3_buf url = {0}, line = {0};
	CURLcode res;
	long os_errno = 0;
	int rc = 0;

	r->curl = c->curl;
	tv_s3_buf_str(&url, c->endpoint);
	tv_s3_buf_str(&url, "/");
	tv_s3_buf_str(&url, c->bucket);
	if (r->key) {
		tv_s3_buf_str(&url, "/");
		tv_s3_buf_encode(&url, r->key, true);
	}
	if (r->query) {
		tv_s3_buf_str(&url, "?");
		tv_s3_buf_str(&url, r->query);
	}
	/* the payload hash curl signs (it reads it back from this header) and RGW checks */
	tv_s3_buf_str(&line, "x-amz-content-sha256: ");
	tv_s3_buf_str(&line, payload_sha256);
	if (url.oom || line.oom) {
		rc = -ENOMEM;
		tv_s3_req_err(c, r, err, errlen, "out of memory");
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
		tv_s3_buf_free(&line);
		tv_s3_buf_str(&line, "Range: ");
		tv_s3_buf_str(&line, r->range);
		h = line.oom ? NULL : curl_slist_append(hdrs, line.p);
	}
	if (h && r->if_none_match) {
		/* signed like every header curl sends (checked against RGW 16.2: 412 when the key
		 * exists, the object unchanged) */
		h = curl_slist_append(hdrs, "If-None-Match: *");
	}
	if (!h) {
		rc = -ENOMEM;
		tv_s3_req_err(c, r, err, errlen, "out of memory");
		goto out;
	}

	curl_easy_reset(c->curl);
	c->curl_err[0] = '\0';
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->curl, CURLOPT_URL, url.p);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_PATH_AS_IS, 1L); /* a key's "./" is a key, not a path */
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms ?
			 c->connect_timeout_ms : (long)TV_S3_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, (long)TV_S3_LOW_SPEED_BYTES);
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s ?
			 c->low_speed_time_s : (long)TV_S3_LOW_SPEED_TIME_S);
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
		tv_s3_req_err(c, r, err, errlen, "%s", r->cb_msg);
		goto out;
	}
	if (res != CURLE_OK) {
		curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
		rc = errno_of_curl(res, os_errno);
		tv_s3_req_err(c, r, err, errlen, "%s", c->curl_err[0] ? c->curl_err : curl_easy_strerror(res));
		goto out;
	}
	if (r->status < 200 || r->status >= 300) {
		bool body = tv_s3_parse_error_body(r);

		rc = tv_s3_errno_of_status(r->status, r->s3_code);
		if (body)
			tv_s3_req_err(c, r, err, errlen, "%ld %s%s%s", r->status,
				r->s3_code[0] ? r->s3_code : "(no code)", r->s3_msg[0] ? ": " : "",
				r->s3_msg);
		else
			tv_s3_req_err(c, r, err, errlen, "%ld (%s)", r->status,
				r->head ? "a HEAD answer carries no S3 error code"
					: "no S3 error body");
	}
out:
	curl_slist_free_all(hdrs);
	tv_s3_buf_free(&url);
	tv_s3_buf_free(&line);
	return rc;
}

void tv_s3_sha256_hex(const void *buf, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
		strcpy(out, TV_S3_UNSIGNED_PAYLOAD); /* not reached with OpenSSL's default provider */
		return;
	}
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}
