/* What the HTTP API's two route files (server/http_api.c: dispatch, the page and its
 * /api/tracevault routes; server/jaeger_api.c: the Jaeger routes) share: the API's state,
 * JSON answers and errors, parameters, the service <-> comm mapping and the bounded scan of
 * records through the local Query call. Internal to those two files. */
#ifndef TV_SERVER_HTTP_JSON_H
#define TV_SERVER_HTTP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "server/http_api.h"
#include "server/local_rpc.h"
#include "tracevault.pb-c.h"

/* The service of an exchange without comm (OTel's default for an unnamed service). */
#define TV_HTTP_UNKNOWN_SERVICE "unknown_service"

struct tv_http_api {
	struct tv_http_api_opts o;
	struct tv_local_rpc *rpc;
	char *map_comm[TV_HTTP_MAX_SERVICE_NAMES], *map_name[TV_HTTP_MAX_SERVICE_NAMES];
	size_t n_map;
};

/* One request being answered. */
struct hreq {
	struct tv_http_api *a;
	const struct tv_http_req *rq;
	struct tv_http_reply *out;
	/* what a 413 (an answer above --http-max-response-bytes) advises; NULL: "narrow the
	 * window or lower the limit" */
	const char *too_large_advice;
	/* strings kept until the answer is sent (tv_http_keep): a JSON array, or NULL */
	json_t *kept;
};

/* A copy of s that lives as long as the request (freed by tv_http_api_handle), or NULL
 * when out of memory: for strings a QueryFilter borrows. */
const char *tv_http_keep(struct hreq *h, const char *s);

/* Answer j (taken) as JSON with status; 413 when it exceeds --http-max-response-bytes. 0 or
 * -ENOMEM. */
int tv_http_json(struct hreq *h, unsigned status, json_t *j);
/* Answer status with the Jaeger error shape {"data":null,...,"errors":[{"code","msg"}]}. */
int tv_http_error(struct hreq *h, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A failed local call or parameter check (ret, err) as its HTTP status: 400 for -EINVAL
 * (INVALID_ARGUMENT, a bad parameter), 504 for the deadline, 503 for RESOURCE_EXHAUSTED, else
 * 502; -ENOMEM is returned as is (the endpoint answers 500). */
int tv_http_rpc_error(struct hreq *h, int ret, const char *err);

/* ---- strings from records or the network (span and service names, paths, hosts, comms,
 * attribute keys and values) reach a JSON answer only through these: jansson refuses a
 * string that is not UTF-8 (RFC 8259 section 8.1), so each byte that does not start a valid
 * UTF-8 sequence (RFC 3629: no overlong forms, surrogates, values past U+10FFFF; nor NUL)
 * becomes '?', the way every route shows it, and the length stays the same. ---- */

/* s[0..n) made valid UTF-8 in place. */
void tv_http_utf8_fix(char *s, size_t n);
/* A JSON string of s[0..n) made valid (s NULL: ""). Never NULL unless out of memory. */
json_t *tv_http_jstr(const char *s, size_t n);
/* A malloc'd copy of the C string s (NULL: "") made valid, for a name that is compared or
 * used as a JSON object key before it is answered; the caller frees it. NULL when out of
 * memory. */
char *tv_http_utf8_dup(const char *s);
/* Whether the C string s is valid UTF-8 (a name a client sends: every name the API answers
 * is). */
bool tv_http_utf8_valid(const char *s);

/* Parameters. Each returns 0 (absent: *v untouched, *present false when given), or -EINVAL
 * with a message naming the parameter in err. */
int tv_http_param_u64(struct hreq *h, const char *name, uint64_t *v, bool *present, char *err,
		      size_t errlen);
/* A duration: "1.5s", "100ms", "250us", "2m", "1h", "1d", or a bare number of microseconds:
 * nanoseconds in *ns. */
int tv_http_param_duration(struct hreq *h, const char *name, uint64_t *ns, bool *present,
			   char *err, size_t errlen);
/* A keyword parameter: one of n words (words[i].word: "" is the parameter given empty) into
 * *v as words[i].value; absent: *v untouched. Any other value is -EINVAL with "invalid NAME:
 * 'VALUE' (expect)" in err (expect: the words as the message lists them). */
struct tv_http_word {
	const char *word;
	int value;
};
int tv_http_param_word(struct hreq *h, const char *name, const struct tv_http_word *words,
		       size_t n, const char *expect, int *v, char *err, size_t errlen);
/* The window [*from_ns, *to_ns) of start/end (unix microseconds) or lookback (a duration,
 * back from end or now), default: the last default_ns. */
int tv_http_window(struct hreq *h, uint64_t default_ns, uint64_t *from_ns, uint64_t *to_ns,
		   char *err, size_t errlen);

/* The service of an exchange by its comm; the comms of a service into comms (at most
 * max, pointers into the API's map, to svc or to ""), their count: those --service-name
 * maps to it, svc itself unless mapped to another, and for unknown_service the empty comm. */
const char *tv_http_service_of_comm(const struct tv_http_api *a, const char *comm);
size_t tv_http_comms_of_service(const struct tv_http_api *a, const char *svc,
				const char **comms, size_t max);
/* The lists show a byte that is not UTF-8 as '?' (tv_http_utf8_dup), so a service name with a
 * '?' also stands for the comms of [from, to)'s exchanges whose service is shown as svc
 * without being svc: found by one Summary by comm, appended to comms[*n..max) (copies kept by
 * tv_http_keep). More than fit, or a cut Summary, is said in *errors (Jaeger's envelope;
 * NULL: not said). 0, -ENOMEM, or the call's error with err. */
int tv_http_comms_shown_as(struct hreq *h, const char *svc, uint64_t from, uint64_t to,
			   const char **comms, size_t *n, size_t max, json_t **errors, char *err,
			   size_t errlen);

/* values[0..n) as StringMatches of kind in m[0..n), their pointers in mp[0..n), which is
 * returned: the array a QueryFilter's repeated StringMatch field points to. m and mp hold n
 * each; the values are borrowed, not copied (they must outlive the filter). */
Tracevault__V1__StringMatch **tv_http_matches(Tracevault__V1__StringMatch *m,
					      Tracevault__V1__StringMatch **mp,
					      const char *const *values, size_t n,
					      Tracevault__V1__MatchKind kind);

/* The records of [from_ns, to_ns) passing f (may be NULL), newest first when reverse, at most
 * min(limit, --http-max-spans) (limit 0: that bound), to cb. *truncated is set when the bound
 * stopped it. Returns 0 or an error for tv_http_rpc_error. */
int tv_http_scan(struct tv_http_api *a, uint64_t from_ns, uint64_t to_ns,
		 const Tracevault__V1__QueryFilter *f, bool reverse, uint64_t limit,
		 tv_local_record_cb cb, void *arg, bool *truncated, char *err, size_t errlen);

/* The Jaeger routes (jaeger_api.c): url under /api/ other than /api/tracevault/. */
int tv_jaeger_route(struct hreq *h, const char *url);

#endif
