/* The client's TLS options, shared by every command that connects to tracevaultd (capture,
 * put, query, summary): --tls-ca, --tls-cert, --tls-key, --tls-server-name as table entries
 * (cli/cli.h), their --help text, and the step that checks them together and reads the files
 * into what client/rpc's channels take (rpc/rpc.h struct tv_rpc_tls). README "TLS". */
#ifndef TV_CLI_TLS_ARGS_H
#define TV_CLI_TLS_ARGS_H

#include <stddef.h>

#include "common/tls.h"
#include "rpc/rpc.h"

struct tv_tls_args {
	const char *ca, *cert, *key, *server_name; /* the options' values, NULL when not given */
	struct tv_tls_pem pem; /* tv_tls_args_load's: the files read and checked */
	struct tv_rpc_tls rpc; /* tv_tls_args_load's: what the channels are given */
};

/* The table entries; field is the struct tv_tls_args member of the command's options. */
#define TV_TLS_CLI_OPTIONS(type, field)                                                        \
	{"tls-ca", 0, TV_CLI_ARG_STRING, offsetof(type, field.ca), NULL, NULL, NULL},           \
	{"tls-cert", 0, TV_CLI_ARG_STRING, offsetof(type, field.cert), NULL, NULL, NULL},       \
	{"tls-key", 0, TV_CLI_ARG_STRING, offsetof(type, field.key), NULL, NULL, NULL},         \
	{"tls-server-name", 0, TV_CLI_ARG_STRING, offsetof(type, field.server_name), NULL,      \
	 NULL, NULL}

/* The usage line's part and the options' --help text (a part of its own in a command's usage
 * array: ISO C's 4095-byte literals). */
#define TV_TLS_CLI_SYNOPSIS "[--tls-ca FILE [--tls-cert FILE --tls-key FILE]]"
#define TV_TLS_CLI_HELP                                                                        \
	"TLS (README \"TLS\"; plaintext without --tls-ca):\n"                                   \
	"      --tls-ca FILE          connect over TLS, the server's certificate signed by\n"  \
	"                             these CA certificates (PEM) and naming the HOST of\n"   \
	"                             --server (an IP as an IP subjectAltName)\n"               \
	"      --tls-cert FILE        a client certificate (PEM chain, leaf first) for a\n"    \
	"                             server that asks for one (mutual TLS); needs --tls-key\n" \
	"      --tls-key FILE         its private key (unencrypted PEM, mode at most 0600 or\n" \
	"                             root's 0640, else exit 1; never logged)\n"             \
	"      --tls-server-name NAME the name the server's certificate must carry, instead\n" \
	"                             of the HOST of --server\n"                               \
	"                             (files at most 1M; a file that is missing, unreadable,\n" \
	"                             not PEM, or a key not matching its certificate exits 1)\n"

/* Check the options together and read the files: --tls-cert and --tls-key go in pairs and,
 * like --tls-server-name, need --tls-ca (usage errors, one line, exit 2); a bad file is a
 * runtime error naming it (exit 1). Returns 0 with *out set (NULL: plaintext, else &t->rpc,
 * valid until tv_tls_args_free), or the exit code for the command to return. */
int tv_tls_args_load(struct tv_tls_args *t, const struct tv_rpc_tls **out);

/* Release what tv_tls_args_load read (the key wiped). Safe on a struct it never loaded. */
void tv_tls_args_free(struct tv_tls_args *t);

#endif
