/* The S3 client's request layer, shared by server/under/s3*.c only (not an API of the room:
 * other rooms include "under/s3.h"). One S3 request is a struct tv_s3_req run by
 * tv_s3_perform on the client's easy handle: path-style URL, canonical query, payload hash,
 * curl's SigV4, the answer's status, body and headers, and the error line. */
#ifndef TV_UNDER_S3_REQUEST_H
#define TV_UNDER_S3_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <libxml/tree.h>

#include "under/s3.h"

/* the SHA-256 of an empty body, which every body-less request signs */
#define TV_S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* the payload hash of a body streamed from a file (s3.h says why) */
#define TV_S3_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

struct tv_s3 {
	CURL *curl;
	char *endpoint; /* "http[s]://host[:port]", no trailing '/' */
	char *sigv4;    /* "aws:amz:REGION:s3" */
	char *bucket;
	char *access_key;
	char *secret_key; /* zeroed before it is freed */
	char curl_err[CURL_ERROR_SIZE];
	/* tv_s3_set_timeouts: 0 takes TV_S3_CONNECT_TIMEOUT_MS / TV_S3_LOW_SPEED_TIME_S */
	long connect_timeout_ms, low_speed_time_s;
};

/* a growable string or byte buffer; oom sticks, so a chain of appends is checked once */
struct tv_s3_buf {
	char *p;
	size_t len, cap;
	bool oom;
};

/* appends N bytes of S / the string S / a short formatted string (under 256 bytes) / S
 * percent-encoded as SigV4 wants it (all but A-Z a-z 0-9 - . _ ~, and '/' unless KEEP_SLASH)
 * / a query parameter "&NAME=VALUE" (the first without '&'; callers add them sorted by name) */
void tv_s3_buf_add(struct tv_s3_buf *b, const void *s, size_t n);
void tv_s3_buf_str(struct tv_s3_buf *b, const char *s);
void __attribute__((format(printf, 2, 3)))
tv_s3_buf_printf(struct tv_s3_buf *b, const char *fmt, ...);
void tv_s3_buf_encode(struct tv_s3_buf *b, const char *s, bool keep_slash);
void tv_s3_query_param(struct tv_s3_buf *q, const char *name, const char *value);
void tv_s3_buf_free(struct tv_s3_buf *b);

struct tv_s3_req {
	const char *method; /* for the request line and for messages */
	const char *key;    /* NULL: a request on the bucket */
	const char *query;  /* canonical (sorted, encoded), without '?'; NULL for none */
	const char *range;  /* a Range header value ("bytes=A-B"), or NULL */
	bool if_none_match; /* send "If-None-Match: *": a PUT that must not replace an object */
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
	struct tv_s3_buf resp;
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

/* a request METHOD on KEY (NULL: the bucket), to be filled in and run by tv_s3_perform */
void tv_s3_req_init(struct tv_s3_req *r, const char *method, const char *key);
void tv_s3_req_free(struct tv_s3_req *r);
/* Sends R on C's handle and waits for the answer. 0 on a 2xx (r->status, r->resp or r->dst
 * hold the answer), else a negative errno with err written (see s3.h for the mapping). */
int tv_s3_perform(struct tv_s3 *c, struct tv_s3_req *r, const char *payload_sha256, char *err,
		  size_t errlen);
/* err := "METHOD s3://BUCKET/KEY (what): " + the formatted reason, one line */
void __attribute__((format(printf, 5, 6)))
tv_s3_req_err(const struct tv_s3 *c, const struct tv_s3_req *r, char *err, size_t errlen,
	      const char *fmt, ...);
/* S3's status and error code as a negative errno (s3.h's table) */
int tv_s3_errno_of_status(long status, const char *code);
/* S3's <Error> of R's answer into r->s3_code / r->s3_msg; true when the answer was one */
bool tv_s3_parse_error_body(struct tv_s3_req *r);
void tv_s3_sha256_hex(const void *buf, size_t len, char out[65]);

/* XML: the answer parsed (xmlFreeDoc; NULL when empty or not XML); whether N is element NAME;
 * the text of PARENT's child NAME into OUT (empty when absent; -ENAMETOOLONG, -ENOMEM) or
 * allocated (xmlFree; NULL when absent). S3's namespace is ignored. */
xmlDocPtr tv_s3_xml_parse(const struct tv_s3_buf *b);
bool tv_s3_xml_is(xmlNodePtr n, const char *name);
int tv_s3_xml_text(xmlNodePtr parent, const char *name, char *out, size_t outlen);
xmlChar *tv_s3_xml_dup(xmlNodePtr parent, const char *name);

#endif
