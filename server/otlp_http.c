/* OTLP/HTTP ingest (otlp_http.h): the POST /v1/traces handler of the --http-addr endpoint.
 * Its steps: the Content-Type and Content-Encoding checked before the body is read (415);
 * the body (capped by the endpoint, 413) gunzipped with the same cap; one Export call with
 * it over the local socket; the call's status mapped to the OTLP/HTTP answer. */
#include "server/otlp_http.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <grpc/status.h>
#include <zlib.h>

#include "otlp_trace.pb-c.h"
#include "server/local_rpc.h"

#define RETRY_INFO_TYPE "type.googleapis.com/google.rpc.RetryInfo"
/* Retry-After of a retryable failure that names no delay (UNAVAILABLE ...), seconds */
#define DEFAULT_RETRY_AFTER_S 1

struct tv_otlp_http {
	struct tv_otlp_http_opts o;
	struct tv_local_rpc *rpc;
};

int tv_otlp_http_new(struct tv_otlp_http **out, const struct tv_otlp_http_opts *o, char *err,
		     size_t errlen)
{
	struct tv_otlp_http *x = calloc(1, sizeof(*x));

	*out = NULL;
	/* the Export reply is small: a partial_success with one message */
	if (!x || tv_local_rpc_new(&x->rpc, o->rpc_addr, 1u << 20)) {
		free(x);
		snprintf(err, errlen, "out of memory for OTLP/HTTP");
		return -ENOMEM;
	}
	x->o = *o;
	*out = x;
	return 0;
}

void tv_otlp_http_free(struct tv_otlp_http *x)
{
	if (!x)
		return;
	tv_local_rpc_free(x->rpc);
	free(x);
}

/* An error answer: status with a google.rpc.Status body (code, msg; the spec: clients do not
 * act on the code, the message is for people). 0 or -ENOMEM. */
static int status_reply(struct tv_http_reply *out, unsigned status, int code, const char *msg)
{
	Tracevault__Otlp__V1__RpcStatus st = TRACEVAULT__OTLP__V1__RPC_STATUS__INIT;
	size_t n;
	uint8_t *b;

	st.code = code;
	st.message = (char *)msg;
	n = tracevault__otlp__v1__rpc_status__get_packed_size(&st);
	b = malloc(n ? n : 1);
	if (!b)
		return -ENOMEM;
	tracevault__otlp__v1__rpc_status__pack(&st, b);
	*out = (struct tv_http_reply){ .status = status, .body = (char *)b, .len = n,
				       .content_type = TV_OTLP_HTTP_CONTENT_TYPE };
	return 0;
}

/* 1 when the header value v names media type t (case-insensitive, parameters after ';'
 * allowed: "application/x-protobuf; charset=..."). */
static bool media_type_is(const char *v, const char *t)
{
	size_t n = strlen(t);

	while (*v == ' ' || *v == '\t')
		v++;
	if (strncasecmp(v, t, n))
		return false;
	v += n;
	while (*v == ' ' || *v == '\t')
		v++;
	return !*v || *v == ';';
}

/* The Content-Type and Content-Encoding checks, before the body is read: 0 with *gzip set,
 * or out filled with a 415. */
static int check_headers(const struct tv_http_req *rq, bool *gzip, struct tv_http_reply *out)
{
	const char *ct = tv_http_header(rq, "Content-Type");
	const char *ce = tv_http_header(rq, "Content-Encoding");
	char msg[200];

	*gzip = false;
	if (!ct || !media_type_is(ct, TV_OTLP_HTTP_CONTENT_TYPE)) {
		snprintf(msg, sizeof(msg), "Content-Type '%.64s' is not served: send binary "
			 "protobuf, Content-Type: " TV_OTLP_HTTP_CONTENT_TYPE " (OTLP/JSON is not "
			 "supported)", ct ? ct : "");
		return status_reply(out, 415, GRPC_STATUS_INVALID_ARGUMENT, msg);
	}
	if (ce && media_type_is(ce, "gzip"))
		*gzip = true;
	else if (ce && !media_type_is(ce, "identity")) {
		snprintf(msg, sizeof(msg), "Content-Encoding '%.64s' is not served: gzip or none",
			 ce);
		return status_reply(out, 415, GRPC_STATUS_INVALID_ARGUMENT, msg);
	}
	return 0;
}

/* Gunzip in (n bytes; one or more gzip members, RFC 1952) into *outp (malloc'd, *outlen
 * bytes), at most max bytes: 0, -EFBIG past max, -EBADMSG for data that is not gzip,
 * -ENOMEM. */
static int gunzip(const uint8_t *in, size_t n, size_t max, uint8_t **outp, size_t *outlen)
{
	z_stream zs;
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0;
	int zr, ret = 0;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) /* 16: the gzip wrapper only */
		return -ENOMEM;
	zs.next_in = (Bytef *)in;
	for (;;) {
		/* zlib counts in uInt: feed at most 1 GiB at a time */
		size_t room;

		if (!zs.avail_in && n) {
			zs.avail_in = (uInt)(n > (1u << 30) ? 1u << 30 : n);
			n -= zs.avail_in;
		}
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 64u << 10;
			uint8_t *b;

			if (cap == max + 1) { /* one byte past max is there: too large */
				ret = -EFBIG;
				break;
			}
			if (ncap > max + 1)
				ncap = max + 1;
			b = realloc(buf, ncap);
			if (!b) {
				ret = -ENOMEM;
				break;
			}
			buf = b;
			cap = ncap;
		}
		room = cap - len;
		zs.next_out = buf + len;
		zs.avail_out = (uInt)(room > (1u << 30) ? 1u << 30 : room);
		zr = inflate(&zs, Z_NO_FLUSH);
		len = (size_t)(zs.next_out - buf);
		if (zr == Z_STREAM_END) {
			if (!zs.avail_in && !n)
				break; /* the end of the last member */
			if (inflateReset(&zs) != Z_OK) { /* another member follows */
				ret = -EBADMSG;
				break;
			}
			continue;
		}
		if (zr == Z_MEM_ERROR) {
			ret = -ENOMEM;
			break;
		}
		/* Z_BUF_ERROR with input left means no progress was possible: bad data; with
		 * none left, the stream was cut short */
		if (zr != Z_OK && !(zr == Z_BUF_ERROR && zs.avail_out == 0)) {
			ret = -EBADMSG;
			break;
		}
		if (zr == Z_OK && !zs.avail_in && !n && zs.avail_out) {
			ret = -EBADMSG; /* all input read, the stream not ended: truncated */
			break;
		}
	}
	inflateEnd(&zs);
	if (!ret && len > max)
		ret = -EFBIG;
	if (ret) {
		free(buf);
		return ret;
	}
	*outp = buf;
	*outlen = len;
	return 0;
}

/* The retry delay of a google.rpc.Status's RetryInfo, rounded up to whole seconds (at least
 * 1), or 0 when it has none. */
static unsigned retry_after_s(const uint8_t *details, size_t len)
{
	Tracevault__Otlp__V1__RpcStatus *st;
	unsigned s = 0;

	if (!details || !(st = tracevault__otlp__v1__rpc_status__unpack(NULL, len, details)))
		return 0;
	for (size_t i = 0; i < st->n_details && !s; i++) {
		Tracevault__Otlp__V1__RetryInfo *ri;
		const Tracevault__Otlp__V1__Any *a = st->details[i];

		if (!a->type_url || strcmp(a->type_url, RETRY_INFO_TYPE))
			continue;
		ri = tracevault__otlp__v1__retry_info__unpack(NULL, a->value.len, a->value.data);
		if (!ri)
			continue;
		if (ri->retry_delay && ri->retry_delay->seconds >= 0) {
			int64_t sec = ri->retry_delay->seconds + (ri->retry_delay->nanos > 0);

			s = sec < 1 ? 1 : sec > 3600 ? 3600 : (unsigned)sec;
		}
		tracevault__otlp__v1__retry_info__free_unpacked(ri, NULL);
	}
	tracevault__otlp__v1__rpc_status__free_unpacked(st, NULL);
	return s;
}

/* The Export call's outcome as the OTLP/HTTP answer. */
static int map_status(struct tv_local_export_status *st, struct tv_http_reply *out)
{
	unsigned delay;
	int ret;

	switch (st->code) {
	case GRPC_STATUS_OK:
		*out = (struct tv_http_reply){ .status = 200, .body = (char *)st->reply,
					       .len = st->reply_len,
					       .content_type = TV_OTLP_HTTP_CONTENT_TYPE };
		st->reply = NULL; /* handed over */
		return 0;
	case GRPC_STATUS_INVALID_ARGUMENT:
		return status_reply(out, 400, st->code, st->message);
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		delay = retry_after_s(st->details, st->details_len);
		if (!delay) /* no RetryInfo: not retryable on the gRPC path either */
			return status_reply(out, 500, st->code, st->message);
		/* throttled: the Status the gRPC path sends (with its RetryInfo) is the body */
		*out = (struct tv_http_reply){ .status = 503, .body = (char *)st->details,
					       .len = st->details_len, .retry_after_s = delay,
					       .content_type = TV_OTLP_HTTP_CONTENT_TYPE };
		st->details = NULL;
		return 0;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return status_reply(out, 504, st->code, st->message);
	/* the codes the OTLP spec's gRPC section names retryable (besides the two above) */
	case GRPC_STATUS_CANCELLED:
	case GRPC_STATUS_ABORTED:
	case GRPC_STATUS_OUT_OF_RANGE:
	case GRPC_STATUS_UNAVAILABLE:
	case GRPC_STATUS_DATA_LOSS:
		ret = status_reply(out, 503, st->code, st->message);
		out->retry_after_s = DEFAULT_RETRY_AFTER_S;
		return ret;
	default:
		return status_reply(out, 500, st->code, st->message);
	}
}

/* The tv_http_post_handler of TV_OTLP_HTTP_PATH. */
static int handle(void *arg, const struct tv_http_req *rq, enum tv_http_post_phase phase,
		  const void *body, size_t len, struct tv_http_reply *out)
{
	struct tv_otlp_http *x = arg;
	struct tv_local_export_status st;
	uint8_t *plain = NULL;
	bool gzip;
	char msg[200];
	int ret;

	ret = check_headers(rq, &gzip, out);
	if (ret || out->status)
		return ret;
	if (phase == TV_HTTP_POST_HEADERS)
		return 0; /* read the body */
	if (phase == TV_HTTP_POST_TOO_LARGE) {
		snprintf(msg, sizeof(msg), "request body above the server's limit of %zu bytes "
			 "(--otlp-max-message-bytes): send smaller batches", x->o.max_message_bytes);
		return status_reply(out, 413, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
	}
	if (gzip) {
		ret = gunzip(body, len, x->o.max_message_bytes, &plain, &len);
		if (ret == -EFBIG) {
			snprintf(msg, sizeof(msg), "gzip body inflates past the server's limit of "
				 "%zu bytes (--otlp-max-message-bytes): send smaller batches",
				 x->o.max_message_bytes);
			return status_reply(out, 413, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		}
		if (ret == -EBADMSG)
			return status_reply(out, 400, GRPC_STATUS_INVALID_ARGUMENT,
					    "Content-Encoding is gzip but the body is not valid "
					    "gzip data");
		if (ret)
			return ret;
		body = plain;
	}
	ret = tv_local_export(x->rpc, body, len, x->o.timeout_ms, &st);
	free(plain);
	if (ret)
		return ret;
	ret = map_status(&st, out);
	tv_local_export_status_free(&st);
	return ret;
}

void tv_otlp_http_attach(struct tv_otlp_http *x, struct tv_metrics_http *h)
{
	tv_metrics_http_set_post(h, TV_OTLP_HTTP_PATH, x->o.max_message_bytes, handle, x);
}
