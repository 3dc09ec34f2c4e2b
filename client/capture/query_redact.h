/* What a record keeps of a request target's query (`tracevault capture`: by default the whole
 * target with the values of sensitive query parameters replaced by "REDACTED";
 * --redact-query-params, --strip-query, --no-redact). Pure string work on the target the
 * request parser (http_parse.c) found in the request line. */
#ifndef TV_QUERY_REDACT_H
#define TV_QUERY_REDACT_H

#include <stddef.h>

/* What replaces a sensitive parameter's value (OpenTelemetry semantic conventions, url.query). */
#define TV_QUERY_REDACTED "REDACTED"
/* Names a rule set holds (the default list and --redact-query-params together). */
#define TV_QUERY_MAX_PARAMS 64
/* Bytes of one parameter name in --redact-query-params (with the NUL: 63 usable). */
#define TV_QUERY_PARAM_NAME_BYTES 64

enum tv_query_mode {
	TV_QUERY_REDACT = 0, /* keep the query, values of the listed names redacted (default) */
	TV_QUERY_STRIP = 1,  /* drop the query and its '?' (--strip-query) */
	TV_QUERY_KEEP = 2,   /* keep the query as sent (--no-redact) */
};

/* The authority of an absolute-form target t[0, n) (RFC 9112 §3.2.2, RFC 3986 §3.2:
 * "scheme://[userinfo@]host[:port]" up to the next '/', '?' or '#'): 1 with its bounds
 * [*a, *e) in t and *host the offset where the host begins (after the userinfo and its '@',
 * else *a); 0 for any other form (origin-form "/...", "*", authority-form). */
int tv_url_authority(const char *t, size_t n, size_t *a, size_t *e, size_t *host);

/* The default names, lowercase, matched case-insensitively against each parameter's name after
 * percent-decoding it: OTel's url.query guidance (AWSAccessKeyId, Signature, sig,
 * X-Goog-Signature) and the usual credential names. NULL-terminated; README lists them. */
extern const char *const tv_query_default_params[];

struct tv_query_rules {
	enum tv_query_mode mode;
	/* 1: an absolute-form target's userinfo is kept as sent (--no-redact, also beside
	 * --strip-query, which drops only the query); TV_QUERY_KEEP keeps it too. Default 0. */
	int keep_userinfo;
	size_t n; /* names in use */
	char names[TV_QUERY_MAX_PARAMS][TV_QUERY_PARAM_NAME_BYTES]; /* lowercase */
};

/* r = the default: TV_QUERY_REDACT with tv_query_default_params. */
void tv_query_rules_default(struct tv_query_rules *r);

/* --redact-query-params LIST: comma-separated names that replace the list in r, or, when LIST
 * begins with '+', are added to it ("+sid,otp" keeps the defaults). An empty LIST empties the
 * list (no value is redacted; the query is kept). Names are taken literally (not decoded),
 * compared case-insensitively. Returns 0, or -EINVAL with a one-line reason in err: an empty
 * name ("a,,b"), a name of TV_QUERY_PARAM_NAME_BYTES or more bytes, more than
 * TV_QUERY_MAX_PARAMS names in all. */
int tv_query_rules_parse(struct tv_query_rules *r, const char *list, char *err, size_t errlen);

/* 1 when a query parameter name, enc[0, n) as it appears in the query (percent-encoded, '+'
 * for a space), names one of r's parameters, else 0. */
int tv_query_param_listed(const struct tv_query_rules *r, const char *enc, size_t n);

/* The target t[0, n) as a record keeps it, written into out (cap bytes, NUL-terminated when cap
 * > 0, cut to fit) like snprintf; returns the full length (without the NUL). A '#' and what
 * follows are dropped (a fragment is never sent, but a client may). The query (after the first
 * '?') is split at '&' (WHATWG URLSearchParams; ';' is not a separator): the value (after the
 * first '=') of a parameter whose name r lists becomes TV_QUERY_REDACTED; an empty value and a
 * parameter without '=' stay as they are (nothing to hide); everything else is kept byte for
 * byte. The userinfo of an absolute-form target ("http://user:pw@host/") becomes
 * "REDACTED:REDACTED" (or "REDACTED" without ':'), as OTel's url.full asks, except with
 * TV_QUERY_KEEP or keep_userinfo; an empty one ("http://@h/") hides nothing and stays. r NULL means TV_QUERY_STRIP. The result is at most n + 7 bytes per redacted
 * value, + 17 for the userinfo. */
size_t tv_query_redact(const struct tv_query_rules *r, const char *t, size_t n, char *out,
		       size_t cap);

#endif
