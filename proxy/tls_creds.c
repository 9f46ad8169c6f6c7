/* tls_creds.c - a listener's certificates, keys, OCSP responses and
 * priority, on GnuTLS (see tls.h, tls_creds_int.h) */
#include "tls_creds_int.h"

#include "file_read.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/ocsp.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

/* TLS 1.2 and 1.3 only (RFC 8996), forward-secret key exchange, AEAD
 * ciphers; the server's order wins. */
#define DEFAULT_PRIORITY                                                                                 \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-RSA:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
	"+CHACHA20-POLY1305:%SERVER_PRECEDENCE"

/* A certificate that expires within this many days is worth a warning. */
#define EXPIRY_WARNING_DAYS 14
/* A DNS name is at most 253 octets (RFC 1035 section 2.3.4). */
#define DNS_NAME_MAX 256

/* The files of one cert line, read once and loaded into several sets. */
struct cert_files {
	struct file_blob chain, key, ocsp;
	bool staple; /* the OCSP response passed every check */
};

struct load_ctx {
	const char *filename;
	tls_warning_fn *warn;
	void *warn_ctx;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) static void warn_line(const struct load_ctx *ctx, int line,
                                                             const char *fmt, ...)
{
	char msg[2600], text[2400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof msg, "%s:%d: warning: %s", ctx->filename, line, text);
	ctx->warn(ctx->warn_ctx, msg);
}

/* load_error - why a certificate or key did not load, in an admin's words */
static const char *load_error(int r)
{
	switch (r) {
	case GNUTLS_E_CERTIFICATE_KEY_MISMATCH:
		return "the key does not match the certificate";
	case GNUTLS_E_DECRYPTION_FAILED:
		return "the key is encrypted (a passphrase is not supported)";
	case GNUTLS_E_BASE64_DECODING_ERROR:
	case GNUTLS_E_ASN1_DER_ERROR:
	case GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR:
	case GNUTLS_E_FILE_ERROR:
		return "not a PEM certificate or key";
	default:
		return gnutls_strerror(r);
	}
}

/* add_pair - one chain and its key into SET; GnuTLS checks they match */
static int add_pair(gnutls_certificate_credentials_t set, const struct cert_files *f)
{
	gnutls_datum_t chain = { (unsigned char *)f->chain.data, (unsigned)f->chain.len };
	gnutls_datum_t key = { (unsigned char *)f->key.data, (unsigned)f->key.len };
	int r = gnutls_certificate_set_x509_key_mem2(set, &chain, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (r < 0 || !f->staple)
		return r;
	gnutls_datum_t ocsp = { (unsigned char *)f->ocsp.data, (unsigned)f->ocsp.len };
	int s = gnutls_certificate_set_ocsp_status_request_mem(set, &ocsp, (unsigned)r, GNUTLS_X509_FMT_DER);
	return s < 0 ? s : r;
}

static bool add_name(struct tls_cert *c, const char *name)
{
	char **names = realloc(c->names, (c->n_names + 1) * sizeof *names);
	if (!names)
		return false;
	c->names = names;
	if (!(names[c->n_names] = strdup(name)))
		return false;
	c->n_names++;
	return true;
}

/* read_names - the DNS subjectAltNames, or the CN when there are none
 * (RFC 6125 section 6.4.4) */
static bool read_names(gnutls_x509_crt_t crt, struct tls_cert *c)
{
	char name[DNS_NAME_MAX];
	for (unsigned seq = 0;; seq++) {
		size_t len = sizeof name;
		int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, name, &len, NULL);
		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type == GNUTLS_SAN_DNSNAME && strlen(name) == len && !add_name(c, name))
			return false;
	}
	size_t len = sizeof name;
	if (c->n_names == 0 &&
	    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, name, &len) == 0)
		return add_name(c, name);
	return true;
}

/* read_spki_hash - SHA-256 of the SubjectPublicKeyInfo: DANE's selector 1,
 * matching type 1 (RFC 6698 section 2.1) */
static bool read_spki_hash(gnutls_x509_crt_t crt, struct tls_cert *c)
{
	gnutls_pubkey_t pub;
	gnutls_datum_t spki = { NULL, 0 };
	unsigned char hash[32];
	if (gnutls_pubkey_init(&pub) < 0)
		return false; /* pub may be unset: nothing to deinit */
	bool ok = gnutls_pubkey_import_x509(pub, crt, 0) == 0 &&
	          gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) == 0 &&
	          gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, hash) == 0;
	if (ok)
		for (size_t i = 0; i < sizeof hash; i++)
			snprintf(c->spki_sha256_hex + 2 * i, 3, "%02x", hash[i]);
	gnutls_free(spki.data);
	gnutls_pubkey_deinit(pub);
	return ok;
}

static void format_time(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm);
}

static void check_expiry(gnutls_x509_crt_t crt, const struct config_cert *cc, const struct load_ctx *ctx)
{
	time_t expires = gnutls_x509_crt_get_expiration_time(crt);
	time_t now = time(NULL);
	if (expires == (time_t)-1 || expires - now >= EXPIRY_WARNING_DAYS * 24 * 3600)
		return;
	char when[40];
	format_time(expires, when, sizeof when);
	warn_line(ctx, cc->line, "certificate %s %s %s", cc->chain, expires <= now ? "has expired on" : "expires on",
	          when);
}

/* ocsp_problem - why RESP must not be stapled for LEAF (issued by ISSUER,
 * or NULL when the chain stops at the leaf), or NULL when it is good */
static const char *ocsp_problem(const struct file_blob *resp_file, gnutls_x509_crt_t leaf,
                                gnutls_x509_crt_t issuer, time_t *this_update_r)
{
	static char why[128];
	gnutls_ocsp_resp_t resp;
	gnutls_datum_t der = { (unsigned char *)resp_file->data, (unsigned)resp_file->len };
	if (gnutls_ocsp_resp_init(&resp) < 0)
		return "out of memory";
	const char *problem = NULL;
	unsigned status = 0, verify = 0;
	time_t this_update = 0, next_update = 0, now = time(NULL);
	if (gnutls_ocsp_resp_import(resp, &der) < 0)
		problem = "not a DER OCSP response";
	else if (gnutls_ocsp_resp_get_status(resp) != GNUTLS_OCSP_RESP_SUCCESSFUL)
		problem = "the responder did not answer successfully";
	else if (gnutls_ocsp_resp_check_crt(resp, 0, leaf) < 0)
		problem = "it is for another certificate";
	else if (issuer && (gnutls_ocsp_resp_verify_direct(resp, issuer, &verify, 0) < 0 || verify != 0))
		problem = "its signature does not verify against the issuer in the chain";
	else if (gnutls_ocsp_resp_get_single(resp, 0, NULL, NULL, NULL, NULL, &status, &this_update,
	                                     &next_update, NULL, NULL) < 0)
		problem = "it holds no certificate status";
	else if (status != GNUTLS_OCSP_CERT_GOOD)
		problem = status == GNUTLS_OCSP_CERT_REVOKED ? "the certificate is revoked" : "the status is unknown";
	else if (this_update > now + 300)
		problem = "its thisUpdate is in the future";
	else if (next_update != (time_t)-1 && next_update <= now) {
		char when[40];
		format_time(next_update, when, sizeof when);
		snprintf(why, sizeof why, "it is stale (nextUpdate %s)", when);
		problem = why;
	}
	gnutls_ocsp_resp_deinit(resp);
	*this_update_r = this_update;
	return problem;
}

/* read_cert - the files of cert line CC, and what the listener needs to
 * know of its leaf: names, key hash, expiry, whether its OCSP staples */
static bool read_cert(const struct config_cert *cc, struct cert_files *f, struct tls_cert *c,
                      const struct load_ctx *ctx)
{
	char why[1200];
	const char *key_path = cc->key[0] ? cc->key : cc->chain;
	if (!file_read(cc->chain, &f->chain, why, sizeof why) ||
	    !file_read(key_path, &f->key, why, sizeof why)) {
		snprintf(ctx->err, ctx->errlen, "%s:%d: %s", ctx->filename, cc->line, why);
		return false;
	}
	gnutls_x509_crt_t *chain = NULL;
	unsigned n = 0;
	gnutls_datum_t pem = { (unsigned char *)f->chain.data, (unsigned)f->chain.len };
	int r = gnutls_x509_crt_list_import2(&chain, &n, &pem, GNUTLS_X509_FMT_PEM, 0);
	if (r < 0 || n == 0) {
		snprintf(ctx->err, ctx->errlen, "%s:%d: certificate %s: %s", ctx->filename, cc->line, cc->chain,
		         r < 0 ? load_error(r) : "no certificate in the file");
		return false;
	}
	bool ok = read_names(chain[0], c) && read_spki_hash(chain[0], c) &&
	          gnutls_x509_crt_export2(chain[0], GNUTLS_X509_FMT_DER, &c->leaf_der) == 0;
	if (!ok)
		snprintf(ctx->err, ctx->errlen, "%s:%d: certificate %s: cannot read its names or key", ctx->filename,
		         cc->line, cc->chain);
	if (ok)
		check_expiry(chain[0], cc, ctx);
	c->expires = gnutls_x509_crt_get_expiration_time(chain[0]);
	c->ocsp_this_update = -1;
	if (ok && cc->ocsp[0]) {
		const char *problem = why;
		time_t this_update = -1;
		if (file_read(cc->ocsp, &f->ocsp, why, sizeof why))
			problem = ocsp_problem(&f->ocsp, chain[0], n > 1 ? chain[1] : NULL, &this_update);
		if (problem)
			warn_line(ctx, cc->ocsp_line, "OCSP response %s not stapled: %s", cc->ocsp, problem);
		f->staple = !problem;
		if (f->staple)
			c->ocsp_this_update = this_update;
	}
	for (unsigned i = 0; i < n; i++)
		gnutls_x509_crt_deinit(chain[i]);
	gnutls_free(chain);
	return ok;
}

static bool has_name(const struct tls_cert *c, const char *name)
{
	for (size_t i = 0; i < c->n_names; i++)
		if (strcasecmp(c->names[i], name) == 0)
			return true;
	return false;
}

/* same_names - the same set of names, in any order */
static bool same_names(const struct tls_cert *a, const struct tls_cert *b)
{
	for (size_t i = 0; i < a->n_names; i++)
		if (!has_name(b, a->names[i]))
			return false;
	for (size_t i = 0; i < b->n_names; i++)
		if (!has_name(a, b->names[i]))
			return false;
	return true;
}

/* assign_groups - certificates with the same names share a group */
static void assign_groups(struct tls_creds *creds)
{
	for (size_t i = 0; i < creds->n_certs; i++) {
		struct tls_cert *c = &creds->certs[i];
		size_t g = 0;
		while (g < creds->n_groups && !same_names(&creds->certs[creds->groups[g].first], c))
			g++;
		if (g == creds->n_groups)
			creds->groups[creds->n_groups++].first = i;
		c->group = g;
	}
}

/* new_set - an empty GnuTLS certificate set whose add calls return indexes */
static gnutls_certificate_credentials_t new_set(void)
{
	gnutls_certificate_credentials_t set;
	if (gnutls_certificate_allocate_credentials(&set) < 0)
		return NULL;
	gnutls_certificate_set_flags(set, GNUTLS_CERTIFICATE_API_V2);
	return set;
}

/* fill_sets - every certificate into the default set, and into its group's */
static bool fill_sets(struct tls_creds *creds, const struct config_listener *l, struct cert_files *files,
                      const struct load_ctx *ctx)
{
	if (!(creds->all = new_set()))
		goto out_of_memory;
	for (size_t g = 0; g < creds->n_groups; g++)
		if (!(creds->groups[g].certs = new_set()))
			goto out_of_memory;
	for (size_t i = 0; i < creds->n_certs; i++) {
		int r = add_pair(creds->all, &files[i]);
		if (r >= 0)
			r = add_pair(creds->groups[creds->certs[i].group].certs, &files[i]);
		if (r < 0) {
			const struct config_cert *cc = &l->certs[i];
			snprintf(ctx->err, ctx->errlen, "%s:%d: certificate %s with key %s: %s", ctx->filename, cc->line,
			         cc->chain, cc->key[0] ? cc->key : cc->chain, load_error(r));
			return false;
		}
	}
	return true;
out_of_memory:
	snprintf(ctx->err, ctx->errlen, "%s:%d: out of memory", ctx->filename, l->line);
	return false;
}

static bool load_priority(struct tls_creds *creds, const struct config_listener *l, const struct load_ctx *ctx)
{
	const char *priority = l->priority[0] ? l->priority : DEFAULT_PRIORITY;
	const char *err_pos = NULL;
	int r = gnutls_priority_init(&creds->priority, priority, &err_pos);
	if (r == 0)
		return true;
	snprintf(ctx->err, ctx->errlen, "%s:%d: bad priority string at '%s': %s", ctx->filename,
	         l->priority_line ? l->priority_line : l->line, err_pos ? err_pos : priority, gnutls_strerror(r));
	creds->priority = NULL;
	return false;
}

struct tls_creds *tls_creds_load(const struct config_listener *l, const char *filename,
                                 tls_warning_fn *warn, void *warn_ctx, char *err, size_t errlen)
{
	struct load_ctx ctx = { filename, warn, warn_ctx, err, errlen };
	struct cert_files files[CONFIG_MAX_CERTS];
	memset(files, 0, sizeof files);
	struct tls_creds *creds = calloc(1, sizeof *creds);
	if (!creds) {
		snprintf(err, errlen, "%s:%d: out of memory", filename, l->line);
		return NULL;
	}
	creds->request_client_cert = l->request_client_cert;
	bool ok = true;
	for (size_t i = 0; ok && i < l->n_certs; i++) {
		creds->n_certs++;
		ok = read_cert(&l->certs[i], &files[i], &creds->certs[i], &ctx);
	}
	if (ok) {
		assign_groups(creds);
		ok = fill_sets(creds, l, files, &ctx) && load_priority(creds, l, &ctx);
	}
	for (size_t i = 0; i < l->n_certs; i++) {
		file_blob_wipe(&files[i].chain);
		file_blob_wipe(&files[i].key);
		file_blob_wipe(&files[i].ocsp);
	}
	if (!ok) {
		tls_creds_free(creds);
		return NULL;
	}
	return creds;
}

void tls_creds_free(struct tls_creds *creds)
{
	if (!creds)
		return;
	if (creds->priority)
		gnutls_priority_deinit(creds->priority);
	for (size_t g = 0; g < creds->n_groups; g++)
		if (creds->groups[g].certs)
			gnutls_certificate_free_credentials(creds->groups[g].certs);
	if (creds->all)
		gnutls_certificate_free_credentials(creds->all);
	for (size_t i = 0; i < creds->n_certs; i++) {
		struct tls_cert *c = &creds->certs[i];
		for (size_t j = 0; j < c->n_names; j++)
			free(c->names[j]);
		free(c->names);
		gnutls_free(c->leaf_der.data);
	}
	free(creds);
}

/* wildcard_covers - "*.example.org" covers "mx.example.org", one label only
 * (RFC 6125 section 6.4.3) */
static bool wildcard_covers(const char *pattern, const char *name)
{
	if (strncmp(pattern, "*.", 2) != 0)
		return false;
	const char *dot = strchr(name, '.');
	return dot && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
}

gnutls_certificate_credentials_t tls_creds_for_name(const struct tls_creds *creds, const char *name)
{
	for (int wildcard = 0; wildcard <= 1; wildcard++) {
		for (size_t g = 0; g < creds->n_groups; g++) {
			const struct tls_cert *c = &creds->certs[creds->groups[g].first];
			for (size_t j = 0; j < c->n_names; j++) {
				bool match = wildcard ? wildcard_covers(c->names[j], name)
				                      : strcasecmp(c->names[j], name) == 0;
				if (match)
					return creds->groups[g].certs;
			}
		}
	}
	return NULL;
}

static bool has_key(const struct tls_creds *creds, const char *spki_hex)
{
	for (size_t i = 0; i < creds->n_certs; i++)
		if (strcmp(creds->certs[i].spki_sha256_hex, spki_hex) == 0)
			return true;
	return false;
}

bool tls_creds_same_keys(const struct tls_creds *a, const struct tls_creds *b)
{
	for (size_t i = 0; i < a->n_certs; i++)
		if (!has_key(b, a->certs[i].spki_sha256_hex))
			return false;
	for (size_t i = 0; i < b->n_certs; i++)
		if (!has_key(a, b->certs[i].spki_sha256_hex))
			return false;
	return true;
}

void tls_creds_tlsa(const struct tls_creds *creds, tls_tlsa_fn *fn, void *ctx)
{
	for (size_t i = 0; i < creds->n_certs; i++)
		for (size_t j = 0; j < creds->certs[i].n_names; j++)
			fn(ctx, creds->certs[i].names[j], creds->certs[i].spki_sha256_hex);
}

void tls_creds_cert_dates(const struct tls_creds *creds, size_t index, int64_t *expires_r,
                          int64_t *ocsp_this_update_r)
{
	*expires_r = creds->certs[index].expires;
	*ocsp_this_update_r = creds->certs[index].ocsp_this_update;
}
