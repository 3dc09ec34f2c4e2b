/* The handshake tv_rpc_probe redoes to say why a channel failed (rpc/tls_explain.h). It only
 * diagnoses: gRPC's own credentials carry the traffic, and nothing is sent after the
 * handshake. */
#include "rpc/tls_explain.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

/* The same certificates gRPC was given: roots to verify the server with and, for mutual TLS,
 * our chain and key (already checked by common/tls.c). 0, or -1 when OpenSSL cannot take them. */
static int load_material(SSL_CTX *ctx, const struct tv_tls_pem *pem)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	BIO *b = BIO_new_mem_buf(pem->ca, -1);
	X509 *x;
	EVP_PKEY *pk;
	int ret = -1;

	if (!b)
		return -1;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		X509_STORE_add_cert(store, x); /* takes its own reference */
		X509_free(x);
	}
	BIO_free(b);
	ERR_clear_error();
	if (!pem->cert)
		return 0;
	b = BIO_new_mem_buf(pem->cert, -1);
	if (!b)
		return -1;
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	if (x && SSL_CTX_use_certificate(ctx, x) == 1) {
		X509 *chain;

		/* the rest of the chain, as gRPC sends it */
		while ((chain = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
			if (SSL_CTX_add0_chain_cert(ctx, chain) != 1)
				X509_free(chain);
		ret = 0;
	}
	X509_free(x);
	BIO_free(b);
	if (ret)
		return ret;
	b = BIO_new_mem_buf(pem->key, -1);
	if (!b)
		return -1;
	pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	ret = pk && SSL_CTX_use_PrivateKey(ctx, pk) == 1 ? 0 : -1;
	EVP_PKEY_free(pk);
	BIO_free(b);
	ERR_clear_error();
	return ret;
}

/* OpenSSL's reason for the last failure ("tlsv13 alert certificate required", "wrong version
 * number"), or NULL when it recorded none (the peer hung up). */
static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();

	return e ? ERR_reason_error_string(e) : NULL;
}

static void explain(int fd, const char *host, const struct tv_rpc_tls *tls, char *why,
		    size_t whylen)
{
	static const unsigned char alpn[] = { 2, 'h', '2' }; /* gRPC's ALPN: HTTP/2 */
	bool use_tls = tls && tls->pem && tls->pem->ca;
	const char *name = use_tls && tls->server_name ? tls->server_name : host;
	struct in6_addr a;
	bool is_ip = inet_pton(AF_INET, name, &a) == 1 || inet_pton(AF_INET6, name, &a) == 1;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	const char *r;
	char b;
	int rc;

	snprintf(why, whylen, "TCP connects but no gRPC server answers");
	ERR_clear_error();
	if (!ctx || SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0)
		goto out;
	if (use_tls) {
		if (load_material(ctx, tls->pem))
			goto out;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* only: does it speak TLS? */
	}
	ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1)
		goto out;
	if (use_tls && !(is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
			       : X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), name, 0)))
		goto out;
	if (!is_ip)
		SSL_set_tlsext_host_name(ssl, name);
	rc = SSL_connect(ssl);
	if (rc != 1) {
		long v = SSL_get_verify_result(ssl);

		if (!use_tls)
			goto out; /* neither plaintext gRPC (the channel) nor TLS */
		if (v != X509_V_OK) {
			snprintf(why, whylen, "TLS handshake failed: the server's certificate: %s "
				 "(checked against --tls-ca, as %s)", X509_verify_cert_error_string(v),
				 name);
			goto out;
		}
		r = ssl_reason();
		snprintf(why, whylen, "TLS handshake failed: %s%s", r ? r : "the server hung up",
			 r && strstr(r, "wrong version number") ?
				 " (the server does not serve TLS?)" : "");
		goto out;
	}
	if (!use_tls) {
		snprintf(why, whylen, "the server speaks TLS: connect with --tls-ca");
		goto out;
	}
	/* TLS 1.3: the server judges our certificate after our side of the handshake ended; its
	 * verdict (an alert) or its first HTTP/2 frame comes with the first read */
	rc = SSL_read(ssl, &b, 1);
	if (rc > 0) {
		snprintf(why, whylen, "the TLS handshake succeeds but gRPC does not answer");
		goto out;
	}
	/* an alert names the refusal; gRPC's server (1.51, TLS 1.3) just closes the connection,
	 * which OpenSSL words "unexpected eof while reading" */
	r = ssl_reason();
	if (r && !strstr(r, "unexpected eof"))
		snprintf(why, whylen, "TLS handshake failed: %s", r);
	else if (tls->pem->cert)
		snprintf(why, whylen, "the server ended the connection after the TLS handshake: "
			 "it does not accept the client certificate of --tls-cert (not signed by "
			 "its --tls-ca?)");
	else
		snprintf(why, whylen, "the server ended the connection after the TLS handshake: "
			 "it requires a client certificate (give --tls-cert and --tls-key)");
out:
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

void tv_rpc_tls_explain(int fd, const char *host, const struct tv_rpc_tls *tls, char *why,
			size_t whylen)
{
	struct timespec now = { 0, 0 };
	sigset_t pipe_set, old;

	/* OpenSSL writes with write(2): a peer that already hung up (the usual non-gRPC port)
	 * would kill the CLI with SIGPIPE. Blocked here, such a signal stays pending on this
	 * thread and is taken below, before the old mask comes back. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	explain(fd, host, tls, why, whylen);
	while (sigtimedwait(&pipe_set, NULL, &now) > 0)
		;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}
