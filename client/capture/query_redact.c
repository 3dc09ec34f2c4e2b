/* Query redaction of request targets (see query_redact.h): the parameter names to hide, parsed
 * from --redact-query-params, and the rewrite of one target, done when the request parser
 * stores it, so a secret value never reaches a record, the cache or the wire. */
#define _GNU_SOURCE /* memrchr */
#include "capture/query_redact.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* OpenTelemetry semantic conventions (url.query: "redact the values of AWSAccessKeyId,
 * Signature, sig, X-Goog-Signature"), their siblings in presigned URLs (AWS SigV4, Google
 * Cloud Storage V4), then the names OAuth 2.0 (RFC 6749: code, access_token, refresh_token,
 * client_secret, assertion), OpenID Connect (id_token) and common web APIs put credentials in.
 * Lowercase: matching ignores case. */
const char *const tv_query_default_params[] = {
	"awsaccesskeyid", "signature", "sig", "x-goog-signature",
	"x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-credential",
	"token", "access_token", "refresh_token", "id_token", "auth_token", "private_token",
	"api_key", "apikey", "api-key", "key", "access_key", "secret", "client_secret",
	"password", "passwd", "pwd", "auth", "session", "sessionid", "session_id", "jsessionid",
	"code", "assertion", "client_assertion", "jwt",
	NULL,
};

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void put_name(struct tv_query_rules *r, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		r->names[r->n][i] = (char)tolower((unsigned char)s[i]);
	r->names[r->n][n] = '\0';
	r->n++;
}

void tv_query_rules_default(struct tv_query_rules *r)
{
	memset(r, 0, sizeof(*r));
	r->mode = TV_QUERY_REDACT;
	for (size_t i = 0; tv_query_default_params[i]; i++)
		put_name(r, tv_query_default_params[i], strlen(tv_query_default_params[i]));
}

_Static_assert(sizeof(tv_query_default_params) / sizeof(tv_query_default_params[0]) - 1 <=
		       TV_QUERY_MAX_PARAMS,
	       "the default list fits a rule set");

int tv_query_rules_parse(struct tv_query_rules *r, const char *list, char *err, size_t errlen)
{
	struct tv_query_rules out;
	const char *p = list;

	if (*p == '+') {
		out = *r; /* extend what is there (the defaults, or an earlier list) */
		p++;
	} else {
		memset(&out, 0, sizeof(out));
		out.mode = r->mode;
	}
	if (*list == '\0')
		goto done; /* "": no name at all */
	for (;;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == 0) {
			snprintf(err, errlen, "invalid --redact-query-params '%.200s': empty name",
				 list);
			return -EINVAL;
		}
		if (n >= TV_QUERY_PARAM_NAME_BYTES) {
			snprintf(err, errlen, "invalid --redact-query-params: name '%.*s...' is "
				 "longer than %d bytes", 32, p, TV_QUERY_PARAM_NAME_BYTES - 1);
			return -EINVAL;
		}
		if (out.n >= TV_QUERY_MAX_PARAMS) {
			snprintf(err, errlen, "invalid --redact-query-params: more than %d names "
				 "(with the defaults when extending)", TV_QUERY_MAX_PARAMS);
			return -EINVAL;
		}
		put_name(&out, p, n);
		if (!end)
			break;
		p = end + 1;
	}
done:
	*r = out;
	return 0;
}

/* Does the encoded name enc[0, n), percent-decoded ('+' is a space in form encoding), equal
 * want (lowercase) ignoring case? A '%' not followed by two hex digits is taken literally. */
static int name_equals(const char *enc, size_t n, const char *want)
{
	size_t i = 0, w = 0;

	while (i < n) {
		int c = (unsigned char)enc[i], h1, h2;

		if (c == '%' && i + 2 < n && (h1 = hexval((unsigned char)enc[i + 1])) >= 0 &&
		    (h2 = hexval((unsigned char)enc[i + 2])) >= 0) {
			c = h1 << 4 | h2;
			i += 3;
		} else {
			if (c == '+')
				c = ' ';
			i++;
		}
		if (want[w] == '\0' || tolower(c) != (unsigned char)want[w])
			return 0;
		w++;
	}
	return want[w] == '\0';
}

int tv_query_param_listed(const struct tv_query_rules *r, const char *enc, size_t n)
{
	for (size_t i = 0; i < r->n; i++)
		if (name_equals(enc, n, r->names[i]))
			return 1;
	return 0;
}

/* Append s[0, n) to out (cap bytes) at *len, counting what does not fit. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
	if (*len < cap) {
		size_t room = cap - *len;

		memcpy(out + *len, s, n < room ? n : room);
	}
	*len += n;
}

int tv_url_authority(const char *t, size_t n, size_t *a, size_t *e, size_t *host)
{
	size_t i = 0, end;
	const char *at;

	/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
	while (i < n && (isalnum((unsigned char)t[i]) || t[i] == '+' || t[i] == '-' ||
			 t[i] == '.'))
		i++;
	if (i == 0 || !isalpha((unsigned char)t[0]) || n - i < 3 || memcmp(t + i, "://", 3) != 0)
		return 0;
	i += 3;
	for (end = i; end < n && t[end] != '/' && t[end] != '?' && t[end] != '#'; end++)
		;
	at = memrchr(t + i, '@', end - i);
	*a = i;
	*e = end;
	*host = at ? (size_t)(at - t) + 1 : i;
	return 1;
}

/* The userinfo of an absolute-form target "scheme://userinfo@host...": 1 with its bounds
 * [*a, *e) in t (without the '@'), else 0. */
static int find_userinfo(const char *t, size_t n, size_t *a, size_t *e)
{
	size_t end, host;

	/* host - 1 == *a: an empty userinfo ("http://@h/"), nothing to hide */
	if (!tv_url_authority(t, n, a, &end, &host) || host <= *a + 1)
		return 0;
	*e = host - 1;
	return 1;
}

size_t tv_query_redact(const struct tv_query_rules *r, const char *t, size_t n, char *out,
		       size_t cap)
{
	const char *hash = memchr(t, '#', n);
	const char *q;
	size_t len = 0, ua, ue;

	if (hash)
		n = (size_t)(hash - t);
	q = memchr(t, '?', n);
	if ((!r || (r->mode != TV_QUERY_KEEP && !r->keep_userinfo)) &&
	    find_userinfo(t, q ? (size_t)(q - t) : n, &ua, &ue)) {
		/* credentials in the URL itself (RFC 3986 §3.2.1, deprecated): as OTel's
		 * url.full asks */
		put(out, cap, &len, t, ua);
		if (memchr(t + ua, ':', ue - ua))
			put(out, cap, &len, TV_QUERY_REDACTED ":" TV_QUERY_REDACTED,
			    2 * strlen(TV_QUERY_REDACTED) + 1);
		else
			put(out, cap, &len, TV_QUERY_REDACTED, strlen(TV_QUERY_REDACTED));
		t += ue;
		n -= ue;
	}
	if (!q || !r || r->mode == TV_QUERY_STRIP) {
		put(out, cap, &len, t, q ? (size_t)(q - t) : n);
	} else if (r->mode == TV_QUERY_KEEP) {
		put(out, cap, &len, t, n);
	} else {
		const char *p = q + 1, *end = t + n;

		put(out, cap, &len, t, (size_t)(p - t));
		for (;;) {
			const char *amp = memchr(p, '&', (size_t)(end - p));
			const char *pend = amp ? amp : end;
			const char *eq = memchr(p, '=', (size_t)(pend - p));

			if (eq && eq + 1 < pend && tv_query_param_listed(r, p, (size_t)(eq - p))) {
				put(out, cap, &len, p, (size_t)(eq + 1 - p));
				put(out, cap, &len, TV_QUERY_REDACTED, strlen(TV_QUERY_REDACTED));
			} else {
				put(out, cap, &len, p, (size_t)(pend - p));
			}
			if (!amp)
				break;
			put(out, cap, &len, "&", 1);
			p = amp + 1;
		}
	}
	if (cap > 0)
		out[len < cap ? len : cap - 1] = '\0';
	return len;
}
