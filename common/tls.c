/* TLS material of the gRPC port (common/tls.h): reads the PEM files and checks them with
 * OpenSSL's libcrypto (the one gRPC itself links), so that the reason for a bad file is ours to
 * give, with the file's name, before gRPC turns it into a failed handshake. */
#include "common/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/errf.h"

/* Read the whole of path (a regular file of at most TV_TLS_MAX_FILE_BYTES) into a fresh
 * NUL-terminated buffer, *out, owned by the caller, and its fstat into *stp. opt names the
 * option in messages. A key's buffer is wiped by the caller; a failed read here wipes what it
 * had read. */
static int read_pem(const char *opt, const char *path, char **out, char *err, size_t errlen,
		    struct stat *stp)
{
	struct stat st;
	size_t len = 0;
	char *buf = NULL;
	int fd, ret;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return tv_errf(err, errlen, -errno, "cannot read --%s %s: %s", opt, path,
			       strerror(errno));
	if (fstat(fd, &st)) {
		ret = tv_errf(err, errlen, -errno, "cannot read --%s %s: %s", opt, path,
			      strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = tv_errf(err, errlen, -EINVAL, "cannot read --%s %s: not a regular file", opt,
			      path);
		goto out;
	}
	if (st.st_size > (off_t)TV_TLS_MAX_FILE_BYTES) {
		ret = tv_errf(err, errlen, -EFBIG, "--%s %s: more than 1M, not a PEM file", opt,
			      path);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = tv_errf(err, errlen, -ENOMEM, "--%s %s: out of memory", opt, path);
		goto out;
	}
	/* bounded by the size fstat gave: a file that grows meanwhile is read up to it */
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = tv_errf(err, errlen, -errno, "cannot read --%s %s: %s", opt, path,
				      strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		ret = tv_errf(err, errlen, -EINVAL, "invalid --%s %s: a NUL byte (not PEM text)",
			      opt, path);
		goto out;
	}
	*out = buf;
	buf = NULL;
	*stp = st;
	ret = 0;
out:
	if (buf) {
		OPENSSL_cleanse(buf, (size_t)st.st_size + 1);
		free(buf);
	}
	close(fd);
	return ret;
}

/* The private key's file is not for others to read (PostgreSQL's rule for its ssl_key_file,
 * which allows the Debian ssl-cert layout): owned by root, at most 0640 (a service's group may
 * read it); owned by anyone else, at most 0600. The mode of the file read (fstat of the open
 * descriptor), so a swap after the check cannot pass. */
static int check_key_mode(const char *path, const struct stat *st, char *err, size_t errlen)
{
	mode_t m = st->st_mode & 07777;
	mode_t bad = st->st_uid == 0 ? (mode_t)(S_IWGRP | S_IXGRP | S_IRWXO) :
				       (mode_t)(S_IRWXG | S_IRWXO);

	if (!(m & bad))
		return 0;
	return tv_errf(err, errlen, -EPERM,
		       "--tls-key %s is mode %04o, open to %s: a private key must be at most 0600 "
		       "(0640 when owned by root); chmod 600 %s", path, (unsigned)m,
		       m & S_IRWXO ? "others" : "its group", path);
}

/* OpenSSL's reason for the last failure, without its queue: "no start line", "bad base64
 * decode". It names the kind of damage only, never the bytes. */
static const char *ossl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "not PEM";
}

/* A passphrase callback that gives none: an encrypted key fails to load (with a message)
 * instead of OpenSSL's default prompting on the terminal of a daemon. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* Every PEM block of ca parses as a certificate, and there is at least one. */
static int check_ca(const char *path, const char *pem, char *err, size_t errlen)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	unsigned n = 0;
	X509 *x;
	int ret = 0;

	if (!bio)
		return tv_errf(err, errlen, -ENOMEM, "--tls-ca %s: out of memory", path);
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		X509_free(x);
		n++;
	}
	/* the loop ends at the end of the text (PEM_R_NO_START_LINE) or at a bad block */
	if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE || n == 0)
		ret = tv_errf(err, errlen, -EINVAL, "invalid --tls-ca %s: %s", path,
			      n ? ossl_reason() : "no PEM certificate");
	ERR_clear_error();
	BIO_free(bio);
	return ret;
}

/* cert's first block is a certificate and key a private key matching it. */
static int check_pair(const char *cert_path, const char *cert, const char *key_path,
		      const char *key, char *err, size_t errlen)
{
	BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	int ret = 0;

	if (!cb || !kb) {
		ret = tv_errf(err, errlen, -ENOMEM, "--tls-cert: out of memory");
		goto out;
	}
	x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	if (!x) {
		ret = tv_errf(err, errlen, -EINVAL, "invalid --tls-cert %s: %s", cert_path,
			      ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE ?
				      "no PEM certificate" : ossl_reason());
		goto out;
	}
	pk = PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL);
	if (!pk) {
		ret = tv_errf(err, errlen, -EINVAL, "invalid --tls-key %s: %s", key_path,
			      ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE ?
				      "no PEM private key" :
				      "not an unencrypted PEM private key");
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1)
		ret = tv_errf(err, errlen, -EINVAL,
			      "--tls-key %s does not match the certificate of --tls-cert %s",
			      key_path, cert_path);
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(kb);
	BIO_free(cb);
	return ret;
}

int tv_tls_pem_load(struct tv_tls_pem *p, const char *ca_path, const char *cert_path,
		    const char *key_path, char *err, size_t errlen)
{
	struct stat st;
	int ret = 0;

	memset(p, 0, sizeof(*p));
	/* The first OpenSSL call of the process (before grpc_init, which would initialize it
	 * with defaults): no cleanup at exit. gRPC's threads outlive main's return (1.51 does
	 * not join them) and one still retrying a TLS connect then ran into OpenSSL's freed
	 * state: a SEGV at exit in about 1 of 40 refused TLS queries. The process is ending
	 * anyway; the memory goes with it. */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	if (ca_path && ((ret = read_pem("tls-ca", ca_path, &p->ca, err, errlen, &st)) ||
			(ret = check_ca(ca_path, p->ca, err, errlen))))
		goto fail;
	if (cert_path && key_path &&
	    ((ret = read_pem("tls-cert", cert_path, &p->cert, err, errlen, &st)) ||
	     (ret = read_pem("tls-key", key_path, &p->key, err, errlen, &st)) ||
	     (ret = check_pair(cert_path, p->cert, key_path, p->key, err, errlen)) ||
	     (ret = check_key_mode(key_path, &st, err, errlen))))
		goto fail;
	return 0;
fail:
	tv_tls_pem_free(p);
	return ret;
}

void tv_tls_pem_free(struct tv_tls_pem *p)
{
	if (p->key) {
		OPENSSL_cleanse(p->key, strlen(p->key));
		free(p->key);
	}
	free(p->cert);
	free(p->ca);
	memset(p, 0, sizeof(*p));
}
