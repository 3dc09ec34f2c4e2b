/* Streams in progress per peer, so that no single client takes every stream slot
 * (issue 13): rpc_server.c counts each Write and Query stream against the server's limit
 * (--max-write-streams, --max-query-streams) and against its peer's share here
 * (--max-write-streams-per-peer, --max-query-streams-per-peer).
 * A peer is a client address as gRPC names the call's transport (grpc_call_get_peer):
 * an IPv4 address, an IPv6 /64 (one host's or one site's usual allotment: a client with a
 * /64 has 2^64 addresses to spread a flood over), an IPv4-mapped IPv6 address as its IPv4
 * address; every unix socket is one peer, and so is every peer string that is not one of
 * these (gRPC 1.51 names none such for TCP: see tv_peer_parse). */
#ifndef TV_SERVER_PEERS_H
#define TV_SERVER_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"

/* Bounds of --max-write-streams-per-peer and --max-query-streams-per-peer: those of the
 * server's stream limits (TV_RPC_MAX_STREAMS); an effective value is never above the server's
 * limit of the same method (tv_peers_limit). */
#define TV_PEERS_MAX_STREAMS 65536
extern const struct tv_limit tv_peers_streams_limit;

/* What a peer string names. */
enum tv_peer_kind {
	TV_PEER_IPV4,    /* addr: the address, host byte order, in the low 32 bits */
	TV_PEER_IPV6_64, /* addr: the first 8 bytes of the address, big-endian (its /64) */
	TV_PEER_LOCAL,   /* a unix socket (unix:, unix-abstract:): all of them one peer */
	TV_PEER_UNKNOWN, /* a string not parsed: all of them one peer */
};

struct tv_peer {
	enum tv_peer_kind kind;
	uint64_t addr; /* 0 for TV_PEER_LOCAL and TV_PEER_UNKNOWN */
};

/* The longest text tv_peer_format writes, with its NUL ("ffff:ffff:ffff:ffff::/64"). */
#define TV_PEER_TEXT_LEN 48

/* The longest address part (after "ipv4:" or "ipv6:", unescaped) tv_peer_parse reads. */
#define TV_PEER_MAX_STRING 128

/* Parse a peer string of gRPC C core (grpc_sockaddr_to_uri):
 *   "ipv4:A.B.C.D:PORT", "ipv6:%5BADDR%5D:PORT" (1.51, as seen from a real ::1 client) or
 *   "ipv6:[ADDR]:PORT" (later versions), a scope as "%25SCOPE" or "%SCOPE" after ADDR,
 *   "unix:PATH", "unix-abstract:NAME".
 * gRPC already writes a v4-mapped IPv6 address as ipv4:, but "ipv6:[::ffff:A.B.C.D]:PORT" is
 * taken as that IPv4 address too. Returns 0 with *out set, or -EINVAL (s NULL, another scheme,
 * a malformed address, one longer than TV_PEER_MAX_STRING) with *out set to the one
 * TV_PEER_UNKNOWN peer. */
int tv_peer_parse(const char *s, struct tv_peer *out);

/* The peer as a message names it: "127.0.0.2", "2001:db8:1:2::/64", "local (unix socket)",
 * "unknown address". Writes at most len bytes with the NUL (TV_PEER_TEXT_LEN always fits);
 * returns buf. */
const char *tv_peer_format(const struct tv_peer *p, char *buf, size_t len);

/* The stream kinds a peer's share is counted for. */
enum tv_peer_class { TV_PEER_WRITE, TV_PEER_QUERY, TV_PEER_CLASSES };

/* The effective per-peer limit of one class: given (the option; 0 when not given) but at
 * most the server's limit global (>= 1) of the same class; by default half of global, at
 * least 1. */
unsigned tv_peers_limit(unsigned given, unsigned global);

struct tv_peers;

/* A table for at most max_streams[class] streams of each class in progress at once (the
 * server's limits, each 1..TV_PEERS_MAX_STREAMS), each peer holding at most
 * per_peer[class] (1..max_streams[class]). Its memory is allocated here, once: an entry lives
 * while its peer holds a stream, so the table never holds more entries than streams (it is
 * sized at twice their sum: 24 KiB at the defaults, 6 MiB at the largest limits).
 * Not thread-safe: one thread (rpc_server.c's loop) uses it. *out is the caller's, freed with
 * tv_peers_free. Returns 0, -EINVAL (a limit out of range) or -ENOMEM. */
int tv_peers_new(struct tv_peers **out, const unsigned max_streams[TV_PEER_CLASSES],
		 const unsigned per_peer[TV_PEER_CLASSES]);

/* Count one stream of class c for peer p. Returns 0, or -EBUSY when p already holds its
 * per-peer limit (nothing counted; *held, if not NULL, is what it holds), or -ENOSPC when the
 * table is full (a caller that counts more streams than max_streams: a bug). */
int tv_peers_acquire(struct tv_peers *t, const struct tv_peer *p, enum tv_peer_class c,
		     unsigned *held);

/* Give back one stream of class c that tv_peers_acquire counted for p; the peer's entry goes
 * with its last stream. Releasing what was not acquired is a bug (ignored). */
void tv_peers_release(struct tv_peers *t, const struct tv_peer *p, enum tv_peer_class c);

/* Streams of class c that p holds (0 for a peer without an entry). */
unsigned tv_peers_held(const struct tv_peers *t, const struct tv_peer *p, enum tv_peer_class c);

/* The per-peer limit of class c the table enforces. */
unsigned tv_peers_per_peer(const struct tv_peers *t, enum tv_peer_class c);

/* Peers holding at least one stream. */
size_t tv_peers_count(const struct tv_peers *t);

void tv_peers_free(struct tv_peers *t);

#endif
