/*
 * cli/certs.c - `pml-migrate certs`: a throwaway CA and node certificates
 * for mutual TLS between senders and agents (quick start and tests; real
 * clusters bring their own PKI).
 *
 *   certs init DIR            DIR/ca.pem, DIR/ca.key
 *   certs issue DIR NAME      DIR/NAME.pem, DIR/NAME.key signed by DIR/ca.*
 *
 * Keys are EC P-256, written 0600 with O_EXCL: nothing is ever overwritten.
 * Node certificates carry CN=NAME and subjectAltName DNS:NAME, and are
 * good for both TLS server and client auth (an agent can also send).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"

static void certs_usage(FILE *f)
{
	fprintf(f, "usage: pml-migrate certs init DIR [--days N]\n"
		   "       pml-migrate certs issue DIR NAME [--days N]\n"
		   "\n"
		   "init creates a CA (DIR/ca.pem, DIR/ca.key). issue creates DIR/NAME.pem and\n"
		   "DIR/NAME.key for a node called NAME (CN and DNS subjectAltName), signed by\n"
		   "that CA and valid for TLS server and client authentication. Keys are EC\n"
		   "P-256, mode 0600. Existing files are never overwritten.\n"
		   "  --days N   validity, 1..3650 (default 365)\n"
		   "exit codes: 0 written; 1 failed (e.g. file exists); 2 usage error.\n");
}

static void certs__ssl_err(const char *what)
{
	unsigned long e = ERR_get_error();
	util_err("certs: %s: %s", what, e ? ERR_reason_error_string(e) : "failed");
}

static FILE *certs__create(const char *dir, const char *name, const char *ext, mode_t mode, char *path, size_t len)
{
	if ((size_t)snprintf(path, len, "%s/%s.%s", dir, name, ext) >= len) {
		util_err("certs: path too long");
		return NULL;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		util_err("certs: %s: %s", path, strerror(errno));
		return NULL;
	}
	return fdopen(fd, "w");
}

static int certs__add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ex)
		return -EINVAL;
	int ok = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return ok ? 0 : -EINVAL;
}

/* Builds and signs a certificate for key. issuer/ikey NULL = self-signed CA. */
static X509 *certs__make(EVP_PKEY *key, const char *cn, long days, X509 *issuer, EVP_PKEY *ikey)
{
	X509 *c = X509_new();
	unsigned char serial[16];
	char san[96];
	BIGNUM *bn = NULL;
	if (!c || RAND_bytes(serial, sizeof(serial)) != 1)
		goto err;
	serial[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)))
		goto err;
	X509_set_version(c, 2);
	X509_gmtime_adj(X509_getm_notBefore(c), -300); /* tolerate small clock skew */
	X509_gmtime_adj(X509_getm_notAfter(c), days * 86400L);
	X509_NAME *n = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"pml-migrate", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
	X509_set_pubkey(c, key);
	X509 *iss = issuer ? issuer : c;
	if (!issuer) {
		if (certs__add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
		    certs__add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign") ||
		    certs__add_ext(c, iss, NID_subject_key_identifier, "hash"))
			goto err;
	} else {
		snprintf(san, sizeof(san), "DNS:%s", cn);
		if (certs__add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE") ||
		    certs__add_ext(c, iss, NID_key_usage, "critical,digitalSignature,keyAgreement") ||
		    certs__add_ext(c, iss, NID_ext_key_usage, "serverAuth,clientAuth") ||
		    certs__add_ext(c, iss, NID_subject_alt_name, san) ||
		    certs__add_ext(c, iss, NID_authority_key_identifier, "keyid:always"))
			goto err;
	}
	if (!X509_sign(c, issuer ? ikey : key, EVP_sha256()))
		goto err;
	BN_free(bn);
	return c;
err:
	BN_free(bn);
	X509_free(c);
	return NULL;
}

static int certs__write(const char *dir, const char *name, EVP_PKEY *key, X509 *cert)
{
	char kp[512], cp[512];
	FILE *kf = certs__create(dir, name, "key", 0600, kp, sizeof(kp));
	if (!kf)
		return -1;
	FILE *cf = certs__create(dir, name, "pem", 0644, cp, sizeof(cp));
	if (!cf) {
		fclose(kf);
		unlink(kp);
		return -1;
	}
	int ok = PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL) && PEM_write_X509(cf, cert);
	ok &= fclose(kf) == 0;
	ok &= fclose(cf) == 0;
	if (!ok) {
		util_err("certs: writing %s / %s failed", kp, cp);
		unlink(kp);
		unlink(cp);
		return -1;
	}
	printf("wrote %s and %s\n", cp, kp);
	return 0;
}

static int certs__load_ca(const char *dir, X509 **ca, EVP_PKEY **key)
{
	char p[512];
	FILE *f;
	snprintf(p, sizeof(p), "%s/ca.pem", dir);
	if (!(f = fopen(p, "r"))) {
		util_err("certs: %s: %s (run 'pml-migrate certs init %s' first)", p, strerror(errno), dir);
		return -1;
	}
	*ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	if (!(f = fopen(p, "r"))) {
		util_err("certs: %s: %s", p, strerror(errno));
		X509_free(*ca);
		return -1;
	}
	*key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!*ca || !*key || X509_check_private_key(*ca, *key) != 1) {
		util_err("certs: %s/ca.pem and ca.key are not a matching certificate and key", dir);
		X509_free(*ca);
		EVP_PKEY_free(*key);
		return -1;
	}
	return 0;
}

int cmd_certs(int argc, char **argv)
{
	static const struct option opts[] = { { "days", required_argument, 0, 'd' },
					      { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	uint64_t days = 365;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			certs_usage(stdout);
			return PMG_EXIT_OK;
		}
		if (c == 'd' && cli_parse_uint(optarg, 1, 3650, &days) == 0)
			continue;
		util_err("certs: bad option or value (see 'pml-migrate certs --help')");
		return PMG_EXIT_USAGE;
	}
	int nargs = argc - optind;
	const char *verb = nargs > 0 ? argv[optind] : "";
	int init = !strcmp(verb, "init") && nargs == 2;
	int issue = !strcmp(verb, "issue") && nargs == 3;
	if (!init && !issue) {
		certs_usage(stderr);
		return PMG_EXIT_USAGE;
	}
	const char *dir = argv[optind + 1];
	const char *name = issue ? argv[optind + 2] : "ca";
	if (issue && (!util_valid_name(name) || !strcmp(name, "ca"))) {
		util_err("certs: node name '%s': use 1-64 of [A-Za-z0-9._-], not 'ca'", name);
		return PMG_EXIT_USAGE;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		util_err("certs: %s: %s", dir, strerror(errno));
		return PMG_EXIT_FAIL;
	}
	int rc = PMG_EXIT_FAIL;
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *cakey = NULL, *key = EVP_EC_gen("P-256");
	if (!key) {
		certs__ssl_err("generating a P-256 key");
		goto out;
	}
	if (issue && certs__load_ca(dir, &ca, &cakey) < 0)
		goto out;
	cert = certs__make(key, issue ? name : "pml-migrate CA", (long)days, ca, cakey);
	if (!cert) {
		certs__ssl_err("building the certificate");
		goto out;
	}
	if (certs__write(dir, name, key, cert) == 0)
		rc = PMG_EXIT_OK;
out:
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
	return rc;
}
