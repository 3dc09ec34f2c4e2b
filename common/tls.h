/* TLS material of the gRPC port (--tls-ca, --tls-cert, --tls-key on tracevaultd and on the
 * client): the PEM files read into memory and checked with OpenSSL before gRPC sees them, so a
 * missing, unreadable or malformed file, or a key that is not the certificate's, is named at
 * start instead of failing every handshake later without a word. Both binaries use it; each
 * builds gRPC's own credentials from the strings (server/rpc_server.c, client/rpc/rpc.c). */
#ifndef TV_COMMON_TLS_H
#define TV_COMMON_TLS_H

#include <stddef.h>

/* Largest PEM file read: a CA bundle of a few hundred certificates fits; a bigger file is not
 * TLS material (README "TLS"). */
#define TV_TLS_MAX_FILE_BYTES (1u << 20)

/* The files' contents, NUL-terminated; NULL where no file was given. Owned here: release with
 * tv_tls_pem_free, which also wipes the key's bytes. */
struct tv_tls_pem {
	char *ca;   /* trusted roots: the server's CA (client) or the clients' CA (server) */
	char *cert; /* own certificate chain, leaf first */
	char *key;  /* its private key: never printed, logged or put in a message */
};

/* Read ca_path, cert_path and key_path (each NULL when not given; cert and key both or
 * neither, which the CLIs check first) and check them: ca holds at least one certificate and
 * nothing else fails to parse; cert's first block is a certificate; key is a private key
 * matching it, in a file no other user may read (at most 0600, or 0640 when owned by root, as
 * PostgreSQL requires of its key). Returns 0 with *p filled, or a negative errno with *p
 * empty and one reason in err naming the option and the file: "cannot read --tls-key FILE:
 * Permission denied" (-errno), "--tls-ca FILE: more than 1M" (-EFBIG), "--tls-key FILE is
 * mode 0644, open to others: ..." (-EPERM), "invalid --tls-cert FILE: no PEM certificate"
 * (-EINVAL), "--tls-key FILE does not match the certificate of --tls-cert FILE" (-EINVAL),
 * -ENOMEM. A key's contents never appear in err. */
int tv_tls_pem_load(struct tv_tls_pem *p, const char *ca_path, const char *cert_path,
		    const char *key_path, char *err, size_t errlen);

/* Wipe the key's bytes, free all three, empty *p. Safe on an empty *p. */
void tv_tls_pem_free(struct tv_tls_pem *p);

#endif
