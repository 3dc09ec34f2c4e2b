/* The client's TLS options (cli/tls_args.h): checked together, then the files read by
 * common/tls.c, whose messages name the option and the file. */
#include "cli/tls_args.h"

#include <stdlib.h>

#include "cli/cli.h"

int tv_tls_args_load(struct tv_tls_args *t, const struct tv_rpc_tls **out)
{
	char err[TV_CLI_ERR_LEN];

	*out = NULL;
	if (t->cert && !t->key)
		return tv_cli_usage_error("--tls-cert needs --tls-key (the certificate's private "
					  "key)");
	if (t->key && !t->cert)
		return tv_cli_usage_error("--tls-key needs --tls-cert (the certificate it "
					  "belongs to)");
	if (!t->ca && (t->cert || t->server_name))
		return tv_cli_usage_error("--%s is for TLS: give --tls-ca (the CA that signs the "
					  "server's certificate) too",
					  t->cert ? "tls-cert" : "tls-server-name");
	if (t->server_name && !*t->server_name)
		return tv_cli_usage_error("invalid --tls-server-name: '' (a host name)");
	if (!t->ca)
		return 0;
	if (tv_tls_pem_load(&t->pem, t->ca, t->cert, t->key, err, sizeof(err)))
		return tv_cli_runtime_error("%s", err);
	t->rpc.pem = &t->pem;
	t->rpc.server_name = t->server_name;
	*out = &t->rpc;
	return 0;
}

void tv_tls_args_free(struct tv_tls_args *t)
{
	tv_tls_pem_free(&t->pem);
	t->rpc.pem = NULL;
}
