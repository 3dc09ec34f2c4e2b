/* Addresses: HOST:PORT as both binaries read it (the server's --listen, the host and port the
 * client explains an unreachable server with), and server lists "A,B,C" (--server), which
 * only the client reads but three of its rooms need (cli, write, rpc). One rule for lists
 * everywhere: an empty entry ("", "A,", ",B", "A,,B") is an error. */
#ifndef TV_COMMON_ADDR_H
#define TV_COMMON_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define TV_PORT_MAX 65535
/* Where tracevaultd listens by default, and so where the client looks when given no --server
 * and no TV_SERVER_ENV: one value for both binaries. */
#define TV_DEFAULT_SERVER "127.0.0.1:7070"
/* The environment variable the client reads its server list from when --server is not given. */
#define TV_SERVER_ENV "TRACEVAULT_SERVER"

/* Split "HOST:PORT" at its last colon: a non-empty host ("[::1]" loses its brackets; an IPv6
 * address must have them, "::1:80" is refused) and a decimal port 0..65535 (digits only). host gets
 * a NUL-terminated copy (hostlen bytes with the NUL), *port the port. Returns 0, -EINVAL when s is
 * not HOST:PORT, or -ENAMETOOLONG when the host does not fit in hostlen. */
int tv_hostport_parse(const char *s, char *host, size_t hostlen, unsigned *port);

/* Whether host (as tv_hostport_parse gives it: no brackets) is a loopback address: 127.0.0.0/8,
 * ::1, ::ffff:127.x.y.z, or the name localhost. Other names are not resolved: they count as
 * not loopback (tracevaultd's plaintext rule, the client's BDP choice). */
bool tv_host_is_loopback(const char *host);

/* A parsed server list; tv_server_list_free releases it. */
struct tv_server_list {
	char **v;  /* v[0..n): NUL-terminated entries, pointing into one buffer owned here */
	size_t n;  /* >= 1 after a successful parse */
};

/* 0 if s is a server list (non-empty entries separated by commas), else -EINVAL. Allocates
 * nothing: the CLIs check a list with it before anything starts. */
int tv_server_list_check(const char *s);

/* Split s into *out (entries in their order, not further parsed: gRPC targets). Returns 0,
 * -EINVAL on an empty entry, -E2BIG when there are more than max_entries (0: no bound), or
 * -ENOMEM; on error *out is empty and needs no free. */
int tv_server_list_parse(const char *s, size_t max_entries, struct tv_server_list *out);

/* Free what tv_server_list_parse allocated and empty *l. Safe on an empty list. */
void tv_server_list_free(struct tv_server_list *l);

#endif
