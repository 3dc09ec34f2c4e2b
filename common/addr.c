/* HOST:PORT and server lists (common/addr.h): the one parser of each, for both binaries. */
#include "common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/size.h"

int tv_hostport_parse(const char *s, char *host, size_t hostlen, unsigned *port)
{
	const char *colon = strrchr(s, ':'), *h = s, *p;
	size_t hlen;
	uint64_t v;

	if (!colon)
		return -EINVAL;
	p = colon + 1;
	if (tv_parse_digits(&p, &v) || *p || v > TV_PORT_MAX)
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') /* [::1]:7070 */
		h++, hlen -= 2;
	else if (memchr(s, ':', hlen)) /* ::1:7070: the port cannot be told from the address */
		return -EINVAL;
	if (hlen == 0)
		return -EINVAL;
	if (hlen >= hostlen)
		return -ENAMETOOLONG;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (unsigned)v;
	return 0;
}

bool tv_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

int tv_server_list_check(const char *s)
{
	size_t n = strlen(s);

	return n && s[0] != ',' && s[n - 1] != ',' && !strstr(s, ",,") ? 0 : -EINVAL;
}

int tv_server_list_parse(const char *s, size_t max_entries, struct tv_server_list *out)
{
	char *buf = NULL, **v = NULL, *p;
	size_t n = 1;

	out->v = NULL;
	out->n = 0;
	if (tv_server_list_check(s))
		return -EINVAL;
	for (p = (char *)s; *p; p++)
		n += *p == ',';
	if (max_entries && n > max_entries)
		return -E2BIG;
	buf = strdup(s);
	v = calloc(n, sizeof(*v));
	if (!buf || !v) {
		free(buf);
		free(v);
		return -ENOMEM;
	}
	n = 0;
	for (p = buf; p; n++) {
		char *comma = strchr(p, ',');

		if (comma)
			*comma = '\0';
		v[n] = p;
		p = comma ? comma + 1 : NULL;
	}
	out->v = v;
	out->n = n;
	return 0;
}

void tv_server_list_free(struct tv_server_list *l)
{
	if (l->n)
		free(l->v[0]); /* the one buffer every entry points into */
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
