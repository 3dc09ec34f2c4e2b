/* Why a channel does not become READY when TCP connects: gRPC reports a failed TLS handshake,
 * a plaintext client at a TLS port and a TLS client at a plaintext port all as
 * TRANSIENT_FAILURE, and logs nothing we can read. tv_rpc_probe hands the connected socket
 * here, which redoes the handshake with OpenSSL (the library gRPC uses) with the channel's
 * roots, client certificate and name, and words OpenSSL's reason. */
#ifndef TV_RPC_TLS_EXPLAIN_H
#define TV_RPC_TLS_EXPLAIN_H

#include <stddef.h>

#include "rpc/rpc.h"

/* fd: a connected TCP socket to host (the HOST of HOST:PORT) whose reads time out (SO_RCVTIMEO;
 * the handshake waits on it); tls as the channel was made with (NULL: plaintext). Writes one
 * reason into why: "TLS handshake failed: the server's certificate: hostname mismatch",
 * "TLS handshake failed: ... alert certificate required", "the server speaks TLS: connect with
 * --tls-ca", or when the handshake tells nothing, "TCP connects but no gRPC server answers".
 * The key's contents never appear. fd stays open (the caller's). */
void tv_rpc_tls_explain(int fd, const char *host, const struct tv_rpc_tls *tls, char *why,
			size_t whylen);

#endif
